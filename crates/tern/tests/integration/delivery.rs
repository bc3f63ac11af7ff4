//! Outbound delivery in a simulated internet: the testkit's DNS server is
//! Tern's resolver, and remote MX hosts are scripted SMTP servers, each on
//! its own loopback address at port 25.

use crate::common::*;
use std::net::SocketAddr;
use std::time::Duration;
use tern_testkit::dns::DnsServer;
use tern_testkit::remote::{Behaviour, Greeting, RemoteHost, unique_loopback};
use tern_testkit::{LineClient, sasl_plain, send_message};

const ZONES: &[&str] = &[
    "remote.test",
    "example.test",
    "nullmx.test",
    "backup.test",
    "gone.test",
    "sts.test",
];

struct World {
    dns: DnsServer,
    s: Server,
}

/// A server whose resolver is a test DNS server (on port 53 of its own
/// loopback address, so resolv.conf-only programs can use it too), retrying
/// every second; `queue` adds keys to `[queue]`.
async fn world(queue: &str) -> World {
    let dns = test_dns(ZONES).await;
    let s = start(&format!(
        "[dns]\nnameservers = [\"{}\"]\n[queue]\nretry = [\"1s\"]\n{queue}",
        dns.addr
    ))
    .await;
    World { dns, s }
}

impl World {
    /// Points `domain`'s MX at a new scripted host.
    async fn mx_host(&self, domain: &str, b: Behaviour) -> RemoteHost {
        mx_host(&self.dns, domain, b).await
    }

    /// Gives example.test active DKIM keys (RSA and Ed25519) and publishes them.
    async fn dkim(&self) {
        example_dkim(&self.s.store, &self.dns).await;
    }

    /// Submits a message as alice; returns the final reply.
    async fn submit(&self, to: &[&str], data: &[u8]) -> (u16, String) {
        let mut c = LineClient::connect(self.s.submission).await.unwrap();
        assert_eq!(c.reply().await.unwrap().0, 220);
        c.smtp("EHLO client.example.net").await.unwrap();
        let (code, text) = c
            .smtp(&format!("AUTH PLAIN {}", sasl_plain(ALICE, ALICE_PW)))
            .await
            .unwrap();
        assert_eq!(code, 235, "{text}");
        send_message(&mut c, ALICE, to, data).await.unwrap()
    }

    /// Waits until the queue is empty.
    async fn drained(&self) {
        for _ in 0..200 {
            if self.s.store.queue_list().await.unwrap().is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("queue not empty: {:?}", self.s.store.queue_list().await);
    }

    /// Waits until the first queued recipient has had an attempt.
    async fn first_deferred(&self) -> tern_store::QueuedRcpt {
        for _ in 0..200 {
            let q = self.s.store.queue_list().await.unwrap();
            if let Some(r) = q.into_iter().next().filter(|r| r.attempts >= 1) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "no deferred recipient: {:?}",
            self.s.store.queue_list().await
        );
    }

    /// Waits until alice's INBOX holds `n` messages.
    async fn alice_inbox(&self, n: usize) -> Vec<String> {
        for _ in 0..300 {
            let inbox = self.s.inbox(ALICE).await;
            if inbox.len() >= n {
                return inbox
                    .iter()
                    .map(|m| String::from_utf8_lossy(m).to_string())
                    .collect();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("alice has fewer than {n} messages");
    }
}

/// As sent in DATA: the "..leading dot" line is ".leading dot" once unstuffed.
const MSG: &[u8] = b"From: Alice <alice@example.test>\r\nTo: bob@remote.test, carol@remote.test\r\nSubject: Hello from Tern\r\n\r\nHi both,\r\n..leading dot\r\nbye\r\n";
/// A body that ends in whitespace-only lines, which relaxed body
/// canonicalization drops like empty ones (RFC 6376 §3.4.4).
const MSG_TRAILING_BLANKS: &[u8] = b"From: Alice <alice@example.test>\r\nTo: bob@remote.test\r\nSubject: Blank lines at the end\r\n\r\nHi  there,\t\r\nbye\r\n  \r\n\t\r\n \r\n";

fn run_dkim_verifiers(dns: &DnsServer, message: &[u8]) {
    use std::process::Command;
    let (ok, text, _) = python_tool("dkim_verify.py", &[&dns.addr.to_string()], message);
    assert!(ok, "dkimpy: {text}");
    assert!(text.contains("rsa-sha256 example.test t1r pass"), "{text}");
    assert!(
        text.contains("ed25519-sha256 example.test t1e pass"),
        "{text}"
    );

    // opendkim-testmsg reads only /etc/resolv.conf: give it one naming the
    // test DNS server, in a private mount namespace.
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, format!("nameserver {}\n", dns.addr.ip())).unwrap();
    let msg_path = dir.path().join("msg.eml");
    std::fs::write(&msg_path, message).unwrap();
    let out = Command::new("unshare")
        .args(["--mount", "sh", "-c"])
        .arg(format!(
            "mount --bind {} /etc/resolv.conf && opendkim-testmsg < {}",
            resolv.display(),
            msg_path.display()
        ))
        .output()
        .expect("unshare and opendkim-testmsg (apt-get install opendkim-tools)");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "opendkim-testmsg: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// Multi-threaded: the verifiers block this thread while the test DNS
// server (in this runtime) answers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_to_mx_signed_and_verified_independently() {
    let w = world("").await;
    w.dkim().await;
    let host = w.mx_host("remote.test", Behaviour::default()).await;
    let (code, text) = w
        .submit(&["bob@remote.test", "carol@remote.test"], MSG)
        .await;
    assert_eq!(code, 250, "{text}");
    let got = host.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1, "both recipients in one transaction");
    let m = &got[0];
    assert_eq!(m.mail_from, ALICE);
    assert_eq!(m.rcpts, vec!["bob@remote.test", "carol@remote.test"]);
    assert!(m.tls, "opportunistic STARTTLS was used");
    let text = String::from_utf8_lossy(&m.data);
    assert_eq!(text.matches("DKIM-Signature:").count(), 2, "{text}");
    assert!(text.contains("\r\n.leading dot\r\n"), "dot-stuffing undone");
    assert!(text.ends_with("bye\r\n"));
    run_dkim_verifiers(&w.dns, &m.data);
    w.drained().await;

    // Whitespace-only lines at the end of the body: the verifiers agree
    // with Tern's body hash.
    let (code, text) = w.submit(&["bob@remote.test"], MSG_TRAILING_BLANKS).await;
    assert_eq!(code, 250, "{text}");
    let got = host.wait_for(2, Duration::from_secs(20)).await;
    assert!(got[1].data.ends_with(b"bye\r\n  \r\n\t\r\n \r\n"));
    run_dkim_verifiers(&w.dns, &got[1].data);
    w.drained().await;

    // Tampering breaks the signatures (the verifiers can fail).
    let tampered =
        String::from_utf8_lossy(&m.data).replace("Hello from Tern", "Hello from Mallory");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/dkim_verify.py");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "/usr/bin/python3 {script} {} <<'EOF'\n{tampered}EOF",
            w.dns.addr
        ))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn bdat_and_plain_hosts() {
    let w = world("").await;
    let host = w
        .mx_host(
            "remote.test",
            Behaviour {
                chunking: true,
                starttls: false,
                pipelining: false,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(w.submit(&["bob@remote.test"], MSG).await.0, 250);
    let got = host.wait_for(1, Duration::from_secs(20)).await;
    assert!(got[0].bdat && !got[0].tls);
    assert!(String::from_utf8_lossy(&got[0].data).contains("\r\n.leading dot\r\n"));
}

#[tokio::test]
async fn retries_after_a_temporary_failure() {
    let w = world("").await;
    let host = w
        .mx_host(
            "remote.test",
            Behaviour {
                data_reply: Some((451, "4.3.0 try again later".into())),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(w.submit(&["bob@remote.test"], MSG).await.0, 250);
    // Wait for the first attempt to be recorded as deferred.
    let r = w.first_deferred().await;
    assert!(
        r.last_error.as_deref().unwrap_or("").contains("451 4.3.0"),
        "{r:?}"
    );
    host.set_behaviour(Behaviour::default());
    let got = host.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got[0].rcpts, vec!["bob@remote.test"]);
    w.drained().await;
    assert!(
        w.s.inbox(ALICE).await.is_empty(),
        "no DSN for a delivered message"
    );
}

#[tokio::test]
async fn permanent_failure_returns_a_dsn() {
    let w = world("").await;
    let host = w.mx_host("remote.test", Behaviour::default()).await;
    let (code, _) = w
        .submit(&["bob@remote.test", "reject-me@remote.test"], MSG)
        .await;
    assert_eq!(code, 250);
    let got = host.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got[0].rcpts, vec!["bob@remote.test"]);
    let inbox = w.alice_inbox(1).await;
    let dsn = &inbox[0];
    assert!(dsn.contains("multipart/report"), "{dsn}");
    assert!(
        dsn.contains("report-type=\"delivery-status\"")
            || dsn.contains("report-type=delivery-status"),
        "{dsn}"
    );
    assert!(dsn.contains("Final-Recipient: rfc822; reject-me@remote.test"));
    assert!(dsn.contains("Action: failed"));
    assert!(dsn.contains("Status: 5.1.1"));
    assert!(dsn.contains("Remote-MTA: dns; mx.remote.test"));
    assert!(dsn.contains("Diagnostic-Code: smtp; 550 5.1.1 no such user here"));
    assert!(!dsn.contains("Final-Recipient: rfc822; bob@remote.test"));
    assert!(
        dsn.contains("Subject: Hello from Tern"),
        "original returned"
    );
    w.drained().await;
}

#[tokio::test]
async fn null_mx_and_missing_domains_fail_at_once() {
    let w = world("").await;
    w.dns.mx("nullmx.test", 0, ".").await;
    assert_eq!(w.submit(&["x@nullmx.test"], MSG).await.0, 250);
    let inbox = w.alice_inbox(1).await;
    assert!(inbox[0].contains("Status: 5.1.10"), "{}", inbox[0]);
    assert!(inbox[0].contains("null MX"));
    assert_eq!(w.submit(&["x@nowhere.gone.test"], MSG).await.0, 250);
    let inbox = w.alice_inbox(2).await;
    assert!(
        inbox.iter().any(|m| m.contains("Status: 5.1.2")),
        "{inbox:?}"
    );
    w.drained().await;
}

#[tokio::test]
async fn falls_back_to_the_next_mx() {
    let w = world("").await;
    // The preferred MX has an address where nothing listens.
    w.dns.mx("backup.test", 10, "down.backup.test").await;
    w.dns.ip("down.backup.test", unique_loopback()).await;
    // The second refuses service in its greeting; the third works.
    let refusing = RemoteHost::start(Behaviour {
        greeting: Greeting::Refuse,
        ..Default::default()
    })
    .await;
    w.dns.mx("backup.test", 20, "busy.backup.test").await;
    w.dns.ip("busy.backup.test", refusing.ip()).await;
    let good = RemoteHost::start(Behaviour::default()).await;
    w.dns.mx("backup.test", 30, "mx3.backup.test").await;
    w.dns.ip("mx3.backup.test", good.ip()).await;
    assert_eq!(w.submit(&["z@backup.test"], MSG).await.0, 250);
    let got = good.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got[0].rcpts, vec!["z@backup.test"]);
    assert_eq!(refusing.connections(), 1);
    assert!(refusing.messages().is_empty());
    w.drained().await;
}

#[tokio::test]
async fn expiry_sends_delay_notice_then_failure() {
    let w = world("expire = \"4s\"\ndelay_notice = \"1s\"\n").await;
    let _host = w
        .mx_host(
            "remote.test",
            Behaviour {
                data_reply: Some((452, "4.2.2 mailbox full".into())),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(w.submit(&["bob@remote.test"], MSG).await.0, 250);
    let inbox = w.alice_inbox(2).await;
    let delayed = inbox
        .iter()
        .find(|m| m.contains("Action: delayed"))
        .expect("delay notice");
    assert!(delayed.contains("Will-Retry-Until:"), "{delayed}");
    let failed = inbox
        .iter()
        .find(|m| m.contains("Action: failed"))
        .expect("failure DSN");
    assert!(failed.contains("Status: 4.4.7"), "{failed}");
    assert!(failed.contains("452 4.2.2 mailbox full"));
    w.drained().await;
}

#[tokio::test]
async fn transport_rule_overrides_mx() {
    let relay = RemoteHost::start(Behaviour::default()).await;
    let w = world(&format!(
        "[[queue.transport]]\ndomain = \"remote.test\"\nhost = \"{}\"\nport = 25\n",
        relay.ip()
    ))
    .await;
    // remote.test's MX points elsewhere; the rule wins.
    let mx = w.mx_host("remote.test", Behaviour::default()).await;
    assert_eq!(w.submit(&["bob@remote.test"], MSG).await.0, 250);
    relay.wait_for(1, Duration::from_secs(20)).await;
    assert!(mx.messages().is_empty());
}

/// A world whose queue trusts `ca` for verified TLS, with the zone sts.test.
async fn sts_world(ca: &tern_testkit::pki::TestCa) -> (World, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.cert_pem()).unwrap();
    let w = world(&format!("tls_ca_file = \"{}\"\n", ca_path.display())).await;
    (w, dir)
}

/// Publishes an MTA-STS policy for sts.test served by a test HTTPS server.
async fn publish_sts(
    w: &World,
    ca: &tern_testkit::pki::TestCa,
    policy: &str,
) -> tern_testkit::pki::PolicyServer {
    let server = tern_testkit::pki::PolicyServer::start(
        SocketAddr::new(unique_loopback(), 443),
        ca,
        "mta-sts.sts.test",
        Some(policy),
    )
    .await
    .expect("HTTPS policy server on port 443");
    w.dns.txt("_mta-sts.sts.test", "v=STSv1; id=20261127").await;
    w.dns.ip("mta-sts.sts.test", server.addr.ip()).await;
    server
}

#[tokio::test]
async fn mta_sts_enforce_uses_only_policy_hosts_over_verified_tls() {
    let ca = tern_testkit::pki::TestCa::new();
    let (w, _dir) = sts_world(&ca).await;
    // The preferred MX is not in the policy (think: an attacker's).
    let rogue = RemoteHost::start(Behaviour::default()).await;
    w.dns.mx("sts.test", 5, "rogue.sts.test").await;
    w.dns.ip("rogue.sts.test", rogue.ip()).await;
    let good = RemoteHost::start(Behaviour {
        name: "mx.sts.test".into(),
        cert: Some(ca.issue("mx.sts.test")),
        ..Default::default()
    })
    .await;
    w.dns.mx("sts.test", 10, "mx.sts.test").await;
    w.dns.ip("mx.sts.test", good.ip()).await;
    let policy = publish_sts(
        &w,
        &ca,
        "version: STSv1\nmode: enforce\nmx: mx.sts.test\nmax_age: 86400\n",
    )
    .await;
    assert_eq!(w.submit(&["u@sts.test"], MSG).await.0, 250);
    let got = good.wait_for(1, Duration::from_secs(20)).await;
    assert!(got[0].tls);
    assert_eq!(
        rogue.connections(),
        0,
        "the host outside the policy is never tried"
    );
    assert_eq!(policy.fetches(), 1);
    w.drained().await;
    // A second message uses the cached policy (same id): no new fetch.
    assert_eq!(w.submit(&["u@sts.test"], MSG).await.0, 250);
    good.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(policy.fetches(), 1);
    w.drained().await;
    // The cache outlives a restart (RFC 8461 §5.1): still no new fetch.
    let mut w = w;
    w.s.stop();
    let r = start_in(&w.s.data).await;
    w.s.submission = r.submission[0];
    w.s.store = r.store.clone();
    w.s.running = Some(r);
    assert_eq!(w.submit(&["u@sts.test"], MSG).await.0, 250);
    good.wait_for(3, Duration::from_secs(20)).await;
    assert_eq!(policy.fetches(), 1, "policy fetched again after a restart");
}

#[tokio::test]
async fn mta_sts_enforce_defers_on_an_untrusted_certificate() {
    let ca = tern_testkit::pki::TestCa::new();
    let (w, _dir) = sts_world(&ca).await;
    // The policy's MX presents a self-signed certificate.
    let host = w
        .mx_host(
            "sts.test",
            Behaviour {
                name: "mx.sts.test".into(),
                ..Default::default()
            },
        )
        .await;
    let _policy = publish_sts(
        &w,
        &ca,
        "version: STSv1\nmode: enforce\nmx: mx.sts.test\nmax_age: 86400\n",
    )
    .await;
    assert_eq!(w.submit(&["u@sts.test"], MSG).await.0, 250);
    let r = w.first_deferred().await;
    let err = r.last_error.unwrap_or_default();
    assert!(err.contains("TLS") || err.contains("certificate"), "{err}");
    assert!(
        host.messages().is_empty(),
        "nothing sent without verified TLS"
    );
}

#[tokio::test]
async fn dsn_requests_are_passed_on() {
    let w = world("").await;
    let host = w.mx_host("remote.test", Behaviour::default()).await;
    let mut c = LineClient::connect(w.s.submission).await.unwrap();
    c.reply().await.unwrap();
    c.smtp("EHLO client.example.net").await.unwrap();
    let auth = format!("AUTH PLAIN {}", sasl_plain(ALICE, ALICE_PW));
    assert_eq!(c.smtp(&auth).await.unwrap().0, 235);
    let mail = "MAIL FROM:<alice@example.test> RET=HDRS ENVID=QQ314159";
    assert_eq!(c.smtp(mail).await.unwrap().0, 250);
    let rcpt = "RCPT TO:<bob@remote.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@remote.test";
    assert_eq!(c.smtp(rcpt).await.unwrap().0, 250);
    assert_eq!(c.smtp("DATA").await.unwrap().0, 354);
    c.send(MSG).await.unwrap();
    c.send(b".\r\n").await.unwrap();
    assert_eq!(c.reply().await.unwrap().0, 250);
    let got = host.wait_for(1, Duration::from_secs(20)).await;
    let m = &got[0];
    assert!(m.mail_params.contains(" RET=HDRS"), "{:?}", m.mail_params);
    assert!(
        m.mail_params.contains(" ENVID=QQ314159"),
        "{:?}",
        m.mail_params
    );
    assert!(
        m.rcpt_params[0].contains(" NOTIFY=SUCCESS,FAILURE"),
        "{:?}",
        m.rcpt_params
    );
    assert!(
        m.rcpt_params[0].contains(" ORCPT=rfc822;bob@remote.test"),
        "{:?}",
        m.rcpt_params
    );
}

/// A world whose DNS is one DNSSEC-signed root zone, trusted by Tern
/// (`[dns] trust_anchor`), for DANE (RFC 7672).
async fn dane_world() -> (World, tempfile::TempDir) {
    dane_world_with("").await
}

/// [`dane_world`] with more `[queue]` keys.
async fn dane_world_with(queue: &str) -> (World, tempfile::TempDir) {
    let dns = DnsServer::start_signed(unique_loopback()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let anchor = dir.path().join("root.key");
    std::fs::write(&anchor, dns.trust_anchor().unwrap()).unwrap();
    let s = start(&format!(
        "[dns]\nnameservers = [\"{}\"]\ntrust_anchor = \"{}\"\n[queue]\nretry = [\"1s\"]\n{queue}",
        dns.addr,
        anchor.display()
    ))
    .await;
    (World { dns, s }, dir)
}

fn sha256(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(data).to_vec()
}

/// An MX host of `domain` presenting `cert`, with `tlsa` records.
async fn dane_host(
    w: &World,
    domain: &str,
    cert: &tern_testkit::pki::Issued,
    tlsa: &[(u8, u8, u8, Vec<u8>)],
) -> RemoteHost {
    let host = format!("mx.{domain}");
    let h = RemoteHost::start(Behaviour {
        name: host.clone(),
        cert: Some((cert.chain_pem.clone(), cert.key_pem.clone())),
        ..Default::default()
    })
    .await;
    w.dns.mx(domain, 10, &host).await;
    w.dns.ip(&host, h.ip()).await;
    for (u, s, m, d) in tlsa {
        w.dns.tlsa(&host, 25, *u, *s, *m, d.clone()).await;
    }
    h
}

#[tokio::test]
async fn dane_ee_and_ta_records_authenticate_the_mx() {
    let (w, _dir) = dane_world().await;
    let ca = tern_testkit::pki::TestCa::new();
    // DANE-EE(3) SPKI(1) SHA-256(1): the name on the certificate does not matter.
    let ee_cert = ca.issue_chain("some-other-name.example");
    let ee = dane_host(
        &w,
        "ee.test",
        &ee_cert,
        &[(3, 1, 1, sha256(&ee_cert.spki_der))],
    )
    .await;
    // DANE-TA(2) Cert(0) SHA-256(1): the CA in the chain, name checked.
    let ta_cert = ca.issue_chain("mx.ta.test");
    let ta = dane_host(&w, "ta.test", &ta_cert, &[(2, 0, 1, sha256(ca.cert_der()))]).await;
    // Signed, but no TLSA: ordinary opportunistic TLS.
    let plain_cert = ca.issue_chain("mx.notlsa.test");
    let plain = dane_host(&w, "notlsa.test", &plain_cert, &[]).await;
    assert_eq!(
        w.submit(&["a@ee.test", "b@ta.test", "c@notlsa.test"], MSG)
            .await
            .0,
        250
    );
    for h in [&ee, &ta, &plain] {
        let got = h.wait_for(1, Duration::from_secs(20)).await;
        assert!(got[0].tls, "delivered over TLS");
    }
    w.drained().await;
}

#[tokio::test]
async fn dane_mismatch_bogus_and_no_starttls_defer() {
    let (w, _dir) = dane_world().await;
    let ca = tern_testkit::pki::TestCa::new();
    // The TLSA record names another key.
    let cert = ca.issue_chain("mx.wrong.test");
    let wrong = dane_host(&w, "wrong.test", &cert, &[(3, 1, 1, vec![0xAB; 32])]).await;
    // A DANE-TA record whose anchor is in the chain, but the name is not
    // the MX host's nor the domain's.
    let cert = ca.issue_chain("elsewhere.example");
    let badname = dane_host(
        &w,
        "badname.test",
        &cert,
        &[(2, 0, 1, sha256(ca.cert_der()))],
    )
    .await;
    // A server that does not offer STARTTLS.
    let cert = ca.issue_chain("mx.nostarttls.test");
    let h = RemoteHost::start(Behaviour {
        starttls: false,
        ..Default::default()
    })
    .await;
    w.dns.mx("nostarttls.test", 10, "mx.nostarttls.test").await;
    w.dns.ip("mx.nostarttls.test", h.ip()).await;
    w.dns
        .tlsa("mx.nostarttls.test", 25, 3, 1, 1, sha256(&cert.spki_der))
        .await;
    // A forged (unsigned) TLSA answer for a host in the signed zone.
    let forged = RemoteHost::start(Behaviour::default()).await;
    w.dns.mx("forged.test", 10, "mx.forged.test").await;
    w.dns.ip("mx.forged.test", forged.ip()).await;
    w.dns
        .add_unsigned(
            "_25._tcp.mx.forged.test",
            300,
            hickory_server_rdata_tlsa(vec![1; 32]),
        )
        .await;

    for to in [
        "u@wrong.test",
        "u@badname.test",
        "u@nostarttls.test",
        "u@forged.test",
    ] {
        assert_eq!(w.submit(&[to], MSG).await.0, 250);
    }
    // Every one is deferred with a reason; nothing reaches any host.
    for _ in 0..200 {
        let q = w.s.store.queue_list().await.unwrap();
        if q.len() == 4 && q.iter().all(|r| r.attempts >= 1) {
            let errors: Vec<String> = q
                .iter()
                .map(|r| {
                    format!(
                        "{}: {}",
                        r.address,
                        r.last_error.clone().unwrap_or_default()
                    )
                })
                .collect();
            let joined = errors.join("\n");
            for (who, what) in [
                ("u@wrong.test", "DANE"),
                ("u@badname.test", "DANE"),
                ("u@nostarttls.test", "STARTTLS"),
                ("u@forged.test", "bogus"),
            ] {
                assert!(
                    errors
                        .iter()
                        .any(|e| e.starts_with(who) && e.contains(what)),
                    "{who} should fail with {what}:\n{joined}"
                );
            }
            for host in [&wrong, &badname, &h, &forged] {
                assert!(host.messages().is_empty(), "nothing sent:\n{joined}");
            }
            assert_eq!(
                forged.connections(),
                0,
                "a bogus TLSA answer: not even a connection"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not all deferred: {:?}", w.s.store.queue_list().await);
}

fn hickory_server_rdata_tlsa(data: Vec<u8>) -> tern_testkit::dns::RData {
    tern_testkit::dns::tlsa_rdata(3, 1, 1, data)
}

/// TLS reporting (RFC 8460): sessions are counted per policy and reported
/// to the rua address of each destination's `_smtp._tls` record; a report
/// arriving for one of our domains is stored and listed by the CLI.
#[tokio::test]
async fn tls_reports_are_sent_and_received() {
    use mail_auth::report::tlsrpt::{PolicyType, ResultType, TlsReport};
    let (w, _dir) = dane_world_with("tls_report_interval = \"3s\"\n").await;
    w.s.store
        .add_account(
            &tern_core::Address::parse("tlsrpt@example.test").unwrap(),
            "pw",
            0,
        )
        .await
        .unwrap();
    let ca = tern_testkit::pki::TestCa::new();
    let good = ca.issue_chain("mx.ee.test");
    let _ee = dane_host(&w, "ee.test", &good, &[(3, 1, 1, sha256(&good.spki_der))]).await;
    let bad = ca.issue_chain("mx.wrong.test");
    let _wrong = dane_host(&w, "wrong.test", &bad, &[(3, 1, 1, vec![0xAB; 32])]).await;
    for d in ["ee.test", "wrong.test"] {
        w.dns
            .txt(
                &format!("_smtp._tls.{d}"),
                "v=TLSRPTv1; rua=mailto:tlsrpt@example.test",
            )
            .await;
    }
    assert_eq!(w.submit(&["a@ee.test", "b@wrong.test"], MSG).await.0, 250);

    let mut reports: Vec<(Vec<u8>, TlsReport)> = Vec::new();
    for _ in 0..200 {
        reports =
            w.s.inbox("tlsrpt@example.test")
                .await
                .into_iter()
                .filter_map(|raw| {
                    TlsReport::parse_rfc5322(&raw, 1 << 20)
                        .ok()
                        .map(|r| (raw, r))
                })
                .collect();
        let domains: Vec<&str> = reports
            .iter()
            .flat_map(|(_, r)| r.policies.iter().map(|p| p.policy.policy_domain.as_str()))
            .collect();
        if domains.contains(&"ee.test") && domains.contains(&"wrong.test") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let policy = |domain: &str| {
        reports
            .iter()
            .flat_map(|(_, r)| r.policies.iter())
            .find(|p| p.policy.policy_domain == domain)
            .unwrap_or_else(|| panic!("no report for {domain}: {reports:?}"))
            .clone()
    };
    let ee = policy("ee.test");
    assert_eq!(ee.policy.policy_type, PolicyType::Tlsa);
    assert_eq!(ee.policy.mx_host, vec!["mx.ee.test".to_string()]);
    assert!(
        ee.summary.total_success >= 1 && ee.summary.total_failure == 0,
        "{ee:?}"
    );
    let wrong = policy("wrong.test");
    assert_eq!(wrong.policy.policy_type, PolicyType::Tlsa);
    assert!(wrong.summary.total_failure >= 1, "{wrong:?}");
    assert_eq!(
        wrong.failure_details[0].result_type,
        ResultType::ValidationFailure
    );
    assert_eq!(
        wrong.failure_details[0].receiving_mx_hostname.as_deref(),
        Some("mx.wrong.test")
    );
    assert_eq!(
        reports[0].1.organization_name.as_deref(),
        Some("mail.example.test")
    );

    // The other direction: a TLS report about one of our domains arriving
    // over SMTP is stored, and `tern reports tls` lists it.
    let raw = &reports[0].0;
    let mut c = LineClient::connect(w.s.smtp).await.unwrap();
    c.reply().await.unwrap();
    c.smtp("EHLO reporter.example.net").await.unwrap();
    let (code, text) = send_message(&mut c, "noreply-tlsrpt@reporter.example.net", &[ALICE], raw)
        .await
        .unwrap();
    assert_eq!(code, 250, "{text}");
    let (ok, listing) = tern_cli(&["reports", "tls"], w.s.data.path());
    assert!(ok, "{listing}");
    assert!(
        listing
            .lines()
            .any(|l| l.contains("mail.example.test") && l.ends_with(&reports[0].1.report_id)),
        "{listing}"
    );
}

/// RFC 6152 §3: 8-bit content for a server without 8BITMIME is returned
/// (5.6.3), 7-bit content goes through.
#[tokio::test]
async fn eight_bit_content_to_a_seven_bit_server_is_returned() {
    let w = world("").await;
    let host = w
        .mx_host(
            "remote.test",
            Behaviour {
                eightbitmime: false,
                ..Default::default()
            },
        )
        .await;
    let eight = "From: Alice <alice@example.test>\r\nTo: bob@remote.test\r\nSubject: caf\u{e9}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nCaf\u{e9} cr\u{e8}me\r\n";
    assert_eq!(
        w.submit(&["bob@remote.test"], eight.as_bytes()).await.0,
        250
    );
    let inbox = w.alice_inbox(1).await;
    assert!(inbox[0].contains("Status: 5.6.3"), "{}", inbox[0]);
    assert!(host.messages().is_empty());
    assert_eq!(w.submit(&["bob@remote.test"], MSG).await.0, 250);
    let got = host.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got[0].rcpts, vec!["bob@remote.test"]);
}
