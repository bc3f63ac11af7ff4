//! Message templates (minijinja): a subject, a text and an HTML body with
//! `{{ variables }}`; values are HTML-escaped in the HTML body. A template
//! that does not compile or render is a 422 naming the line.

use crate::auth::Caller;
use crate::body::parse;
use crate::build::Content;
use crate::keys::Scope;
use crate::{Api, Problem};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tern_store::Template;
use utoipa::ToSchema;

/// A template as sent and shown.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateBody {
    /// Its name: letters, digits, `-`, `_`, `.` (up to 100).
    #[serde(default)]
    pub name: String,
    /// Subject template.
    pub subject: String,
    /// Plain-text body template.
    #[serde(default)]
    pub text: Option<String>,
    /// HTML body template (variables are HTML-escaped).
    #[serde(default)]
    pub html: Option<String>,
}

/// Variables to render a template with.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// The variables.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: serde_json::Map<String, serde_json::Value>,
}

/// A rendered template.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Rendered {
    /// Subject.
    pub subject: String,
    /// Plain text.
    pub text: Option<String>,
    /// HTML.
    pub html: Option<String>,
}

/// The list of templates.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TemplateList {
    /// Every template.
    pub templates: Vec<TemplateBody>,
}

fn env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env
}

fn template_problem(part: &str, e: &minijinja::Error) -> Problem {
    let line = e
        .line()
        .map(|l| format!(" at line {l}"))
        .unwrap_or_default();
    let what = e
        .detail()
        .map(str::to_string)
        .unwrap_or_else(|| e.kind().to_string());
    Problem::invalid(part, format!("template error{line}: {what}"))
}

/// Renders subject, text and HTML with `variables`.
pub fn render(
    t: &TemplateBody,
    variables: &serde_json::Map<String, serde_json::Value>,
) -> Result<Content, Problem> {
    let env = env();
    let one = |part: &str, name: &str, source: &str| -> Result<String, Problem> {
        let tmpl = env
            .template_from_named_str(name, source)
            .map_err(|e| template_problem(part, &e))?;
        tmpl.render(minijinja::value::Serde(variables))
            .map_err(|e| template_problem(part, &e))
    };
    Ok(Content {
        subject: one("subject", "subject.txt", &t.subject)?,
        text: t
            .text
            .as_deref()
            .map(|s| one("text", "body.txt", s))
            .transpose()?,
        html: t
            .html
            .as_deref()
            .map(|s| one("html", "body.html", s))
            .transpose()?,
    })
}

/// Checks that every part compiles.
fn check(t: &TemplateBody) -> Result<(), Problem> {
    let env = env();
    for (part, name, src) in [
        ("subject", "subject.txt", Some(&t.subject)),
        ("text", "body.txt", t.text.as_ref()),
        ("html", "body.html", t.html.as_ref()),
    ] {
        if let Some(src) = src {
            env.template_from_named_str(name, src)
                .map_err(|e| template_problem(part, &e))?;
        }
    }
    Ok(())
}

fn valid_name(name: &str) -> Result<(), Problem> {
    if name.is_empty()
        || name.len() > 100
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(Problem::invalid(
            "name",
            "use 1 to 100 letters, digits, '-', '_' or '.'",
        ));
    }
    Ok(())
}

fn to_body(t: Template) -> TemplateBody {
    TemplateBody {
        name: t.name,
        subject: t.subject,
        text: t.text,
        html: t.html,
    }
}

/// The stored template `name`, as a request body.
pub async fn load(api: &Api, name: &str) -> Result<TemplateBody, Problem> {
    api.store
        .template(name)
        .await?
        .map(to_body)
        .ok_or_else(|| Problem::not_found(format!("Template {name:?}")))
}

async fn save(api: &Api, t: TemplateBody) -> Result<TemplateBody, Problem> {
    valid_name(&t.name)?;
    check(&t)?;
    let now = tern_core::now_unix();
    api.store
        .put_template(Template {
            name: t.name.clone(),
            subject: t.subject.clone(),
            text: t.text.clone(),
            html: t.html.clone(),
            created: now,
            updated: now,
        })
        .await?;
    Ok(t)
}

/// Lists templates.
#[utoipa::path(get, path = "/v1/templates", tag = "templates",
    responses((status = 200, body = TemplateList), (status = 401, body = Problem)))]
pub async fn list(
    State(api): State<Arc<Api>>,
    caller: Caller,
) -> Result<Json<TemplateList>, Problem> {
    caller.require_read()?;
    let templates = api
        .store
        .templates()
        .await?
        .into_iter()
        .map(to_body)
        .collect();
    Ok(Json(TemplateList { templates }))
}

/// Creates a template (a 409 if the name is taken).
#[utoipa::path(post, path = "/v1/templates", tag = "templates", request_body = TemplateBody,
    responses((status = 201, body = TemplateBody), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create(
    State(api): State<Arc<Api>>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<TemplateBody>), Problem> {
    caller.require(Scope::Admin)?;
    let t: TemplateBody = parse(&headers, &body)?;
    valid_name(&t.name)?;
    if api.store.template(&t.name).await?.is_some() {
        return Err(Problem::conflict(
            "template-exists",
            format!(
                "A template named {:?} exists; PUT /v1/templates/{} replaces it.",
                t.name, t.name
            ),
        ));
    }
    Ok((StatusCode::CREATED, Json(save(&api, t).await?)))
}

/// One template.
#[utoipa::path(get, path = "/v1/templates/{name}", tag = "templates",
    params(("name" = String, Path, description = "Template name")),
    responses((status = 200, body = TemplateBody), (status = 404, body = Problem)))]
pub async fn get(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<TemplateBody>, Problem> {
    caller.require_read()?;
    Ok(Json(load(&api, &name).await?))
}

/// Creates or replaces a template.
#[utoipa::path(put, path = "/v1/templates/{name}", tag = "templates", request_body = TemplateBody,
    params(("name" = String, Path, description = "Template name")),
    responses((status = 200, body = TemplateBody), (status = 422, body = Problem)))]
pub async fn put(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<TemplateBody>, Problem> {
    caller.require(Scope::Admin)?;
    let mut t: TemplateBody = parse(&headers, &body)?;
    if !t.name.is_empty() && t.name != name {
        return Err(Problem::invalid(
            "name",
            "differs from the name in the path",
        ));
    }
    t.name = name;
    Ok(Json(save(&api, t).await?))
}

/// Deletes a template.
#[utoipa::path(delete, path = "/v1/templates/{name}", tag = "templates",
    params(("name" = String, Path, description = "Template name")),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn remove(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(Scope::Admin)?;
    if api.store.remove_template(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found(format!("Template {name:?}")))
    }
}

/// Renders a template with variables, sending nothing.
#[utoipa::path(post, path = "/v1/templates/{name}/preview", tag = "templates", request_body = PreviewRequest,
    params(("name" = String, Path, description = "Template name")),
    responses((status = 200, body = Rendered), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn preview(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Rendered>, Problem> {
    caller.require_read()?;
    let req: PreviewRequest = parse(&headers, &body)?;
    let t = load(&api, &name).await?;
    let c = render(&t, &req.variables)?;
    Ok(Json(Rendered {
        subject: c.subject,
        text: c.text,
        html: c.html,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_escapes() {
        let t = TemplateBody {
            name: "r".into(),
            subject: "Order {{ order }}".into(),
            text: Some("Hi {{ name }}".into()),
            html: Some("<p>Hi {{ name }}</p>".into()),
        };
        let vars = serde_json::json!({"order": 7, "name": "<b>Ann</b>"});
        let c = render(&t, vars.as_object().unwrap()).unwrap();
        assert_eq!(c.subject, "Order 7");
        assert_eq!(c.text.unwrap(), "Hi <b>Ann</b>");
        assert_eq!(c.html.unwrap(), "<p>Hi &lt;b&gt;Ann&lt;&#x2f;b&gt;</p>");
    }

    #[test]
    fn errors_name_the_line() {
        let t = TemplateBody {
            name: "r".into(),
            subject: "x".into(),
            text: Some("line one\n{% if %}".into()),
            html: None,
        };
        let p = check(&t).unwrap_err();
        assert_eq!(p.status, 422);
        assert!(p.detail.contains("line 2"), "{}", p.detail);
        let t = TemplateBody {
            name: "r".into(),
            subject: "{{ missing }}".into(),
            text: None,
            html: None,
        };
        let p = render(&t, &Default::default()).unwrap_err();
        assert!(p.detail.contains("line 1"), "{}", p.detail);
    }
}
