//! What comes back after delivery, as it arrives in real life: a remote
//! host that accepts and bounces hours later to the return path, a
//! feedback loop's ARF report, a mailbox provider's one-click unsubscribe
//! POST and an unsubscribe by mail — each through Tern's real MX and HTTP
//! listeners, matched to message and recipient, recorded as events,
//! suppressing, and posted to a webhook.

use crate::api::ApiWorld;
use crate::common::*;
use serde_json::{Value, json};
use std::time::Duration;
use tern_testkit::remote::Behaviour;
use tern_testkit::send_message;
use tern_testkit::webhook::WebhookReceiver;

/// Sends `body` through the API; returns the message id.
async fn send(w: &ApiWorld, body: Value) -> String {
    let (st, _, v) = w.call("POST", "/v1/messages", Some(body), &[]).await;
    assert_eq!(st, 202, "{v}");
    v["id"].as_str().unwrap().to_string()
}

fn header<'a>(raw: &'a str, name: &str) -> Option<&'a str> {
    let head = &raw[..raw.find("\r\n\r\n").unwrap_or(raw.len())];
    let mut lines = head.split("\r\n").peekable();
    while let Some(l) = lines.next() {
        if let Some((n, _)) = l.split_once(':')
            && n.eq_ignore_ascii_case(name)
        {
            let start = l.as_ptr() as usize - raw.as_ptr() as usize;
            let mut end = start + l.len();
            while let Some(next) = lines.peek() {
                if next.starts_with([' ', '\t']) {
                    end = next.as_ptr() as usize - raw.as_ptr() as usize + next.len();
                    lines.next();
                } else {
                    break;
                }
            }
            return Some(raw[start + n.len() + 1..end].trim());
        }
    }
    None
}

async fn suppressed(w: &ApiWorld, address: &str) -> Vec<Value> {
    let (st, _, v) = w
        .call(
            "GET",
            &format!("/v1/suppressions?prefix={address}"),
            None,
            &[],
        )
        .await;
    assert_eq!(st, 200, "{v}");
    v["suppressions"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounce_that_arrives_later_is_matched_recorded_suppressed_and_posted() {
    let w = ApiWorld::new("").await;
    w.dkim().await;
    let host = mx_host(&w.dns, "remote.test", Behaviour::default()).await;
    let receiver = WebhookReceiver::start().await;
    w.hook(&receiver, json!({"events": ["bounced", "suppressed"]}))
        .await;
    let id = send(
        &w,
        json!({"from": "alice@example.test", "to": ["ann@remote.test", "bob@remote.test"],
               "subject": "Receipt", "text": "Thanks", "tags": ["receipt"]}),
    )
    .await;

    // Each recipient's copy left in its own transaction with its own
    // return path at our domain.
    let got = host.wait_for(2, Duration::from_secs(20)).await;
    let ann = got.iter().find(|r| r.rcpts == ["ann@remote.test"]).unwrap();
    let bob = got.iter().find(|r| r.rcpts == ["bob@remote.test"]).unwrap();
    assert!(ann.mail_from.starts_with("bounce+"), "{}", ann.mail_from);
    assert!(ann.mail_from.ends_with("@example.test"));
    assert_ne!(ann.mail_from, bob.mail_from);

    // Hours later the remote host bounces Ann's copy to its return path.
    let dsn = format!(
        "From: Mail Delivery System <MAILER-DAEMON@mx.remote.test>\r\n\
         To: {rp}\r\nSubject: Undelivered Mail Returned to Sender\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\
         --b\r\nContent-Type: message/delivery-status\r\n\r\n\
         Reporting-MTA: dns; mx.remote.test\r\n\r\n\
         Final-Recipient: rfc822; ann@remote.test\r\nAction: failed\r\nStatus: 5.1.1\r\n\
         Remote-MTA: dns; store.remote.test\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 <ann@remote.test>: Recipient address rejected: User unknown in virtual mailbox table\r\n\r\n\
         --b--\r\n",
        rp = ann.mail_from
    );
    let mut c = w.s.smtp_session().await;
    let (code, text) = send_message(&mut c, "", &[&ann.mail_from], dsn.as_bytes())
        .await
        .unwrap();
    assert_eq!(code, 250, "{text}");

    // Recorded against the message and Ann, hard, suppressed, posted.
    let events = receiver
        .wait_until(Duration::from_secs(15), |e| {
            e.iter().any(|e| e["type"] == "suppressed")
        })
        .await;
    let b = events.iter().find(|e| e["type"] == "bounced").unwrap();
    assert_eq!(b["message_id"], id.as_str());
    assert_eq!(b["recipient"], "ann@remote.test");
    assert_eq!(b["bounce_type"], "hard");
    assert_eq!(b["category"], "bad_mailbox");
    assert_eq!(b["via"], "dsn");
    assert_eq!(b["status"], "5.1.1");
    assert_eq!(b["mx_host"], "store.remote.test");
    assert_eq!(b["tags"], json!(["receipt"]));
    assert_eq!(receiver.bad_signatures(), 0);
    let s = suppressed(&w, "ann@remote.test").await;
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0]["reason"], "hard_bounce");
    assert!(suppressed(&w, "bob@remote.test").await.is_empty());

    // Nothing of it landed in a mailbox; Bob's history is untouched.
    let (_, _, m) = w
        .call("GET", &format!("/v1/messages/{id}"), None, &[])
        .await;
    let state = |who: &str| {
        m["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["address"] == who)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(state("ann@remote.test"), "bounced", "{m}");
    assert_eq!(state("bob@remote.test"), "delivered", "{m}");

    // The next message to Ann is not sent.
    let (st, _, v) = w
        .call(
            "POST",
            "/v1/messages",
            Some(json!({"from": "alice@example.test", "to": ["ann@remote.test"], "subject": "Again", "text": "x"})),
            &[],
        )
        .await;
    assert_eq!(st, 202, "{v}");
    assert_eq!(v["recipients"][0]["status"], "suppressed");

    // A forged, altered or foreign return path is refused at RCPT.
    let mut forged = ann.mail_from.clone().into_bytes();
    let i = "bounce+".len() + 17;
    forged[i] = if forged[i] == b'a' { b'b' } else { b'a' };
    let forged = String::from_utf8(forged).unwrap();
    let mut c = w.s.smtp_session().await;
    assert_eq!(c.smtp("MAIL FROM:<>").await.unwrap().0, 250);
    let (code, text) = c.smtp(&format!("RCPT TO:<{forged}>")).await.unwrap();
    assert_eq!(code, 550, "{text}");
    let (code, _) = c
        .smtp("RCPT TO:<bounce+nonsense@example.test>")
        .await
        .unwrap();
    assert_eq!(code, 550);

    // Sender health reads the counters the events updated: the API and the CLI agree.
    let (st, _, h) = w
        .call("GET", "/v1/domains/example.test/health", None, &[])
        .await;
    assert_eq!(st, 200, "{h}");
    let week = &h["last_7_days"];
    assert_eq!(week["accepted"], 2, "{h}");
    assert_eq!(week["delivered"], 2, "{h}");
    assert_eq!(week["bounced"], 1, "{h}");
    assert_eq!(week["bounced_by_category"]["bad_mailbox"], 1, "{h}");
    assert_eq!(week["bounce_rate"], 1.0 / 3.0, "{h}");
    assert_eq!(h["days"].as_array().unwrap().len(), 7);
    assert_eq!(h["days"][6]["delivered"], 2);
    let req = |name: &str| {
        h["requirements"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {h}"))
            .clone()
    };
    // The test DNS publishes example.test's DKIM keys, but no SPF or DMARC.
    assert_eq!(req("dkim")["ok"], true, "{h}");
    assert_eq!(req("dmarc")["ok"], false, "{h}");
    assert!(
        req("dmarc")["fix"]
            .as_str()
            .unwrap()
            .contains("_dmarc.example.test")
    );
    assert_eq!(req("complaint_rate")["ok"], true);
    assert_eq!(h["meets_bulk_sender_requirements"], false);
    let (ok, out) = tern_cli(&["domain", "health", "example.test"], w.s.data.path());
    assert!(ok, "{out}");
    assert!(out.contains("Bounces by category: bad_mailbox 1"), "{out}");
    assert!(out.contains("[!!] dmarc"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complaints_and_unsubscribes_are_recorded_and_suppress() {
    let w = ApiWorld::new("[feedback]\npublic_url = \"http://unsub.example.test\"\n").await;
    w.dkim().await;
    let host = mx_host(&w.dns, "remote.test", Behaviour::default()).await;
    let mut ids = Vec::new();
    for who in ["carol", "dave", "erin"] {
        ids.push(
            send(
                &w,
                json!({"from": "News <alice@example.test>", "to": [format!("{who}@remote.test")],
                       "subject": "December news", "text": "News", "stream": "broadcast",
                       "tags": ["news-dec"]}),
            )
            .await,
        );
    }
    let got = host.wait_for(3, Duration::from_secs(20)).await;
    let copy = |who: &str| {
        let r = got
            .iter()
            .find(|r| r.rcpts == [format!("{who}@remote.test")])
            .unwrap();
        (
            r.mail_from.clone(),
            String::from_utf8(r.data.clone()).unwrap(),
        )
    };

    // Broadcast mail carries one-click unsubscribe and a Feedback-ID, and
    // the DKIM signature covers them (dkimpy checks h=).
    let (_, carol) = copy("carol");
    let lu = header(&carol, "List-Unsubscribe").expect("List-Unsubscribe");
    assert!(
        lu.starts_with("<http://unsub.example.test/unsubscribe/"),
        "{lu}"
    );
    assert!(lu.contains("<mailto:unsubscribe+"), "{lu}");
    assert_eq!(
        header(&carol, "List-Unsubscribe-Post"),
        Some("List-Unsubscribe=One-Click")
    );
    assert_eq!(
        header(&carol, "Feedback-ID"),
        Some("news-dec:example.test:broadcast:tern")
    );
    let sig = header(&carol, "DKIM-Signature")
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        sig.contains("list-unsubscribe:list-unsubscribe-post")
            || sig.contains("list-unsubscribe-post"),
        "{sig}"
    );
    let (ok, text, _) = python_tool(
        "dkim_verify.py",
        &[&w.dns.addr.to_string()],
        carol.as_bytes(),
    );
    assert!(
        ok && text.contains("example.test t1r pass"),
        "dkimpy: {text}"
    );

    // The provider's one-click POST (RFC 8058): a GET only asks.
    let url = lu[1..lu.find('>').unwrap()].to_string();
    let path = url.strip_prefix("http://unsub.example.test").unwrap();
    let http = reqwest::Client::new();
    let local = format!("http://{}{path}", w.s.http);
    let page = http.get(&local).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("carol@remote.test") && page.contains("<form method=\"post\""));
    assert!(
        suppressed(&w, "carol@remote.test").await.is_empty(),
        "a GET unsubscribed"
    );
    let r = http
        .post(&local)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let s = suppressed(&w, "carol@remote.test").await;
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(
        (s[0]["reason"].as_str(), s[0]["domain"].as_str()),
        (Some("unsubscribe"), Some("example.test"))
    );
    // A forged link is a 404.
    let mut bad = local.clone();
    bad.insert(bad.len() - 3, 'x');
    assert_eq!(
        http.post(&bad)
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // An unsubscribe stops broadcasts only: receipts still go to Carol.
    let (_, _, v) = w.call("POST", "/v1/messages", Some(json!({"from": "alice@example.test", "to": ["carol@remote.test"], "subject": "News", "text": "x", "stream": "broadcast"})), &[]).await;
    assert_eq!(v["recipients"][0]["status"], "suppressed", "{v}");
    let (_, _, v) = w.call("POST", "/v1/messages", Some(json!({"from": "alice@example.test", "to": ["carol@remote.test"], "subject": "Receipt", "text": "x"})), &[]).await;
    assert_eq!(v["recipients"][0]["status"], "queued", "{v}");

    // Unsubscribing by mail (the mailto: of List-Unsubscribe).
    let (_, dave) = copy("dave");
    let lu = header(&dave, "List-Unsubscribe").unwrap();
    let m = lu.find("<mailto:").unwrap() + "<mailto:".len();
    let mailto = &lu[m..m + lu[m..].find('?').unwrap()];
    let mut c = w.s.smtp_session().await;
    let (code, text) = send_message(
        &mut c,
        "dave@remote.test",
        &[mailto],
        b"From: dave@remote.test\r\nSubject: unsubscribe\r\n\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(code, 250, "{text}");
    assert_eq!(
        suppressed(&w, "dave@remote.test").await[0]["reason"],
        "unsubscribe"
    );

    // A feedback loop's complaint about Erin's copy (ARF, RFC 5965).
    let (erin_rp, erin) = copy("erin");
    let returned = erin.replace("\r\n\r\nNews", "\r\n\r\n[redacted]");
    let arf = format!(
        "From: fbl@provider.test\r\nTo: fbl@example.test\r\nSubject: complaint\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=\"f\"\r\n\r\n\
         --f\r\nContent-Type: text/plain\r\n\r\nA user reported this message as spam.\r\n\
         --f\r\nContent-Type: message/feedback-report\r\n\r\n\
         Feedback-Type: abuse\r\nUser-Agent: ProviderFBL/2.0\r\nVersion: 1\r\n\
         Original-Mail-From: <{erin_rp}>\r\n\r\n\
         --f\r\nContent-Type: message/rfc822\r\n\r\nReturn-Path: <{erin_rp}>\r\n{returned}\r\n--f--\r\n"
    );
    let mut c = w.s.smtp_session().await;
    let (code, text) = send_message(
        &mut c,
        "fbl@provider.test",
        &["fbl@example.test"],
        arf.as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(code, 250, "{text}");
    let events = w.wait_events("type=complained", |e| !e.is_empty()).await;
    assert_eq!(events[0]["recipient"], "erin@remote.test");
    assert_eq!(events[0]["message_id"], ids[2].as_str());
    assert_eq!(events[0]["user_agent"], "ProviderFBL/2.0");
    assert_eq!(
        suppressed(&w, "erin@remote.test").await[0]["reason"],
        "complaint"
    );
    let unsub = w.wait_events("type=unsubscribed", |e| e.len() == 2).await;
    let vias: Vec<&str> = unsub.iter().filter_map(|e| e["via"].as_str()).collect();
    assert_eq!(vias, ["one_click", "mailto"]);

    // Ordinary mail to a complaint address that is nobody's is refused,
    // not dropped; to one that is an account, delivered.
    let mut c = w.s.smtp_session().await;
    let (code, _) = send_message(
        &mut c,
        "someone@remote.test",
        &["fbl@example.test"],
        b"Subject: hello\r\n\r\nhi\r\n",
    )
    .await
    .unwrap();
    assert_eq!(code, 550);
    // The broadcast stream needs one recipient per message.
    let (st, _, p) = w.call("POST", "/v1/messages", Some(json!({"from": "alice@example.test", "to": ["a@remote.test", "b@remote.test"], "subject": "x", "text": "x", "stream": "broadcast"})), &[]).await;
    assert_eq!(st, 422, "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_and_clicks_are_tracked_and_machines_flagged() {
    let w = ApiWorld::new("[feedback]\npublic_url = \"http://t.example.test\"\n").await;
    w.dkim().await;
    let host = mx_host(&w.dns, "remote.test", Behaviour::default()).await;
    let id = send(
        &w,
        json!({"from": "alice@example.test", "to": ["fay@remote.test"], "subject": "Sale",
               "text": "See https://shop.example/p?id=1",
               "html": "<html><body><p><a href=\"https://shop.example/p?id=1&amp;x=2\">Sale</a> <a href=\"mailto:help@example.test\">Help</a></p></body></html>",
               "track_opens": true, "track_clicks": true, "tags": ["sale"]}),
    )
    .await;
    let got = host.wait_for(1, Duration::from_secs(20)).await;
    // Signed after the rewrite: the receiver sees a valid signature.
    let (ok, text, _) = python_tool("dkim_verify.py", &[&w.dns.addr.to_string()], &got[0].data);
    assert!(
        ok && text.contains("example.test t1r pass"),
        "dkimpy: {text}"
    );
    let msg = mail_parser::MessageParser::default()
        .parse(&got[0].data)
        .unwrap();
    let html = msg.body_html(0).unwrap().into_owned();
    let text_part = msg.body_text(0).unwrap().into_owned();
    assert!(
        text_part.contains("https://shop.example/p?id=1"),
        "text parts are left alone"
    );
    assert!(html.contains("href=\"mailto:help@example.test\""), "{html}");
    let path_of = |prefix: &str| {
        let at = html
            .find(prefix)
            .unwrap_or_else(|| panic!("{prefix} in {html}"));
        let rest = &html[at + "http://t.example.test".len()..];
        rest[..rest.find('"').unwrap()].to_string()
    };
    let click = path_of("http://t.example.test/t/c/");
    let pixel = path_of("http://t.example.test/t/o/");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = |p: &str| format!("http://{}{p}", w.s.http);
    let browser = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36";

    // A person opens (the pixel is a GIF) and, later, clicks: 302 to the URL in the message.
    let r = http
        .get(url(&pixel))
        .header("user-agent", browser)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/gif");
    assert_eq!(&r.bytes().await.unwrap()[..6], b"GIF89a");
    // A scanner fetches the link right away.
    let r = http
        .get(url(&click))
        .header("user-agent", "python-requests/2.31")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "https://shop.example/p?id=1&x=2");
    // Apple Mail Privacy Protection's prefetch.
    let r = http
        .get(url(&pixel))
        .header("user-agent", "Mozilla/5.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A forged or altered token: 404, nothing recorded, no redirect anywhere.
    let mut forged = click.clone();
    forged.insert(10, 'A');
    assert_eq!(http.get(url(&forged)).send().await.unwrap().status(), 404);
    assert_eq!(
        http.get(url("/t/c/aGVsbG8.d29ybGQ"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let events = w
        .wait_events(&format!("message_id={id}&type=opened,clicked"), |e| {
            e.len() == 3
        })
        .await;
    let human_open = &events[0];
    assert_eq!(human_open["type"], "opened");
    assert_eq!(human_open["recipient"], "fay@remote.test");
    assert_eq!(human_open["user_agent"], browser);
    assert!(human_open.get("machine").is_none(), "{human_open}");
    assert_eq!(human_open["tags"], json!(["sale"]));
    let scan = &events[1];
    assert_eq!(scan["type"], "clicked");
    assert_eq!(scan["url"], "https://shop.example/p?id=1&x=2");
    assert_eq!(scan["machine"], true);
    assert_eq!(scan["reason"], "scanner");
    assert_eq!(events[2]["machine"], true);
    assert_eq!(events[2]["reason"], "apple_mail_privacy_protection");

    // Tracking is per recipient: asking for it with two is a 422.
    let (st, _, p) = w.call("POST", "/v1/messages", Some(json!({"from": "alice@example.test", "to": ["a@remote.test", "b@remote.test"], "subject": "x", "html": "<p>x</p>", "track_opens": true})), &[]).await;
    assert_eq!(st, 422, "{p}");
}
