//! POP3: RFC 1939 commands, CAPA, STLS, AUTH PLAIN, stable UIDLs, throttling.

use crate::common::*;
use tern_testkit::{LineClient, sasl_plain, send_message};

async fn deliver(s: &Server, n: usize) {
    let mut c = s.smtp_session().await;
    for i in 0..n {
        let body = format!("Subject: m{i}\r\n\r\nline one\r\n.dot line\r\nline three\r\n");
        let (code, _) = send_message(&mut c, "bob@remote.test", &[ALICE], body.as_bytes())
            .await
            .unwrap();
        assert_eq!(code, 250);
    }
}

async fn login(s: &Server) -> LineClient {
    let mut p = LineClient::connect(s.pop3).await.unwrap();
    assert!(p.line().await.unwrap().unwrap().starts_with("+OK"));
    p.cmd(&format!("USER {ALICE}")).await.unwrap();
    assert!(p.line().await.unwrap().unwrap().starts_with("+OK"));
    p.cmd(&format!("PASS {ALICE_PW}")).await.unwrap();
    let l = p.line().await.unwrap().unwrap();
    assert!(l.starts_with("+OK"), "{l}");
    p
}

async fn ok(p: &mut LineClient, cmd: &str) -> String {
    p.cmd(cmd).await.unwrap();
    let l = p.line().await.unwrap().unwrap();
    assert!(l.starts_with("+OK"), "{cmd}: {l}");
    l
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_session_byte_exact() {
    let s = start("").await;
    deliver(&s, 3).await;
    let stored = s.inbox(ALICE).await;
    let mut p = login(&s).await;
    let total: usize = stored.iter().map(Vec::len).sum();
    assert_eq!(ok(&mut p, "STAT").await, format!("+OK 3 {total}"));
    ok(&mut p, "LIST").await;
    let list = p.pop3_multiline().await.unwrap();
    assert_eq!(
        String::from_utf8(list).unwrap(),
        format!(
            "1 {}\r\n2 {}\r\n3 {}\r\n",
            stored[0].len(),
            stored[1].len(),
            stored[2].len()
        )
    );
    ok(&mut p, "UIDL").await;
    let uidl = String::from_utf8(p.pop3_multiline().await.unwrap()).unwrap();
    assert_eq!(uidl.lines().count(), 3);
    ok(&mut p, "RETR 2").await;
    assert_eq!(
        p.pop3_multiline().await.unwrap(),
        stored[1],
        "RETR is byte-exact after unstuffing"
    );
    ok(&mut p, "TOP 1 1").await;
    let top = String::from_utf8(p.pop3_multiline().await.unwrap()).unwrap();
    assert!(top.ends_with("Subject: m0\r\n\r\nline one\r\n"), "{top}");
    ok(&mut p, "DELE 1").await;
    p.cmd("RETR 1").await.unwrap();
    assert!(p.line().await.unwrap().unwrap().starts_with("-ERR"));
    ok(&mut p, "RSET").await;
    ok(&mut p, "DELE 1").await;
    ok(&mut p, "NOOP").await;
    p.cmd("RETR 99").await.unwrap();
    assert!(p.line().await.unwrap().unwrap().starts_with("-ERR"));
    ok(&mut p, "QUIT").await;
    assert_eq!(
        s.inbox(ALICE).await.len(),
        2,
        "DELE + QUIT expunged durably"
    );

    // UIDLs are stable across sessions.
    let mut p = login(&s).await;
    ok(&mut p, "UIDL").await;
    let uidl2 = String::from_utf8(p.pop3_multiline().await.unwrap()).unwrap();
    let old: Vec<&str> = uidl.lines().map(|l| l.split(' ').nth(1).unwrap()).collect();
    let new: Vec<&str> = uidl2
        .lines()
        .map(|l| l.split(' ').nth(1).unwrap())
        .collect();
    assert_eq!(new, old[1..].to_vec());
    // A dropped connection without QUIT deletes nothing (RFC 1939 §6).
    ok(&mut p, "DELE 1").await;
    drop(p);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(s.inbox(ALICE).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uidl_survives_restart() {
    let mut s = start("").await;
    deliver(&s, 2).await;
    let mut p = login(&s).await;
    ok(&mut p, "UIDL").await;
    let before = p.pop3_multiline().await.unwrap();
    ok(&mut p, "QUIT").await;
    s.stop();
    let running = start_in(&s.data).await;
    s.pop3 = running.pop3[0];
    s.running = Some(running);
    let mut p = login(&s).await;
    ok(&mut p, "UIDL").await;
    assert_eq!(p.pop3_multiline().await.unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_plain_capa_and_implicit_tls() {
    let s = start("").await;
    deliver(&s, 1).await;
    let mut p = LineClient::connect(s.pop3).await.unwrap();
    p.line().await.unwrap();
    ok(&mut p, "CAPA").await;
    let capa = String::from_utf8(p.pop3_multiline().await.unwrap()).unwrap();
    for c in ["TOP", "UIDL", "USER", "SASL PLAIN", "STLS", "RESP-CODES"] {
        assert!(capa.contains(c), "{capa}");
    }
    ok(
        &mut p,
        &format!("AUTH PLAIN {}", sasl_plain(ALICE, ALICE_PW)),
    )
    .await;
    assert_eq!(ok(&mut p, "STAT").await.split(' ').nth(1), Some("1"));

    let mut t = LineClient::connect_tls(s.pop3s, &s.data.cert_path())
        .await
        .unwrap();
    t.line().await.unwrap();
    t.cmd("AUTH PLAIN").await.unwrap();
    assert_eq!(t.line().await.unwrap().unwrap(), "+ ");
    ok(&mut t, &sasl_plain(BOB, BOB_PW)).await;
    assert_eq!(ok(&mut t, "STAT").await, "+OK 0 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_needs_tls_when_loopback_exemption_is_off() {
    let s = start("[auth]\nplaintext_on_loopback = false\n").await;
    let mut p = LineClient::connect(s.pop3).await.unwrap();
    p.line().await.unwrap();
    ok(&mut p, "CAPA").await;
    let capa = String::from_utf8(p.pop3_multiline().await.unwrap()).unwrap();
    assert!(!capa.contains("USER") && capa.contains("STLS"), "{capa}");
    p.cmd(&format!("USER {ALICE}")).await.unwrap();
    assert!(p.line().await.unwrap().unwrap().starts_with("-ERR [AUTH]"));
    p.cmd(&format!("AUTH PLAIN {}", sasl_plain(ALICE, ALICE_PW)))
        .await
        .unwrap();
    assert!(p.line().await.unwrap().unwrap().starts_with("-ERR [AUTH]"));
    ok(&mut p, "STLS").await;
    let mut p = p.start_tls(&s.data.cert_path()).await.unwrap();
    ok(&mut p, &format!("USER {ALICE}")).await;
    ok(&mut p, &format!("PASS {ALICE_PW}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_slowed_then_refused() {
    let s = start("[auth]\nslow_after = 2\nblock_after = 4\n").await;
    let mut p = LineClient::connect(s.pop3).await.unwrap();
    p.line().await.unwrap();
    for _ in 0..4 {
        p.cmd(&format!("USER {ALICE}")).await.unwrap();
        p.line().await.unwrap();
        p.cmd("PASS wrong").await.unwrap();
        assert!(p.line().await.unwrap().unwrap().starts_with("-ERR [AUTH]"));
    }
    // Now even the right password is refused for a while.
    p.cmd(&format!("USER {ALICE}")).await.unwrap();
    p.line().await.unwrap();
    p.cmd(&format!("PASS {ALICE_PW}")).await.unwrap();
    let l = p.line().await.unwrap().unwrap();
    assert!(l.contains("Too many failed logins"), "{l}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_in_wrong_state() {
    let s = start("").await;
    let mut p = LineClient::connect(s.pop3).await.unwrap();
    p.line().await.unwrap();
    for cmd in ["STAT", "RETR 1", "PASS x", "BOGUS", "AUTH CRAM-MD5"] {
        p.cmd(cmd).await.unwrap();
        assert!(
            p.line().await.unwrap().unwrap().starts_with("-ERR"),
            "{cmd}"
        );
    }
    let mut p = login(&s).await;
    for cmd in ["USER x", "STLS", "DELE 0", "DELE x", "TOP 1"] {
        p.cmd(cmd).await.unwrap();
        assert!(
            p.line().await.unwrap().unwrap().starts_with("-ERR"),
            "{cmd}"
        );
    }
}
