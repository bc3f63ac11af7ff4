//! The platform's records (events and their counters, suppressions,
//! webhooks and their outbox, verification jobs), the same checks on every
//! backend: SQLite, and PostgreSQL (a private server on loopback).

use std::sync::Arc;
use tern_store::postgres::PgStore;
use tern_store::sqlite::SqliteStore;
use tern_store::*;
use tern_testkit::pg::PgServer;

struct Backend {
    name: String,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
    _pg: Option<PgServer>,
}

async fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(&dir.path().join("t.db"), 16)
        .await
        .unwrap();
    let pg = PgServer::start();
    let postgres = PgStore::connect(&pg.database("platform"), 4).await.unwrap();
    vec![
        Backend {
            name: "sqlite".into(),
            store: Arc::new(sqlite),
            _dir: dir,
            _pg: None,
        },
        Backend {
            name: "postgres".into(),
            store: Arc::new(postgres),
            _dir: tempfile::tempdir().unwrap(),
            _pg: Some(pg),
        },
    ]
}

fn ev(t: EventType, msg: &str, rcpt: &str, tag: &str) -> Event {
    let mut e = Event::new(t, msg).to(rcpt);
    e.sender = Some("shop@example.com".into());
    if !tag.is_empty() {
        e.tags = vec![tag.into()];
    }
    e
}

#[tokio::test]
async fn events_are_counted_per_hour_domain_type_and_detail_once() {
    for b in backends().await {
        counted(&b.name, &*b.store).await;
    }
}

async fn counted(name: &str, s: &dyn Store) {
    let mut bounced = ev(EventType::Bounced, "M2", "bob@example.org", "");
    bounced.category = Some("bad_mailbox".into());
    let mut scan = ev(EventType::Clicked, "M1", "ann@example.net", "");
    scan.machine = Some(true);
    let mut inbound = ev(EventType::Received, "M3", "alice@Example.COM", "");
    inbound.sender = Some("someone@elsewhere.test".into());
    let mut junk = ev(EventType::Received, "M4", "alice@example.com", "");
    junk.folder = Some("Junk".into());
    let mut news = ev(EventType::Accepted, "M5", "cat@example.net", "news");
    news.stream = Some("broadcast".into());
    let events = vec![
        ev(EventType::Accepted, "M1", "ann@example.net", ""),
        ev(EventType::Accepted, "M2", "bob@example.org", ""),
        bounced,
        ev(EventType::Clicked, "M1", "ann@example.net", ""),
        scan,
        inbound,
        junk,
        news,
    ];
    s.record_events(events.clone(), vec![], None).await.unwrap();
    // The same events again (a retried commit) are not counted twice.
    s.record_events(events.clone(), vec![], None).await.unwrap();
    let hour = events[0].time.div_euclid(3_600_000);
    let mut got = s
        .event_counts("Example.com", "", hour, hour + 1)
        .await
        .unwrap();
    got.sort_by(|a, b| (&a.event_type, &a.detail).cmp(&(&b.event_type, &b.detail)));
    let got: Vec<(&str, &str, i64)> = got
        .iter()
        .map(|c| (c.event_type.as_str(), c.detail.as_str(), c.n))
        .collect();
    assert_eq!(
        got,
        vec![
            ("accepted", "", 3),
            ("bounced", "bad_mailbox", 1),
            ("clicked", "human", 1),
            ("clicked", "machine", 1),
            ("received", "", 1),
            ("received", "junk", 1),
        ],
        "{name}"
    );
    assert!(
        s.event_counts("example.com", "", hour + 1, hour + 2)
            .await
            .unwrap()
            .is_empty()
    );
    // Per stream and tag, and every domain together.
    let n = |domain: &'static str, dim: &'static str| async move {
        s.event_counts(domain, dim, hour, hour + 1)
            .await
            .unwrap()
            .iter()
            .filter(|c| c.event_type == "accepted")
            .map(|c| c.n)
            .sum::<i64>()
    };
    assert_eq!(n("example.com", "stream:broadcast").await, 1);
    assert_eq!(n("example.com", "tag:news").await, 1);
    assert_eq!(n("*", "").await, 3);
    assert_eq!(n("*", "tag:news").await, 1);
}

#[tokio::test]
async fn events_filter_page_and_prune() {
    for b in backends().await {
        filter_page_prune(&b.name, &*b.store).await;
    }
}

async fn filter_page_prune(name: &str, s: &dyn Store) {
    let events = vec![
        ev(EventType::Accepted, "M1", "Ann@Example.net", "receipt"),
        ev(EventType::Delivered, "M1", "ann@example.net", "receipt"),
        ev(EventType::Accepted, "M2", "bob@example.org", ""),
        ev(EventType::Bounced, "M2", "bob@example.org", ""),
    ];
    s.record_events(events.clone(), vec![], None).await.unwrap();
    let q = |f: fn(&mut EventQuery)| {
        let mut q = EventQuery {
            limit: 100,
            ..Default::default()
        };
        f(&mut q);
        q
    };
    let by_rcpt = s
        .events(q(|q| q.recipient = Some("ANN@example.net".into())))
        .await
        .unwrap();
    assert_eq!(by_rcpt.len(), 2, "{name}");
    let by_tag = s
        .events(q(|q| q.tag = Some("receipt".into())))
        .await
        .unwrap();
    assert_eq!(by_tag.len(), 2, "{name}: tags");
    let bounced = s
        .events(q(|q| q.types = vec![EventType::Bounced]))
        .await
        .unwrap();
    assert_eq!(bounced[0].message_id, "M2");
    // Pages follow the cursor, in id order.
    let mut page = q(|q| q.limit = 3);
    let first = s.events(page.clone()).await.unwrap();
    assert_eq!(first.len(), 3);
    page.after = Some(first[2].id.clone());
    let rest = s.events(page).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].id, events[3].id);
    // Time bounds: none before, all since.
    let t = events[0].time;
    assert!(s.events(q(|q| q.until = Some(0))).await.unwrap().is_empty());
    let mut since = q(|_| {});
    since.since = Some(t);
    assert_eq!(s.events(since).await.unwrap().len(), 4);
    assert_eq!(s.prune_events(t + 60_000).await.unwrap(), 4, "{name}");
    assert!(s.events(q(|_| {})).await.unwrap().is_empty());
}

#[tokio::test]
async fn suppressions_per_domain_expiry_and_outbox() {
    for b in backends().await {
        suppressions_and_outbox(&b.name, &*b.store).await;
    }
}

async fn suppressions_and_outbox(name: &str, s: &dyn Store) {
    let entry = |a: &str, d: &str, exp: Option<i64>| Suppression {
        address: a.into(),
        domain: d.into(),
        reason: "manual".into(),
        created: 1,
        expires: exp,
        detail: String::new(),
    };
    s.add_suppressions(vec![
        entry("a@x.net", "", None),
        entry("b@x.net", "shop.example", None),
        entry("c@x.net", "", Some(100)),
    ])
    .await
    .unwrap();
    let addrs: Vec<String> = ["a@x.net", "b@x.net", "c@x.net"].map(String::from).to_vec();
    let for_shop = s.suppressed(&addrs, "shop.example", 50).await.unwrap();
    assert_eq!(for_shop.len(), 3);
    let for_other = s.suppressed(&addrs, "other.example", 200).await.unwrap();
    assert_eq!(
        for_other.keys().collect::<Vec<_>>(),
        vec!["a@x.net"],
        "{name}: per domain and lapsed"
    );
    assert!(s.remove_suppression("A@x.net", "").await.unwrap());
    assert!(!s.remove_suppression("a@x.net", "").await.unwrap());

    // An endpoint's outbox: filled with the events it wants, emptied on
    // success, dead-lettered after the retry time.
    let hook = Webhook {
        id: "wh_1".into(),
        url: "https://h.example/x".into(),
        secret: "whsec_AAAA".into(),
        events: vec![EventType::Bounced],
        domain: String::new(),
        batch: false,
        created: 1,
        next_attempt: 0,
        failures: 0,
    };
    s.add_webhook(hook).await.unwrap();
    s.record_events(
        vec![
            ev(EventType::Accepted, "M", "z@x.net", ""),
            ev(EventType::Bounced, "M", "z@x.net", ""),
        ],
        vec![],
        None,
    )
    .await
    .unwrap();
    let items = s.outbox("wh_1", 10).await.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].event.event_type, EventType::Bounced);
    let attempt = |status| WebhookAttempt {
        time: 10,
        events: 1,
        status: Some(status),
        error: String::new(),
        millis: 1,
    };
    let now = tern_core::now_unix();
    s.outbox_result("wh_1", &[items[0].seq], attempt(500), Some(now + 60), 0)
        .await
        .unwrap();
    assert!(s.webhooks_due(now).await.unwrap().is_empty(), "backing off");
    assert_eq!(s.outbox_len("wh_1").await.unwrap(), 1);
    s.outbox_result(
        "wh_1",
        &[items[0].seq],
        attempt(500),
        Some(now + 60),
        now + 1,
    )
    .await
    .unwrap();
    assert_eq!(s.outbox_len("wh_1").await.unwrap(), 0);
    let dead = s.webhook_dead_letters("wh_1", 10).await.unwrap();
    assert_eq!(dead[0].attempts, 2);
    assert_eq!(s.webhook_attempts("wh_1", 10).await.unwrap().len(), 2);
    // Replay puts it back; success empties the outbox.
    let n = s
        .replay_webhook(
            "wh_1",
            EventQuery {
                since: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let items = s.outbox("wh_1", 10).await.unwrap();
    s.outbox_result("wh_1", &[items[0].seq], attempt(204), None, 0)
        .await
        .unwrap();
    assert_eq!(s.outbox_len("wh_1").await.unwrap(), 0);
    assert!(s.remove_webhook("wh_1").await.unwrap());
}

#[tokio::test]
async fn a_verify_job_is_answered_chunk_by_chunk_and_counted() {
    for b in backends().await {
        verify_job(&b.name, &*b.store).await;
    }
}

async fn verify_job(name: &str, s: &dyn Store) {
    let job = VerifyJob {
        id: "vj_1".into(),
        created: 100,
        api_key: Some("k1".into()),
        total: 0,
        done: 0,
        finished: None,
        counts: vec![],
    };
    let addrs: Vec<String> = (0..5).map(|i| format!("a{i}@example.com")).collect();
    s.add_verify_job(job, addrs).await.unwrap();
    assert_eq!(s.unfinished_verify_jobs().await.unwrap(), ["vj_1"]);
    let first = s.pending_verify_items("vj_1", 3).await.unwrap();
    assert_eq!(first.len(), 3);
    let answered = |items: Vec<VerifyItem>, r: &str| -> Vec<VerifyItem> {
        items
            .into_iter()
            .map(|mut i| {
                i.result = Some(r.into());
                i.answer = Some(format!("{{\"address\":\"{}\"}}", i.address));
                i
            })
            .collect()
    };
    s.save_verify_answers("vj_1", answered(first.clone(), "deliverable"), 150)
        .await
        .unwrap();
    // Saving the same chunk twice (a crash between save and the next
    // read) counts it once.
    s.save_verify_answers("vj_1", answered(first, "deliverable"), 150)
        .await
        .unwrap();
    let j = s.verify_job("vj_1").await.unwrap().unwrap();
    assert_eq!((j.total, j.done, j.finished), (5, 3, None), "{name}");
    let rest = s.pending_verify_items("vj_1", 10).await.unwrap();
    assert_eq!(rest.iter().map(|i| i.index).collect::<Vec<_>>(), [3, 4]);
    s.save_verify_answers("vj_1", answered(rest, "unknown"), 200)
        .await
        .unwrap();
    let j = s.verify_job("vj_1").await.unwrap().unwrap();
    assert_eq!((j.done, j.finished), (5, Some(200)));
    assert_eq!(
        j.counts,
        [("deliverable".to_string(), 3), ("unknown".to_string(), 2)]
    );
    assert!(s.unfinished_verify_jobs().await.unwrap().is_empty());
    let page = s.verify_items("vj_1", Some(1), 2).await.unwrap();
    assert_eq!(page.iter().map(|i| i.index).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(s.verify_jobs(Some("k2"), 10).await.unwrap().len(), 0);
    assert_eq!(s.verify_jobs(Some("k1"), 10).await.unwrap().len(), 1);
    assert!(s.remove_verify_job("vj_1").await.unwrap());
    assert!(s.verify_job("vj_1").await.unwrap().is_none());
    assert!(s.verify_items("vj_1", None, 10).await.unwrap().is_empty());
}

/// Spam data, greylist and report counters are shared: what one writer
/// adds, every reader sees; what one taker takes, no other gets.
#[tokio::test]
async fn spam_greylist_and_report_counts() {
    for b in backends().await {
        let (n, s) = (&b.name, &*b.store);
        s.bayes_learn(&[0, 7], &[11, 12, 11], true).await.unwrap();
        s.bayes_learn(&[0], &[12], false).await.unwrap();
        let counts = s.bayes_counts(0, &[11, 12, 13]).await.unwrap();
        assert_eq!(counts.get(&12), Some(&(1, 1)), "{n}");
        assert!(!counts.contains_key(&13), "{n}");
        assert_eq!(s.bayes_totals(0).await.unwrap(), (1, 1), "{n}");
        let row = |net: &str, first, passed| GreylistRow {
            network: net.into(),
            sender: "a@b.example".into(),
            rcpt: "c@d.example".into(),
            first_seen: first,
            passed_until: passed,
        };
        s.save_greylist(
            vec![row("192.0.2.0", 100, 0), row("198.51.100.0", 10, 0)],
            50,
        )
        .await
        .unwrap();
        s.save_greylist(vec![row("192.0.2.0", 100, 900)], 50)
            .await
            .unwrap();
        // The stale triplet (seen at 10, never passed, stale before 50) goes.
        let grey = s.load_greylist().await.unwrap();
        assert_eq!(grey.len(), 1, "{n}");
        assert_eq!(
            (grey[0].network.as_str(), grey[0].passed_until),
            ("192.0.2.0", 900),
            "{n}"
        );
        let count = |key: &str, c| ReportCount {
            domain: "example.com".into(),
            key: key.into(),
            meta: "{}".into(),
            count: c,
            first_at: 1,
        };
        s.add_report_counts("dmarc", vec![count("r1", 2), count("r2", 1)])
            .await
            .unwrap();
        s.add_report_counts("dmarc", vec![count("r1", 3)])
            .await
            .unwrap();
        let mut taken = s.take_report_counts("dmarc").await.unwrap();
        taken.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(
            taken.iter().map(|c| c.count).collect::<Vec<_>>(),
            vec![5, 1],
            "{n}"
        );
        assert!(
            s.take_report_counts("dmarc").await.unwrap().is_empty(),
            "{n}"
        );
    }
}

/// Two nodes on one PostgreSQL database: an endpoint with events waiting is
/// drained by one node at a time; the claim is renewed by its results and
/// another node takes over once it lapses.
#[tokio::test]
async fn a_webhook_is_drained_by_one_node_at_a_time() {
    let pg = PgServer::start();
    let url = pg.database("claims");
    let a = PgStore::connect(&url, 2).await.unwrap().with_node("mx-a");
    let b = PgStore::connect(&url, 2).await.unwrap().with_node("mx-b");
    a.add_webhook(Webhook {
        id: "wh_1".into(),
        url: "https://h.example/x".into(),
        secret: "whsec_AAAA".into(),
        events: vec![],
        domain: String::new(),
        batch: false,
        created: 1,
        next_attempt: 0,
        failures: 0,
    })
    .await
    .unwrap();
    a.record_events(
        vec![Event::new(EventType::Accepted, "M1").to("z@x.net")],
        vec![],
        None,
    )
    .await
    .unwrap();
    let now = tern_core::now_unix();
    assert_eq!(
        a.webhooks_due(now).await.unwrap().len(),
        1,
        "mx-a claims it"
    );
    assert!(
        b.webhooks_due(now).await.unwrap().is_empty(),
        "mx-b does not"
    );
    assert_eq!(a.webhooks_due(now).await.unwrap().len(), 1, "mx-a keeps it");
    let later = now + tern_store::postgres::WEBHOOK_CLAIM_SECS;
    assert_eq!(
        b.webhooks_due(later).await.unwrap().len(),
        1,
        "mx-b takes over after mx-a's claim lapses"
    );
    assert!(a.webhooks_due(later).await.unwrap().is_empty());
}
