//! Hostile clients (issue "Hostile senders and clients" §2, §3): dribblers
//! are closed on their deadline, one address cannot take every connection,
//! and password guessing is stopped at the guesser without locking the owner
//! out.

use crate::common::*;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tern_testkit::LineClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Connects, reads the greeting, then sends `text` one byte every 300 ms
/// (40 bytes: 12 s, far past the 2 s deadlines configured). Whether the
/// server closed the connection before the dribble was over.
async fn dribble_is_cut(addr: SocketAddr, text: &[u8]) -> bool {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = tcp.into_split();
    let finished = Arc::new(AtomicBool::new(false));
    let f = finished.clone();
    let text = text.to_vec();
    let writer = tokio::spawn(async move {
        for b in text.iter().cycle().take(40) {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if wr.write_all(&[*b]).await.is_err() {
                return;
            }
        }
        f.store(true, Ordering::SeqCst);
        // Keep the connection open (silent) a while longer.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(wr);
    });
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(40), rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(_)) => continue,
            Err(_) => break false,
        }
    };
    let cut = closed && !finished.load(Ordering::SeqCst);
    writer.abort();
    cut
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dribblers_are_closed_on_their_deadline() {
    let s = start(
        "[smtp]\ncommand_timeout = 2\n[imap]\nlogin_timeout = 2\n[pop3]\nlogin_timeout = 2\ntimeout = 2\n",
    )
    .await;
    let (smtp, imap, pop3) = tokio::join!(
        dribble_is_cut(s.smtp, b"EHLO dribbler.example\r"),
        dribble_is_cut(s.imap, b"a LOGIN alice "),
        dribble_is_cut(s.pop3, b"USER alice"),
    );
    assert!(
        smtp,
        "SMTP: a command line trickled a byte at a time must time out"
    );
    assert!(imap, "IMAP: login must finish within login_timeout");
    assert!(pop3, "POP3: login must finish within login_timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_connection() {
    let s = start("[imap]\nmax_connections_per_ip = 3\n[pop3]\nmax_connections_per_ip = 3\n").await;
    let other: IpAddr = "127.55.0.1".parse().unwrap();
    for (addr, ok, refused) in [
        (s.imap, "* OK", "* BYE [UNAVAILABLE]"),
        (s.pop3, "+OK", "-ERR [SYS/TEMP]"),
    ] {
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut c = LineClient::connect(addr).await.unwrap();
            assert!(c.line().await.unwrap().unwrap().starts_with(ok));
            held.push(c);
        }
        let mut c = LineClient::connect(addr).await.unwrap();
        let l = c.line().await.unwrap().unwrap_or_default();
        assert!(l.starts_with(refused), "{l}");
        assert!(c.closed().await);
        // Another address is served.
        let mut c = LineClient::connect_from(other, addr).await.unwrap();
        let l = c.line().await.unwrap().unwrap();
        assert!(l.starts_with(ok), "{l}");
        drop(held);
    }
}

async fn imap_login(from: IpAddr, addr: SocketAddr, password: &str) -> String {
    let mut c = LineClient::connect_from(from, addr).await.unwrap();
    // Ten password hashes verified at once by a debug build on a busy
    // machine, plus the tarpit: patience, not a timing assertion.
    c.timeout = Duration::from_secs(120);
    c.line().await.unwrap();
    c.cmd(&format!("a LOGIN {ALICE} {password}")).await.unwrap();
    loop {
        let l = c.line().await.unwrap().expect("closed");
        if let Some(rest) = l.strip_prefix("a ") {
            return rest.to_string();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_are_cut_off_and_the_owner_gets_in() {
    let s = start("[imap]\nmax_connections_per_ip = 500\n").await;
    let attacker: IpAddr = "127.0.0.1".parse().unwrap();
    let owner: IpAddr = "127.55.0.1".parse().unwrap();
    // 150 wrong guesses at once, from one address.
    let mut burst = Vec::new();
    for i in 0..150 {
        let addr = s.imap;
        burst.push(tokio::spawn(async move {
            imap_login(attacker, addr, &format!("guess-{i}")).await
        }));
    }
    let (mut failed, mut refused) = (0, 0);
    for t in burst {
        let r = t.await.unwrap();
        if r.starts_with("NO [AUTHENTICATIONFAILED]") {
            failed += 1;
        } else if r.starts_with("NO [UNAVAILABLE]") {
            refused += 1;
        } else {
            panic!("{r}");
        }
    }
    assert_eq!(
        failed, 10,
        "attempts in flight count: only block_after are verified"
    );
    assert_eq!(refused, 140);
    // The attacker's address is refused even with the right password…
    let r = imap_login(attacker, s.imap, ALICE_PW).await;
    assert!(r.starts_with("NO [UNAVAILABLE]"), "{r}");
    // …while the owner, elsewhere, logs in (slowed down, never locked out).
    let r = imap_login(owner, s.imap, ALICE_PW).await;
    assert!(r.starts_with("OK"), "{r}");
    // The same guard serves POP3 and submission: the attacker is refused there too.
    let mut p = LineClient::connect_from(attacker, s.pop3).await.unwrap();
    p.line().await.unwrap();
    p.cmd(&format!("USER {ALICE}")).await.unwrap();
    p.line().await.unwrap();
    p.cmd(&format!("PASS {ALICE_PW}")).await.unwrap();
    let l = p.line().await.unwrap().unwrap();
    assert!(l.contains("Too many failed logins"), "{l}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailbox_names_must_be_utf8() {
    let s = start("").await;
    let mut c = LineClient::connect(s.imap).await.unwrap();
    c.line().await.unwrap();
    c.cmd(&format!("a LOGIN {ALICE} {ALICE_PW}")).await.unwrap();
    while !c.line().await.unwrap().unwrap().starts_with("a ") {}
    for name in [&b"caf\xe9"[..], b"caf\xef\xbf"] {
        c.send(format!("b CREATE {{{}+}}\r\n", name.len()).as_bytes())
            .await
            .unwrap();
        c.send(name).await.unwrap();
        c.send(b"\r\n").await.unwrap();
        let l = c.line().await.unwrap().unwrap();
        assert!(l.starts_with("b BAD"), "{l}");
    }
    c.cmd("c LIST \"\" *").await.unwrap();
    let mut names = Vec::new();
    loop {
        let l = c.line().await.unwrap().unwrap();
        if l.starts_with("c ") {
            break;
        }
        names.push(l);
    }
    assert!(
        !names
            .iter()
            .any(|n| n.contains('\u{fffd}') || n.contains("caf")),
        "{names:?}"
    );
}
