//! The spam filter: trained with `tern spam train` on a labelled corpus
//! this test builds, it must separate held-out spam from ham delivered over
//! SMTP (precision and recall printed), refuse no ham at SMTP time, refuse
//! GTUBE, and learn from IMAP moves into and out of Junk.

use crate::common::*;
use std::net::IpAddr;
use tern_testkit::remote::unique_loopback;
use tern_testkit::{LineClient, send_message};

const HAM: &[&str] = &[
    "meeting",
    "project",
    "report",
    "lunch",
    "schedule",
    "budget",
    "team",
    "review",
    "agenda",
    "quarterly",
    "deadline",
    "draft",
    "notes",
    "conference",
    "customer",
    "roadmap",
    "release",
    "feedback",
    "update",
    "minutes",
    "proposal",
    "contract",
    "planning",
    "sprint",
    "design",
    "hiring",
    "interview",
    "travel",
    "expenses",
    "workshop",
    "presentation",
    "slides",
];
const SPAM: &[&str] = &[
    "viagra",
    "lottery",
    "winner",
    "prize",
    "casino",
    "bitcoin",
    "crypto",
    "investment",
    "guaranteed",
    "free",
    "offer",
    "click",
    "cheap",
    "pills",
    "discount",
    "exclusive",
    "urgent",
    "million",
    "inheritance",
    "loan",
    "credit",
    "bonus",
    "jackpot",
    "miracle",
    "weight",
    "dating",
    "singles",
    "replica",
    "watches",
    "pharmacy",
    "refinance",
    "claim",
];
const COMMON: &[&str] = &[
    "the", "and", "you", "your", "this", "that", "with", "have", "will", "please", "today",
    "thanks", "about", "from", "more", "time", "know", "just", "like", "would", "there", "here",
    "next", "week", "good", "best", "regards", "hello", "team", "info",
];

/// A deterministic generator (xorshift), so the corpus is the same every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[(self.next() % v.len() as u64) as usize]
    }
}

/// One message of the class: mostly its own words, some common words,
/// and a few words of the other class.
fn message(rng: &mut Rng, spam: bool, n: usize) -> Vec<u8> {
    let (own, other) = if spam { (SPAM, HAM) } else { (HAM, SPAM) };
    let mut words = Vec::new();
    for _ in 0..40 {
        let r = rng.next() % 100;
        words.push(if r < 45 {
            rng.pick(own)
        } else if r < 92 {
            rng.pick(COMMON)
        } else {
            rng.pick(other)
        });
    }
    let subject: Vec<&str> = (0..4)
        .map(|_| {
            if rng.next().is_multiple_of(4) {
                rng.pick(COMMON)
            } else {
                rng.pick(own)
            }
        })
        .collect();
    let from = if spam {
        "promo@deals.test"
    } else {
        "colleague@partner.test"
    };
    format!(
        "From: {from}\r\nTo: bob@example.test\r\nSubject: {} {n}\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{}{n}@corpus.test>\r\n\r\n{}\r\n",
        subject.join(" "),
        if spam { "s" } else { "h" },
        words.join(" ")
    )
    .into_bytes()
}

async fn deliver(s: &Server, ip: IpAddr, data: &[u8]) -> (u16, String) {
    let mut c = LineClient::connect_from(ip, s.smtp).await.unwrap();
    assert_eq!(c.reply().await.unwrap().0, 220);
    c.smtp("EHLO mta.corpus.test").await.unwrap();
    send_message(&mut c, "sender@corpus.test", &[BOB], data)
        .await
        .unwrap()
}

async fn folder_count(s: &Server, account: &str, folder: &str) -> usize {
    let id = s
        .store
        .list_accounts(None)
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.address == account)
        .unwrap()
        .id;
    s.store.list(id, folder).await.unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trained_filter_separates_held_out_mail() {
    let s = start("").await;
    let mut rng = Rng(0x5eed_1234_abcd_9876);
    let spam_dir = tempfile::tempdir().unwrap();
    let ham_dir = tempfile::tempdir().unwrap();
    for i in 0..200 {
        std::fs::write(
            spam_dir.path().join(format!("{i}.eml")),
            message(&mut rng, true, i),
        )
        .unwrap();
        std::fs::write(
            ham_dir.path().join(format!("{i}.eml")),
            message(&mut rng, false, i),
        )
        .unwrap();
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["spam", "train", "--spam"])
        .arg(spam_dir.path())
        .arg("--ham")
        .arg(ham_dir.path())
        .arg("--data")
        .arg(s.data.path())
        .env("TERN_LOG", "warn")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Learnt 200 spam and 200 ham messages"),
        "{text}"
    );

    // Held out: 100 of each, from the internet (a loopback address of their own).
    let ip = unique_loopback();
    let (mut tp, mut fp, mut fn_, mut refused_ham) = (0, 0, 0, 0);
    for i in 0..100 {
        for spam in [true, false] {
            let before = folder_count(&s, BOB, "Junk").await;
            let (code, text) = deliver(&s, ip, &message(&mut rng, spam, 1000 + i)).await;
            if code != 250 {
                assert!(spam, "ham refused at SMTP time: {text}");
                refused_ham += usize::from(!spam);
                tp += 1;
                continue;
            }
            let junked = folder_count(&s, BOB, "Junk").await > before;
            match (spam, junked) {
                (true, true) => tp += 1,
                (true, false) => fn_ += 1,
                (false, true) => fp += 1,
                (false, false) => {}
            }
        }
    }
    let precision = tp as f64 / (tp + fp).max(1) as f64;
    let recall = tp as f64 / (tp + fn_) as f64;
    println!("held-out: precision {precision:.3}, recall {recall:.3} (tp {tp}, fp {fp}, fn {fn_})");
    assert_eq!(refused_ham, 0);
    assert!(recall >= 0.9, "recall {recall}");
    assert!(precision >= 0.95, "precision {precision}");

    // Every delivered message says why.
    let inbox = s.inbox(BOB).await;
    let m = String::from_utf8_lossy(&inbox[0]);
    assert!(m.contains("X-Spam-Status: No, score="), "{m}");
    assert!(m.contains("BAYES_"), "{m}");
}

#[tokio::test]
async fn gtube_is_refused_before_250() {
    let s = start("").await;
    let data = format!(
        "From: x@corpus.test\r\nSubject: test\r\n\r\n{}\r\n",
        tern_filter::rules::GTUBE
    );
    let (code, text) = deliver(&s, unique_loopback(), data.as_bytes()).await;
    assert_eq!(code, 550, "{text}");
    assert!(text.contains("5.7.1") && text.contains("GTUBE"), "{text}");
    assert!(s.inbox(BOB).await.is_empty());
    assert_eq!(folder_count(&s, BOB, "Junk").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_moves_teach_the_classifier() {
    let s = start("").await;
    let mut rng = Rng(0x0bad_cafe_f00d_0001);
    let ip = unique_loopback();
    // 25 spam and 25 ham arrive (untrained: all in the inbox).
    for i in 0..25 {
        assert_eq!(deliver(&s, ip, &message(&mut rng, true, i)).await.0, 250);
        assert_eq!(deliver(&s, ip, &message(&mut rng, false, i)).await.0, 250);
    }
    assert_eq!(folder_count(&s, BOB, "INBOX").await, 50);
    // Bob moves the spam to Junk over IMAP (SEARCH for the spam ids, MOVE).
    let mut c = LineClient::connect(s.imap).await.unwrap();
    c.line().await.unwrap();
    c.cmd(&format!("a LOGIN {BOB} {BOB_PW}")).await.unwrap();
    read_tagged(&mut c, "a").await;
    c.cmd("b SELECT INBOX").await.unwrap();
    read_tagged(&mut c, "b").await;
    c.cmd("c UID SEARCH HEADER Message-ID <s").await.unwrap();
    let lines = read_tagged(&mut c, "c").await;
    let uids: Vec<String> = lines
        .iter()
        .find(|l| l.starts_with("* SEARCH"))
        .unwrap()
        .split_whitespace()
        .skip(2)
        .map(str::to_string)
        .collect();
    assert_eq!(uids.len(), 25);
    c.cmd(&format!("d UID MOVE {} Junk", uids.join(",")))
        .await
        .unwrap();
    let done = read_tagged(&mut c, "d").await;
    assert!(done.last().unwrap().starts_with("d OK"), "{done:?}");
    // The filter learns from the recorded moves.
    let filter = tern_filter::Filter::new(
        s.store.clone(),
        tern_dns::Resolver::new(&[tern_testkit::dns::nxdomain_server()]).unwrap(),
        tern_core::config::FilterConfig {
            bayes_min_trained: 20,
            ..Default::default()
        },
    );
    let learnt = filter.train_pending().await.unwrap();
    assert_eq!(learnt, 25, "one verdict per moved message");
    // What ham looks like is learnt the CLI's way (`learn`); what spam
    // looks like came only from Bob's IMAP moves.
    for i in 0..25 {
        filter
            .learn(&message(&mut Rng(7 + i), false, i as usize), None, false)
            .await
            .unwrap();
    }
    let before = folder_count(&s, BOB, "Junk").await;
    assert_eq!(deliver(&s, ip, &message(&mut rng, true, 999)).await.0, 250);
    assert_eq!(
        folder_count(&s, BOB, "Junk").await,
        before + 1,
        "new spam goes to Junk after learning from the moves"
    );
}

async fn read_tagged(c: &mut LineClient, tag: &str) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let l = c.line().await.unwrap().expect("line");
        let done = l.starts_with(&format!("{tag} "));
        lines.push(l);
        if done {
            return lines;
        }
    }
}

#[tokio::test]
async fn greylisting_defers_the_first_attempt() {
    let s = start("[filter]\ngreylist = true\ngreylist_delay = \"1s\"\n").await;
    let ip = unique_loopback();
    let data = b"From: a@corpus.test\r\nSubject: grey\r\n\r\nhello\r\n";
    let (code, text) = deliver(&s, ip, data).await;
    assert_eq!(code, 451, "{text}");
    assert!(
        text.contains("4.7.1") && text.contains("Greylisted"),
        "{text}"
    );
    // Too early: still deferred.
    assert_eq!(deliver(&s, ip, data).await.0, 451);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (code, text) = deliver(&s, ip, data).await;
    assert_eq!(code, 250, "after the delay: {text}");
    // The triplet now passes at once; 127.0.0.1 is never greylisted.
    assert_eq!(deliver(&s, ip, data).await.0, 250);
    assert_eq!(deliver(&s, "127.0.0.1".parse().unwrap(), data).await.0, 250);
    // And still after a restart (the triplets reach the store within 2 s).
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let mut s = s;
    s.stop();
    let r = start_in(&s.data).await;
    s.smtp = r.smtp[0];
    s.running = Some(r);
    assert_eq!(
        deliver(&s, ip, data).await.0,
        250,
        "remembered across a restart"
    );
    let other = b"From: b@corpus.test\r\nSubject: grey\r\n\r\nhello\r\n";
    let mut c = LineClient::connect_from(ip, s.smtp).await.unwrap();
    c.reply().await.unwrap();
    c.smtp("EHLO mta.corpus.test").await.unwrap();
    let (code, _) = send_message(&mut c, "new@corpus.test", &[BOB], other)
        .await
        .unwrap();
    assert_eq!(code, 451, "a new triplet is still greylisted");
}

/// Thresholds per domain and account (`tern spam policy`): one message to
/// two accounts is filed in Junk for the one whose domain's junk threshold
/// it reaches and in the inbox for the one with a higher threshold of its
/// own; refused only when every recipient would refuse it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_per_domain_and_account() {
    let s = start("").await;
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tern"))
            .args(["spam", "policy"])
            .args(args)
            .arg("--data")
            .arg(s.data.path())
            .env("TERN_LOG", "warn")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    cli(&["set", "example.test", "--junk-score", "0.5"]);
    cli(&["set", ALICE, "--junk-score", "50"]);
    cli(&["set", BOB, "--reject-score", "100000"]);
    let list = cli(&["list"]);
    assert!(
        list.contains("example.test") && list.contains("inherit"),
        "{list}"
    );
    let ip = unique_loopback(); // no reverse DNS: RDNS_NONE scores 1.0
    let data = b"From: a@corpus.test\r\nTo: bob@example.test\r\nSubject: hello\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <p1@corpus.test>\r\n\r\nhello\r\n";
    let mut c = LineClient::connect_from(ip, s.smtp).await.unwrap();
    c.reply().await.unwrap();
    c.smtp("EHLO mta.corpus.test").await.unwrap();
    let (code, text) = send_message(&mut c, "a@corpus.test", &[BOB, ALICE], data)
        .await
        .unwrap();
    assert_eq!(code, 250, "{text}");
    assert_eq!(folder_count(&s, BOB, "Junk").await, 1);
    assert_eq!(folder_count(&s, BOB, "INBOX").await, 0);
    assert_eq!(folder_count(&s, ALICE, "INBOX").await, 1);
    assert_eq!(folder_count(&s, ALICE, "Junk").await, 0);
    // GTUBE: Bob never refuses (Junk), Alice does (the default 15).
    let gtube = format!(
        "From: x@corpus.test\r\nSubject: test\r\n\r\n{}\r\n",
        tern_filter::rules::GTUBE
    );
    assert_eq!(deliver(&s, ip, gtube.as_bytes()).await.0, 250);
    assert_eq!(folder_count(&s, BOB, "Junk").await, 2);
    let mut c = LineClient::connect_from(ip, s.smtp).await.unwrap();
    c.reply().await.unwrap();
    c.smtp("EHLO mta.corpus.test").await.unwrap();
    let (code, _) = send_message(&mut c, "x@corpus.test", &[ALICE], gtube.as_bytes())
        .await
        .unwrap();
    assert_eq!(code, 550);
    cli(&["clear", BOB]);
    assert!(!cli(&["list"]).contains(BOB));
}

/// A copy filed as junk goes to the account's `\Junk` folder whatever a
/// client renamed it to, and to INBOX when there is none: an accepted
/// recipient's copy is never refused or dropped for a folder name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_follows_the_folder_and_falls_back_to_inbox() {
    let s = start("").await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["spam", "policy", "set", BOB, "--reject-score", "100000"])
        .arg("--data")
        .arg(s.data.path())
        .env("TERN_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut c = LineClient::connect(s.imap).await.unwrap();
    c.line().await.unwrap();
    c.cmd(&format!("a LOGIN {BOB} {BOB_PW}")).await.unwrap();
    read_tagged(&mut c, "a").await;
    c.cmd("b RENAME Junk Spam").await.unwrap();
    assert!(
        read_tagged(&mut c, "b")
            .await
            .last()
            .unwrap()
            .starts_with("b OK")
    );
    let gtube = format!(
        "From: x@corpus.test\r\nSubject: test\r\n\r\n{}\r\n",
        tern_filter::rules::GTUBE
    );
    let ip = unique_loopback();
    assert_eq!(deliver(&s, ip, gtube.as_bytes()).await.0, 250);
    assert_eq!(
        folder_count(&s, BOB, "Spam").await,
        1,
        "the renamed \\Junk folder"
    );
    c.cmd("c DELETE Spam").await.unwrap();
    assert!(
        read_tagged(&mut c, "c")
            .await
            .last()
            .unwrap()
            .starts_with("c OK")
    );
    assert_eq!(deliver(&s, ip, gtube.as_bytes()).await.0, 250);
    assert_eq!(
        folder_count(&s, BOB, "INBOX").await,
        1,
        "no Junk folder: INBOX"
    );
}
