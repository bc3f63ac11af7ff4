//! Attacker-chosen depth (issue "Hostile senders and clients" §1): every
//! structure built from network bytes is bounded well below the stack.
//! Each case nests 100,000 deep; the server must answer and stay up.

use crate::common::*;
use tern_testkit::mime::{nested_messages, nested_multipart};
use tern_testkit::{LineClient, send_message};

async fn cmd(c: &mut LineClient, tag: &str, line: &str) -> (String, Vec<String>) {
    c.cmd(&format!("{tag} {line}")).await.unwrap();
    let mut untagged = Vec::new();
    loop {
        let l = c
            .line()
            .await
            .unwrap()
            .expect("server closed the connection");
        if let Some(rest) = l.strip_prefix(&format!("{tag} ")) {
            return (rest.to_string(), untagged);
        }
        untagged.push(l);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_mime_is_served_not_fatal() {
    let s = start("[smtp]\nmax_message_size = 50000000\n").await;
    // 7 MB each, checked and analysed by a debug build on a busy CI machine:
    // the clients are patient (this is not a timing assertion).
    let patience = std::time::Duration::from_secs(300);
    for msg in [nested_multipart(100_000), nested_messages(100_000)] {
        let mut c = s.smtp_session().await;
        c.timeout = patience;
        let (code, text) = send_message(&mut c, "m@remote.test", &[ALICE], &msg)
            .await
            .unwrap();
        assert_eq!(code, 250, "{text}");
    }
    let mut c = LineClient::connect(s.imap).await.unwrap();
    c.timeout = patience;
    c.line().await.unwrap();
    assert!(
        cmd(&mut c, "a", &format!("LOGIN {ALICE} {ALICE_PW}"))
            .await
            .0
            .starts_with("OK")
    );
    assert!(cmd(&mut c, "b", "SELECT INBOX").await.0.starts_with("OK"));
    for (tag, items) in [
        ("c", "BODYSTRUCTURE"),
        ("d", "BODY"),
        (
            "e",
            "(ENVELOPE BODY[1.1.1.1.1] BODY[1.1.1.MIME] BINARY.SIZE[1.1])",
        ),
        (
            "f",
            "BODY[2.2.2.2.2.2.2.2.2.2.2.2.2.2.2.2.2.2.2.2.2.2.2.2.2.2.2.2.2.2.2.2]",
        ),
    ] {
        let (r, u) = cmd(&mut c, tag, &format!("FETCH 1:* {items}")).await;
        assert!(r.starts_with("OK"), "{items}: {r}");
        assert_eq!(
            u.iter().filter(|l| l.contains(" FETCH (")).count(),
            2,
            "{items}"
        );
    }
    let (_, u) = cmd(&mut c, "g", "FETCH 1 BODYSTRUCTURE").await;
    let line = &u[0];
    // 100 levels are described; the rest is one opaque leaf.
    let depth = line.matches("(\"").count();
    assert!(
        (90..=110).contains(&depth),
        "{depth} levels in {}…",
        &line[..200]
    );
    assert!(
        line.contains("\"application\" \"octet-stream\""),
        "opaque leaf"
    );

    // SEARCH keys nested 100,000 deep: a syntax error, not a crash.
    for key in [
        format!("{}ALL{}", "(".repeat(100_000), ")".repeat(100_000)),
        format!("{}ALL", "NOT ".repeat(100_000)),
        format!("{}ALL ALL", "OR ".repeat(50_000)).replacen("ALL ALL", &"ALL ".repeat(50_001), 1),
    ] {
        let (r, _) = cmd(&mut c, "h", &format!("SEARCH {}", key.trim_end())).await;
        assert!(
            r.starts_with("BAD") || r.starts_with("NO"),
            "{}",
            &r[..r.len().min(80)]
        );
    }
    assert!(
        cmd(&mut c, "i", "THREAD REFERENCES UTF-8 ALL")
            .await
            .0
            .starts_with("OK")
    );
    assert!(cmd(&mut c, "j", "NOOP").await.0.starts_with("OK"));
    // A new client after all that: the server is up.
    let mut c2 = s.smtp_session().await;
    assert_eq!(c2.smtp("NOOP").await.unwrap().0, 250);
}
