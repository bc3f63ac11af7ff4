//! The HTTP API and webhooks, as an application uses them: real HTTP
//! (reqwest), a simulated internet (test DNS, scripted MX hosts), a webhook
//! receiver that checks signatures and fails on purpose.

use crate::common::*;
use serde_json::{Value, json};
use std::time::Duration;
use tern_testkit::dns::DnsServer;
use tern_testkit::remote::Behaviour;
use tern_testkit::webhook::{Mode, WebhookReceiver};

const ZONES: &[&str] = &["remote.test", "example.test", "bounce.test"];

pub struct ApiWorld {
    pub dns: DnsServer,
    pub s: Server,
    pub key: String,
    http: reqwest::Client,
}

/// An admin key for `store`.
pub async fn api_key(store: &tern_store::SharedStore, scope: tern_api::keys::Scope) -> String {
    let (secret, record) =
        tern_api::keys::generate(scope, vec![], "test".into(), tern_core::now_unix());
    store.add_api_key(record).await.unwrap();
    secret
}

impl ApiWorld {
    pub async fn new(extra: &str) -> Self {
        let dns = test_dns(ZONES).await;
        let s = start(&format!(
            "[dns]\nnameservers = [\"{}\"]\n[queue]\nretry = [\"1s\"]\n[webhooks]\nallow_http = true\n{extra}",
            dns.addr
        ))
        .await;
        let key = api_key(&s.store, tern_api::keys::Scope::Admin).await;
        Self {
            dns,
            s,
            key,
            http: reqwest::Client::new(),
        }
    }

    /// Gives example.test active DKIM keys and publishes them.
    pub async fn dkim(&self) {
        example_dkim(&self.s.store, &self.dns).await;
    }

    /// A request with the admin key: status, headers, JSON body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        self.call_as(&self.key, method, path, body, headers).await
    }

    pub async fn call_as(
        &self,
        key: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let url = format!("http://{}{path}", self.s.http);
        let mut r = self
            .http
            .request(method.parse().unwrap(), url)
            .header("authorization", format!("Bearer {key}"));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        if let Some(b) = body {
            r = r
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let h = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, h, v)
    }

    /// Adds a webhook endpoint for `receiver`; returns its id.
    pub async fn hook(&self, receiver: &WebhookReceiver, extra: Value) -> String {
        let mut body = json!({ "url": receiver.url });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let (st, _, v) = self.call("POST", "/v1/webhooks", Some(body), &[]).await;
        assert_eq!(st, 201, "{v}");
        receiver.set_secret(v["secret"].as_str().unwrap());
        v["id"].as_str().unwrap().to_string()
    }

    /// Events of `id` (via the API) until `pred` holds.
    pub async fn wait_events(&self, query: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        for _ in 0..400 {
            let (st, _, v) = self
                .call("GET", &format!("/v1/events?{query}"), None, &[])
                .await;
            assert_eq!(st, 200, "{v}");
            let events = v["events"].as_array().cloned().unwrap_or_default();
            if pred(&events) {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("events for {query} never matched");
    }
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().filter_map(|e| e["type"].as_str()).collect()
}

fn has(events: &[Value], t: &str, rcpt: &str) -> bool {
    events
        .iter()
        .any(|e| e["type"] == t && e["recipient"].as_str() == Some(rcpt))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_send_is_delivered_signed_with_history_and_webhooks() {
    let w = ApiWorld::new("").await;
    w.dkim().await;
    let host = mx_host(&w.dns, "remote.test", Behaviour::default()).await;
    let receiver = WebhookReceiver::start().await;
    let hook = w.hook(&receiver, json!({})).await;
    let send = json!({
        "from": "Shop <alice@example.test>",
        "to": ["bob@remote.test"],
        "subject": "Receipt for order 1234",
        "text": "Thank you.",
        "html": "<p>Thank you.</p>",
        "tags": ["receipt"],
        "metadata": {"order": "1234"}
    });
    let idem = [("idempotency-key", "order-1234")];
    let (st, _, v) = w
        .call("POST", "/v1/messages", Some(send.clone()), &idem)
        .await;
    assert_eq!(st, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(v["recipients"][0]["address"], "bob@remote.test");
    assert_eq!(v["recipients"][0]["status"], "queued");

    // Delivered, DKIM-signed as example.test (checked by dkimpy).
    let got = host.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got[0].rcpts, vec!["bob@remote.test"]);
    let (ok, text, _) = python_tool("dkim_verify.py", &[&w.dns.addr.to_string()], &got[0].data);
    assert!(
        ok && text.contains("example.test t1r pass"),
        "dkimpy: {text}"
    );

    // The webhook gets accepted then delivered, signed, with tags and metadata.
    let events = receiver
        .wait_until(Duration::from_secs(15), |e| {
            has(e, "delivered", "bob@remote.test")
        })
        .await;
    assert_eq!(
        types(&events)[..2],
        ["accepted", "delivered"],
        "{events:#?}"
    );
    assert_eq!(events[1]["message_id"], id.as_str());
    assert_eq!(events[1]["tags"], json!(["receipt"]));
    assert_eq!(events[1]["metadata"]["order"], "1234");
    assert_eq!(events[1]["mx_host"], "mx.remote.test");
    assert!(events[1]["reply"].as_str().unwrap().starts_with("250"));
    // The address it left from and its stream, for the dashboard's filters.
    let left_from = events[1]["sending_ip"].as_str().unwrap();
    assert!(left_from.parse::<std::net::IpAddr>().is_ok(), "{left_from}");
    assert_eq!(events[1]["stream"], "transactional");
    assert_eq!(receiver.bad_signatures(), 0);

    // The message's story.
    let (st, _, m) = w
        .call("GET", &format!("/v1/messages/{id}"), None, &[])
        .await;
    assert_eq!(st, 200, "{m}");
    assert_eq!(m["source"], "api");
    assert_eq!(m["recipients"][0]["status"], "delivered");
    assert_eq!(m["recipients"][0]["events"].as_array().unwrap().len(), 2);
    assert!(
        m["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h[0] == "Subject" && h[1] == "Receipt for order 1234"),
        "{m}"
    );

    // Events by recipient, type and tag, page by page.
    let (_, _, all) = w
        .call("GET", "/v1/events?recipient=BOB@remote.test", None, &[])
        .await;
    assert_eq!(
        types(all["events"].as_array().unwrap()),
        ["accepted", "delivered"]
    );
    let (_, _, p1) = w
        .call("GET", "/v1/events?tag=receipt&limit=1", None, &[])
        .await;
    assert_eq!(p1["events"].as_array().unwrap().len(), 1);
    let cursor = p1["next_cursor"].as_str().unwrap().to_string();
    let (_, _, p2) = w
        .call(
            "GET",
            &format!("/v1/events?tag=receipt&limit=1&cursor={cursor}"),
            None,
            &[],
        )
        .await;
    assert_eq!(p2["events"][0]["type"], "delivered");
    let (_, _, d) = w
        .call("GET", "/v1/events?type=delivered,bounced", None, &[])
        .await;
    assert_eq!(types(d["events"].as_array().unwrap()), ["delivered"]);

    // The same key and request: the first answer again, nothing sent.
    let (st, h, again) = w
        .call("POST", "/v1/messages", Some(send.clone()), &idem)
        .await;
    assert_eq!(st, 202);
    assert_eq!(again["id"], id.as_str());
    assert_eq!(h["idempotent-replayed"], "true");
    let mut other = send.clone();
    other["subject"] = json!("Another");
    let (st, h, p) = w.call("POST", "/v1/messages", Some(other), &idem).await;
    assert_eq!(st, 409, "{p}");
    assert_eq!(h["content-type"], "application/problem+json");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(host.messages().len(), 1, "sent once");
    assert!(w.s.store.queue_list().await.unwrap().is_empty());

    // The endpoint shows its POSTs.
    let (_, _, wh) = w
        .call("GET", &format!("/v1/webhooks/{hook}"), None, &[])
        .await;
    assert_eq!(wh["pending"], 0, "{wh}");
    assert!(!wh["attempts"].as_array().unwrap().is_empty(), "{wh}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_retry_honour_retry_after_keep_order_and_replay() {
    let w = ApiWorld::new("").await;
    let _host = mx_host(&w.dns, "remote.test", Behaviour::default()).await;
    let receiver = WebhookReceiver::start().await;
    receiver.set_mode(Mode::TooMany(1));
    let hook = w
        .hook(&receiver, json!({"events": ["accepted", "delivered"]}))
        .await;
    let (st, _, v) = w
        .call(
            "POST",
            "/v1/messages",
            Some(json!({"from": "alice@example.test", "to": ["bob@remote.test", "carol@remote.test"], "subject": "s", "text": "t"})),
            &[],
        )
        .await;
    assert_eq!(st, 202, "{v}");
    // Refused with 429 until the receiver recovers; then everything, in order.
    for _ in 0..100 {
        if receiver.posts() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(receiver.posts() >= 2, "retried after Retry-After: 1");
    assert!(receiver.events().is_empty());
    receiver.set_mode(Mode::Accept);
    let events = receiver
        .wait_until(Duration::from_secs(20), |e| e.len() >= 4)
        .await;
    for rcpt in ["bob@remote.test", "carol@remote.test"] {
        let mine: Vec<&str> = events
            .iter()
            .filter(|e| e["recipient"] == rcpt)
            .filter_map(|e| e["type"].as_str())
            .collect();
        assert_eq!(mine, ["accepted", "delivered"], "in order for {rcpt}");
    }
    assert_eq!(receiver.duplicates(), 0);
    assert_eq!(receiver.bad_signatures(), 0);
    let (_, _, wh) = w
        .call("GET", &format!("/v1/webhooks/{hook}"), None, &[])
        .await;
    assert!(
        wh["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["status"] == 429),
        "{wh}"
    );

    // Replay: the same events again (the receiver sees duplicates by id).
    let since = tern_events::event::format_time(chrono_now_ms() - 3_600_000);
    let (st, _, r) = w
        .call(
            "POST",
            &format!("/v1/webhooks/{hook}/replay"),
            Some(json!({"since": since})),
            &[],
        )
        .await;
    assert_eq!(st, 202, "{r}");
    assert_eq!(r["queued"], 4);
    receiver
        .wait_until(Duration::from_secs(10), |e| e.len() >= 8)
        .await;
    assert_eq!(receiver.duplicates(), 4);
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suppression_lists_hold_back_api_and_submission_mail_and_hard_bounces_join_them() {
    let w = ApiWorld::new("").await;
    w.dkim().await;
    let host = mx_host(&w.dns, "remote.test", Behaviour::default()).await;
    let (st, _, v) = w
        .call(
            "POST",
            "/v1/suppressions",
            Some(json!({"addresses": ["Carol@remote.test"], "reason": "manual"})),
            &[],
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["added"], 1);

    // API: carol is suppressed, bob is queued; carol's event says why.
    let (st, _, v) = w
        .call(
            "POST",
            "/v1/messages",
            Some(json!({"from": "alice@example.test", "to": ["bob@remote.test", "carol@remote.test"], "subject": "s", "text": "t"})),
            &[],
        )
        .await;
    assert_eq!(st, 202, "{v}");
    let by: std::collections::HashMap<&str, &str> = v["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["address"].as_str().unwrap(),
                r["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(by["bob@remote.test"], "queued");
    assert_eq!(by["carol@remote.test"], "suppressed");
    let got = host.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got[0].rcpts, vec!["bob@remote.test"]);
    w.wait_events("recipient=carol@remote.test&type=suppressed", |e| {
        e.len() == 1
    })
    .await;

    // SMTP submission: the same list applies.
    let mut c = tern_testkit::LineClient::connect(w.s.submission)
        .await
        .unwrap();
    c.reply().await.unwrap();
    c.smtp("EHLO client.example.net").await.unwrap();
    let auth = tern_testkit::sasl_plain(ALICE, ALICE_PW);
    assert_eq!(c.smtp(&format!("AUTH PLAIN {auth}")).await.unwrap().0, 235);
    let (code, text) = tern_testkit::send_message(
        &mut c,
        ALICE,
        &["carol@remote.test"],
        b"From: alice@example.test\r\nTo: carol@remote.test\r\nSubject: hi\r\n\r\nhello\r\n",
    )
    .await
    .unwrap();
    assert_eq!(code, 250, "{text}");
    assert!(text.contains("suppressed"), "{text}");
    w.wait_events("recipient=carol@remote.test&type=suppressed", |e| {
        e.len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(host.messages().len(), 1, "nothing sent to carol");

    // A hard bounce suppresses its address, keeps the reply, and the DSN to
    // alice is DKIM-signed (example.test signs for mail.example.test).
    let bad = Behaviour {
        data_reply: Some((550, "5.1.1 <dave@bounce.test>: no such user".into())),
        name: "mx.bounce.test".into(),
        ..Behaviour::default()
    };
    let _bouncer = mx_host(&w.dns, "bounce.test", bad).await;
    let (code, text) = tern_testkit::send_message(
        &mut c,
        ALICE,
        &["dave@bounce.test"],
        b"From: alice@example.test\r\nTo: dave@bounce.test\r\nSubject: hi\r\n\r\nhello\r\n",
    )
    .await
    .unwrap();
    assert_eq!(code, 250, "{text}");
    let ev = w
        .wait_events("recipient=dave@bounce.test", |e| {
            has(e, "suppressed", "dave@bounce.test")
        })
        .await;
    let bounced = ev.iter().find(|e| e["type"] == "bounced").unwrap();
    assert_eq!(bounced["bounce_type"], "hard");
    assert_eq!(bounced["status"], "5.1.1");
    let (_, _, list) = w
        .call("GET", "/v1/suppressions?reason=hard_bounce", None, &[])
        .await;
    let entry = &list["suppressions"][0];
    assert_eq!(entry["address"], "dave@bounce.test", "{list}");
    assert!(entry["detail"].as_str().unwrap().contains("no such user"));
    let dsn = loop {
        let inbox = w.s.inbox(ALICE).await;
        if let Some(m) = inbox
            .into_iter()
            .find(|m| String::from_utf8_lossy(m).contains("multipart/report"))
        {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (ok, text, _) = python_tool(
        "dkim_verify.py",
        &[&w.dns.addr.to_string()],
        after_trace(&dsn),
    );
    assert!(
        ok && text.contains("example.test t1r pass"),
        "DSN signature: {text}"
    );

    // Removing the entry lets mail through again.
    let (st, _, _) = w
        .call("DELETE", "/v1/suppressions/carol@remote.test", None, &[])
        .await;
    assert_eq!(st, 204);
    let (_, _, v) = w
        .call(
            "POST",
            "/v1/messages",
            Some(json!({"from": "alice@example.test", "to": ["carol@remote.test"], "subject": "s", "text": "t"})),
            &[],
        )
        .await;
    assert_eq!(v["recipients"][0]["status"], "queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_are_problem_documents() {
    let w = ApiWorld::new("[api]\nrequests_per_second = 1\n").await;
    let send = json!({"from": "alice@example.test", "to": ["bob@remote.test"], "subject": "s", "text": "t"});
    let check = |st: u16, h: &reqwest::header::HeaderMap, v: &Value, want: u16| {
        assert_eq!(st, want, "{v}");
        assert_eq!(h["content-type"], "application/problem+json", "{v}");
        assert_eq!(v["status"], want);
        assert!(!v["detail"].as_str().unwrap().is_empty());
    };
    let (st, h, v) = w
        .call_as("tern_nope", "POST", "/v1/messages", Some(send.clone()), &[])
        .await;
    check(st, &h, &v, 401);
    let reader = api_key(&w.s.store, tern_api::keys::Scope::Read).await;
    let (st, h, v) = w
        .call_as(&reader, "POST", "/v1/messages", Some(send.clone()), &[])
        .await;
    check(st, &h, &v, 403);
    let mut bad = send.clone();
    bad["subject"] = json!("hi\r\nBcc: victim@remote.test");
    let (st, h, v) = w.call("POST", "/v1/messages", Some(bad), &[]).await;
    check(st, &h, &v, 422);
    assert_eq!(v["errors"][0]["field"], "subject");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut bad = send.clone();
    bad["surprise"] = json!(1);
    let (st, h, v) = w.call("POST", "/v1/messages", Some(bad), &[]).await;
    check(st, &h, &v, 422);
    assert_eq!(v["errors"][0]["field"], "surprise");
    let mut bad = send.clone();
    bad["from"] = json!("someone@elsewhere.test");
    let (st, h, v) = w.call("POST", "/v1/messages", Some(bad), &[]).await;
    check(st, &h, &v, 422);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (st, h, v) = w.call("GET", "/v1/messages/NOSUCHID", None, &[]).await;
    check(st, &h, &v, 404);
    let (st, h, v) = w.call("GET", "/v1/nowhere", None, &[]).await;
    check(st, &h, &v, 404);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let url = format!("http://{}/v1/messages", w.s.http);
    let r = reqwest::Client::new()
        .post(&url)
        .header("authorization", format!("Bearer {}", w.key))
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let r = reqwest::Client::new()
        .post(&url)
        .header("authorization", format!("Bearer {}", w.key))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // Over the key's rate: 429 with Retry-After.
    let mut limited = None;
    for _ in 0..10 {
        let (st, h, _) = w.call("GET", "/v1/events", None, &[]).await;
        if st == 429 {
            limited = Some(h);
            break;
        }
    }
    let h = limited.expect("rate limit reached");
    assert!(h.contains_key("retry-after"));
    // The same API over HTTPS with the server's certificate.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tls = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let r = tls
        .get(format!("https://{}/v1/events", w.s.https))
        .header("authorization", format!("Bearer {}", w.key))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // The OpenAPI document lists the endpoints.
    let doc: Value = reqwest::get(format!("http://{}/v1/openapi.json", w.s.http))
        .await
        .unwrap()
        .json_value()
        .await;
    for p in [
        "/v1/messages",
        "/v1/events",
        "/v1/webhooks/{id}/replay",
        "/v1/suppressions",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p} in the OpenAPI document");
    }
}

trait JsonValue {
    async fn json_value(self) -> Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Value {
        serde_json::from_str(&self.text().await.unwrap()).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_render_escaped_and_batches_commit_together() {
    let w = ApiWorld::new("").await;
    let host = mx_host(&w.dns, "remote.test", Behaviour::default()).await;
    let (st, _, v) = w
        .call(
            "POST",
            "/v1/templates",
            Some(json!({"name": "receipt", "subject": "Order {{ order }}", "text": "Hi {{ name }}", "html": "<p>Hi {{ name }}</p>"})),
            &[],
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (st, _, v) = w
        .call(
            "POST",
            "/v1/templates",
            Some(json!({"name": "broken", "subject": "x", "text": "fine\n{% if %}"})),
            &[],
        )
        .await;
    assert_eq!(st, 422);
    assert!(v["detail"].as_str().unwrap().contains("line 2"), "{v}");
    let (_, _, p) = w
        .call(
            "POST",
            "/v1/templates/receipt/preview",
            Some(json!({"variables": {"order": 7, "name": "<Ann>"}})),
            &[],
        )
        .await;
    assert_eq!(p["subject"], "Order 7");
    assert_eq!(p["html"], "<p>Hi &lt;Ann&gt;</p>");
    let msg = |to: &str, name: &str| json!({"from": "alice@example.test", "to": [to], "template": "receipt", "variables": {"order": 1, "name": name}});
    let (st, _, v) = w
        .call(
            "POST",
            "/v1/messages/batch",
            Some(json!({"messages": [msg("bob@remote.test", "Bob"), msg("carol@remote.test", "Carol")]})),
            &[],
        )
        .await;
    assert_eq!(st, 202, "{v}");
    assert_eq!(v["messages"].as_array().unwrap().len(), 2);
    let got = host.wait_for(2, Duration::from_secs(20)).await;
    let texts: Vec<String> = got
        .iter()
        .map(|m| String::from_utf8_lossy(&m.data).to_string())
        .collect();
    assert!(texts.iter().any(|t| t.contains("Hi Bob")), "{texts:?}");
    assert!(texts.iter().any(|t| t.contains("Hi Carol")), "{texts:?}");
    // One invalid message refuses the whole batch.
    let (st, _, v) = w
        .call(
            "POST",
            "/v1/messages/batch",
            Some(json!({"messages": [msg("dan@remote.test", "Dan"), {"from": "alice@example.test", "to": ["x"], "text": "t"}]})),
            &[],
        )
        .await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["errors"][0]["field"], "messages[1].to[0]", "{v}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        host.messages().len(),
        2,
        "nothing of the refused batch was sent"
    );
}
