//! Authentication of inbound mail: SPF, DKIM (signed by dkimpy, an
//! independent signer), DMARC (the RFC's answers over the alignment ×
//! policy × subdomain matrix), Authentication-Results. Senders connect from
//! their own loopback addresses, so SPF sees real client IPs.

use crate::common::*;
use std::net::IpAddr;
use tern_testkit::dns::DnsServer;
use tern_testkit::remote::unique_loopback;
use tern_testkit::{LineClient, send_message};

const ZONES: &[&str] = &[
    "example.test",
    "sender.test",
    "other.test",
    "quar.test",
    "nodmarc.test",
    "relaxed.test",
    "remote.test",
];

struct World {
    s: Server,
    dns: DnsServer,
    /// In sender.test's and other.test's SPF.
    good_ip: IpAddr,
    /// In nobody's SPF.
    bad_ip: IpAddr,
    key_file: tempfile::NamedTempFile,
}

async fn world() -> World {
    world_with("", "v=DMARC1; p=reject; sp=quarantine").await
}

/// The world with `extra` config and sender.test's DMARC record.
async fn world_with(extra: &str, sender_dmarc: &str) -> World {
    let dns = DnsServer::start([127, 0, 0, 1].into(), ZONES)
        .await
        .unwrap();
    let good_ip = unique_loopback();
    let bad_ip = unique_loopback();
    for d in ["sender.test", "other.test", "quar.test", "relaxed.test"] {
        dns.txt(d, &format!("v=spf1 ip4:{good_ip} -all")).await;
    }
    dns.txt("nodmarc.test", &format!("v=spf1 ip4:{good_ip} -all"))
        .await;
    dns.txt("_dmarc.sender.test", sender_dmarc).await;
    dns.txt("_dmarc.quar.test", "v=DMARC1; p=quarantine").await;
    dns.txt("_dmarc.relaxed.test", "v=DMARC1; p=none").await;
    // DKIM keys of sender.test and other.test (one RSA key, two selectors).
    let key = tern_auth::DkimKey::generate("s1", tern_auth::DkimAlgorithm::Rsa2048).unwrap();
    let key_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key_file.path(), &key.private_pem).unwrap();
    dns.txt("s1._domainkey.sender.test", &key.txt().unwrap())
        .await;
    dns.txt("s1._domainkey.other.test", &key.txt().unwrap())
        .await;
    let s = start(&format!("[dns]\nnameservers = [\"{}\"]\n{extra}", dns.addr)).await;
    World {
        s,
        dns,
        good_ip,
        bad_ip,
        key_file,
    }
}

impl World {
    /// Signs `msg` with dkimpy as `d=domain; s=s1`.
    fn dkimpy_sign(&self, domain: &str, msg: &[u8]) -> Vec<u8> {
        let key = self.key_file.path().display().to_string();
        let (ok, text, signed) = python_tool("dkim_sign.py", &["s1", domain, &key], msg);
        assert!(ok, "dkimpy sign: {text}");
        signed
    }

    /// One SMTP transaction from `src` to bob; the final reply.
    async fn send(&self, src: IpAddr, mail_from: &str, data: &[u8]) -> (u16, String) {
        let mut c = LineClient::connect_from(src, self.s.smtp).await.unwrap();
        assert_eq!(c.reply().await.unwrap().0, 220);
        c.smtp("EHLO mta.sender.test").await.unwrap();
        send_message(&mut c, mail_from, &[BOB], data).await.unwrap()
    }

    /// Bob's message whose subject is `subject`, and the folder it is in.
    async fn find(&self, subject: &str) -> Option<(String, String)> {
        let accounts = self.s.store.list_accounts(None).await.unwrap();
        let id = accounts.iter().find(|a| a.address == BOB).unwrap().id;
        for folder in ["INBOX", "Junk"] {
            for m in self.s.store.list(id, folder).await.unwrap() {
                let raw = self.s.store.read_blob(m.blob).await.unwrap();
                let text = String::from_utf8_lossy(&raw).to_string();
                if text.contains(&format!("Subject: {subject}\r\n")) {
                    return Some((folder.to_string(), text));
                }
            }
        }
        None
    }
}

fn msg(from: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: bob@example.test\r\nSubject: {subject}\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{subject}@test>\r\n\r\nHello.\r\n"
    )
    .into_bytes()
}

/// The Authentication-Results header Tern added (unfolded).
fn results(stored: &str) -> String {
    let start = stored
        .find("Authentication-Results: mail.example.test")
        .expect("Authentication-Results added");
    let rest = &stored[start..];
    let mut end = rest.find("\r\n").unwrap();
    while rest[end + 2..].starts_with(['\t', ' ']) {
        end += 2 + rest[end + 2..].find("\r\n").unwrap();
    }
    rest[..end].replace("\r\n", "")
}

/// (case, client IP, MAIL FROM, From:, DKIM-sign as, expected)
type Case = (
    &'static str,
    IpAddr,
    &'static str,
    &'static str,
    Option<&'static str>,
    Want,
);

#[derive(Debug)]
enum Want {
    Inbox(&'static [&'static str]),
    Junk(&'static [&'static str]),
    Refused,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dmarc_matrix() {
    let w = world().await;
    let g = w.good_ip;
    let b = w.bad_ip;
    // (case, client IP, MAIL FROM, From:, DKIM-sign as, expected)
    let cases: Vec<Case> = vec![
        (
            "spf-aligned",
            g,
            "news@sender.test",
            "news@sender.test",
            None,
            Want::Inbox(&["spf=pass", "dmarc=pass", "dkim=none"]),
        ),
        (
            "dkim-aligned",
            b,
            "news@sender.test",
            "news@sender.test",
            Some("sender.test"),
            Want::Inbox(&["spf=fail", "dkim=pass", "dmarc=pass"]),
        ),
        (
            "spf-unaligned",
            g,
            "bounce@other.test",
            "ceo@sender.test",
            None,
            Want::Refused,
        ),
        (
            "dkim-unaligned",
            b,
            "x@nodmarc.test",
            "ceo@sender.test",
            Some("other.test"),
            Want::Refused,
        ),
        (
            "nothing-passes",
            b,
            "ceo@sender.test",
            "ceo@sender.test",
            None,
            Want::Refused,
        ),
        (
            "subdomain-sp",
            b,
            "x@sub.sender.test",
            "x@sub.sender.test",
            None,
            Want::Junk(&["dmarc=fail"]),
        ),
        (
            "quarantine",
            b,
            "a@quar.test",
            "a@quar.test",
            None,
            Want::Junk(&["spf=fail", "dmarc=fail"]),
        ),
        (
            "p-none",
            b,
            "a@relaxed.test",
            "a@relaxed.test",
            None,
            Want::Inbox(&["spf=fail", "dmarc=fail"]),
        ),
        (
            "spf-fail-no-dmarc",
            b,
            "a@nodmarc.test",
            "a@nodmarc.test",
            None,
            Want::Inbox(&["spf=fail", "dmarc=none"]),
        ),
    ];
    for (case, ip, mail_from, from, sign, want) in cases {
        let mut data = msg(from, case);
        if let Some(d) = sign {
            data = w.dkimpy_sign(d, &data);
        }
        let (code, text) = w.send(ip, mail_from, &data).await;
        match want {
            Want::Refused => {
                assert_eq!(code, 550, "{case}: {text}");
                assert!(
                    text.contains("5.7.1") && text.contains("DMARC"),
                    "{case}: {text}"
                );
                assert!(
                    w.find(case).await.is_none(),
                    "{case}: refused means not stored"
                );
            }
            Want::Inbox(expect) | Want::Junk(expect) => {
                assert_eq!(code, 250, "{case}: {text}");
                let (folder, stored) = w.find(case).await.expect(case);
                let wanted = if matches!(want, Want::Junk(_)) {
                    "Junk"
                } else {
                    "INBOX"
                };
                assert_eq!(folder, wanted, "{case}: {}", results(&stored));
                let r = results(&stored);
                for e in expect {
                    assert!(r.contains(e), "{case}: {e} missing in {r}");
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dkim_by_dkimpy_passes_and_tampering_fails() {
    let w = world().await;
    let signed = w.dkimpy_sign("sender.test", &msg("news@sender.test", "signed"));
    assert_eq!(w.send(w.good_ip, "news@sender.test", &signed).await.0, 250);
    let (_, stored) = w.find("signed").await.unwrap();
    let r = results(&stored);
    assert!(
        r.contains("dkim=pass") && r.contains("sender.test header.s=s1"),
        "{r}"
    );
    assert!(r.contains("spf=pass") && r.contains("dmarc=pass"), "{r}");
    // The body changed after signing: the body hash fails (and DMARC still
    // passes on aligned SPF).
    let signed = w.dkimpy_sign("sender.test", &msg("news@sender.test", "tampered"));
    let tampered = String::from_utf8(signed)
        .unwrap()
        .replace("Hello.", "Hello, changed.");
    assert_eq!(
        w.send(w.good_ip, "news@sender.test", tampered.as_bytes())
            .await
            .0,
        250
    );
    let (_, stored) = w.find("tampered").await.unwrap();
    let r = results(&stored);
    assert!(r.contains("dkim=fail"), "{r}");
    assert!(!r.contains("dkim=pass"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_results_are_removed() {
    let w = world().await;
    let mut data = b"Authentication-Results: mail.example.test; dkim=pass; spf=pass; dmarc=pass\r\nAuthentication-Results: elsewhere.test; spf=pass\r\n".to_vec();
    data.extend_from_slice(&msg("a@nodmarc.test", "forged"));
    assert_eq!(w.send(w.bad_ip, "a@nodmarc.test", &data).await.0, 250);
    let (_, stored) = w.find("forged").await.unwrap();
    assert_eq!(
        stored
            .matches("Authentication-Results: mail.example.test")
            .count(),
        1,
        "{stored}"
    );
    assert!(results(&stored).contains("spf=fail"));
    assert!(stored.contains("Authentication-Results: elsewhere.test; spf=pass"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_line_has_forward_confirmed_reverse_dns() {
    // 127.0.0.1 has a confirmed name (hickory answers "localhost" both
    // ways, RFC 6761); another loopback address's PTR ("localhost") does
    // not point back to it.
    let dns = DnsServer::start([127, 0, 0, 1].into(), ZONES)
        .await
        .unwrap();
    let unconfirmed = unique_loopback();
    let s = start(&format!("[dns]\nnameservers = [\"{}\"]\n", dns.addr)).await;
    for (ip, subject) in [
        ([127, 0, 0, 1].into(), "rdns-ok"),
        (unconfirmed, "rdns-bad"),
    ] {
        let mut c = LineClient::connect_from(ip, s.smtp).await.unwrap();
        c.reply().await.unwrap();
        c.smtp("EHLO mta.sender.test").await.unwrap();
        let (code, _) = send_message(
            &mut c,
            "a@nodmarc.test",
            &[BOB],
            &msg("a@nodmarc.test", subject),
        )
        .await
        .unwrap();
        assert_eq!(code, 250);
    }
    let inbox: Vec<String> = s
        .inbox(BOB)
        .await
        .iter()
        .map(|m| String::from_utf8_lossy(m).to_string())
        .collect();
    let ok = inbox
        .iter()
        .find(|m| m.contains("Subject: rdns-ok"))
        .unwrap();
    assert!(
        ok.contains("Received: from mta.sender.test (localhost [127.0.0.1])"),
        "{ok}"
    );
    assert!(!ok.contains("RDNS_NONE"), "{ok}");
    let bad = inbox
        .iter()
        .find(|m| m.contains("Subject: rdns-bad"))
        .unwrap();
    assert!(
        bad.contains(&format!("Received: from mta.sender.test ([{unconfirmed}])")),
        "{bad}"
    );
    assert!(bad.contains("RDNS_NONE"), "{bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dmarc_aggregate_reports_are_sent() {
    let w = world_with(
        // Long enough for the key generation and the three messages below
        // to fall in the first interval, even on a loaded machine.
        "[inbound]\ndmarc_report_interval = \"6s\"\n",
        "v=DMARC1; p=reject; rua=mailto:dmarc@example.test",
    )
    .await;
    // example.test agrees to receive sender.test's reports (RFC 7489 §7.1).
    w.dns
        .txt("sender.test._report._dmarc.example.test", "v=DMARC1")
        .await;
    w.s.store
        .add_account(&addr("dmarc@example.test"), "pw", 0)
        .await
        .unwrap();
    // Reports leave through the intake: signed by example.test's key (the
    // parent of the reporting host name mail.example.test).
    dkim_key(
        &w.s.store,
        &w.dns,
        "example.test",
        "rep1",
        tern_auth::DkimAlgorithm::Rsa2048,
    )
    .await;
    for i in 0..2 {
        let subject = format!("report-pass-{i}");
        let (code, _) = w
            .send(
                w.good_ip,
                "news@sender.test",
                &msg("news@sender.test", &subject),
            )
            .await;
        assert_eq!(code, 250);
    }
    let (code, _) = w
        .send(
            w.bad_ip,
            "ceo@sender.test",
            &msg("ceo@sender.test", "report-fail"),
        )
        .await;
    assert_eq!(code, 550);
    let mut report = None;
    for _ in 0..200 {
        let inbox = w.s.inbox("dmarc@example.test").await;
        if let Some(raw) = inbox.first() {
            report = Some(raw.clone());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let raw = report.expect("an aggregate report within the interval");
    let (ok, text) = dkimpy_tool("dkim_verify.py", &w.dns, after_trace(&raw));
    assert!(
        ok && text.contains("example.test rep1 pass"),
        "report signature: {text}"
    );
    let parsed = mail_auth::report::Report::parse_rfc5322(&raw, 1 << 20).expect("a DMARC report");
    assert_eq!(parsed.domain(), "sender.test");
    assert_eq!(parsed.org_name(), "mail.example.test");
    let total: u32 = parsed.records().iter().map(|r| r.count()).sum();
    assert_eq!(total, 3, "{parsed:?}");
    let ips: Vec<IpAddr> = parsed
        .records()
        .iter()
        .filter_map(|r| r.source_ip())
        .collect();
    assert!(
        ips.contains(&w.good_ip) && ips.contains(&w.bad_ip),
        "{ips:?}"
    );

    // The other direction: a report arriving over SMTP for one of our
    // domains is stored parsed, and `tern reports dmarc` lists it.
    let mut c = LineClient::connect_from(w.good_ip, w.s.smtp).await.unwrap();
    c.reply().await.unwrap();
    c.smtp("EHLO reporter.sender.test").await.unwrap();
    let (code, text) = send_message(
        &mut c,
        "noreply-dmarc@mail.example.test",
        &["dmarc@example.test"],
        &raw,
    )
    .await
    .unwrap();
    assert_eq!(code, 250, "{text}");
    let (ok, listing) = tern_cli(&["reports", "dmarc"], w.s.data.path());
    assert!(ok, "{listing}");
    let line = listing
        .lines()
        .find(|l| l.starts_with("sender.test"))
        .unwrap_or_else(|| panic!("{listing}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[1], "mail.example.test", "{line}");
    assert_eq!(cols[4], "3", "messages: {line}");
    assert_eq!(cols[5], "1", "failed: {line}");
}

/// Runs one of the dkimpy tools in tests/tools on `message` against the
/// test DNS; whether it succeeded and what it said.
fn dkimpy_tool(tool: &str, dns: &DnsServer, message: &[u8]) -> (bool, String) {
    let (ok, text, _) = python_tool(tool, &[&dns.addr.to_string()], message);
    (ok, text)
}

/// A forwarding alias (to another domain): the copy leaves with an SRS
/// envelope sender of ours and an ARC set sealed by our domain, which
/// dkimpy verifies, and the sender's DKIM signature still verifies;
/// bounces to the SRS address go back to the original sender; forged SRS
/// addresses are unknown users.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_rewrites_the_sender_and_seals_with_arc() {
    use tern_testkit::remote::Behaviour;
    let w = world().await;
    dkim_key(
        &w.s.store,
        &w.dns,
        "example.test",
        "arc1",
        tern_auth::DkimAlgorithm::Rsa2048,
    )
    .await;
    let host = |name: &str| Behaviour {
        name: name.into(),
        ..Default::default()
    };
    let dest = mx_host(&w.dns, "remote.test", host("mx.remote.test")).await;
    let origin = mx_host(&w.dns, "sender.test", host("mx.sender.test")).await;
    w.s.store
        .add_alias(&addr("fwd@example.test"), &addr("user@remote.test"))
        .await
        .unwrap();
    // A forwarding alias comes before the domain's catch-all.
    w.s.store
        .add_alias(&addr("fwd@catchall.test"), &addr("user@remote.test"))
        .await
        .unwrap();
    for (a, catch_all) in [("fwd@catchall.test", true), ("fwd@example.test", false)] {
        assert_eq!(
            w.s.store.resolve(&addr(a), catch_all).await.unwrap(),
            tern_store::Recipient::Forward("user@remote.test".into())
        );
    }
    assert!(matches!(
        w.s.store
            .resolve(&addr("other@catchall.test"), true)
            .await
            .unwrap(),
        tern_store::Recipient::Local(_)
    ));

    let signed = w.dkimpy_sign("sender.test", &msg("news@sender.test", "forward-me"));
    let send = |from: &'static str, rcpt: String, data: Vec<u8>| {
        let (smtp, ip) = (w.s.smtp, w.good_ip);
        async move {
            let mut c = LineClient::connect_from(ip, smtp).await.unwrap();
            assert_eq!(c.reply().await.unwrap().0, 220);
            c.smtp("EHLO mta.sender.test").await.unwrap();
            send_message(&mut c, from, &[&rcpt], &data).await.unwrap()
        }
    };
    let (code, text) = send("news@sender.test", "fwd@example.test".into(), signed).await;
    assert_eq!(code, 250, "{text}");
    let got = dest.wait_for(1, std::time::Duration::from_secs(20)).await;
    let fwd = &got[0];
    assert_eq!(fwd.rcpts, vec!["user@remote.test"]);
    assert!(
        fwd.mail_from.starts_with("SRS0=")
            && fwd.mail_from.ends_with("=sender.test=news@example.test"),
        "{}",
        fwd.mail_from
    );
    let text = String::from_utf8_lossy(&fwd.data).to_string();
    assert!(
        text.starts_with("ARC-Seal: i=1; a=rsa-sha256; s=arc1; d=example.test; cv=none;"),
        "{text}"
    );
    assert!(
        text.contains("ARC-Authentication-Results: i=1; mail.example.test;"),
        "{text}"
    );
    assert!(!text.contains("Return-Path:"), "{text}");
    let (ok, out) = dkimpy_tool("arc_verify.py", &w.dns, &fwd.data);
    assert!(ok, "dkimpy ARC verification: {out}\n{text}");
    let (ok, out) = dkimpy_tool("dkim_verify.py", &w.dns, &fwd.data);
    assert!(ok, "the sender's DKIM signature survives forwarding: {out}");

    // The destination bounces: the bounce reaches the original sender.
    let bounce = b"From: MAILER-DAEMON@remote.test\r\nTo: news@sender.test\r\nSubject: Undelivered\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <b1@remote.test>\r\n\r\nSorry.\r\n".to_vec();
    let (code, text) = send("", fwd.mail_from.clone(), bounce).await;
    assert_eq!(code, 250, "{text}");
    let back = origin.wait_for(1, std::time::Duration::from_secs(20)).await;
    assert_eq!(back[0].rcpts, vec!["news@sender.test"]);
    assert_eq!(back[0].mail_from, "", "a bounce keeps the null sender");

    // A made-up SRS address is nobody.
    let forged = fwd.mail_from.replacen("SRS0=", "SRS0=ZZZZ", 1);
    let mut c = LineClient::connect_from(w.good_ip, w.s.smtp).await.unwrap();
    c.reply().await.unwrap();
    c.smtp("EHLO mta.sender.test").await.unwrap();
    c.smtp("MAIL FROM:<>").await.unwrap();
    let (code, _) = c.smtp(&format!("RCPT TO:<{forged}>")).await.unwrap();
    assert_eq!(code, 550);
}
