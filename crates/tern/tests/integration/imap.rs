//! IMAP: protocol behaviour over real sockets, with raw tagged commands so
//! every response line can be checked.

use crate::common::*;
use std::time::{Duration, Instant};
use tern_testkit::{LineClient, send_message};

/// Sends a tagged command and collects lines up to its tagged response.
async fn cmd(c: &mut LineClient, tag: &str, line: &str) -> (String, Vec<String>) {
    c.cmd(&format!("{tag} {line}")).await.unwrap();
    tagged(c, tag).await
}

async fn tagged(c: &mut LineClient, tag: &str) -> (String, Vec<String>) {
    let mut untagged = Vec::new();
    loop {
        let l = c.line().await.unwrap().expect("connection closed");
        if let Some(rest) = l.strip_prefix(&format!("{tag} ")) {
            return (rest.to_string(), untagged);
        }
        untagged.push(l);
    }
}

async fn login(s: &Server) -> LineClient {
    let mut c = LineClient::connect(s.imap).await.unwrap();
    let greeting = c.line().await.unwrap().unwrap();
    assert!(
        greeting.starts_with("* OK [CAPABILITY IMAP4rev1 IMAP4rev2"),
        "{greeting}"
    );
    let (r, _) = cmd(&mut c, "a", &format!("LOGIN {ALICE} {ALICE_PW}")).await;
    assert!(r.starts_with("OK"), "{r}");
    c
}

async fn deliver(s: &Server, subject: &str, body: &str) {
    let mut c = s.smtp_session().await;
    let msg = format!(
        "From: Bob <bob@remote.test>\r\nTo: alice@example.test\r\nSubject: {subject}\r\n\r\n{body}\r\n"
    );
    assert_eq!(
        send_message(&mut c, "bob@remote.test", &[ALICE], msg.as_bytes())
            .await
            .unwrap()
            .0,
        250
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_fetch_store_search() {
    let s = start("").await;
    deliver(&s, "first", "alpha body").await;
    deliver(&s, "second", "beta body").await;
    let mut c = login(&s).await;
    let (r, u) = cmd(&mut c, "b", "SELECT INBOX").await;
    assert!(r.starts_with("OK [READ-WRITE]"), "{r}");
    assert!(u.contains(&"* 2 EXISTS".to_string()), "{u:?}");
    assert!(u.iter().any(|l| l.starts_with("* OK [UIDVALIDITY ")));
    assert!(u.iter().any(|l| l.starts_with("* OK [UIDNEXT 3]")));
    let (r, u) = cmd(&mut c, "c", "FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)").await;
    assert!(r.starts_with("OK"));
    assert_eq!(u.len(), 2);
    assert!(
        // The first session to select them sees new messages as \Recent
        // (RFC 3501 §2.3.2, an IMAP4rev1 session).
        u[0].starts_with("* 1 FETCH (UID 1 FLAGS (\\Recent) RFC822.SIZE "),
        "{}",
        u[0]
    );
    assert!(
        u[1].contains("\"second\" ((\"Bob\" NIL \"bob\" \"remote.test\"))"),
        "{}",
        u[1]
    );
    // BODY[TEXT] comes as a literal and sets \Seen.
    c.cmd("d FETCH 2 (BODY[TEXT])").await.unwrap();
    let l = c.line().await.unwrap().unwrap();
    assert!(l.starts_with("* 2 FETCH (BODY[TEXT] {11}"), "{l}");
    assert_eq!(c.line().await.unwrap().unwrap(), "beta body");
    let (r, _) = tagged(&mut c, "d").await;
    assert!(r.starts_with("OK"));
    let (_, u) = cmd(&mut c, "e", "FETCH 2 FLAGS").await;
    assert_eq!(u, vec!["* 2 FETCH (FLAGS (\\Seen \\Recent))"]);
    let (_, u) = cmd(&mut c, "f", "STORE 1 +FLAGS (\\Flagged $Important)").await;
    // A new keyword is announced first (RFC 9051 §7.3.5).
    assert_eq!(
        u,
        vec![
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Important)",
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Important \\*)] Flags permitted",
            "* 1 FETCH (FLAGS (\\Flagged $Important \\Recent))"
        ]
    );
    let (_, u) = cmd(&mut c, "g", "SEARCH UNSEEN").await;
    assert_eq!(u, vec!["* SEARCH 1"]);
    let (_, u) = cmd(&mut c, "h", "UID SEARCH SUBJECT second").await;
    assert_eq!(u, vec!["* SEARCH 2"]);
    let (_, u) = cmd(&mut c, "i", "SEARCH BODY alpha").await;
    assert_eq!(u, vec!["* SEARCH 1"]);
    let (_, u) = cmd(&mut c, "j", "SEARCH OR FLAGGED SEEN NOT KEYWORD $Junk").await;
    assert_eq!(u, vec!["* SEARCH 1 2"]);
    let (_, u) = cmd(
        &mut c,
        "k",
        "UID FETCH 2 (BODY.PEEK[HEADER.FIELDS (Subject)])",
    )
    .await;
    assert!(
        u[0].starts_with("* 2 FETCH (UID 2 BODY[HEADER.FIELDS (SUBJECT)] {19}"),
        "{u:?}"
    );
    let (r, _) = cmd(&mut c, "l", "LOGOUT").await;
    assert!(r.starts_with("OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_literals_and_limits() {
    let s = start("[imap]\nmax_command = 100000\n").await;
    let mut c = login(&s).await;
    let msg = "Subject: appended\r\n\r\nhello\r\n";
    c.cmd(&format!("a APPEND Drafts (\\Draft) {{{}}}", msg.len()))
        .await
        .unwrap();
    assert!(c.line().await.unwrap().unwrap().starts_with("+ "));
    c.send(format!("{msg}\r\n").as_bytes()).await.unwrap();
    let (r, _) = tagged(&mut c, "a").await;
    assert!(r.starts_with("OK [APPENDUID "), "{r}");
    // LITERAL+: no continuation.
    c.send(format!("b APPEND INBOX {{{}+}}\r\n{msg}\r\n", msg.len()).as_bytes())
        .await
        .unwrap();
    let (r, _) = tagged(&mut c, "b").await;
    assert!(r.starts_with("OK [APPENDUID "), "{r}");
    // A 4 GiB literal is refused before any of it is sent.
    c.cmd("c APPEND INBOX {4294967295}").await.unwrap();
    let l = c.line().await.unwrap().unwrap();
    assert!(l.starts_with("c NO [TOOBIG]"), "{l}");
    let (r, _) = cmd(&mut c, "d", "NOOP").await;
    assert!(r.starts_with("OK"), "session goes on: {r}");
    let (r, _) = cmd(&mut c, "e", "APPEND Nowhere {1+}\r\nx").await;
    assert!(r.starts_with("NO [TRYCREATE]"), "{r}");
    let (_, u) = cmd(&mut c, "f", "STATUS Drafts (MESSAGES UIDNEXT SIZE)").await;
    assert_eq!(
        u,
        vec![format!(
            "* STATUS \"Drafts\" (MESSAGES 1 UIDNEXT 2 SIZE {})",
            msg.len()
        )]
    );
    assert_eq!(s.inbox(ALICE).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_bad_and_session_survives() {
    let s = start("").await;
    let mut c = login(&s).await;
    for junk in [
        "x FETCH",
        "y SELECT",
        "z UID FROB 1",
        "\u{1}\u{2}",
        "w STORE 1 +FLAGS",
    ] {
        c.cmd(junk).await.unwrap();
        let l = c.line().await.unwrap().unwrap();
        assert!(l.contains("BAD"), "{junk:?} -> {l}");
    }
    let (r, _) = cmd(&mut c, "a", "FETCH 1 FLAGS").await;
    assert!(r.starts_with("BAD"), "not selected: {r}");
    let (r, _) = cmd(&mut c, "b", "SELECT Nonexistent").await;
    assert!(r.starts_with("NO [NONEXISTENT]"), "{r}");
    let (r, _) = cmd(&mut c, "c", "NOOP").await;
    assert!(r.starts_with("OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sees_new_mail_within_a_second() {
    let s = start("").await;
    let mut c = login(&s).await;
    cmd(&mut c, "a", "SELECT INBOX").await;
    c.cmd("b IDLE").await.unwrap();
    assert!(c.line().await.unwrap().unwrap().starts_with("+ "));
    let t = Instant::now();
    deliver(&s, "pushed", "x").await;
    let l = c.line().await.unwrap().unwrap();
    assert_eq!(l, "* 1 EXISTS");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    c.cmd("DONE").await.unwrap();
    let (r, _) = tagged(&mut c, "b").await;
    assert!(r.starts_with("OK"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_see_each_others_changes() {
    let s = start("").await;
    deliver(&s, "one", "1").await;
    deliver(&s, "two", "2").await;
    let mut a = login(&s).await;
    let mut b = login(&s).await;
    cmd(&mut a, "a1", "SELECT INBOX").await;
    cmd(&mut b, "b1", "SELECT INBOX").await;
    cmd(&mut a, "a2", "STORE 1 +FLAGS.SILENT (\\Deleted \\Answered)").await;
    let (_, u) = cmd(&mut b, "b2", "NOOP").await;
    assert_eq!(u, vec!["* 1 FETCH (UID 1 FLAGS (\\Answered \\Deleted))"]);
    let (_, u) = cmd(&mut a, "a3", "EXPUNGE").await;
    assert_eq!(u[0], "* 1 EXPUNGE");
    // b is not told during FETCH, but is on NOOP.
    let (_, u) = cmd(&mut b, "b3", "FETCH 2 UID").await;
    assert_eq!(u, vec!["* 2 FETCH (UID 2)"]);
    let (_, u) = cmd(&mut b, "b4", "NOOP").await;
    assert_eq!(u, vec!["* 1 EXPUNGE", "* 1 EXISTS"]);
    // Moves into Junk are recorded; the other session sees the expunge.
    let (r, u) = cmd(&mut a, "a4", "UID MOVE 2 Junk").await;
    assert!(r.starts_with("OK"), "{r}");
    assert!(u.iter().any(|l| l.starts_with("* OK [COPYUID ")), "{u:?}");
    let (_, u) = cmd(&mut b, "b5", "NOOP").await;
    assert_eq!(u, vec!["* 1 EXPUNGE", "* 0 EXISTS"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_plaintext_policy() {
    let s = start("[auth]\nplaintext_on_loopback = false\n").await;
    let mut c = LineClient::connect(s.imap).await.unwrap();
    let greeting = c.line().await.unwrap().unwrap();
    assert!(
        greeting.contains("LOGINDISABLED") && greeting.contains("STARTTLS"),
        "{greeting}"
    );
    let (r, _) = cmd(&mut c, "a", &format!("LOGIN {ALICE} {ALICE_PW}")).await;
    assert!(r.starts_with("NO [PRIVACYREQUIRED]"), "{r}");
    let (r, _) = cmd(&mut c, "b", "STARTTLS").await;
    assert!(r.starts_with("OK"));
    let mut c = c.start_tls(&s.data.cert_path()).await.unwrap();
    let (r, _) = cmd(&mut c, "c", &format!("LOGIN {ALICE} {ALICE_PW}")).await;
    assert!(r.starts_with("OK"), "{r}");
    let mut t = LineClient::connect_tls(s.imaps, &s.data.cert_path())
        .await
        .unwrap();
    t.line().await.unwrap();
    let (r, _) = cmd(
        &mut t,
        "a",
        &format!(
            "AUTHENTICATE PLAIN {}",
            tern_testkit::sasl_plain(BOB, BOB_PW)
        ),
    )
    .await;
    assert!(r.starts_with("OK"), "{r}");
    let (r, _) = cmd(&mut t, "b", &format!("LOGIN {ALICE} wrong")).await;
    assert!(r.starts_with("BAD"), "already authenticated: {r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailbox_hierarchy_and_inbox_rename() {
    let s = start("").await;
    deliver(&s, "keep", "x").await;
    let mut c = login(&s).await;
    assert!(
        cmd(&mut c, "a", "CREATE Work/Projects/2026")
            .await
            .0
            .starts_with("OK")
    );
    let (_, u) = cmd(&mut c, "b", "LIST \"\" Work/%").await;
    assert_eq!(u, vec!["* LIST (\\HasChildren) \"/\" \"Work/Projects\""]);
    assert!(
        cmd(&mut c, "c", "RENAME Work Office")
            .await
            .0
            .starts_with("OK")
    );
    let (_, u) = cmd(&mut c, "d", "LIST \"\" Office*").await;
    assert_eq!(u.len(), 3, "{u:?}");
    assert!(
        cmd(&mut c, "e", "CREATE Office")
            .await
            .0
            .starts_with("NO [ALREADYEXISTS]")
    );
    assert!(cmd(&mut c, "f", "DELETE INBOX").await.0.starts_with("NO"));
    // Renaming INBOX moves its mail and leaves it empty.
    assert!(
        cmd(&mut c, "g", "RENAME INBOX Old")
            .await
            .0
            .starts_with("OK")
    );
    let (_, u) = cmd(&mut c, "h", "STATUS INBOX (MESSAGES)").await;
    assert_eq!(u, vec!["* STATUS \"INBOX\" (MESSAGES 0)"]);
    let (_, u) = cmd(&mut c, "i", "STATUS Old (MESSAGES)").await;
    assert_eq!(u, vec!["* STATUS \"Old\" (MESSAGES 1)"]);
    let (_, u) = cmd(&mut c, "j", "LIST \"\" %").await;
    assert!(
        u.iter()
            .any(|l| l.contains("\\Junk") && l.ends_with("\"Junk\"")),
        "{u:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_search_over_many_messages() {
    let s = start("").await;
    let mut c = s.smtp_session().await;
    for i in 0..40 {
        let extra = if i % 10 == 3 { "X-Tag: needle\r\n" } else { "" };
        let subject = if i == 7 {
            "=?utf-8?q?caf=C3=A9?="
        } else {
            "plain"
        };
        let msg =
            format!("From: a{i}@remote.test\r\nSubject: {subject}\r\n{extra}\r\nbody {i}\r\n");
        send_message(&mut c, "a@remote.test", &[ALICE], msg.as_bytes())
            .await
            .unwrap();
    }
    let mut c = login(&s).await;
    cmd(&mut c, "a", "SELECT INBOX").await;
    let (_, u) = cmd(&mut c, "b", "UID SEARCH HEADER X-Tag needle").await;
    assert_eq!(u, vec!["* SEARCH 4 14 24 34"]);
    let (_, u) = cmd(&mut c, "c", "SEARCH CHARSET UTF-8 SUBJECT {5+}\r\ncafé").await;
    assert_eq!(u, vec!["* SEARCH 8"], "encoded words are decoded");
    let (_, u) = cmd(&mut c, "d", "SEARCH FROM a39@ NOT HEADER X-Tag \"\"").await;
    assert_eq!(u, vec!["* SEARCH 40"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sort_thread_esearch_quota() {
    let s = start("").await;
    s.store.set_password(&addr(ALICE), ALICE_PW).await.unwrap();
    let mut c = s.smtp_session().await;
    let msgs = [
        "From: Zed <zed@remote.test>\r\nSubject: Hello\r\nMessage-ID: <a@x>\r\nDate: Mon, 2 Jan 2023 10:00:00 +0000\r\n\r\nfirst\r\n",
        "From: Amy <amy@remote.test>\r\nSubject: Re: Hello\r\nMessage-ID: <b@x>\r\nIn-Reply-To: <a@x>\r\nDate: Mon, 2 Jan 2023 11:00:00 +0000\r\n\r\nsecond, a longer body than the others\r\n",
        "From: Bob <bob@remote.test>\r\nSubject: Other topic\r\nMessage-ID: <c@x>\r\nDate: Mon, 2 Jan 2023 09:00:00 +0000\r\n\r\nthird\r\n",
        "From: Amy <amy@remote.test>\r\nSubject: Fwd: hello\r\nMessage-ID: <d@x>\r\nReferences: <a@x> <b@x>\r\nDate: Mon, 2 Jan 2023 12:00:00 +0000\r\n\r\nfourth\r\n",
    ];
    for m in msgs {
        send_message(&mut c, "x@remote.test", &[ALICE], m.as_bytes())
            .await
            .unwrap();
    }
    let mut c = login(&s).await;
    cmd(&mut c, "a", "SELECT INBOX").await;
    let (_, u) = cmd(&mut c, "b", "SORT (DATE) UTF-8 ALL").await;
    assert_eq!(u, vec!["* SORT 3 1 2 4"]);
    let (_, u) = cmd(&mut c, "c", "SORT (FROM REVERSE SIZE) UTF-8 ALL").await;
    assert_eq!(u, vec!["* SORT 2 4 3 1"]);
    let (_, u) = cmd(&mut c, "d", "UID SORT (SUBJECT) UTF-8 NOT FROM bob").await;
    assert_eq!(u, vec!["* SORT 1 2 4"]);
    let (_, u) = cmd(&mut c, "e", "THREAD ORDEREDSUBJECT UTF-8 ALL").await;
    assert_eq!(u, vec!["* THREAD (3)(1 (2)(4))"]);
    let (_, u) = cmd(&mut c, "f", "THREAD REFERENCES UTF-8 ALL").await;
    assert_eq!(u, vec!["* THREAD (3)(1 2 4)"]);
    let (_, u) = cmd(&mut c, "g", "SEARCH RETURN (MIN MAX COUNT) FROM amy").await;
    assert_eq!(u, vec!["* ESEARCH (TAG \"g\") MIN 2 MAX 4 COUNT 2"]);
    let (_, u) = cmd(&mut c, "h", "UID SEARCH RETURN () ALL").await;
    assert_eq!(u, vec!["* ESEARCH (TAG \"h\") UID ALL 1:4"]);
    let (_, u) = cmd(&mut c, "i", "GETQUOTAROOT INBOX").await;
    assert_eq!(u[0], "* QUOTAROOT \"INBOX\" \"\"");
    assert!(u[1].starts_with("* QUOTA \"\" ("), "{u:?}");
    let (r, _) = cmd(&mut c, "j", "SETQUOTA \"\" (STORAGE 10)").await;
    assert!(r.starts_with("NO"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_extended_and_list_status() {
    let s = start("").await;
    deliver(&s, "one", "x").await;
    let mut c = login(&s).await;
    cmd(&mut c, "a", "UNSUBSCRIBE Trash").await;
    let (_, u) = cmd(&mut c, "b", "LIST (SPECIAL-USE) \"\" \"*\"").await;
    assert_eq!(u.len(), 5, "{u:?}");
    assert!(u.iter().all(|l| !l.ends_with("\"INBOX\"")));
    let (_, u) = cmd(&mut c, "c", "LIST (SUBSCRIBED) \"\" \"*\"").await;
    assert!(
        u.iter()
            .all(|l| l.contains("\\Subscribed") && !l.contains("Trash")),
        "{u:?}"
    );
    let (r, u) = cmd(
        &mut c,
        "d",
        "LIST \"\" INBOX RETURN (STATUS (MESSAGES UNSEEN UIDNEXT))",
    )
    .await;
    assert!(r.starts_with("OK"), "{r}");
    assert_eq!(
        u,
        vec![
            "* LIST (\\HasNoChildren) \"/\" \"INBOX\"",
            "* STATUS \"INBOX\" (MESSAGES 1 UNSEEN 1 UIDNEXT 2)"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searchres_and_rev2_esearch() {
    let s = start("").await;
    for i in 0..3 {
        deliver(&s, &format!("m{i}"), "x").await;
    }
    let mut c = login(&s).await;
    cmd(&mut c, "a", "SELECT INBOX").await;
    let (_, u) = cmd(&mut c, "b", "UID SEARCH RETURN (SAVE) SUBJECT m1").await;
    assert!(u.is_empty(), "SAVE alone returns nothing: {u:?}");
    let (_, u) = cmd(&mut c, "c", "FETCH $ (UID)").await;
    assert_eq!(u, vec!["* 2 FETCH (UID 2)"]);
    let (_, u) = cmd(&mut c, "d", "UID STORE $ +FLAGS.SILENT (\\Flagged)").await;
    assert!(u.is_empty(), "{u:?}");
    let (_, u) = cmd(&mut c, "e", "SEARCH FLAGGED").await;
    assert_eq!(u, vec!["* SEARCH 2"]);
    let (_, u) = cmd(&mut c, "f", "ENABLE IMAP4rev2").await;
    assert_eq!(u, vec!["* ENABLED IMAP4rev2"]);
    let (_, u) = cmd(&mut c, "g", "SEARCH ALL").await;
    assert_eq!(u, vec!["* ESEARCH (TAG \"g\") ALL 1:3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn condstore_and_qresync() {
    let s = start("").await;
    for i in 0..4 {
        deliver(&s, &format!("q{i}"), "x").await;
    }
    let mut a = login(&s).await;
    let (_, u) = cmd(&mut a, "a", "ENABLE QRESYNC").await;
    assert_eq!(u, vec!["* ENABLED QRESYNC"]);
    let (_, u) = cmd(&mut a, "b", "SELECT INBOX").await;
    let validity: u32 = u
        .iter()
        .find_map(|l| l.strip_prefix("* OK [UIDVALIDITY "))
        .and_then(|r| r.split(']').next())
        .unwrap()
        .parse()
        .unwrap();
    let modseq: u64 = u
        .iter()
        .find_map(|l| l.strip_prefix("* OK [HIGHESTMODSEQ "))
        .and_then(|r| r.split(']').next())
        .unwrap()
        .parse()
        .unwrap();
    cmd(&mut a, "c", "LOGOUT").await;

    // Another client changes a flag and expunges a message.
    let mut b = login(&s).await;
    cmd(&mut b, "a", "SELECT INBOX").await;
    cmd(&mut b, "b", "STORE 1 +FLAGS (\\Seen)").await;
    cmd(&mut b, "c", "STORE 2 +FLAGS.SILENT (\\Deleted)").await;
    cmd(&mut b, "d", "EXPUNGE").await;

    // The first client comes back and resynchronises in one round trip.
    let mut a = login(&s).await;
    cmd(&mut a, "a", "ENABLE QRESYNC").await;
    let (r, u) = cmd(
        &mut a,
        "b",
        &format!("SELECT INBOX (QRESYNC ({validity} {modseq}))"),
    )
    .await;
    assert!(r.starts_with("OK"), "{r}");
    assert!(u.contains(&"* VANISHED (EARLIER) 2".to_string()), "{u:?}");
    assert!(
        u.iter()
            .any(|l| l.starts_with("* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ (")),
        "{u:?}"
    );
    let (_, u) = cmd(
        &mut a,
        "c",
        &format!("UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)"),
    )
    .await;
    assert_eq!(u[0], "* VANISHED (EARLIER) 2");
    assert_eq!(u.len(), 2, "only the changed message: {u:?}");
    // Expunges while selected come as VANISHED.
    cmd(&mut b, "e", "STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    cmd(&mut b, "f", "EXPUNGE").await;
    let (_, u) = cmd(&mut a, "d", "NOOP").await;
    assert_eq!(u[0], "* VANISHED 1", "{u:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages() {
    let s = start("").await;
    let account = s
        .store
        .list_accounts(None)
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.address == ALICE)
        .unwrap()
        .id;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10_000u32 {
        let store = s.store.clone();
        let tag = if i % 100 == 0 {
            "X-Tag: needle\r\n"
        } else {
            ""
        };
        let raw =
            format!("From: s{i}@remote.test\r\nSubject: message {i}\r\n{tag}\r\nbody {i}\r\n")
                .into_bytes();
        tasks.spawn(async move {
            store
                .deliver(tern_store::NewMessage::local(
                    format!("Q{i}"),
                    raw,
                    "s@remote.test".into(),
                    vec![account],
                    tern_core::now_unix(),
                    "{}".into(),
                ))
                .await
                .unwrap()
        });
        if tasks.len() >= 256 {
            tasks.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let mut c = login(&s).await;
    c.timeout = std::time::Duration::from_secs(60);
    let (_, u) = cmd(&mut c, "a", "SELECT INBOX").await;
    assert!(u.contains(&"* 10000 EXISTS".to_string()));
    assert!(u.contains(&"* 10000 RECENT".to_string()));
    let (r, u) = cmd(&mut c, "b", "FETCH 1:* (UID FLAGS)").await;
    assert!(r.starts_with("OK"));
    assert_eq!(u.len(), 10_000);
    assert_eq!(u[9_999], "* 10000 FETCH (UID 10000 FLAGS (\\Recent))");
    let (_, u) = cmd(&mut c, "c", "UID SEARCH HEADER X-Tag needle").await;
    assert_eq!(u[0].split(' ').count(), 2 + 100);
    let (_, u) = cmd(&mut c, "d", "SEARCH RETURN (COUNT) SUBJECT \"message 99\"").await;
    assert_eq!(
        u,
        vec!["* ESEARCH (TAG \"d\") COUNT 111"],
        "99, 990-999, 9900-9999"
    );
    cmd(&mut c, "e", "STORE 5001:* +FLAGS.SILENT (\\Deleted)").await;
    let (_, u) = cmd(&mut c, "f", "EXPUNGE").await;
    assert_eq!(u.iter().filter(|l| l.ends_with(" EXPUNGE")).count(), 5_000);
    let (_, u) = cmd(&mut c, "g", "STATUS INBOX (MESSAGES)").await;
    assert_eq!(u, vec!["* STATUS \"INBOX\" (MESSAGES 5000)"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noise_and_odd_commands_never_kill_the_server() {
    let s = start("").await;
    deliver(&s, "x", "y").await;
    let mut c = login(&s).await;
    cmd(&mut c, "s", "SELECT INBOX").await;
    let odd = [
        "a FETCH 0 FLAGS",
        "b FETCH 4294967295 (BODY[1.2.3.4.5])",
        "c FETCH 1 (BODY[99] BODY[1.MIME] BODY[HEADER.FIELDS.NOT (X)]<5.0> BINARY[7] BINARY.SIZE[1])",
        "d UID FETCH 1:* (BODY.PEEK[TEXT]<4294967295.10>)",
        "e STORE 1:* FLAGS (\\Seen $x $y)",
        "f SEARCH OR OR OR ALL NOT ALL UNSEEN LARGER 4294967295",
        "g UID SEARCH UID 4294967295:1",
        "h COPY 1 \"\"",
        "i RENAME INBOX INBOX",
        "j CREATE \"a/%/b\"",
        "k SORT (DATE) UTF-8 SUBJECT {3+}\r\nabc",
        "l THREAD REFERENCES UTF-8 NOT ALL",
        "m LIST \"\" \"*%*%*%*%*%*%*%*%*%*%*%*\"",
        "n UID FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)",
        "o GETQUOTAROOT Nowhere",
    ];
    for line in odd {
        let tag = &line[..1];
        let (r, _) = cmd(&mut c, tag, &line[2..]).await;
        assert!(
            r.starts_with("OK") || r.starts_with("NO") || r.starts_with("BAD"),
            "{line}: {r}"
        );
    }
    let mut x: u32 = 7;
    let mut noise = Vec::new();
    for _ in 0..20_000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let b = (x >> 16) as u8;
        noise.push(if b == b'{' { b'x' } else { b });
    }
    // The server may answer BYE and close while the noise is still being
    // sent: a broken pipe here is a correct outcome, not a failure.
    let _ = c.send(&noise).await;
    let _ = c.send(b"\r\nz NOOP\r\n").await;
    loop {
        match c.line().await {
            Ok(Some(l)) if l.starts_with("z ") || l.starts_with("* BYE") => break,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let mut again = login(&s).await;
    let (r, u) = cmd(&mut again, "a", "SELECT INBOX").await;
    assert!(
        r.starts_with("OK") && u.contains(&"* 1 EXISTS".to_string()),
        "{r} {u:?}"
    );
}

/// RFC 3516: `BINARY[]` and `BINARY.SIZE[]` with an empty section are the
/// whole message (§4.2); decoded content holding NUL goes out as a
/// `literal8`, never in a plain literal (§4.3, RFC 9051 §4.3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_whole_message_and_nul_as_literal8() {
    let s = start("").await;
    let mut smtp = s.smtp_session().await;
    let msg = "From: Bob <bob@remote.test>\r\nTo: alice@example.test\r\nSubject: bin\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECA2hp\r\n";
    let (code, _) = send_message(&mut smtp, "bob@remote.test", &[ALICE], msg.as_bytes())
        .await
        .unwrap();
    assert_eq!(code, 250);
    let mut c = login(&s).await;
    cmd(&mut c, "a", "SELECT INBOX").await;
    let (r, u) = cmd(&mut c, "b", "FETCH 1 (RFC822.SIZE BINARY.SIZE[])").await;
    assert!(r.starts_with("OK"), "{r}");
    let line = &u[0];
    let size: usize = line
        .split("RFC822.SIZE ")
        .nth(1)
        .and_then(|x| x.split([' ', ')']).next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        line.contains(&format!("BINARY.SIZE[] {size}")),
        "BINARY.SIZE[] is the whole message: {line}"
    );
    let (r, u) = cmd(&mut c, "c", "FETCH 1 (BINARY.PEEK[])").await;
    assert!(r.starts_with("OK"), "{r}");
    assert!(
        u[0].ends_with(&format!("BINARY[] {{{size}}}")),
        "the whole message: {u:?}"
    );
    // The decoded body holds NUL: a literal8.
    c.cmd("d FETCH 1 (BINARY.PEEK[1])").await.unwrap();
    let first = c.line().await.unwrap().unwrap();
    assert!(first.ends_with("BINARY[1] ~{6}"), "{first}");
}

/// RFC 5182: `$` is the saved result only where a sequence set may stand;
/// inside a quoted string or as a search key's string it is a dollar sign.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dollar_in_a_string_is_not_the_saved_result() {
    let s = start("").await;
    deliver(&s, "plain", "x").await;
    deliver(&s, "costs a $ b", "x").await;
    deliver(&s, "$", "x").await;
    let mut c = login(&s).await;
    cmd(&mut c, "a", "SELECT INBOX").await;
    cmd(&mut c, "b", "SEARCH RETURN (SAVE) SUBJECT plain").await;
    let (_, u) = cmd(&mut c, "c", "SEARCH SUBJECT \"a $ b\"").await;
    assert_eq!(u, vec!["* SEARCH 2"]);
    let (_, u) = cmd(&mut c, "d", "SEARCH $").await;
    assert_eq!(u, vec!["* SEARCH 1"], "the saved result");
    let (_, u) = cmd(&mut c, "e", "SEARCH SUBJECT $").await;
    assert_eq!(u, vec!["* SEARCH 2 3"], "a dollar sign in subjects");
}

/// RFC 9051 §6.4.5: the part numbers after a `message/rfc822` part
/// address the parts of the message inside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_inside_an_attached_message() {
    let s = start("").await;
    let msg = "From: Bob <bob@remote.test>\r\nTo: alice@example.test\r\nSubject: fwd\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n--outer\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--outer\r\nContent-Type: message/rfc822\r\n\r\nFrom: Carol <carol@remote.test>\r\nSubject: inner\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n--inner\r\nContent-Type: text/plain\r\n\r\nINNER-PLAIN\r\n--inner\r\nContent-Type: text/html\r\n\r\n<p>INNER-HTML</p>\r\n--inner--\r\n\r\n--outer--\r\n";
    let mut smtp = s.smtp_session().await;
    let (code, _) = send_message(&mut smtp, "bob@remote.test", &[ALICE], msg.as_bytes())
        .await
        .unwrap();
    assert_eq!(code, 250);
    let mut c = login(&s).await;
    cmd(&mut c, "a", "SELECT INBOX").await;
    for (section, want, not) in [
        ("2.1", "INNER-PLAIN", "INNER-HTML"),
        ("2.2", "INNER-HTML", "INNER-PLAIN"),
        ("2.HEADER", "Subject: inner", "INNER-PLAIN"),
        ("2.TEXT", "INNER-PLAIN", "Subject: inner"),
        ("1", "see attached", "INNER"),
        // A leaf part has no parts below it.
        ("1.1", "BODY[1.1] {0}", "see attached"),
        ("2.1.1", "BODY[2.1.1] {0}", "INNER-PLAIN"),
    ] {
        c.cmd(&format!("f FETCH 1 (BODY.PEEK[{section}])"))
            .await
            .unwrap();
        let mut text = String::new();
        loop {
            let l = c.line().await.unwrap().unwrap();
            if l.starts_with("f ") {
                assert!(l.starts_with("f OK"), "{l}");
                break;
            }
            text.push_str(&l);
            text.push('\n');
        }
        assert!(text.contains(want), "BODY[{section}] has {want}: {text}");
        assert!(!text.contains(not), "BODY[{section}] lacks {not}: {text}");
    }
}

/// RFC 9051 §7.3.5: FLAGS lists the keywords used in the mailbox; a new
/// keyword brings FLAGS and PERMANENTFLAGS before the FETCH that shows it,
/// to the session that set it and to others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keywords_are_announced_in_flags() {
    let s = start("").await;
    deliver(&s, "k", "x").await;
    let mut a = login(&s).await;
    let mut b = login(&s).await;
    let (_, u) = cmd(&mut a, "a1", "SELECT INBOX").await;
    assert!(
        u.contains(&"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)".to_string()),
        "{u:?}"
    );
    cmd(&mut b, "b1", "SELECT INBOX").await;
    let (_, u) = cmd(&mut a, "a2", "STORE 1 +FLAGS ($Label1)").await;
    let flags = u
        .iter()
        .position(|l| l.starts_with("* FLAGS (") && l.contains("$Label1"));
    let perm = u
        .iter()
        .position(|l| l.contains("[PERMANENTFLAGS (") && l.contains("$Label1 \\*)"));
    let fetch = u.iter().position(|l| l.starts_with("* 1 FETCH"));
    assert!(
        flags.is_some() && perm.is_some() && fetch.is_some(),
        "{u:?}"
    );
    assert!(
        flags < fetch && perm < fetch,
        "announced before the FETCH: {u:?}"
    );
    let (_, u) = cmd(&mut b, "b2", "NOOP").await;
    let flags = u
        .iter()
        .position(|l| l.starts_with("* FLAGS (") && l.contains("$Label1"));
    let fetch = u.iter().position(|l| l.starts_with("* 1 FETCH"));
    assert!(flags.is_some() && flags < fetch, "{u:?}");
    let mut c = login(&s).await;
    let (_, u) = cmd(&mut c, "c1", "SELECT INBOX").await;
    assert!(
        u.contains(&"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1)".to_string()),
        "{u:?}"
    );
}

/// RFC 3501 §6.3.9: `LSUB "" a%` returns an unsubscribed `a` with a
/// subscribed `a/b` as `\Noselect`; with `*` only the subscribed names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lsub_percent_shows_unsubscribed_parents_as_noselect() {
    let s = start("").await;
    let mut c = login(&s).await;
    cmd(&mut c, "a", "CREATE Lists/tern").await;
    cmd(&mut c, "b", "SUBSCRIBE Lists/tern").await;
    cmd(&mut c, "c", "UNSUBSCRIBE Lists").await;
    let (r, u) = cmd(&mut c, "d", "LSUB \"\" Lis%").await;
    assert!(r.starts_with("OK"), "{r}");
    assert_eq!(u, vec!["* LSUB (\\Noselect) \"/\" \"Lists\""]);
    let (_, u) = cmd(&mut c, "e", "LSUB \"\" Lists/%").await;
    assert_eq!(u.len(), 1, "{u:?}");
    assert!(u[0].ends_with("\"/\" \"Lists/tern\""), "{u:?}");
    let (_, u) = cmd(&mut c, "f", "LSUB \"\" Lis*").await;
    assert_eq!(u.len(), 1, "{u:?}");
    assert!(u[0].ends_with("Lists/tern\""), "{u:?}");
}

/// RFC 7162 §3.1: FETCH MODSEQ, SEARCH MODSEQ and STORE UNCHANGEDSINCE
/// enable CONDSTORE: the first is answered with HIGHESTMODSEQ, and from
/// then on every FETCH caused by a flag change carries UID and MODSEQ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn condstore_is_enabled_by_its_commands() {
    let s = start("").await;
    deliver(&s, "c", "x").await;
    let mut c = login(&s).await;
    let (_, u) = cmd(&mut c, "a", "SELECT INBOX").await;
    assert!(!u.iter().any(|l| l.contains("NOMODSEQ")), "{u:?}");
    let (_, u) = cmd(&mut c, "b", "FETCH 1 (FLAGS MODSEQ)").await;
    assert!(u[0].starts_with("* OK [HIGHESTMODSEQ "), "{u:?}");
    assert!(u[1].contains("MODSEQ ("), "{u:?}");
    let (_, u) = cmd(&mut c, "c", "FETCH 1 (FLAGS MODSEQ)").await;
    assert!(
        !u.iter().any(|l| l.contains("HIGHESTMODSEQ")),
        "once: {u:?}"
    );
    let (_, u) = cmd(&mut c, "d", "STORE 1 +FLAGS (\\Flagged)").await;
    assert!(
        u[0].starts_with("* 1 FETCH (UID 1 FLAGS (") && u[0].contains("MODSEQ ("),
        "{u:?}"
    );
    let mut d = login(&s).await;
    cmd(&mut d, "a", "SELECT INBOX").await;
    let (_, u) = cmd(&mut d, "b", "SEARCH MODSEQ 1").await;
    assert!(u[0].starts_with("* OK [HIGHESTMODSEQ "), "{u:?}");
    // The answer carries the highest MODSEQ of what it found (§3.1.5).
    assert!(
        u[1].starts_with("* SEARCH 1 (MODSEQ ") && u[1].ends_with(')'),
        "{u:?}"
    );
    let (_, u) = cmd(&mut d, "c", "SEARCH RETURN (ALL) MODSEQ 1").await;
    assert!(u[0].contains("ALL 1 MODSEQ "), "{u:?}");
    let (_, u) = cmd(&mut d, "d", "SEARCH MODSEQ 999999").await;
    assert_eq!(u, vec!["* SEARCH"], "nothing found, no MODSEQ");
}

/// Appends `msg` to INBOX with a non-synchronizing literal (LITERAL+).
async fn append(c: &mut LineClient, tag: &str, msg: &str) {
    let (r, _) = cmd(c, tag, &format!("APPEND INBOX {{{}+}}\r\n{msg}", msg.len())).await;
    assert!(r.starts_with("OK"), "{r}");
}

/// RFC 9051 §6.4.4 and §7.5.2 with RFC 5322 Appendix A.5's oddities:
/// SEARCH FROM/TO finds addresses written with comments and folding, as
/// the ENVELOPE shows them; a source route is the address's second field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_with_comments_and_source_routes() {
    let s = start("").await;
    let mut c = login(&s).await;
    append(
        &mut c,
        "a",
        "From: Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>\r\n\
         To:A Group(Some people)\r\n     :Chris Jones <c@(Chris's host.)public.example>,\r\n         \
         joe@example.org,\r\n  John <jdoe@one.test> (my dear friend); (the end of the group)\r\n\
         Cc:(Empty list)(start)Hidden recipients  :(nobody(that I know))  ;\r\n\
         Date: Thu,\r\n      13\r\n        Feb\r\n          1969\r\n      23:32\r\n               -0330 (Newfoundland Time)\r\n\
         Message-ID:              <testabcd.1234@silly.test>\r\n\r\nTesting.\r\n",
    )
    .await;
    append(
        &mut c,
        "b",
        "From: Joe <@relay.example,@gw.example:joe@example.com>\r\nSubject: routed\r\n\r\nx\r\n",
    )
    .await;
    cmd(&mut c, "c", "SELECT INBOX").await;
    for (tag, search, want) in [
        ("d", "SEARCH FROM pete@silly.test", "* SEARCH 1"),
        ("e", "SEARCH TO c@public.example", "* SEARCH 1"),
        ("f", "SEARCH TO \"John <jdoe@one.test>\"", "* SEARCH 1"),
        ("g", "SEARCH FROM \"his account\"", "* SEARCH"),
        ("h", "SEARCH FROM joe@example.com", "* SEARCH 2"),
    ] {
        let (r, u) = cmd(&mut c, tag, search).await;
        assert!(r.starts_with("OK"), "{r}");
        assert_eq!(u, vec![want], "{search}");
    }
    let (_, u) = cmd(&mut c, "i", "FETCH 1:2 ENVELOPE").await;
    assert!(
        u[0].contains("((\"Pete\" NIL \"pete\" \"silly.test\"))"),
        "{u:?}"
    );
    assert!(
        u[0].contains("((NIL NIL \"A Group\" NIL)(\"Chris Jones\" NIL \"c\" \"public.example\")"),
        "{u:?}"
    );
    assert!(
        u[1].contains("((\"Joe\" \"@relay.example,@gw.example\" \"joe\" \"example.com\"))"),
        "{u:?}"
    );
}

/// RFC 5258 (LIST-EXTENDED): several patterns, SUBSCRIBED with
/// RECURSIVEMATCH and CHILDINFO, `\NonExistent` for a deleted subscribed
/// mailbox (DELETE does not unsubscribe, RFC 9051 §6.3.7) and for a
/// deleted parent under `%`, BAD for unknown options.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_extended_to_the_letter() {
    let s = start("").await;
    let mut c = login(&s).await;
    for (tag, line) in [
        ("a", "CREATE Foo/Bar"),
        ("b", "CREATE Baz"),
        ("b1", "SUBSCRIBE Foo/Bar"),
        ("b2", "SUBSCRIBE Baz"),
    ] {
        let (r, _) = cmd(&mut c, tag, line).await;
        assert!(r.starts_with("OK"), "{line}: {r}");
    }
    let (r, u) = cmd(
        &mut c,
        "d",
        "LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"Foo\" RETURN (CHILDREN)",
    )
    .await;
    assert!(r.starts_with("OK"), "{r}");
    assert_eq!(
        u,
        vec!["* LIST (\\HasChildren) \"/\" \"Foo\" (\"CHILDINFO\" (\"SUBSCRIBED\"))"]
    );
    let (_, u) = cmd(&mut c, "e", "LIST (SUBSCRIBED) \"\" \"Foo\"").await;
    assert!(u.is_empty(), "not subscribed, no RECURSIVEMATCH: {u:?}");
    let (_, u) = cmd(&mut c, "f", "LIST \"\" (\"INBOX\" \"Foo/*\" Baz)").await;
    assert_eq!(u.len(), 3, "{u:?}");
    assert!(
        u[0].ends_with("\"INBOX\"") && u[1].ends_with("\"Baz\"") && u[2].ends_with("\"Foo/Bar\""),
        "{u:?}"
    );

    let (r, _) = cmd(&mut c, "g", "DELETE Baz").await;
    assert!(r.starts_with("OK"), "{r}");
    let (_, u) = cmd(&mut c, "h", "LIST (SUBSCRIBED) \"\" \"B*\"").await;
    assert_eq!(u, vec!["* LIST (\\NonExistent \\Subscribed) \"/\" \"Baz\""]);
    let (_, u) = cmd(&mut c, "i", "LSUB \"\" \"B*\"").await;
    assert_eq!(u, vec!["* LSUB () \"/\" \"Baz\""], "LSUB lists the name");
    let (r, _) = cmd(&mut c, "j", "UNSUBSCRIBE Baz").await;
    assert!(
        r.starts_with("OK"),
        "a deleted mailbox can be unsubscribed: {r}"
    );
    let (_, u) = cmd(&mut c, "k", "LIST (SUBSCRIBED) \"\" \"B*\"").await;
    assert!(u.is_empty(), "{u:?}");

    let (r, _) = cmd(&mut c, "l", "DELETE Foo").await;
    assert!(r.starts_with("OK"), "{r}");
    let (_, u) = cmd(&mut c, "m", "LIST \"\" \"F%\"").await;
    assert_eq!(
        u,
        vec!["* LIST (\\HasChildren \\NonExistent) \"/\" \"Foo\""]
    );

    for (tag, line, word) in [
        ("n", "LIST (FOO) \"\" *", "FOO"),
        ("o", "LIST \"\" * RETURN (BAR)", "BAR"),
        ("p", "LIST (RECURSIVEMATCH) \"\" *", "RECURSIVEMATCH"),
    ] {
        let (r, _) = cmd(&mut c, tag, line).await;
        assert!(r.starts_with("BAD") && r.contains(word), "{line}: {r}");
    }
}

/// RFC 3501 §2.3.2 for IMAP4rev1 sessions: the first session to select a
/// mailbox read-write gets its new messages as `\Recent` (RECENT counts,
/// FETCH FLAGS, SEARCH RECENT/NEW/OLD), no other session does; EXAMINE and
/// STATUS look without taking; IMAP4rev2 sessions see none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recent_for_imap4rev1_sessions() {
    let s = start("").await;
    deliver(&s, "r1", "x").await;
    deliver(&s, "r2", "x").await;
    let mut c = login(&s).await;
    let (_, u) = cmd(&mut c, "a", "STATUS INBOX (MESSAGES RECENT)").await;
    assert_eq!(u, vec!["* STATUS \"INBOX\" (MESSAGES 2 RECENT 2)"]);
    let (_, u) = cmd(&mut c, "b", "EXAMINE INBOX").await;
    assert!(u.contains(&"* 2 RECENT".to_string()), "{u:?}");
    let (_, u) = cmd(&mut c, "c", "STATUS INBOX (RECENT)").await;
    assert_eq!(
        u,
        vec!["* STATUS \"INBOX\" (RECENT 2)"],
        "EXAMINE takes none"
    );
    let (_, u) = cmd(&mut c, "d", "SELECT INBOX").await;
    assert!(u.contains(&"* 2 RECENT".to_string()), "{u:?}");
    let (_, u) = cmd(&mut c, "e", "FETCH 1 FLAGS").await;
    assert_eq!(u, vec!["* 1 FETCH (FLAGS (\\Recent))"]);
    let (_, u) = cmd(&mut c, "f", "STORE 1 +FLAGS.SILENT (\\Seen \\Recent)").await;
    assert!(u.is_empty(), "{u:?}");
    for (tag, search, want) in [
        ("g", "SEARCH RECENT", "* SEARCH 1 2"),
        ("h", "SEARCH NEW", "* SEARCH 2"),
        ("i", "SEARCH OLD", "* SEARCH"),
    ] {
        let (_, u) = cmd(&mut c, tag, search).await;
        assert_eq!(u, vec![want], "{search}");
    }
    let (_, u) = cmd(&mut c, "j", "STATUS INBOX (RECENT)").await;
    assert_eq!(u, vec!["* STATUS \"INBOX\" (RECENT 0)"]);

    let mut d = login(&s).await;
    let (_, u) = cmd(&mut d, "a", "SELECT INBOX").await;
    assert!(u.contains(&"* 0 RECENT".to_string()), "{u:?}");
    let (_, u) = cmd(&mut d, "b", "FETCH 1:2 FLAGS").await;
    assert_eq!(
        u,
        vec!["* 1 FETCH (FLAGS (\\Seen))", "* 2 FETCH (FLAGS ())"],
        "a client cannot store \\Recent; another session's are not shown"
    );

    deliver(&s, "r3", "x").await;
    let (_, u) = cmd(&mut c, "k", "NOOP").await;
    assert_eq!(u, vec!["* 3 EXISTS", "* 3 RECENT"]);
    let (_, u) = cmd(&mut d, "c", "NOOP").await;
    assert_eq!(u, vec!["* 3 EXISTS", "* 0 RECENT"]);

    let mut e = login(&s).await;
    cmd(&mut e, "a", "ENABLE IMAP4rev2").await;
    let (_, u) = cmd(&mut e, "b", "SELECT INBOX").await;
    assert!(!u.iter().any(|l| l.contains("RECENT")), "{u:?}");
}

/// RFC 5464 (METADATA): server and mailbox annotations set and read back
/// (DEPTH, MAXSIZE → LONGENTRIES), NIL removes, limits answered with their
/// response codes, entries follow RENAME and go with DELETE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_annotations() {
    let s = start("").await;
    let mut c = login(&s).await;
    let (r, _) = cmd(
        &mut c,
        "a",
        "SETMETADATA INBOX (/private/comment \"My own\" /shared/comment \"Everyone's\" /private/vendor/tern/a \"1\" /private/vendor/tern/a/b \"2\")",
    )
    .await;
    assert!(r.starts_with("OK"), "{r}");
    let (_, u) = cmd(&mut c, "b", "GETMETADATA INBOX /private/comment").await;
    assert_eq!(
        u,
        vec!["* METADATA \"INBOX\" (\"/private/comment\" \"My own\")"]
    );
    let (_, u) = cmd(
        &mut c,
        "c",
        "GETMETADATA INBOX (/shared/comment /private/none)",
    )
    .await;
    assert_eq!(
        u,
        vec!["* METADATA \"INBOX\" (\"/shared/comment\" \"Everyone's\")"]
    );
    let (_, u) = cmd(
        &mut c,
        "d",
        "GETMETADATA (DEPTH 1) INBOX /private/vendor/tern",
    )
    .await;
    assert_eq!(
        u,
        vec!["* METADATA \"INBOX\" (\"/private/vendor/tern/a\" \"1\")"]
    );
    let (_, u) = cmd(
        &mut c,
        "e",
        "GETMETADATA (DEPTH infinity) INBOX /private/vendor",
    )
    .await;
    assert_eq!(
        u,
        vec![
            "* METADATA \"INBOX\" (\"/private/vendor/tern/a\" \"1\" \"/private/vendor/tern/a/b\" \"2\")"
        ]
    );
    let (r, u) = cmd(
        &mut c,
        "f",
        "GETMETADATA (MAXSIZE 3) INBOX (/private/comment /shared/comment)",
    )
    .await;
    assert!(u.is_empty(), "{u:?}");
    assert!(r.starts_with("OK [METADATA LONGENTRIES 10]"), "{r}");
    let (r, _) = cmd(
        &mut c,
        "g",
        "SETMETADATA \"\" (/private/vendor/client/theme \"dark\")",
    )
    .await;
    assert!(r.starts_with("OK"), "server annotations: {r}");
    let (_, u) = cmd(&mut c, "h", "GETMETADATA \"\" /private/vendor/client/theme").await;
    assert_eq!(
        u,
        vec!["* METADATA \"\" (\"/private/vendor/client/theme\" \"dark\")"]
    );
    let (r, _) = cmd(&mut c, "i", "SETMETADATA INBOX (/private/comment NIL)").await;
    assert!(r.starts_with("OK"), "{r}");
    let (_, u) = cmd(&mut c, "j", "GETMETADATA INBOX /private/comment").await;
    assert!(u.is_empty(), "removed: {u:?}");
    let big = "x".repeat(70_000);
    let (r, _) = cmd(
        &mut c,
        "k",
        &format!(
            "SETMETADATA INBOX (/private/big {{{}+}}\r\n{big})",
            big.len()
        ),
    )
    .await;
    assert!(r.starts_with("NO [METADATA MAXSIZE 65536]"), "{r}");
    for (tag, line, want) in [
        ("l", "SETMETADATA INBOX (/other/x \"1\")", "BAD"),
        (
            "m",
            "SETMETADATA Nowhere (/private/x \"1\")",
            "NO [NONEXISTENT]",
        ),
        ("n", "GETMETADATA INBOX /private/a*", "BAD"),
    ] {
        let (r, _) = cmd(&mut c, tag, line).await;
        assert!(r.starts_with(want), "{line}: {r}");
    }
    cmd(&mut c, "o", "CREATE Projects").await;
    cmd(
        &mut c,
        "p",
        "SETMETADATA Projects (/private/comment \"work\")",
    )
    .await;
    cmd(&mut c, "q", "RENAME Projects Work").await;
    let (_, u) = cmd(&mut c, "r", "GETMETADATA Work /private/comment").await;
    assert_eq!(
        u,
        vec!["* METADATA \"Work\" (\"/private/comment\" \"work\")"]
    );
    cmd(&mut c, "s", "DELETE Work").await;
    cmd(&mut c, "t", "CREATE Work").await;
    let (_, u) = cmd(&mut c, "u", "GETMETADATA Work /private/comment").await;
    assert!(u.is_empty(), "a new mailbox starts bare: {u:?}");
}

/// RFC 8474 (OBJECTID), RFC 8514 (SAVEDATE), RFC 8970 (PREVIEW): ids that
/// survive COPY and RENAME, found again by SEARCH; save dates; previews.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objectid_savedate_preview() {
    let s = start("").await;
    deliver(&s, "ids", "Hello   there,\r\nthis is the text.").await;
    let mut c = login(&s).await;
    let (r, _) = cmd(&mut c, "a", "CREATE Keep").await;
    assert!(r.starts_with("OK [MAILBOXID (F"), "{r}");
    let (_, u) = cmd(&mut c, "b", "SELECT INBOX").await;
    let inbox_id = u
        .iter()
        .find_map(|l| l.strip_prefix("* OK [MAILBOXID ("))
        .and_then(|l| l.split(')').next())
        .expect("MAILBOXID on SELECT")
        .to_string();
    let (_, u) = cmd(&mut c, "c", "STATUS INBOX (MAILBOXID)").await;
    assert_eq!(
        u,
        vec![format!("* STATUS \"INBOX\" (MAILBOXID ({inbox_id}))")]
    );
    let (r, u) = cmd(&mut c, "d", "FETCH 1 (EMAILID THREADID PREVIEW SAVEDATE)").await;
    assert!(r.starts_with("OK"), "{r}");
    let line = &u[0];
    assert!(line.contains("THREADID NIL"), "{line}");
    assert!(
        line.contains("PREVIEW \"Hello there, this is the text.\""),
        "{line}"
    );
    assert!(line.contains("SAVEDATE \""), "{line}");
    let email_id = line
        .split("EMAILID (")
        .nth(1)
        .and_then(|l| l.split(')').next())
        .unwrap()
        .to_string();
    cmd(&mut c, "e", "COPY 1 Keep").await;
    let (_, u) = cmd(&mut c, "f", &format!("SEARCH EMAILID {email_id}")).await;
    assert_eq!(u, vec!["* SEARCH 1"]);
    let (_, u) = cmd(&mut c, "g", "SEARCH NOT EMAILID Mnothing").await;
    assert_eq!(u, vec!["* SEARCH 1"]);
    let (_, u) = cmd(
        &mut c,
        "h",
        "SEARCH SAVEDSINCE 1-Jan-2000 SAVEDATESUPPORTED",
    )
    .await;
    assert_eq!(u, vec!["* SEARCH 1"]);
    let (_, u) = cmd(&mut c, "i", "SEARCH SAVEDBEFORE 1-Jan-2000").await;
    assert_eq!(u, vec!["* SEARCH"]);
    let (_, u) = cmd(&mut c, "j", "SEARCH SUBJECT EMAILID").await;
    assert_eq!(u, vec!["* SEARCH"], "a string argument is not a key");
    cmd(&mut c, "k", "RENAME Keep Kept").await;
    cmd(&mut c, "l", "SELECT Kept").await;
    let (_, u) = cmd(&mut c, "m", "UID FETCH 1 EMAILID").await;
    assert_eq!(
        u,
        vec![format!("* 1 FETCH (UID 1 EMAILID ({email_id}))")],
        "COPY keeps it"
    );
    let (_, u) = cmd(&mut c, "n", "LIST \"\" Kept RETURN (STATUS (MAILBOXID))").await;
    assert!(u[1].starts_with("* STATUS \"Kept\" (MAILBOXID (F"), "{u:?}");
}

/// RFC 3502 (MULTIAPPEND: all or none), RFC 4469 (CATENATE: text and a
/// part of a stored message by IMAP URL), RFC 8508 (REPLACE: append and
/// expunge in one step).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiappend_catenate_replace() {
    let s = start("").await;
    let mut c = login(&s).await;
    let m1 = "Subject: one\r\n\r\nfirst\r\n";
    let m2 = "Subject: two\r\n\r\nsecond\r\n";
    let (r, _) = cmd(
        &mut c,
        "a",
        &format!(
            "APPEND Drafts (\\Seen) {{{}+}}\r\n{m1} \" 1-Feb-2026 10:00:00 +0000\" {{{}+}}\r\n{m2}",
            m1.len(),
            m2.len()
        ),
    )
    .await;
    assert!(
        r.starts_with("OK [APPENDUID ") && r.contains(" 1:2] "),
        "{r}"
    );
    // One bad message fails the lot: nothing is added.
    let (r, _) = cmd(
        &mut c,
        "b",
        &format!(
            "APPEND Drafts {{{}+}}\r\n{m1} CATENATE (URL \"/Drafts/;UID=99\")",
            m1.len()
        ),
    )
    .await;
    assert!(r.starts_with("NO [BADURL /Drafts/;UID=99]"), "{r}");
    let (_, u) = cmd(&mut c, "c", "STATUS Drafts (MESSAGES)").await;
    assert_eq!(u, vec!["* STATUS \"Drafts\" (MESSAGES 2)"]);
    // CATENATE: new headers, then the body of message 2.
    let (r, _) = cmd(
        &mut c,
        "d",
        "APPEND Drafts CATENATE (TEXT {20+}\r\nSubject: forwarded\r\n URL \"/Drafts/;UID=2/;SECTION=TEXT\")",
    )
    .await;
    assert!(r.starts_with("OK [APPENDUID ") && r.contains(" 3] "), "{r}");
    cmd(&mut c, "e", "SELECT Drafts").await;
    c.cmd("f UID FETCH 3 BODY.PEEK[]").await.unwrap();
    let first = c.line().await.unwrap().unwrap();
    assert!(first.ends_with("{28}"), "{first}");
    assert_eq!(c.line().await.unwrap().unwrap(), "Subject: forwarded");
    assert_eq!(c.line().await.unwrap().unwrap(), "second");
    tagged(&mut c, "f").await;
    // REPLACE message 1 with a new version: appended, old one expunged.
    let m3 = "Subject: one (edited)\r\n\r\nfirst, better\r\n";
    let (r, u) = cmd(
        &mut c,
        "g",
        &format!("UID REPLACE 1 Drafts (\\Draft) {{{}+}}\r\n{m3}", m3.len()),
    )
    .await;
    assert!(r.starts_with("OK"), "{r}");
    assert!(
        u[0].starts_with("* OK [APPENDUID ") && u[0].contains(" 4] "),
        "{u:?}"
    );
    assert!(u.contains(&"* 1 EXPUNGE".to_string()), "{u:?}");
    let (_, u) = cmd(&mut c, "h", "UID SEARCH ALL").await;
    assert_eq!(u, vec!["* SEARCH 2 3 4"]);
    let (r, _) = cmd(&mut c, "i", "REPLACE 9 Drafts {1+}\r\nx").await;
    assert!(r.starts_with("NO"), "{r}");
}

/// RFC 5267: ESORT (SORT RETURN, results in sort order), PARTIAL, and
/// searches kept up to date (UPDATE: ADDTO/REMOVEFROM, CANCELUPDATE).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esort_partial_and_contexts() {
    let s = start("").await;
    for subject in ["c", "a", "b"] {
        deliver(&s, subject, "x").await;
    }
    let mut c = login(&s).await;
    cmd(&mut c, "s", "SELECT INBOX").await;
    let (r, u) = cmd(
        &mut c,
        "a",
        "UID SORT RETURN (ALL MIN MAX COUNT) (SUBJECT) UTF-8 ALL",
    )
    .await;
    assert!(r.starts_with("OK"), "{r}");
    assert_eq!(
        u,
        vec!["* ESEARCH (TAG \"a\") UID MIN 2 MAX 1 COUNT 3 ALL 2:3,1"]
    );
    let (_, u) = cmd(&mut c, "b", "SEARCH RETURN (PARTIAL 1:2) ALL").await;
    assert_eq!(u, vec!["* ESEARCH (TAG \"b\") PARTIAL (1:2 1:2)"]);
    let (_, u) = cmd(
        &mut c,
        "b2",
        "SORT RETURN (PARTIAL -1:-1) (SUBJECT) UTF-8 ALL",
    )
    .await;
    assert_eq!(u, vec!["* ESEARCH (TAG \"b2\") PARTIAL (-1:-1 1)"]);
    let (r, _) = cmd(&mut c, "b3", "SEARCH RETURN (BOGUS) ALL").await;
    assert!(r.starts_with("BAD"), "{r}");

    let (_, u) = cmd(&mut c, "c", "UID SEARCH RETURN (UPDATE ALL) UNSEEN").await;
    assert_eq!(u, vec!["* ESEARCH (TAG \"c\") UID ALL 1:3"]);
    let (_, mut u) = cmd(&mut c, "d", "UID STORE 1 +FLAGS.SILENT (\\Seen)").await;
    u.extend(cmd(&mut c, "e", "NOOP").await.1);
    assert!(
        u.contains(&"* ESEARCH (TAG \"c\") UID REMOVEFROM (0 1)".to_string()),
        "{u:?}"
    );
    deliver(&s, "d", "x").await;
    let (_, u) = cmd(&mut c, "f", "NOOP").await;
    assert!(u.contains(&"* 4 EXISTS".to_string()), "{u:?}");
    assert!(
        u.contains(&"* ESEARCH (TAG \"c\") UID ADDTO (0 4)".to_string()),
        "{u:?}"
    );
    let (r, _) = cmd(&mut c, "g", "CANCELUPDATE \"c\"").await;
    assert!(r.starts_with("OK"), "{r}");
    let (r, _) = cmd(&mut c, "h", "CANCELUPDATE \"zz\"").await;
    assert!(r.starts_with("NO"), "{r}");
    deliver(&s, "e", "x").await;
    let (_, u) = cmd(&mut c, "i", "NOOP").await;
    assert!(!u.iter().any(|l| l.contains("ESEARCH")), "{u:?}");
}

/// RFC 5465 (NOTIFY): with no command in flight, the client hears of new
/// mail in another mailbox (STATUS), of new mail in the selected one at
/// once (EXISTS), and of mailboxes created, renamed and deleted (LIST).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_without_polling() {
    let s = start("").await;
    let mut c = login(&s).await;
    cmd(&mut c, "a", "CREATE Watched").await;
    cmd(&mut c, "b", "SELECT Watched").await;
    let (r, u) = cmd(
        &mut c,
        "c",
        "NOTIFY SET (STATUS) (selected (MessageNew MessageExpunge)) (personal (MessageNew MessageExpunge FlagChange MailboxName))",
    )
    .await;
    assert!(r.starts_with("OK"), "{r}");
    assert!(
        u.iter()
            .any(|l| l.starts_with("* STATUS \"INBOX\" (MESSAGES 0 UIDNEXT 1 UIDVALIDITY ")),
        "{u:?}"
    );
    // Nothing sent by the client from here: the server speaks first.
    deliver(&s, "hello", "x").await;
    let line = c.line().await.unwrap().unwrap();
    assert!(
        line.starts_with("* STATUS \"INBOX\" (MESSAGES 1 UIDNEXT 2 UIDVALIDITY ")
            && line.contains(" UNSEEN 1"),
        "{line}"
    );
    let mut other = login(&s).await;
    let m = "Subject: x\r\n\r\ny\r\n";
    cmd(
        &mut other,
        "a",
        &format!("APPEND Watched {{{}+}}\r\n{m}", m.len()),
    )
    .await;
    assert_eq!(c.line().await.unwrap().unwrap(), "* 1 EXISTS");
    assert_eq!(c.line().await.unwrap().unwrap(), "* 1 RECENT");
    cmd(&mut other, "b", "CREATE Fresh").await;
    assert_eq!(
        c.line().await.unwrap().unwrap(),
        "* LIST () \"/\" \"Fresh\""
    );
    cmd(&mut other, "c", "RENAME Fresh Renamed").await;
    assert_eq!(
        c.line().await.unwrap().unwrap(),
        "* LIST () \"/\" \"Renamed\" (\"OLDNAME\" (\"Fresh\"))"
    );
    cmd(&mut other, "d", "DELETE Renamed").await;
    assert_eq!(
        c.line().await.unwrap().unwrap(),
        "* LIST (\\NonExistent) \"/\" \"Renamed\""
    );
    let (r, _) = cmd(&mut c, "d", "NOTIFY SET (personal (AnnotationChange))").await;
    assert!(r.starts_with("NO [BADEVENT ("), "{r}");
    let (r, _) = cmd(&mut c, "e", "NOTIFY NONE").await;
    assert!(r.starts_with("OK"), "{r}");
    deliver(&s, "quiet", "x").await;
    let (_, u) = cmd(&mut c, "f", "CHECK").await;
    assert!(!u.iter().any(|l| l.starts_with("* STATUS")), "{u:?}");
}

/// RFC 4467 (URLAUTH): Alice signs a URL for Bob; Bob fetches the part
/// and builds a message from it with CATENATE; a changed token, the wrong
/// user, and URLs after RESETKEY get nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urlauth_lets_another_user_fetch() {
    let s = start("").await;
    deliver(&s, "shared", "the shared text").await;
    let mut a = login(&s).await;
    let (_, u) = cmd(&mut a, "a", "EXAMINE INBOX").await;
    let validity = u
        .iter()
        .find_map(|l| l.strip_prefix("* OK [UIDVALIDITY "))
        .and_then(|l| l.split(']').next())
        .unwrap()
        .to_string();
    let rump = format!(
        "imap://{ALICE}@example.test/INBOX;UIDVALIDITY={validity}/;UID=1/;SECTION=TEXT;URLAUTH=user+{BOB}"
    );
    let (r, u) = cmd(&mut a, "b", &format!("GENURLAUTH \"{rump}\" INTERNAL")).await;
    assert!(r.starts_with("OK"), "{r}");
    let signed = u[0]
        .strip_prefix("* GENURLAUTH \"")
        .and_then(|l| l.strip_suffix('"'))
        .unwrap()
        .to_string();
    assert!(signed.starts_with(&format!("{rump}:internal:")), "{signed}");
    let (r, _) = cmd(
        &mut a,
        "c",
        &format!(
            "GENURLAUTH \"imap://{BOB}@example.test/INBOX/;UID=1;URLAUTH=anonymous\" INTERNAL"
        ),
    )
    .await;
    assert!(r.starts_with("NO"), "only one's own mailboxes: {r}");

    let mut b = LineClient::connect(s.imap).await.unwrap();
    b.line().await.unwrap();
    cmd(&mut b, "a", &format!("LOGIN {BOB} {BOB_PW}")).await;
    b.cmd(&format!("b URLFETCH \"{signed}\"")).await.unwrap();
    let head = b.line().await.unwrap().unwrap();
    assert!(head.ends_with("{17}"), "{head}");
    assert_eq!(b.line().await.unwrap().unwrap(), "the shared text");
    tagged(&mut b, "b").await;
    // The token with its last digit changed (to one it is not).
    let other = if signed.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{other}", &signed[..signed.len() - 1]);
    let (_, u) = cmd(&mut b, "c", &format!("URLFETCH \"{forged}\"")).await;
    assert!(u[0].ends_with(" NIL"), "{u:?}");
    let (r, _) = cmd(
        &mut b,
        "d",
        &format!(
            "APPEND INBOX CATENATE (TEXT {{20+}}\r\nSubject: via URL\r\n\r\n URL \"{signed}\")"
        ),
    )
    .await;
    assert!(r.starts_with("OK [APPENDUID"), "{r}");

    // Alice herself is not user+bob.
    let (_, u) = cmd(&mut a, "d", &format!("URLFETCH \"{signed}\"")).await;
    assert!(u[0].ends_with(" NIL"), "{u:?}");
    let (r, _) = cmd(&mut a, "e", "RESETKEY INBOX").await;
    assert!(r.starts_with("OK"), "{r}");
    let (_, u) = cmd(&mut b, "e", &format!("URLFETCH \"{signed}\"")).await;
    assert!(u[0].ends_with(" NIL"), "revoked: {u:?}");
}

/// With `[blobs] backend = "s3"` (moto on loopback) the mail server works as
/// it does on the embedded store: bodies delivered over SMTP and APPENDed
/// over IMAP are in the bucket, FETCH and SEARCH BODY read them back, and
/// EXPUNGE hands them to the collector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_in_an_s3_bucket() {
    let s3 = tern_testkit::s3::S3Server::start();
    s3.create_bucket("tern-mail");
    let s = start(&format!(
        "[blobs]\nbackend = \"s3\"\nbucket = \"tern-mail\"\nendpoint = \"{}\"\n\
         access_key_id = \"tern\"\nsecret_access_key = \"secret\"\nprefix = \"node/\"\n",
        s3.endpoint()
    ))
    .await;
    deliver(&s, "in the bucket", "gamma body").await;
    let mut c = login(&s).await;
    cmd(&mut c, "b", "SELECT INBOX").await;
    let append = "Subject: appended\r\n\r\ndelta body\r\n";
    c.cmd(&format!("c APPEND INBOX {{{}+}}", append.len()))
        .await
        .unwrap();
    c.send(format!("{append}\r\n").as_bytes()).await.unwrap();
    let (r, _) = tagged(&mut c, "c").await;
    assert!(r.starts_with("OK [APPENDUID"), "{r}");
    let (r, u) = cmd(&mut c, "d", "FETCH 1:2 (BODY.PEEK[TEXT])").await;
    assert!(r.starts_with("OK"), "{r}");
    let text = u.join("\n");
    assert!(
        text.contains("gamma body") && text.contains("delta body"),
        "{text}"
    );
    let (_, u) = cmd(&mut c, "e", "SEARCH BODY delta").await;
    assert!(u.contains(&"* SEARCH 2".to_string()), "{u:?}");

    // A second handle on the same data folder, as `tern` commands open it.
    let config = tern_core::Config::load(&s.data.config_path()).unwrap();
    let store = tern::server::open_store(&config).await.unwrap();
    let blobs = store.blob_store().expect("a blob store").clone();
    let inbox = s.inbox(ALICE).await;
    assert_eq!(inbox.len(), 2);
    for raw in &inbox {
        let key = tern_store::blobs::key_of(raw);
        assert_eq!(&blobs.get(&key).await.unwrap(), raw);
    }
    cmd(&mut c, "f", "STORE 1:2 +FLAGS (\\Deleted)").await;
    let (r, _) = cmd(&mut c, "g", "EXPUNGE").await;
    assert!(r.starts_with("OK"), "{r}");
    let done = store.collect_blobs(Duration::ZERO).await.unwrap();
    assert_eq!(done.deleted, 2, "{done:?}");
    for raw in &inbox {
        let key = tern_store::blobs::key_of(raw);
        assert!(blobs.get(&key).await.is_err());
    }
}

/// `tern blobs`: an installation that kept bodies in the database switches
/// to files, moves its bodies out while the server runs, and IMAP keeps
/// serving them; `check` finds a body missing from the store; `collect`
/// removes the bodies of expunged mail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_move_check_and_collect() {
    let s = start("").await;
    for i in 0..5 {
        deliver(&s, &format!("message {i}"), &format!("body number {i}")).await;
    }
    let data = s.data.path().to_path_buf();
    let (ok, out) = tern_cli(&["blobs", "move"], &data);
    assert!(
        !ok && out.contains("set it to \"files\" or \"s3\" first"),
        "{out}"
    );
    let toml = std::fs::read_to_string(data.join("tern.toml")).unwrap();
    std::fs::write(
        data.join("tern.toml"),
        format!("{toml}\n[blobs]\nbackend = \"files\"\n"),
    )
    .unwrap();
    let (ok, out) = tern_cli(&["blobs", "status"], &data);
    assert!(ok, "{out}");
    assert!(out.contains("in the database          5 bodies"), "{out}");
    let (ok, out) = tern_cli(&["blobs", "move", "--batch", "2"], &data);
    assert!(ok && out.contains("Moved 5 bodies to files in"), "{out}");
    let (ok, out) = tern_cli(&["blobs", "status"], &data);
    assert!(
        ok && out.contains("in blob store            5 bodies"),
        "{out}"
    );
    let (ok, out) = tern_cli(&["blobs", "check"], &data);
    assert!(ok && out.contains("Every body"), "{out}");

    // The server, started before [blobs] was set, cannot read the moved
    // bodies: it says so (RFC 5530 UNAVAILABLE), never an empty body.
    let mut c = login(&s).await;
    cmd(&mut c, "b", "SELECT INBOX").await;
    let (r, u) = cmd(&mut c, "c", "FETCH 3 (BODY.PEEK[TEXT])").await;
    assert!(r.starts_with("NO [UNAVAILABLE]"), "{r} {u:?}");
    assert!(u.is_empty(), "{u:?}");
    // Restarted with the new config, it reads them from the files.
    let mut s = s;
    s.stop();
    let running = start_in(&s.data).await;
    let mut c = LineClient::connect(running.imap[0]).await.unwrap();
    c.line().await.unwrap();
    cmd(&mut c, "a", &format!("LOGIN {ALICE} {ALICE_PW}")).await;
    cmd(&mut c, "b", "SELECT INBOX").await;
    let (r, u) = cmd(&mut c, "c", "FETCH 3 (BODY.PEEK[TEXT] ENVELOPE)").await;
    assert!(r.starts_with("OK"), "{r}");
    assert!(u.join("\n").contains("body number 2"), "{u:?}");
    let (_, u) = cmd(&mut c, "d", "SEARCH SUBJECT \"message 4\"").await;
    assert!(u.contains(&"* SEARCH 5".to_string()), "{u:?}");

    // A body lost from the store is named.
    let files: Vec<_> = tern_testkit::files_under(&data.join("blobs"));
    assert_eq!(files.len(), 5);
    std::fs::remove_file(&files[0]).unwrap();
    let (ok, out) = tern_cli(&["blobs", "check"], &data);
    assert!(!ok && out.contains("1 bodies are missing"), "{out}");
    let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(out.contains(&name), "{out}");

    // Expunged mail's bodies are collected (no grace: nobody is delivering).
    cmd(&mut c, "e", "STORE 1:5 +FLAGS (\\Deleted)").await;
    cmd(&mut c, "f", "EXPUNGE").await;
    // A body a crash left without a message is found by the sweep.
    let orphan = b"Subject: orphan\r\n\r\nleft by a crash\r\n";
    let key = tern_store::blobs::key_of(orphan);
    let path = data
        .join("blobs")
        .join(tern_store::blobs::relative_name(&key));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, orphan).unwrap();
    let (ok, out) = tern_cli(&["blobs", "collect", "--sweep", "--grace", "0s"], &data);
    assert!(ok && out.contains("Deleted 5 bodies"), "{out}");
    assert!(out.contains("1 no message refers to deleted"), "{out}");
    assert!(tern_testkit::files_under(&data.join("blobs")).is_empty());
    running.shutdown();
}
