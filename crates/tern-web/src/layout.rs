//! The page frame: navigation, the stylesheet, error pages.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

const STYLE: &str = include_str!("../assets/style.css");

/// `GET /assets/style.css`.
pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLE,
    )
        .into_response()
}

/// What the frame needs to know.
pub(crate) struct Page {
    pub title: String,
    pub current: String,
    pub email: String,
    pub csrf: String,
    pub admin: bool,
}

const NAV: &[(&str, &str, bool)] = &[
    ("/", "Overview", false),
    ("/messages", "Messages", false),
    ("/queue", "Queue", false),
    ("/domains", "Domains", false),
    ("/suppressions", "Suppressions", false),
    ("/webhooks", "Webhooks", true),
    ("/keys", "API keys", true),
    ("/accounts", "Accounts", true),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="referrer" content="same-origin";
            title { (title) " · Tern" }
            link rel="stylesheet" href="/assets/style.css";
        }
    }
}

impl Page {
    /// The whole page around `body`.
    pub fn render(&self, body: Markup) -> Markup {
        html! {
            (DOCTYPE)
            html lang="en" {
                (head(&self.title))
                body {
                    a.skip href="#main" { "Skip to content" }
                    header.top {
                        a.brand href="/" { "Tern" }
                        nav aria-label="Main" {
                            ul {
                                @for (href, label, admin_only) in NAV {
                                    @if !admin_only || self.admin {
                                        li {
                                            @if *href == self.current {
                                                a href=(href) aria-current="page" { (label) }
                                            } @else {
                                                a href=(href) { (label) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        form.logout method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(self.csrf);
                            span.muted { (self.email) }
                            button.link type="submit" { "Log out" }
                        }
                    }
                    main #main { (body) }
                }
            }
        }
    }
}

/// A page without navigation (login, errors).
pub(crate) fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.bare { (body) }
        }
    }
}

/// A storage failure, as a page.
pub(crate) fn store_error(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "web: storage error");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        bare(
            "Unavailable",
            html! { main.narrow { h1 { "Temporarily unavailable" } p { "The store did not answer; try again in a moment." } } },
        ),
    )
        .into_response()
}

/// A missing object, as a page.
pub(crate) fn not_found(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        bare(
            "Not found",
            html! { main.narrow { h1 { "Not found" } p { (what) } p { a href="/" { "Back to the overview" } } } },
        ),
    )
        .into_response()
}

/// A time (Unix seconds) as `YYYY-MM-DD HH:MM UTC`.
pub(crate) fn time(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}
