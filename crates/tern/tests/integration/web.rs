//! The dashboard over real HTTP against a running server: logging in
//! (CSRF on the login form, wrong passwords throttled), sessions, forms
//! refused without their CSRF token, the overview's figures equal to the
//! API's for a seeded history, a message's timeline with an XSS-bearing
//! subject shown as text, retrying a queued message, suppressing and
//! unsuppressing, and a domain owner's narrower view. (The same pages in
//! Chromium, with screenshots: tests/e2e/dashboard.py.)

use crate::api::ApiWorld;
use serde_json::{Value, json};
use std::collections::HashMap;
use tern_store::WebUser;

/// A client that keeps cookies and does not follow redirects.
struct Browser {
    base: String,
    http: reqwest::Client,
    cookies: HashMap<String, String>,
}

struct Page {
    status: u16,
    location: String,
    body: String,
    set_cookies: Vec<String>,
}

impl Browser {
    fn new(base: String) -> Self {
        Self {
            base,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: HashMap::new(),
        }
    }

    async fn send(&mut self, method: &str, path: &str, form: Option<&[(&str, &str)]>) -> Page {
        let mut r = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if !self.cookies.is_empty() {
            let c: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            r = r.header("cookie", c.join("; "));
        }
        if let Some(f) = form {
            let body: Vec<String> = f
                .iter()
                .map(|(k, v)| format!("{k}={}", urlencode(v)))
                .collect();
            r = r
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.join("&"));
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let set_cookies: Vec<String> = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        for c in &set_cookies {
            if let Some((kv, _)) = c.split_once(';')
                && let Some((k, v)) = kv.split_once('=')
            {
                if v.is_empty() {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_string(), v.to_string());
                }
            }
        }
        Page {
            status,
            location,
            body: resp.text().await.unwrap(),
            set_cookies,
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        self.send("GET", path, None).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send("POST", path, Some(form)).await
    }

    /// Logs in; the login page's token comes from its form.
    async fn login(&mut self, email: &str, password: &str) -> Page {
        let page = self.get("/login").await;
        let token = hidden(&page.body, "csrf");
        self.post(
            "/login",
            &[
                ("email", email),
                ("password", password),
                ("csrf", &token),
                ("next", "/"),
            ],
        )
        .await
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of the first hidden input `name` in a page.
fn hidden(body: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {body}"))
        + marker.len();
    body[start..].split('"').next().unwrap().to_string()
}

/// The figure `data-figure=ID` shows.
fn figure(body: &str, id: &str) -> i64 {
    let marker = format!("data-figure=\"{id}\">");
    let start = body
        .find(&marker)
        .unwrap_or_else(|| panic!("no figure {id}"))
        + marker.len();
    body[start..].split('<').next().unwrap().parse().unwrap()
}

async fn add_user(w: &ApiWorld, email: &str, password: &str, domains: &[&str]) {
    w.s.store
        .put_web_user(WebUser {
            email: email.into(),
            password_hash: tern_store::password::hash(password).unwrap(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            created: tern_core::now_unix(),
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_logs_in_shows_and_changes_safely() {
    let w = ApiWorld::new("[auth]\nslow_after = 100\nblock_after = 4\n").await;
    add_user(&w, "ops@example.test", "right-password", &[]).await;
    add_user(&w, "owner@example.org", "owner-password", &["example.org"]).await;
    let mut b = Browser::new(format!("http://{}", w.s.http));

    // Pages need a session.
    let p = b.get("/").await;
    assert_eq!((p.status, p.location.as_str()), (303, "/login?next=/"));
    // A login posted without the login page's token is refused.
    let p = b
        .post(
            "/login",
            &[
                ("email", "ops@example.test"),
                ("password", "right-password"),
            ],
        )
        .await;
    assert_eq!(p.status, 403, "{}", p.body);
    // Wrong passwords: 401, then the address is refused (429).
    let p = b.login("ops@example.test", "wrong").await;
    assert_eq!(p.status, 401);
    assert!(p.body.contains("Wrong email or password"));
    let p = b.login("nobody@example.test", "wrong").await;
    assert_eq!(p.status, 401);

    // The right password from a fresh address family member works: the
    // guard counts per address, so log in before the block.
    let p = b.login("ops@example.test", "right-password").await;
    assert_eq!((p.status, p.location.as_str()), (303, "/"), "{}", p.body);
    let session = p
        .set_cookies
        .iter()
        .find(|c| c.starts_with("tern_session="))
        .unwrap();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Strict"),
        "{session}"
    );

    // A seeded history: the overview's week equals the API's 7 days.
    let mut events = Vec::new();
    for (t, n, detail) in [
        (tern_events::EventType::Accepted, 9, None),
        (tern_events::EventType::Delivered, 6, None),
        (tern_events::EventType::Bounced, 2, Some("bad_mailbox")),
        (tern_events::EventType::Deferred, 3, None),
        (tern_events::EventType::Complained, 1, None),
        (tern_events::EventType::Opened, 4, None),
        (tern_events::EventType::Clicked, 2, None),
    ] {
        for i in 0..n {
            let mut e = tern_events::Event::new(t, &format!("seed{i}")).to("x@remote.test");
            e.sender = Some("shop@example.test".into());
            e.category = detail.map(str::to_string);
            if matches!(
                t,
                tern_events::EventType::Opened | tern_events::EventType::Clicked
            ) {
                e.machine = Some(false);
            }
            if t == tern_events::EventType::Accepted {
                e.tags = vec!["promo".into()];
            }
            if t == tern_events::EventType::Delivered {
                e.stream = Some("broadcast".into());
                e.sending_ip = Some("192.0.2.9".into());
            }
            events.push(e);
        }
    }
    w.s.store.record_events(events, vec![], None).await.unwrap();
    let (st, _, health) = w
        .call("GET", "/v1/domains/example.test/health", None, &[])
        .await;
    assert_eq!(st, 200, "{health}");
    let api = &health["last_7_days"];
    let p = b.get("/?range=week&domain=example.test").await;
    assert_eq!(p.status, 200);
    for id in [
        "accepted",
        "delivered",
        "bounced",
        "deferred",
        "complained",
        "opened",
        "clicked",
        "unsubscribed",
    ] {
        assert_eq!(
            Value::from(figure(&p.body, id)),
            api[id],
            "{id}: overview vs API {api}"
        );
    }
    assert_eq!(figure(&p.body, "delivered"), 6);
    assert!(p.body.contains("<svg"), "charts are drawn");
    // Filtered by a tag, by a stream; every domain together.
    let p = b.get("/?range=week&domain=example.test&tag=promo").await;
    assert_eq!(
        (figure(&p.body, "accepted"), figure(&p.body, "delivered")),
        (9, 0)
    );
    let p = b.get("/?range=week&stream=broadcast").await;
    assert_eq!(
        (figure(&p.body, "accepted"), figure(&p.body, "delivered")),
        (0, 6)
    );
    let p = b.get("/?range=week").await;
    assert!(figure(&p.body, "accepted") >= 9);
    let p = b.get("/?range=week&ip=192.0.2.9").await;
    assert_eq!(
        (figure(&p.body, "accepted"), figure(&p.body, "delivered")),
        (0, 6)
    );
    let p = b.get("/?range=week&domain=example.test").await;
    assert!(p.body.contains("bad_mailbox"), "bounces by cause");

    // A message with a hostile subject: its timeline shows it as text.
    let (st, _, sent) = w
        .call(
            "POST",
            "/v1/messages",
            Some(json!({
                "from": "shop@example.test",
                "to": ["ann@unreachable.test"],
                "subject": "<script>alert('x')</script> & more",
                "text": "hello"
            })),
            &[],
        )
        .await;
    assert_eq!(st, 202, "{sent}");
    let id = sent["id"].as_str().unwrap().to_string();
    let p = b.get(&format!("/messages/{id}")).await;
    assert_eq!(p.status, 200);
    assert!(!p.body.contains("<script>alert"), "escaped");
    assert!(
        p.body
            .contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more")
            || p.body
                .contains("&lt;script&gt;alert('x')&lt;/script&gt; &amp; more"),
        "{}",
        p.body
    );
    assert!(
        p.body.contains("accepted"),
        "the timeline has the accepted event"
    );
    // It waits in the queue: retry needs the form's token.
    let csrf = hidden(&p.body, "csrf");
    let p2 = b.post(&format!("/messages/{id}/retry"), &[]).await;
    assert_eq!(p2.status, 403, "no CSRF token, no retry");
    let p2 = b
        .post(&format!("/messages/{id}/retry"), &[("csrf", &csrf)])
        .await;
    assert_eq!(
        (p2.status, p2.location.clone()),
        (303, format!("/messages/{id}"))
    );
    let now = tern_core::now_unix();
    for r in w.s.store.queued_message(&id).await.unwrap() {
        assert!(
            r.next_attempt <= now || r.leased_until > now,
            "due now or being tried: {r:?}"
        );
    }
    // Search finds it by recipient, by sender, by subject text and day.
    let p = b.get("/messages?q=ann%40unreachable.test").await;
    assert!(p.body.contains(&id), "{}", p.body);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    for query in [
        "from=shop%40example.test".to_string(),
        "text=%3Cscript%3Ealert".to_string(),
        format!("since={today}&until={today}"),
    ] {
        let p = b.get(&format!("/messages?{query}")).await;
        assert!(p.body.contains(&id), "{query}: {}", p.body);
        assert!(!p.body.contains("<script>alert"), "escaped in the list");
    }
    let p = b.get("/messages?text=no-such-subject-anywhere").await;
    assert!(!p.body.contains(&id));

    // Suppress and unsuppress; the API sees the same list.
    let p = b
        .post(
            "/suppressions",
            &[("address", "bad@remote.test"), ("domain", "")],
        )
        .await;
    assert_eq!(p.status, 403, "no CSRF token");
    let p = b
        .post(
            "/suppressions",
            &[
                ("csrf", &csrf),
                ("address", "bad@remote.test"),
                ("domain", ""),
            ],
        )
        .await;
    assert_eq!(p.status, 303);
    let (_, _, list) = w.call("GET", "/v1/suppressions", None, &[]).await;
    assert!(list.to_string().contains("bad@remote.test"), "{list}");
    let p = b.get("/suppressions").await;
    assert!(p.body.contains("bad@remote.test"));
    let p = b
        .post(
            "/suppressions/remove",
            &[
                ("csrf", &csrf),
                ("address", "bad@remote.test"),
                ("domain", ""),
            ],
        )
        .await;
    assert_eq!(p.status, 303);
    let (_, _, list) = w.call("GET", "/v1/suppressions", None, &[]).await;
    assert!(!list.to_string().contains("bad@remote.test"), "{list}");

    // A DMARC aggregate report: the domain page sums it by sending address
    // and reporter, and flags an address that fails everything.
    use mail_auth::report::{DmarcResult, Record, Report};
    let report = Report::new()
        .with_org_name("Big Mailbox Co")
        .with_report_id("r1")
        .with_domain("example.test")
        .with_date_range_begin(1_796_000_000)
        .with_date_range_end(1_796_086_400)
        .with_record(
            Record::new()
                .with_source_ip("192.0.2.7".parse().unwrap())
                .with_count(40)
                .with_dmarc_dkim_result(DmarcResult::Pass)
                .with_dmarc_spf_result(DmarcResult::Pass),
        )
        .with_record(
            Record::new()
                .with_source_ip("203.0.113.66".parse().unwrap())
                .with_count(3)
                .with_dmarc_dkim_result(DmarcResult::Fail)
                .with_dmarc_spf_result(DmarcResult::Fail),
        );
    w.s.store
        .add_dmarc_report(
            tern_store::DmarcReportRow {
                domain: "example.test".into(),
                org: "Big Mailbox Co".into(),
                report_id: "r1".into(),
                begin: 1_796_000_000,
                end: 1_796_086_400,
                messages: 43,
                failed: 3,
                report: serde_json::to_string(&report).unwrap(),
            },
            tern_core::now_unix(),
        )
        .await
        .unwrap();
    let p = b.get("/domains/example.test").await;
    assert_eq!(p.status, 200);
    for want in [
        "203.0.113.66",
        "unknown sender",
        "192.0.2.7",
        "Big Mailbox Co",
        "93.0%",
        "Sender health",
        "TLS reports received",
    ] {
        assert!(p.body.contains(want), "{want} on the domain page");
    }

    // DKIM rotation: new keys start pending, then one is activated.
    let p = b.post("/domains/example.test/dkim/rotate", &[]).await;
    assert_eq!(p.status, 403, "no CSRF token");
    let p = b
        .post("/domains/example.test/dkim/rotate", &[("csrf", &csrf)])
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    let pending: Vec<String> =
        w.s.store
            .dkim_keys("example.test")
            .await
            .unwrap()
            .into_iter()
            .filter(|k| k.status == "pending")
            .map(|k| k.selector)
            .collect();
    assert_eq!(pending.len(), 2, "an RSA and an Ed25519 key");
    let p = b
        .post(
            "/domains/example.test/dkim/activate",
            &[("csrf", &csrf), ("selector", &pending[1])],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    let keys = w.s.store.dkim_keys("example.test").await.unwrap();
    assert!(
        keys.iter()
            .any(|k| k.selector == pending[1] && k.status == "active")
    );

    // Every page renders.
    for path in [
        "/queue",
        "/domains",
        "/domains/example.test",
        "/webhooks",
        "/keys",
        "/accounts",
        "/?range=day",
        "/?range=month",
    ] {
        let p = b.get(path).await;
        assert_eq!(p.status, 200, "{path}: {}", p.body);
    }

    // API keys: created in the browser (the secret shown once) and usable.
    let p = b
        .post(
            "/keys",
            &[
                ("csrf", &csrf),
                ("name", "from the web"),
                ("scope", "read"),
                ("domains", ""),
            ],
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    let start = p.body.find("id=\"secret\">").unwrap() + "id=\"secret\">".len();
    let secret = p.body[start..].split('<').next().unwrap().to_string();
    let (st, _, _) = w
        .call_as(&secret, "GET", "/v1/events?limit=1", None, &[])
        .await;
    assert_eq!(st, 200, "the new key works");
    let id = secret.split('_').nth(1).unwrap().to_string();
    let p = b
        .post(&format!("/keys/{id}/revoke"), &[("csrf", &csrf)])
        .await;
    assert_eq!(p.status, 303);
    let keys = w.s.store.api_keys().await.unwrap();
    assert!(
        keys.iter().any(|k| k.id == id && k.revoked.is_some()),
        "revoked"
    );
    // Accounts and aliases.
    let p = b
        .post(
            "/accounts",
            &[("csrf", &csrf), ("address", "new.person@example.test")],
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    let start = p.body.find("id=\"password\">").unwrap() + "id=\"password\">".len();
    let password = p.body[start..].split('<').next().unwrap().to_string();
    assert!(
        w.s.store
            .authenticate("new.person@example.test", &password)
            .await
            .unwrap()
            .is_some(),
        "the shown password logs in"
    );
    let p = b
        .post(
            "/aliases",
            &[
                ("csrf", &csrf),
                ("address", "hello@example.test"),
                ("target", "new.person@example.test"),
            ],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert!(b.get("/accounts").await.body.contains("hello@example.test"));
    let p = b
        .post(
            "/aliases/remove",
            &[("csrf", &csrf), ("address", "hello@example.test")],
        )
        .await;
    assert_eq!(p.status, 303);
    let p = b
        .post(
            "/accounts/remove",
            &[("csrf", &csrf), ("address", "new.person@example.test")],
        )
        .await;
    assert_eq!(p.status, 303);
    let page = b.get("/accounts").await.body;
    assert!(!page.contains("new.person@example.test") && !page.contains("hello@example.test"));
    // Webhooks: an endpoint's page, and a replay of stored events.
    let (st, _, hook) = w
        .call(
            "POST",
            "/v1/webhooks",
            Some(json!({"url": "http://127.0.0.1:9/hook", "events": ["accepted"]})),
            &[],
        )
        .await;
    assert_eq!(st, 201, "{hook}");
    let hid = hook["id"].as_str().unwrap();
    assert_eq!(b.get(&format!("/webhooks/{hid}")).await.status, 200);
    let p = b
        .post(
            &format!("/webhooks/{hid}/replay"),
            &[("csrf", &csrf), ("hours", "24")],
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains("events queued"), "{}", p.body);

    // A domain owner sees their domain only.
    let mut o = Browser::new(format!("http://{}", w.s.http));
    let p = o.login("owner@example.org", "owner-password").await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(o.get("/webhooks").await.status, 403);
    assert_eq!(o.get("/?domain=example.test").await.status, 403);
    assert_eq!(o.get("/domains/example.test").await.status, 404);
    assert!(
        !o.get(&format!("/messages/{id}"))
            .await
            .body
            .contains("ann@unreachable.test")
    );

    // Logging out ends the session.
    let p = b.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(p.status, 303);
    assert_eq!(b.get("/").await.status, 303);

    // Wrong passwords from one address end in a refusal (429).
    let mut last = 0;
    for _ in 0..5 {
        last = b.login("ops@example.test", "wrong-again").await.status;
    }
    assert_eq!(last, 429);
}
