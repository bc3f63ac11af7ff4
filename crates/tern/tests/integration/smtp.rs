//! SMTP receiving: the happy paths, extensions and routing.

use crate::common::*;
use tern_testkit::{LineClient, send_message};

const MSG: &[u8] = b"From: Bob <bob@remote.test>\r\nTo: alice@example.test\r\nSubject: hello\r\nMessage-ID: <1@remote.test>\r\n\r\nHi Alice.\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ehlo_announces_extensions() {
    let s = start("").await;
    let mut c = LineClient::connect(s.smtp).await.unwrap();
    let (code, greeting) = c.reply().await.unwrap();
    assert_eq!(code, 220);
    assert!(greeting[0].contains("mail.example.test"));
    let (code, text) = c.smtp("EHLO client.example.net").await.unwrap();
    assert_eq!(code, 250);
    for ext in [
        "PIPELINING",
        "SIZE 52428800",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
        "DSN",
        "STARTTLS",
    ] {
        assert!(text.contains(ext), "missing {ext} in {text}");
    }
    assert!(!text.contains("AUTH"), "no AUTH on the MX port");
    let (code, text) = c.smtp("HELO client.example.net").await.unwrap();
    assert_eq!(code, 250);
    assert!(!text.contains("PIPELINING"));
    assert_eq!(c.smtp("NOOP").await.unwrap().0, 250);
    assert_eq!(c.smtp("VRFY alice").await.unwrap().0, 252);
    assert_eq!(c.smtp("EXPN staff").await.unwrap().0, 502);
    assert_eq!(c.smtp("QUIT").await.unwrap().0, 221);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_with_trace_headers_byte_exact() {
    let s = start("").await;
    let mut c = s.smtp_session().await;
    let (code, text) = send_message(&mut c, "bob@remote.test", &[ALICE], MSG)
        .await
        .unwrap();
    assert_eq!(code, 250, "{text}");
    assert!(text.starts_with("250 2.0.0"), "{text}");
    let queue_id = text.rsplit(' ').next().unwrap().to_string();
    let inbox = s.inbox(ALICE).await;
    assert_eq!(inbox.len(), 1);
    let raw = String::from_utf8(inbox[0].clone()).unwrap();
    assert!(
        raw.starts_with(
            "Return-Path: <bob@remote.test>\r\nReceived: from client.example.net (localhost [127.0.0.1])"
        ),
        "{raw}"
    );
    assert!(
        raw.contains(&format!(
            "by mail.example.test (Tern) with ESMTP id {queue_id}"
        )),
        "{raw}"
    );
    assert!(raw.contains("for <alice@example.test>;"));
    assert_eq!(after_trace(&inbox[0]), MSG);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_copy_for_many_recipients_aliases_and_catch_all() {
    let s = start("").await;
    let mut c = s.smtp_session().await;
    let to = [
        ALICE,
        BOB,
        "sales@example.test",
        "whoever@catchall.test",
        "ALICE@EXAMPLE.TEST",
    ];
    let (code, text) = send_message(&mut c, "", &to, MSG).await.unwrap();
    assert_eq!(code, 250, "{text}");
    // Alice is reached three times (direct, alias, upper case): once in her INBOX.
    assert_eq!(s.inbox(ALICE).await.len(), 1);
    assert_eq!(s.inbox(BOB).await.len(), 1);
    assert_eq!(s.inbox("all@catchall.test").await.len(), 1);
    let a = s.inbox(ALICE).await.remove(0);
    assert!(String::from_utf8_lossy(&a).starts_with("Return-Path: <>\r\n"));
    assert_eq!(
        a,
        s.inbox(BOB).await.remove(0),
        "one stored copy, same bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_users_and_relaying_are_refused() {
    let s = start("").await;
    let mut c = s.smtp_session().await;
    assert_eq!(c.smtp("MAIL FROM:<x@remote.test>").await.unwrap().0, 250);
    let cases: &[(&str, &str)] = &[
        ("RCPT TO:<nobody@example.test>", "550 5.1.1"),
        ("RCPT TO:<someone@remote.test>", "550 5.7.1"),
        // Address tricks: none may relay.
        ("RCPT TO:<someone%remote.test@example.test>", "550 5.1.1"),
        ("RCPT TO:<@example.test:someone@remote.test>", "550 5.7.1"),
        // smtp-proto hands the address over unquoted: two '@', refused as bad syntax.
        (
            "RCPT TO:<\"someone@remote.test\"@example.test>",
            "553 5.1.3",
        ),
        ("RCPT TO:<someone@remote.test@example.test>", "501 5.1.3"),
        ("RCPT TO:<someone!remote.test@example.test>", "550 5.1.1"),
        ("RCPT TO:<alice@example.test.>", "250 2.1.5"),
        ("RCPT TO:<alice@[127.0.0.1]>", "501 5.1.3"),
    ];
    for (cmd, want) in cases {
        let (_, text) = c.smtp(cmd).await.unwrap();
        assert!(text.starts_with(want), "{cmd}: got {text}, want {want}");
    }
    // Nothing was delivered anywhere but to alice (once the DATA is sent).
    let (code, _) = c.smtp("DATA").await.unwrap();
    assert_eq!(code, 354);
    c.send(b"Subject: x\r\n\r\nx\r\n.\r\n").await.unwrap();
    assert_eq!(c.reply().await.unwrap().0, 250);
    assert_eq!(s.inbox(ALICE).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequence_errors() {
    let s = start("[smtp]\nmax_errors = 50\n").await;
    let mut c = LineClient::connect(s.smtp).await.unwrap();
    c.reply().await.unwrap();
    assert!(
        c.smtp("MAIL FROM:<a@b.test>")
            .await
            .unwrap()
            .1
            .starts_with("503 5.5.1"),
        "EHLO first"
    );
    c.smtp("EHLO x.test").await.unwrap();
    assert!(
        c.smtp("RCPT TO:<alice@example.test>")
            .await
            .unwrap()
            .1
            .starts_with("503 5.5.1")
    );
    assert!(c.smtp("DATA").await.unwrap().1.starts_with("503 5.5.1"));
    c.smtp("MAIL FROM:<a@b.test>").await.unwrap();
    assert!(
        c.smtp("MAIL FROM:<a@b.test>")
            .await
            .unwrap()
            .1
            .starts_with("503 5.5.1"),
        "nested MAIL"
    );
    assert!(
        c.smtp("DATA").await.unwrap().1.starts_with("503 5.5.1"),
        "no RCPT"
    );
    c.smtp("RCPT TO:<nobody@example.test>").await.unwrap();
    assert!(
        c.smtp("DATA").await.unwrap().1.starts_with("554 5.5.1"),
        "no valid RCPT"
    );
    assert_eq!(c.smtp("RSET").await.unwrap().0, 250);
    assert!(c.smtp("FOO bar").await.unwrap().1.starts_with("500 5.5.1"));
    assert!(
        c.smtp("MAIL FROM:<a@b.test> BODY=BINARYMIME")
            .await
            .unwrap()
            .1
            .starts_with("555")
    );
    assert!(
        c.smtp("AUTH PLAIN")
            .await
            .unwrap()
            .1
            .starts_with("503 5.5.1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelining_in_one_write() {
    let s = start("").await;
    let mut c = s.smtp_session().await;
    c.send(b"MAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<nobody@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
        .await
        .unwrap();
    let codes: Vec<u16> = [0; 5].iter().map(|_| 0).collect();
    let mut got = Vec::new();
    for _ in codes {
        got.push(c.reply().await.unwrap().0);
    }
    assert_eq!(got, vec![250, 250, 550, 250, 354]);
    c.send(b"Subject: piped\r\n\r\nbody\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n").await.unwrap();
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(c.reply().await.unwrap().0);
    }
    assert_eq!(got, vec![250, 250, 250, 354]);
    c.send(b"second\r\n.\r\n").await.unwrap();
    assert_eq!(c.reply().await.unwrap().0, 250);
    assert_eq!(s.inbox(ALICE).await.len(), 1);
    assert_eq!(s.inbox(BOB).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bdat_chunks_and_last() {
    let s = start("").await;
    let mut c = s.smtp_session().await;
    c.smtp("MAIL FROM:<bob@remote.test> BODY=8BITMIME")
        .await
        .unwrap();
    c.smtp("RCPT TO:<alice@example.test>").await.unwrap();
    let part1 = b"Subject: chunked\r\n\r\n.line starting with a dot\r\n";
    c.send(format!("BDAT {}\r\n", part1.len()).as_bytes())
        .await
        .unwrap();
    c.send(part1).await.unwrap();
    let (code, text) = c.reply().await.unwrap();
    assert_eq!(code, 250, "{text:?}");
    let part2 = b"bare LF here\nend\r\n";
    c.send(format!("BDAT {} LAST\r\n", part2.len()).as_bytes())
        .await
        .unwrap();
    c.send(part2).await.unwrap();
    let (code, text) = c.reply().await.unwrap();
    assert_eq!(code, 250, "{text:?}");
    let inbox = s.inbox(ALICE).await;
    assert_eq!(
        after_trace(&inbox[0]),
        b"Subject: chunked\r\n\r\n.line starting with a dot\r\nbare LF here\r\nend\r\n",
        "BDAT has no dot-stuffing; bare LF normalised"
    );
    // DATA after BDAT is refused; BDAT without a transaction consumes its bytes.
    c.send(b"BDAT 5 LAST\r\nhello").await.unwrap();
    assert!(c.reply().await.unwrap().1[0].starts_with("503 5.5.1"));
    assert_eq!(
        c.smtp("NOOP").await.unwrap().0,
        250,
        "chunk bytes were not taken as commands"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_then_mail() {
    let s = start("").await;
    let mut c = s.smtp_session().await;
    let (code, _) = c.smtp("STARTTLS").await.unwrap();
    assert_eq!(code, 220);
    let mut c = c.start_tls(&s.data.cert_path()).await.unwrap();
    let (code, text) = c.smtp("EHLO client.example.net").await.unwrap();
    assert_eq!(code, 250);
    assert!(!text.contains("STARTTLS"), "not offered twice");
    assert!(c.smtp("STARTTLS").await.unwrap().1.starts_with("503"));
    let (code, _) = send_message(&mut c, "bob@remote.test", &[ALICE], MSG)
        .await
        .unwrap();
    assert_eq!(code, 250);
    let raw = String::from_utf8(s.inbox(ALICE).await.remove(0)).unwrap();
    assert!(raw.contains("with ESMTPS id"), "{raw}");
    assert!(
        raw.contains("(using TLSv1_3") || raw.contains("(using TLSv1.3"),
        "{raw}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_discards_pipelined_plaintext() {
    // CVE-2011-0411: commands sent with STARTTLS must not run after the handshake.
    let s = start("").await;
    let mut c = s.smtp_session().await;
    c.send(b"STARTTLS\r\nMAIL FROM:<evil@remote.test>\r\n")
        .await
        .unwrap();
    assert_eq!(c.reply().await.unwrap().0, 220);
    let mut c = c.start_tls(&s.data.cert_path()).await.unwrap();
    // The injected MAIL was dropped: RCPT now fails for lack of EHLO/MAIL.
    let (_, text) = c.smtp("RCPT TO:<alice@example.test>").await.unwrap();
    assert!(text.starts_with("503"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtputf8_and_dsn_parameters() {
    let s = start("").await;
    let mut c = s.smtp_session().await;
    assert!(
        c.smtp("MAIL FROM:<josé@remote.test>")
            .await
            .unwrap()
            .1
            .starts_with("553 5.6.7")
    );
    assert_eq!(
        c.smtp("MAIL FROM:<josé@remote.test> SMTPUTF8 RET=HDRS ENVID=abc123")
            .await
            .unwrap()
            .0,
        250
    );
    assert_eq!(
        c.smtp("RCPT TO:<alice@example.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;alice@example.test")
            .await
            .unwrap()
            .0,
        250
    );
    c.smtp("DATA").await.unwrap();
    c.send("Subject: ünïcode\r\n\r\nhéllo\r\n.\r\n".as_bytes())
        .await
        .unwrap();
    assert_eq!(c.reply().await.unwrap().0, 250);
    let raw = s.inbox(ALICE).await.remove(0);
    assert!(
        String::from_utf8(raw)
            .unwrap()
            .ends_with("Subject: ünïcode\r\n\r\nhéllo\r\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_full_is_552() {
    let s = start("").await;
    s.store
        .add_account(&addr("tiny@example.test"), "pw", 2000)
        .await
        .unwrap();
    let mut c = s.smtp_session().await;
    c.smtp("MAIL FROM:<bob@remote.test> SIZE=5000")
        .await
        .unwrap();
    let (_, text) = c.smtp("RCPT TO:<tiny@example.test>").await.unwrap();
    assert!(text.starts_with("552 5.2.2"), "{text}");
    c.smtp("RSET").await.unwrap();
    let big = vec![b'x'; 900];
    let mut body = b"Subject: fill\r\n\r\n".to_vec();
    body.extend_from_slice(&big);
    for _ in 0..3 {
        send_message(&mut c, "bob@remote.test", &["tiny@example.test"], &body)
            .await
            .unwrap();
    }
    c.smtp("MAIL FROM:<bob@remote.test>").await.unwrap();
    let (_, text) = c.smtp("RCPT TO:<tiny@example.test>").await.unwrap();
    assert!(text.starts_with("552 5.2.2"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_changes_apply_without_restart() {
    let s = start("").await;
    let mut c = s.smtp_session().await;
    c.smtp("MAIL FROM:<bob@remote.test>").await.unwrap();
    assert!(
        c.smtp("RCPT TO:<carol@example.test>")
            .await
            .unwrap()
            .1
            .starts_with("550 5.1.1")
    );
    // A second store handle on the same files, as the CLI opens it.
    let config = tern_core::Config::load(&s.data.config_path()).unwrap();
    let other = tern::server::open_store(&config).await.unwrap();
    other
        .add_account(&addr("carol@example.test"), "pw", 0)
        .await
        .unwrap();
    assert!(
        c.smtp("RCPT TO:<carol@example.test>")
            .await
            .unwrap()
            .1
            .starts_with("250")
    );
    other.add_domain("new.test", None).await.unwrap();
    other
        .add_account(&addr("dave@new.test"), "pw", 0)
        .await
        .unwrap();
    assert!(
        c.smtp("RCPT TO:<dave@new.test>")
            .await
            .unwrap()
            .1
            .starts_with("250")
    );
    other.remove_account(&addr("dave@new.test")).await.unwrap();
    // A removal reaches a server on PostgreSQL by the directory's notice at
    // its commit, which may come a moment after the command returns (on
    // SQLite the first try sees it): two seconds, well under the five its
    // remembered answer could otherwise live.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let reply = c.smtp("RCPT TO:<dave@new.test>").await.unwrap().1;
        if reply.starts_with("550 5.1.1") {
            break;
        }
        assert!(
            reply.starts_with("250") && std::time::Instant::now() < deadline,
            "{reply}"
        );
        c.smtp("RSET").await.unwrap();
        c.smtp("MAIL FROM:<bob@remote.test>").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint() {
    let s = start("").await;
    let mut c = s.smtp_session().await;
    send_message(&mut c, "bob@remote.test", &[ALICE], MSG)
        .await
        .unwrap();
    c.smtp("MAIL FROM:<x@remote.test>").await.unwrap();
    c.smtp("RCPT TO:<x@remote.test>").await.unwrap();
    let mut h = LineClient::connect(s.http).await.unwrap();
    h.send(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    while let Ok(Some(l)) = h.line().await {
        text.push_str(&l);
        text.push('\n');
    }
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text}"
    );
    for m in [
        "tern_smtp_messages_total",
        "tern_smtp_bytes_total",
        "tern_smtp_connections_total",
        "tern_smtp_rejections_total{reason=\"relay_denied\"}",
        "tern_store_commit_seconds_bucket",
    ] {
        assert!(text.contains(m), "missing {m}");
    }
}
