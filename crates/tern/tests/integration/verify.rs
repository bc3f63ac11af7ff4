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
    "throwaway.test",
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

    // What was learnt about good.test is remembered: verifying there again
    // asks for the addresses only, no second catch-all test.
    let again = v
        .verify_all(&["ann@good.test".to_string()], 1, |_| {})
        .await;
    assert_eq!(again[0].result, Verdict::Deliverable);
    assert_eq!(again[0].catch_all, Some(false), "from the cache");
    assert_eq!(good.connections(), 2);
    assert_eq!(
        good.rcpt_count(),
        cases.iter().filter(|c| c.0.ends_with("@good.test")).count() + 1 + 1,
        "one catch-all RCPT in all"
    );

    // A typo of a large provider's domain gets a suggestion.
    let t = v.verify("ann@gmial.com").await;
    assert_eq!(t.suggestion.as_deref(), Some("ann@gmail.com"), "{t:#?}");

    // The CLI, as a user runs it: a table, or JSON lines.
    let data = tern_testkit::DataDir::new(&format!(
        "[dns]\nnameservers = [\"{}\"]\n[verify]\ncommand_timeout = 2\nconnect_timeout = 2\nsource_addresses = [\"127.0.0.77\"]\n",
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
    // From the configured source address.
    assert_eq!(
        good.peers().last(),
        Some(&"127.0.0.77".parse::<std::net::IpAddr>().unwrap())
    );
    let (ok, out) = tern_cli(&["verify", "--json", "anyone@all.test"], data.path());
    assert!(ok, "{out}");
    let line: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(line["result"], "risky");
    assert_eq!(line["reasons"][0], "catch_all");

    // Disposable domains: the shipped list knows the big services; an
    // updated list (here from a file) replaces it in the data folder.
    let _throw = mx_host(&dns, "throwaway.test", Behaviour::default()).await;
    let (ok, out) = tern_cli(&["verify", "--json", "x@throwaway.test"], data.path());
    assert!(ok, "{out}");
    assert!(!out.contains("disposable"), "{out}");
    let list = data.path().join("mine.txt");
    let mut text = String::from("# a test list\nthrowaway.test\n");
    for i in 0..20 {
        text.push_str(&format!("burner{i}.example\n"));
    }
    std::fs::write(&list, text).unwrap();
    let (ok, out) = tern_cli(
        &["verify", "--update-disposable", list.to_str().unwrap()],
        data.path(),
    );
    assert!(ok, "{out}");
    assert!(out.contains("21 disposable domains"), "{out}");
    let (ok, out) = tern_cli(&["verify", "--json", "x@throwaway.test"], data.path());
    assert!(ok, "{out}");
    let line: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(line["result"], "risky", "{line}");
    assert_eq!(
        line["reasons"],
        serde_json::json!(["catch_all", "disposable"])
    );
    // Something that is not a list changes nothing.
    std::fs::write(&list, "<html>not found</html>\n").unwrap();
    let (ok, out) = tern_cli(
        &["verify", "--update-disposable", list.to_str().unwrap()],
        data.path(),
    );
    assert!(!ok, "{out}");
    assert!(out.contains("nothing changed"), "{out}");
    let kept = tern_verify::disposable::List::load(data.path()).unwrap();
    assert!(kept.contains("throwaway.test"));

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_jobs_over_the_api() {
    use crate::api::{ApiWorld, api_key};
    use serde_json::json;
    let w = ApiWorld::new("[verify]\ncommand_timeout = 2\nconnect_timeout = 2\n").await;
    let host = mx_host(&w.dns, "remote.test", with_mailboxes(&["ann", "bob"])).await;
    let key = api_key(&w.s.store, tern_api::keys::Scope::Verify).await;
    let mut addresses = vec![
        "ann@remote.test".to_string(),
        "bob@remote.test".into(),
        "nobody@remote.test".into(),
        "bad address".into(),
    ];
    addresses.extend((0..150).map(|i| format!("x{i}@remote.test")));
    let (st, headers, job) = w
        .call_as(
            &key,
            "POST",
            "/v1/verify/jobs",
            Some(json!({ "addresses": addresses })),
            &[],
        )
        .await;
    assert_eq!(st, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(job["total"], 154);
    assert_eq!(
        headers.get("location").unwrap().to_str().unwrap(),
        format!("/v1/verify/jobs/{id}")
    );
    let path = format!("/v1/verify/jobs/{id}");
    let mut done = json!(null);
    for _ in 0..600 {
        let (st, _, j) = w.call_as(&key, "GET", &path, None, &[]).await;
        assert_eq!(st, 200, "{j}");
        if j["status"] == "done" {
            done = j;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(done["done"], 154, "{done}");
    assert_eq!(
        done["counts"],
        json!({"deliverable": 2, "undeliverable": 152, "risky": 0, "unknown": 0})
    );
    assert!(done["finished"].is_string());
    // 153 addresses and the random one at remote.test: one connection, two
    // transactions of at most 100 recipients (RFC 5321 §4.5.3.1.8).
    assert_eq!(host.connections(), 1);
    assert_eq!(host.transactions(), 2);
    assert_eq!(host.rcpt_count(), 154);
    // The answers, a page at a time, in the order given.
    let (st, _, page) = w
        .call_as(&key, "GET", &format!("{path}/results?limit=3"), None, &[])
        .await;
    assert_eq!(st, 200, "{page}");
    let r = page["results"].as_array().unwrap();
    assert_eq!(r.len(), 3);
    assert_eq!(r[0]["address"], "ann@remote.test");
    assert_eq!(r[0]["answer"]["result"], "deliverable");
    assert_eq!(r[2]["answer"]["reasons"], json!(["mailbox_not_found"]));
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, _, page) = w
        .call_as(
            &key,
            "GET",
            &format!("{path}/results?cursor={cursor}&limit=1000"),
            None,
            &[],
        )
        .await;
    let r = page["results"].as_array().unwrap();
    assert_eq!(r.len(), 151);
    assert_eq!(r[0]["answer"]["reasons"], json!(["invalid_syntax"]));
    assert!(page.get("next_cursor").is_none(), "{page}");
    // Listed for its key; another verify key does not see it; an admin does.
    let (_, _, list) = w.call_as(&key, "GET", "/v1/verify/jobs", None, &[]).await;
    assert_eq!(list["jobs"][0]["id"], id.as_str());
    let other = api_key(&w.s.store, tern_api::keys::Scope::Verify).await;
    let (st, _, _) = w.call_as(&other, "GET", &path, None, &[]).await;
    assert_eq!(st, 404);
    let (_, _, list) = w.call_as(&other, "GET", "/v1/verify/jobs", None, &[]).await;
    assert_eq!(list["jobs"], json!([]));
    let (st, _, _) = w.call("GET", &path, None, &[]).await;
    assert_eq!(st, 200, "an admin key sees every job");
    // Bad cursors and limits are 422s; DELETE removes the job.
    let (st, _, _) = w
        .call_as(
            &key,
            "GET",
            &format!("{path}/results?cursor=abc"),
            None,
            &[],
        )
        .await;
    assert_eq!(st, 422);
    let (st, _, _) = w
        .call_as(&key, "GET", &format!("{path}/results?limit=0"), None, &[])
        .await;
    assert_eq!(st, 422);
    let (st, _, _) = w.call_as(&key, "DELETE", &path, None, &[]).await;
    assert_eq!(st, 204);
    let (st, _, _) = w.call_as(&key, "GET", &path, None, &[]).await;
    assert_eq!(st, 404);
    let (st, _, p) = w
        .call_as(
            &key,
            "POST",
            "/v1/verify/jobs",
            Some(json!({"addresses": []})),
            &[],
        )
        .await;
    assert_eq!(st, 422, "{p}");
}

/// Precision and coverage per class over a labelled simulated world: each
/// address's truth is known because the world was built that way. Traps
/// included: a prober refused by a blocklist, a rate limit, a tarpit, a
/// server without SMTPUTF8 and a resolver that fails must come out
/// unknown (never undeliverable); catch-all, role, full and disposable
/// addresses risky. Run with `--no-capture` to see the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precision_and_coverage_on_a_labelled_world() {
    use std::collections::BTreeMap;
    const ZONES: &[&str] = &[
        "dir.test",
        "catch.test",
        "nullmx.test",
        "implicit.test",
        "multi.test",
        "tarpit.test",
        "blocked.test",
        "limited.test",
        "ascii.test",
        "burner.test",
    ];
    let dns = test_dns(ZONES).await;
    let people: Vec<String> = (0..60).map(|i| format!("user{i}")).collect();
    let mut mailboxes = people.clone();
    mailboxes.extend(["info".to_string(), "sales".into()]);
    let mb: Vec<&str> = mailboxes.iter().map(String::as_str).collect();
    let _dir = mx_host(&dns, "dir.test", with_mailboxes(&mb)).await;
    let _catch = mx_host(&dns, "catch.test", Behaviour::default()).await;
    dns.mx("nullmx.test", 0, ".").await;
    let implicit = RemoteHost::start(with_mailboxes(&["eve"])).await;
    dns.ip("implicit.test", implicit.ip()).await;
    let dead = RemoteHost::start(Behaviour {
        greeting: Greeting::Drop,
        ..Behaviour::default()
    })
    .await;
    let backup = RemoteHost::start(with_mailboxes(&["frank"])).await;
    dns.mx("multi.test", 10, "mx1.multi.test").await;
    dns.ip("mx1.multi.test", dead.ip()).await;
    dns.mx("multi.test", 20, "mx2.multi.test").await;
    dns.ip("mx2.multi.test", backup.ip()).await;
    let _tarpit = mx_host(
        &dns,
        "tarpit.test",
        Behaviour {
            greeting: Greeting::Stall,
            ..Behaviour::default()
        },
    )
    .await;
    let _blocked = mx_host(
        &dns,
        "blocked.test",
        Behaviour {
            mailboxes: Some(vec!["gina".into()]),
            mail_reply: Some((
                554,
                "5.7.1 Service unavailable; client host blocked using zen.spamhaus.org".into(),
            )),
            ..Behaviour::default()
        },
    )
    .await;
    let _limited = mx_host(&dns, "limited.test", with_mailboxes(&["hal"])).await;
    let _ascii = mx_host(
        &dns,
        "ascii.test",
        Behaviour {
            smtputf8: false,
            mailboxes: Some(vec!["ivy".into(), "josé".into()]),
            ..Behaviour::default()
        },
    )
    .await;
    let _burner = mx_host(&dns, "burner.test", with_mailboxes(&["kim"])).await;

    // (address, truth): the truth is what mail to it would meet.
    let mut labelled: Vec<(String, Verdict)> = Vec::new();
    for p in &people {
        labelled.push((format!("{p}@dir.test"), Verdict::Deliverable));
        labelled.push((format!("not{p}@dir.test"), Verdict::Undeliverable));
    }
    for i in 0..10 {
        labelled.push((format!("disabled{i}@dir.test"), Verdict::Undeliverable));
        labelled.push((format!("full{i}@dir.test"), Verdict::Risky));
        labelled.push((format!("anyone{i}@catch.test"), Verdict::Risky));
        labelled.push((format!("x{i}@nullmx.test"), Verdict::Undeliverable));
        labelled.push((format!("x{i}@nowhere.dir.test"), Verdict::Undeliverable));
        labelled.push((format!("grey{i}@dir.test"), Verdict::Deliverable));
    }
    for (a, t) in [
        ("info@dir.test", Verdict::Risky),
        ("sales@dir.test", Verdict::Risky),
        ("eve@implicit.test", Verdict::Deliverable),
        ("zed@implicit.test", Verdict::Undeliverable),
        ("frank@multi.test", Verdict::Deliverable),
        ("ghost@multi.test", Verdict::Undeliverable),
        ("kim@burner.test", Verdict::Risky),
        ("ivy@ascii.test", Verdict::Deliverable),
        ("not an address", Verdict::Undeliverable),
        ("two@at@dir.test", Verdict::Undeliverable),
        // Unknowable from here; their truth is what they are.
        ("lee@tarpit.test", Verdict::Deliverable),
        ("gina@blocked.test", Verdict::Deliverable),
        ("ratelimit-hal@limited.test", Verdict::Deliverable),
        ("josé@ascii.test", Verdict::Deliverable),
        ("ann@not-served.example", Verdict::Undeliverable),
    ] {
        labelled.push((a.to_string(), t));
    }

    let resolver = tern_dns::Resolver::new(&[dns.addr]).unwrap();
    let mut settings = tern_verify::Settings::new("verifier.example.test");
    settings.command_timeout = Duration::from_secs(2);
    settings.connect_timeout = Duration::from_secs(2);
    settings.greylist_wait = Duration::from_millis(200);
    let v = Arc::new(
        Verifier::new(resolver, settings)
            .with_disposable(tern_verify::disposable::List::parse("burner.test\n")),
    );
    let addresses: Vec<String> = labelled.iter().map(|l| l.0.clone()).collect();
    let answers = v.verify_all(&addresses, 8, |_| {}).await;

    let classes = [Verdict::Deliverable, Verdict::Undeliverable, Verdict::Risky];
    let mut said: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut wrong = Vec::new();
    for ((addr, truth), a) in labelled.iter().zip(&answers) {
        if a.result == Verdict::Unknown {
            continue;
        }
        let e = said.entry(a.result.as_str()).or_default();
        e.0 += 1;
        if a.result == *truth {
            e.1 += 1;
        } else {
            wrong.push(format!("{addr}: truth {truth:?}, said {a:?}"));
        }
    }
    let unknown = answers
        .iter()
        .filter(|a| a.result == Verdict::Unknown)
        .count();
    let mut report = format!(
        "verification over {} labelled addresses (simulated world)\n{:<14} {:>6} {:>8} {:>10}\n",
        labelled.len(),
        "class",
        "said",
        "correct",
        "precision"
    );
    for c in classes {
        let (n, ok) = said.get(c.as_str()).copied().unwrap_or_default();
        let truth_n = labelled.iter().filter(|l| l.1 == c).count();
        report.push_str(&format!(
            "{:<14} {:>6} {:>8} {:>9.1}%   (truly {}: {truth_n})\n",
            c.as_str(),
            n,
            ok,
            100.0 * ok as f64 / n.max(1) as f64,
            c.as_str()
        ));
    }
    report.push_str(&format!(
        "coverage (not unknown): {}/{} = {:.1}%\n",
        labelled.len() - unknown,
        labelled.len(),
        100.0 * (labelled.len() - unknown) as f64 / labelled.len() as f64
    ));
    println!("{report}");
    assert!(wrong.is_empty(), "{report}\n{}", wrong.join("\n"));
    for c in classes {
        let (n, ok) = said.get(c.as_str()).copied().unwrap_or_default();
        assert!(n > 0 && ok * 1000 >= n * 999, "{report}");
    }
    // The traps are unknown with the right reason.
    let reason_of = |addr: &str| {
        let i = addresses.iter().position(|a| a == addr).unwrap();
        (answers[i].result, answers[i].reasons.clone())
    };
    for (addr, reason) in [
        ("lee@tarpit.test", Reason::Timeout),
        ("gina@blocked.test", Reason::Blocked),
        ("ratelimit-hal@limited.test", Reason::RateLimited),
        ("josé@ascii.test", Reason::SmtputfUnsupported),
    ] {
        assert_eq!(reason_of(addr), (Verdict::Unknown, vec![reason]), "{addr}");
    }
    assert_eq!(unknown, 4, "{report}");

    // A resolver that fails (SERVFAIL) is unknown dns_error, never
    // undeliverable.
    let broken = Verifier::new(
        tern_dns::Resolver::new(&[tern_testkit::dns::servfail_server()]).unwrap(),
        tern_verify::Settings::new("verifier.example.test"),
    );
    let a = broken.verify("ann@dir.test").await;
    assert_eq!(
        (a.result, a.reasons.clone()),
        (Verdict::Unknown, vec![Reason::DnsError]),
        "{a:?}"
    );
}
