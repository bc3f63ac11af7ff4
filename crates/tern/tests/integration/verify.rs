//! Address verification in a simulated world: the test DNS and scripted
//! MX hosts on their own loopback addresses for each behaviour (a
//! directory-checking host, a catch-all, null and implicit MX, a dead
//! primary MX, greylisting, STARTTLS-only recipients, full and disabled
//! mailboxes, a tarpit), through the library and `tern verify`.

use crate::common::*;
use std::sync::Arc;
use std::time::Duration;
use tern_testkit::remote::{Behaviour, Greeting, RemoteHost};
use tern_verify::{Reason, Verdict, Verifier};

const ZONES: &[&str] = &[
    "good.test",
    "all.test",
    "nullmx.test",
    "implicit.test",
    "multi.test",
    "grey.test",
    "slow.test",
];

fn with_mailboxes(m: &[&str]) -> Behaviour {
    Behaviour {
        mailboxes: Some(m.iter().map(|s| s.to_string()).collect()),
        ..Behaviour::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_tells_the_cases_apart() {
    let dns = test_dns(ZONES).await;
    let good = mx_host(
        &dns,
        "good.test",
        with_mailboxes(&["ann", "info", "tlsonly-ann"]),
    )
    .await;
    let _all = mx_host(&dns, "all.test", Behaviour::default()).await;
    dns.mx("nullmx.test", 0, ".").await;
    let implicit = RemoteHost::start(with_mailboxes(&["bob"])).await;
    dns.ip("implicit.test", implicit.ip()).await;
    // multi.test: the primary drops every connection, the secondary works.
    let dead = RemoteHost::start(Behaviour {
        greeting: Greeting::Drop,
        ..Behaviour::default()
    })
    .await;
    let backup = RemoteHost::start(with_mailboxes(&["carol"])).await;
    dns.mx("multi.test", 10, "mx1.multi.test").await;
    dns.ip("mx1.multi.test", dead.ip()).await;
    dns.mx("multi.test", 20, "mx2.multi.test").await;
    dns.ip("mx2.multi.test", backup.ip()).await;
    let _grey = mx_host(&dns, "grey.test", with_mailboxes(&[])).await;
    let _slow = mx_host(
        &dns,
        "slow.test",
        Behaviour {
            greeting: Greeting::Stall,
            ..Behaviour::default()
        },
    )
    .await;

    let resolver = tern_dns::Resolver::new(&[dns.addr]).unwrap();
    let mut settings = tern_verify::Settings::new("verifier.example.test");
    settings.command_timeout = Duration::from_secs(2);
    settings.connect_timeout = Duration::from_secs(2);
    settings.greylist_wait = Duration::from_millis(200);
    let v = Arc::new(Verifier::new(resolver, settings));
    let cases: &[(&str, Verdict, &[Reason])] = &[
        ("ann@good.test", Verdict::Deliverable, &[]),
        (
            "nobody@good.test",
            Verdict::Undeliverable,
            &[Reason::MailboxNotFound],
        ),
        (
            "disabled1@good.test",
            Verdict::Undeliverable,
            &[Reason::Disabled],
        ),
        ("full1@good.test", Verdict::Risky, &[Reason::MailboxFull]),
        ("info@good.test", Verdict::Risky, &[Reason::Role]),
        ("tlsonly-ann@good.test", Verdict::Deliverable, &[]),
        ("anyone@all.test", Verdict::Risky, &[Reason::CatchAll]),
        ("ann@nullmx.test", Verdict::Undeliverable, &[Reason::NullMx]),
        (
            "ann@nothing.good.test",
            Verdict::Undeliverable,
            &[Reason::NoSuchDomain],
        ),
        ("bob@implicit.test", Verdict::Deliverable, &[]),
        ("carol@multi.test", Verdict::Deliverable, &[]),
        ("greyone@grey.test", Verdict::Deliverable, &[]),
        ("ann@slow.test", Verdict::Unknown, &[Reason::Timeout]),
        (
            "not an address",
            Verdict::Undeliverable,
            &[Reason::InvalidSyntax],
        ),
    ];
    let addresses: Vec<String> = cases.iter().map(|c| c.0.to_string()).collect();
    let answers = v.verify_all(&addresses, 4, |_| {}).await;
    for ((addr, want, reasons), got) in cases.iter().zip(&answers) {
        assert_eq!(&got.address, addr);
        assert_eq!(got.result, *want, "{addr}: {got:#?}");
        assert_eq!(got.reasons, *reasons, "{addr}: {got:#?}");
    }
    // One connection and one MAIL FROM for good.test's six addresses and
    // its catch-all test, never DATA; the dead primary was passed over.
    assert_eq!(good.connections(), 1);
    assert_eq!(good.transactions(), 1);
    assert!(good.messages().is_empty());
    let carol = &answers[10];
    assert_eq!(carol.mx, ["mx1.multi.test", "mx2.multi.test"]);
    assert_eq!(carol.smtp.as_ref().unwrap().host, "mx2.multi.test");
    assert_eq!(answers[0].catch_all, Some(false));
    assert!(answers[0].confidence > 0.9);

    // A typo of a large provider's domain gets a suggestion.
    let t = v.verify("ann@gmial.com").await;
    assert_eq!(t.suggestion.as_deref(), Some("ann@gmail.com"), "{t:#?}");

    // The CLI, as a user runs it: a table, or JSON lines.
    let data = tern_testkit::DataDir::new(&format!(
        "[dns]\nnameservers = [\"{}\"]\n[verify]\ncommand_timeout = 2\nconnect_timeout = 2\n",
        dns.addr
    ));
    let (ok, out) = tern_cli(
        &["verify", "ann@good.test", "nobody@good.test"],
        data.path(),
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("ann@good.test") && out.contains("deliverable"),
        "{out}"
    );
    assert!(out.contains("mailbox_not_found"), "{out}");
    let (ok, out) = tern_cli(&["verify", "--json", "anyone@all.test"], data.path());
    assert!(ok, "{out}");
    let line: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(line["result"], "risky");
    assert_eq!(line["reasons"][0], "catch_all");

    // Bulk into a CSV file, resumable: a second run skips what is done.
    let list = data.path().join("list.csv");
    let out = data.path().join("results.csv");
    std::fs::write(
        &list,
        "email,name\nann@good.test,Ann\nnobody@good.test,Nobody\n",
    )
    .unwrap();
    let args = |l: &std::path::Path, o: &std::path::Path| {
        vec![
            "verify".to_string(),
            "--csv".into(),
            l.display().to_string(),
            "--out".into(),
            o.display().to_string(),
        ]
    };
    let run = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        tern_cli(&a, data.path())
    };
    let (ok, msg) = run(args(&list, &out));
    assert!(ok, "{msg}");
    let text = std::fs::read_to_string(&out).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(rows[0].starts_with("address,result,reasons,confidence"));
    assert!(rows[1].starts_with("ann@good.test,deliverable,"), "{text}");
    assert!(
        rows[2].starts_with("nobody@good.test,undeliverable,mailbox_not_found,"),
        "{text}"
    );
    std::fs::write(&list, "ann@good.test\nnobody@good.test\ncarol@multi.test\n").unwrap();
    let (ok, msg) = run(args(&list, &out));
    assert!(ok, "{msg}");
    assert!(
        msg.contains("2 addresses already verified, 1 to go"),
        "{msg}"
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with("carol@multi.test,deliverable,"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_verifies_with_a_verify_key() {
    use crate::api::{ApiWorld, api_key};
    use serde_json::json;
    let w = ApiWorld::new("[verify]\ncommand_timeout = 2\nconnect_timeout = 2\n").await;
    let _host = mx_host(&w.dns, "remote.test", with_mailboxes(&["ann"])).await;
    let key = api_key(&w.s.store, tern_api::keys::Scope::Verify).await;
    let body = json!({"addresses": ["ann@remote.test", "nobody@remote.test", "bad address"]});
    let (st, _, v) = w
        .call_as(&key, "POST", "/v1/verify", Some(body.clone()), &[])
        .await;
    assert_eq!(st, 200, "{v}");
    let r = v["results"].as_array().unwrap();
    assert_eq!(r[0]["result"], "deliverable", "{v}");
    assert_eq!(r[0]["smtp"]["code"], 250);
    assert_eq!(r[1]["result"], "undeliverable");
    assert_eq!(r[1]["reasons"], json!(["mailbox_not_found"]));
    assert_eq!(r[2]["reasons"], json!(["invalid_syntax"]));
    // A send key may not verify; more than 100 addresses is a 422.
    let send = api_key(&w.s.store, tern_api::keys::Scope::Send).await;
    let (st, _, _) = w
        .call_as(&send, "POST", "/v1/verify", Some(body), &[])
        .await;
    assert_eq!(st, 403);
    let many: Vec<String> = (0..101).map(|i| format!("a{i}@remote.test")).collect();
    let (st, _, p) = w
        .call_as(
            &key,
            "POST",
            "/v1/verify",
            Some(json!({"addresses": many})),
            &[],
        )
        .await;
    assert_eq!(st, 422, "{p}");
}
