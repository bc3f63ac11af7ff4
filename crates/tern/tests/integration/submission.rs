//! Submission (RFC 6409) on 587 and 465: AUTH, sender rules, limits and
//! the fixes made to submitted messages.

use crate::common::*;
use tern_testkit::{LineClient, sasl_plain, send_message};

async fn session(s: &Server) -> LineClient {
    let mut c = LineClient::connect(s.submission).await.unwrap();
    assert_eq!(c.reply().await.unwrap().0, 220);
    let (code, text) = c.smtp("EHLO client.example.net").await.unwrap();
    assert_eq!(code, 250, "{text}");
    c
}

async fn login(c: &mut LineClient, user: &str, pw: &str) {
    let (code, text) = c
        .smtp(&format!("AUTH PLAIN {}", sasl_plain(user, pw)))
        .await
        .unwrap();
    assert_eq!(code, 235, "{text}");
}

#[tokio::test]
async fn auth_and_sender_rules() {
    let s = start("").await;
    let mut c = session(&s).await;
    // Loopback may authenticate in plaintext (default [auth] setting).
    let (_, ehlo) = c.smtp("EHLO client.example.net").await.unwrap();
    assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
    let (code, text) = c.smtp("MAIL FROM:<alice@example.test>").await.unwrap();
    assert_eq!(code, 530, "{text}");
    assert!(text.contains("5.7.0"));
    let (code, text) = c
        .smtp(&format!("AUTH PLAIN {}", sasl_plain(ALICE, "wrong")))
        .await
        .unwrap();
    assert_eq!(code, 535, "{text}");
    assert!(text.contains("5.7.8"));
    login(&mut c, ALICE, ALICE_PW).await;
    let (code, text) = c.smtp("AUTH PLAIN x").await.unwrap();
    assert_eq!(code, 503, "already authenticated: {text}");

    // Someone else's address: refused in MAIL FROM.
    let (code, text) = c.smtp("MAIL FROM:<bob@example.test>").await.unwrap();
    assert_eq!(code, 553, "{text}");
    assert!(text.contains("5.7.1"));
    // The null sender is not one of alice's addresses either.
    let (code, _) = c.smtp("MAIL FROM:<>").await.unwrap();
    assert_eq!(code, 553);

    // Her alias is hers; but a From: header naming bob is refused at the end of data.
    let (code, text) = send_message(
        &mut c,
        "sales@example.test",
        &[BOB],
        b"From: bob@example.test\r\nTo: bob@example.test\r\nSubject: spoof\r\n\r\nhi\r\n",
    )
    .await
    .unwrap();
    assert_eq!(code, 553, "{text}");
    assert!(text.contains("5.7.1") && text.contains("bob@example.test"));

    // A good message without Date and Message-ID: both are added, and it is signed.
    let (code, text) = send_message(
        &mut c,
        ALICE,
        &[BOB, "sales@example.test"],
        b"From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: hello\r\n\r\nHello Bob.\r\n",
    )
    .await
    .unwrap();
    assert_eq!(code, 250, "{text}");
    let inbox = s.inbox(BOB).await;
    assert_eq!(inbox.len(), 1);
    let m = String::from_utf8_lossy(&inbox[0]);
    assert!(m.contains("\r\nDate: "), "{m}");
    assert!(m.contains("\r\nMessage-ID: <"), "{m}");
    assert_eq!(
        m.matches("DKIM-Signature:").count(),
        0,
        "example.test has no DKIM key in this test"
    );
    assert!(m.contains("with ESMTPA id"), "{m}");
    assert!(
        !m.starts_with("Return-Path"),
        "no Return-Path before final delivery"
    );
    // The alias copy went to alice.
    assert_eq!(s.inbox(ALICE).await.len(), 1);
    assert_eq!(c.smtp("QUIT").await.unwrap().0, 221);
}

#[tokio::test]
async fn auth_login_and_tls_rules() {
    let s = start("[auth]\nplaintext_on_loopback = false\n").await;
    let mut c = session(&s).await;
    let (_, ehlo) = c.smtp("EHLO client.example.net").await.unwrap();
    assert!(!ehlo.contains("AUTH"), "no AUTH before TLS: {ehlo}");
    let (code, text) = c
        .smtp(&format!("AUTH PLAIN {}", sasl_plain(ALICE, ALICE_PW)))
        .await
        .unwrap();
    assert_eq!(code, 538, "{text}");
    assert!(text.contains("5.7.11"));
    assert_eq!(c.smtp("STARTTLS").await.unwrap().0, 220);
    let mut c = c.start_tls(&s.data.cert_path()).await.unwrap();
    let (_, ehlo) = c.smtp("EHLO client.example.net").await.unwrap();
    assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
    use base64::Engine;
    let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
    let (code, text) = c.smtp("AUTH LOGIN").await.unwrap();
    assert_eq!((code, text.as_str()), (334, "334 VXNlcm5hbWU6"));
    assert_eq!(c.smtp(&b64(ALICE)).await.unwrap().0, 334);
    let (code, text) = c.smtp(&b64(ALICE_PW)).await.unwrap();
    assert_eq!(code, 235, "{text}");
    let (code, text) = send_message(
        &mut c,
        ALICE,
        &[BOB],
        b"From: alice@example.test\r\nSubject: over tls\r\n\r\nx\r\n",
    )
    .await
    .unwrap();
    assert_eq!(code, 250, "{text}");
    let m = String::from_utf8_lossy(&s.inbox(BOB).await[0]).to_string();
    assert!(m.contains("with ESMTPSA id"), "{m}");

    // Port 465: implicit TLS, then AUTH at once; "*" cancels an exchange.
    let mut c = LineClient::connect_tls(s.submissions, &s.data.cert_path())
        .await
        .unwrap();
    assert_eq!(c.reply().await.unwrap().0, 220);
    let (_, ehlo) = c.smtp("EHLO client.example.net").await.unwrap();
    assert!(
        ehlo.contains("AUTH PLAIN LOGIN") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    assert_eq!(c.smtp("AUTH PLAIN").await.unwrap().0, 334);
    let (code, text) = c.smtp("*").await.unwrap();
    assert_eq!(code, 501, "{text}");
    assert_eq!(c.smtp("AUTH CRAM-MD5").await.unwrap().0, 504);
    login(&mut c, BOB, BOB_PW).await;
    let (code, _) = c.smtp("MAIL FROM:<bob@example.test>").await.unwrap();
    assert_eq!(code, 250);
}

#[tokio::test]
async fn hourly_limit_and_recipient_limit() {
    let s = start("[submission]\nmax_messages_per_hour = 2\nmax_recipients = 2\n").await;
    let mut c = session(&s).await;
    login(&mut c, ALICE, ALICE_PW).await;
    let msg = b"From: alice@example.test\r\nSubject: n\r\n\r\nx\r\n";
    for _ in 0..2 {
        assert_eq!(
            send_message(&mut c, ALICE, &[BOB], msg).await.unwrap().0,
            250
        );
    }
    let (code, text) = c.smtp("MAIL FROM:<alice@example.test>").await.unwrap();
    assert_eq!(code, 451, "{text}");
    assert!(text.contains("4.7.1") && text.contains("hourly"));
    // Bob has his own allowance; three recipients are one too many.
    let mut c = session(&s).await;
    login(&mut c, BOB, BOB_PW).await;
    assert_eq!(c.smtp("MAIL FROM:<bob@example.test>").await.unwrap().0, 250);
    assert_eq!(c.smtp("RCPT TO:<a@remote.test>").await.unwrap().0, 250);
    assert_eq!(c.smtp("RCPT TO:<b@remote.test>").await.unwrap().0, 250);
    let (code, text) = c.smtp("RCPT TO:<c@remote.test>").await.unwrap();
    assert_eq!(code, 452, "{text}");
}

#[tokio::test]
async fn mx_port_still_refuses_auth_and_relay() {
    let s = start("").await;
    let mut c = s.smtp_session().await;
    let (code, _) = c
        .smtp(&format!("AUTH PLAIN {}", sasl_plain(ALICE, ALICE_PW)))
        .await
        .unwrap();
    assert_eq!(code, 503);
    assert_eq!(
        c.smtp("MAIL FROM:<alice@example.test>").await.unwrap().0,
        250
    );
    let (code, text) = c.smtp("RCPT TO:<someone@remote.test>").await.unwrap();
    assert_eq!(code, 550, "{text}");
}

#[tokio::test]
async fn trusted_networks_send_without_auth() {
    let s = start("[submission]\ntrusted_networks = [\"127.0.0.0/8\"]\n").await;
    let mut c = session(&s).await;
    let (code, text) = send_message(
        &mut c,
        "app@anything.test",
        &[BOB],
        b"From: app@anything.test\r\nSubject: from an app\r\n\r\nx\r\n",
    )
    .await
    .unwrap();
    assert_eq!(code, 250, "{text}");
    assert_eq!(s.inbox(BOB).await.len(), 1);
    // A network that does not contain the client changes nothing.
    let s = start("[submission]\ntrusted_networks = [\"10.0.0.0/8\"]\n").await;
    let mut c = session(&s).await;
    assert_eq!(
        c.smtp("MAIL FROM:<app@anything.test>").await.unwrap().0,
        530
    );
}
