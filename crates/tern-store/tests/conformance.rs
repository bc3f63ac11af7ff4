//! The store's invariants, stated once and checked on every backend.
//!
//! What the protocol crates rely on and the traits promise (DESIGN.md,
//! "Storage"): UIDs and MODSEQs only grow and a UID is never given twice in
//! a mailbox (RFC 9051 §2.3.1.1, RFC 7162 §3); expunged UIDs are remembered
//! with their MODSEQ for QRESYNC's VANISHED (RFC 7162 §3.2.10); an account's
//! usage is the sum of its messages' sizes and a quota refuses whole
//! writes; a body is stored once however many messages and queue entries
//! refer to it, and goes when the last of them does; a queue entry leased
//! by one claimer is not handed to another until its lease ends or is
//! released, and a message leaves the queue with its last recipient.
//!
//! Each backend is a constructor in [`backends`]: the embedded SQLite store
//! with bodies inline, in files, and in an S3-compatible bucket (moto's
//! server on loopback); PostgreSQL (a private server on loopback) with
//! bodies in it, in files and in the bucket.

use std::sync::Arc;
use tern_core::config::BlobsConfig;
use tern_store::blobs::{FileBlobs, S3Blobs};
use tern_store::postgres::PgStore;
use tern_store::sqlite::SqliteStore;
use tern_store::{
    AccountId, Appended, BlobId, Blobs, Completion, FlagMode, MailBackend, NewMessage,
    OutboundRcpt, RcptOutcome, StoreError,
};
use tern_testkit::pg::PgServer;
use tern_testkit::s3::S3Server;

type SharedStore = Arc<dyn MailBackend>;

/// A store under test, with what keeps it alive.
struct Backend {
    name: &'static str,
    store: SharedStore,
    _dir: tempfile::TempDir,
    _s3: Option<S3Server>,
    _pg: Option<PgServer>,
}

fn bucket(server: &S3Server) -> Arc<dyn Blobs> {
    server.create_bucket("conformance");
    Arc::new(
        S3Blobs::new(&BlobsConfig {
            bucket: "conformance".into(),
            endpoint: server.endpoint(),
            region: "us-east-1".into(),
            access_key_id: "t".into(),
            secret_access_key: "t".into(),
            path_style: true,
            prefix: String::new(),
            ..Default::default()
        })
        .unwrap(),
    )
}

async fn backends() -> Vec<Backend> {
    let mut out = Vec::new();
    for name in [
        "sqlite",
        "sqlite+files",
        "sqlite+s3",
        "postgres",
        "postgres+files",
        "postgres+s3",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (mut s3, mut pg) = (None, None);
        let blobs: Option<Arc<dyn Blobs>> = match name.split_once('+').map(|p| p.1) {
            Some("files") => Some(Arc::new(
                FileBlobs::open(&dir.path().join("blobs")).unwrap(),
            )),
            Some(_) => {
                let server = S3Server::start();
                let b = bucket(&server);
                s3 = Some(server);
                Some(b)
            }
            None => None,
        };
        let store: SharedStore = if name.starts_with("postgres") {
            let server = PgServer::start();
            let url = server.database("conformance");
            pg = Some(server);
            let s = PgStore::connect(&url, 8).await.unwrap();
            match blobs {
                Some(b) => Arc::new(s.with_blobs(b)),
                None => Arc::new(s),
            }
        } else {
            let s = SqliteStore::open(&dir.path().join("t.db"), 16)
                .await
                .unwrap();
            match blobs {
                Some(b) => Arc::new(s.with_blobs(b)),
                None => Arc::new(s),
            }
        };
        out.push(Backend {
            name,
            store,
            _dir: dir,
            _s3: s3,
            _pg: pg,
        });
    }
    out
}

async fn account(s: &SharedStore, address: &str, quota: u64) -> AccountId {
    let _ = s.add_domain("example.test", None).await;
    let a = tern_core::Address::parse(address).unwrap();
    s.add_account(&a, "pw", quota).await.unwrap()
}

async fn inbox(s: &SharedStore, account: AccountId) -> i64 {
    s.find_mailbox(account, "INBOX", false).await.unwrap().id
}

fn message(subject: &str, to: Vec<AccountId>) -> NewMessage {
    NewMessage::local(
        format!("q-{subject}"),
        format!("Subject: {subject}\r\n\r\nbody of {subject}\r\n").into_bytes(),
        "sender@example.net".into(),
        to,
        1_700_000_000,
        "{}".into(),
    )
}

/// A message for `to` and the remote recipients `remote`, queued as `queue_id`.
fn with_remote(subject: &str, to: Vec<AccountId>, queue_id: String, remote: &[&str]) -> NewMessage {
    let mut m = message(subject, to);
    m.queue_id = queue_id;
    m.expires_at = tern_core::now_unix() + 86_400;
    m.outbound = remote
        .iter()
        .map(|a| OutboundRcpt {
            address: a.to_string(),
            domain: "remote.test".into(),
            params: "{}".into(),
        })
        .collect();
    m
}

/// A delivery attempt that only records outcomes (no DSNs, events or
/// suppressions).
fn outcomes(outcomes: Vec<(i64, RcptOutcome)>) -> Completion {
    Completion {
        outcomes,
        new: vec![],
        events: vec![],
        suppress: vec![],
    }
}

async fn blob_gone(s: &SharedStore, blob: BlobId) -> bool {
    matches!(s.read_blob(blob).await, Err(StoreError::NotFound(_)))
}

/// UIDs are assigned from UIDNEXT and never given twice; HIGHESTMODSEQ
/// grows with every change; expunges leave tombstones for VANISHED.
#[tokio::test]
async fn uids_modseqs_and_tombstones() {
    for b in backends().await {
        let (s, n) = (&b.store, b.name);
        let ann = account(s, "ann@example.test", 0).await;
        let mb = inbox(s, ann).await;
        let mut modseqs = vec![s.mailbox_state(mb).await.unwrap().0];
        for i in 0..3 {
            s.deliver(message(&format!("m{i}"), vec![ann]))
                .await
                .unwrap();
            modseqs.push(s.mailbox_state(mb).await.unwrap().0);
        }
        assert_eq!(s.uids(mb).await.unwrap(), vec![1, 2, 3], "{n}");
        assert_eq!(s.mailbox(ann, "INBOX").await.unwrap().uidnext, 4, "{n}");
        let flagged = s
            .set_flags(mb, &[2], FlagMode::Add, &["\\Flagged".into()], None)
            .await
            .unwrap();
        modseqs.push(flagged[0].modseq);
        let before_expunge = s.mailbox_state(mb).await.unwrap().0;
        s.expunge_uids(mb, &[3]).await.unwrap();
        modseqs.push(s.mailbox_state(mb).await.unwrap().0);
        s.deliver(message("m3", vec![ann])).await.unwrap();
        modseqs.push(s.mailbox_state(mb).await.unwrap().0);
        assert!(modseqs.windows(2).all(|w| w[0] < w[1]), "{n}: {modseqs:?}");
        assert_eq!(
            s.uids(mb).await.unwrap(),
            vec![1, 2, 4],
            "{n}: UID 3 not reused"
        );
        assert_eq!(
            s.vanished_since(mb, before_expunge).await.unwrap(),
            vec![3],
            "{n}"
        );
        let changed: Vec<u32> = s
            .changed_since(mb, before_expunge)
            .await
            .unwrap()
            .iter()
            .map(|r| r.uid)
            .collect();
        assert_eq!(changed, vec![4], "{n}");
        // APPEND takes UIDs from the same sequence, all or none.
        let (_, uids) = s
            .append(
                ann,
                mb,
                vec![
                    Appended {
                        raw: b"Subject: a\r\n\r\na\r\n".to_vec(),
                        flags: vec![],
                        internaldate: 0,
                    },
                    Appended {
                        raw: b"Subject: b\r\n\r\nb\r\n".to_vec(),
                        flags: vec!["\\Seen".into()],
                        internaldate: 0,
                    },
                ],
                None,
            )
            .await
            .unwrap();
        assert_eq!(uids, vec![5, 6], "{n}");
    }
}

/// Usage is the sum of the messages' sizes; a quota refuses a whole write
/// and leaves nothing of it.
#[tokio::test]
async fn quota_usage() {
    for b in backends().await {
        let (s, n) = (&b.store, b.name);
        let m0 = message("q0", vec![]);
        let size = m0.raw.len() as u64;
        let bob = account(s, "bob@example.test", 3 * size + 10).await;
        let mb = inbox(s, bob).await;
        for i in 0..3 {
            s.deliver(message(&format!("q{i}"), vec![bob]))
                .await
                .unwrap();
        }
        let used = |accts: Vec<tern_store::AccountInfo>| {
            let a = accts.into_iter().find(|a| a.id == bob).unwrap();
            (a.used, a.messages)
        };
        assert_eq!(
            used(s.list_accounts(None).await.unwrap()),
            (3 * size, 3),
            "{n}"
        );
        let too_much = s
            .append(
                bob,
                mb,
                vec![Appended {
                    raw: vec![b'x'; 64],
                    flags: vec![],
                    internaldate: 0,
                }],
                None,
            )
            .await;
        assert!(
            matches!(too_much, Err(StoreError::OverQuota)),
            "{n}: {too_much:?}"
        );
        assert_eq!(s.uids(mb).await.unwrap().len(), 3, "{n}");
        s.expunge_uids(mb, &[1, 2]).await.unwrap();
        assert_eq!(used(s.list_accounts(None).await.unwrap()), (size, 1), "{n}");
    }
}

/// One body for every reference; it goes with the last one.
#[tokio::test]
async fn one_body_many_references() {
    for b in backends().await {
        let (s, n) = (&b.store, b.name);
        let cy = account(s, "cy@example.test", 0).await;
        let di = account(s, "di@example.test", 0).await;
        s.deliver(message("shared", vec![cy, di])).await.unwrap();
        let (cy_mb, di_mb) = (inbox(s, cy).await, inbox(s, di).await);
        let blob = s.list(cy, "INBOX").await.unwrap()[0].blob;
        assert_eq!(
            s.list(di, "INBOX").await.unwrap()[0].blob,
            blob,
            "{n}: stored once"
        );
        // A copy is one more reference to the same body.
        s.create_mailbox(cy, "Keep").await.unwrap();
        let archive = s.find_mailbox(cy, "Keep", false).await.unwrap().id;
        s.copy(cy_mb, &[1], archive, false).await.unwrap();
        s.expunge_uids(cy_mb, &[1]).await.unwrap();
        s.expunge_uids(di_mb, &[1]).await.unwrap();
        assert!(s.read_blob(blob).await.is_ok(), "{n}: the copy keeps it");
        s.expunge_uids(archive, &[1]).await.unwrap();
        assert!(
            blob_gone(s, blob).await,
            "{n}: gone with the last reference"
        );

        // A message for a mailbox and a remote recipient: the queue row is
        // a reference too.
        let m = with_remote("mixed", vec![cy], format!("M{n}"), &["x@remote.test"]);
        s.deliver(m).await.unwrap();
        let uid = s.uids(cy_mb).await.unwrap()[0];
        let blob = s.list(cy, "INBOX").await.unwrap()[0].blob;
        s.expunge_uids(cy_mb, &[uid]).await.unwrap();
        assert!(s.read_blob(blob).await.is_ok(), "{n}: the queue keeps it");
        let now = tern_core::now_unix();
        let claimed = s.claim_due(now, 10, now + 300).await.unwrap();
        assert_eq!(claimed.len(), 1, "{n}");
        s.complete(outcomes(vec![(claimed[0].id, RcptOutcome::Delivered)]))
            .await
            .unwrap();
        assert!(blob_gone(s, blob).await, "{n}: gone with the queue row");
    }
}

/// Leases: a claimed recipient is not claimed again until its lease ends
/// or is released; a message leaves the queue, body and all, with its last
/// recipient.
#[tokio::test]
async fn queue_leases_and_cleanup() {
    for b in backends().await {
        let (s, n) = (&b.store, b.name);
        let m = with_remote(
            "out",
            vec![],
            format!("Q{n}"),
            &["a@remote.test", "b@remote.test"],
        );
        let queued = s.enqueue(m).await.unwrap();
        assert_eq!(queued.len(), 2, "{n}");
        let now = tern_core::now_unix();
        let claimed = s.claim_due(now, 10, now + 300).await.unwrap();
        assert_eq!(claimed.len(), 2, "{n}");
        assert!(
            s.claim_due(now, 10, now + 300).await.unwrap().is_empty(),
            "{n}: leased"
        );
        assert_eq!(
            s.claim_due(now + 301, 10, now + 600).await.unwrap().len(),
            2,
            "{n}: expired"
        );
        s.release_leases().await.unwrap();
        let after = tern_core::now_unix();
        let claimed = s.claim_due(after, 10, now + 300).await.unwrap();
        assert_eq!(claimed.len(), 2, "{n}: released");
        let blob = claimed[0].blob;
        s.complete(outcomes(vec![
            (claimed[0].id, RcptOutcome::Delivered),
            (
                claimed[1].id,
                RcptOutcome::Deferred {
                    next_attempt: now + 60,
                    error: "451 try later".into(),
                    delay_noticed: false,
                },
            ),
        ]))
        .await
        .unwrap();
        let left = s.queued_message(&format!("Q{n}")).await.unwrap();
        assert_eq!(left.len(), 1, "{n}");
        assert_eq!(
            (left[0].attempts, left[0].next_attempt),
            (1, now + 60),
            "{n}"
        );
        assert!(s.read_blob(blob).await.is_ok(), "{n}");
        let again = s.claim_due(now + 60, 10, now + 400).await.unwrap();
        s.complete(outcomes(vec![(
            again[0].id,
            RcptOutcome::Failed {
                error: "550 no".into(),
            },
        )]))
        .await
        .unwrap();
        assert!(
            s.queued_message(&format!("Q{n}")).await.unwrap().is_empty(),
            "{n}"
        );
        assert!(
            blob_gone(s, blob).await,
            "{n}: the body left with the message"
        );

        // Deleted by hand (`tern queue delete`): recipients, message, body.
        let m = with_remote(
            "deleted",
            vec![],
            format!("D{n}"),
            &["c@remote.test", "d@remote.test"],
        );
        let queued = s.enqueue(m).await.unwrap();
        let blob = s.queued_message(&format!("D{n}")).await.unwrap()[0].blob;
        assert_eq!(queued.len(), 2, "{n}");
        assert_eq!(s.queue_delete(&format!("D{n}")).await.unwrap(), 2, "{n}");
        assert!(
            s.queued_message(&format!("D{n}")).await.unwrap().is_empty(),
            "{n}"
        );
        assert!(blob_gone(s, blob).await, "{n}: deleted with its message");
    }
}

/// Outcomes for several messages in one completion: a body shared by
/// queued messages loses one reference per message that leaves, and goes
/// with the last; and on PostgreSQL, two nodes finishing a message's last
/// two recipients at once remove the message and its body (neither sees
/// the other's recipient left behind).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_removal_in_batches() {
    for b in backends().await {
        let (s, n) = (&b.store, b.name);
        // Three queue entries of one content: one body, three references.
        for i in 0..3 {
            s.enqueue(with_remote(
                "shared",
                vec![],
                format!("S{i}"),
                &["x@remote.test"],
            ))
            .await
            .unwrap();
        }
        let now = tern_core::now_unix();
        let claimed = s.claim_due(now, 10, now + 300).await.unwrap();
        assert_eq!(claimed.len(), 3, "{n}");
        // PostgreSQL stores a content once (by hash) across messages; the
        // embedded store, once per message.
        let shared = claimed.iter().all(|c| c.blob == claimed[0].blob);
        assert_eq!(shared, n.starts_with("postgres"), "{n}");
        let done =
            |ids: &[i64]| outcomes(ids.iter().map(|i| (*i, RcptOutcome::Delivered)).collect());
        s.complete(done(&[claimed[0].id, claimed[1].id]))
            .await
            .unwrap();
        assert_eq!(s.queue_list().await.unwrap().len(), 1, "{n}");
        assert!(s.read_blob(claimed[2].blob).await.is_ok(), "{n}: one left");
        for c in &claimed[..2] {
            if c.blob != claimed[2].blob {
                assert!(blob_gone(s, c.blob).await, "{n}");
            }
        }
        s.complete(done(&[claimed[2].id])).await.unwrap();
        assert!(s.queue_list().await.unwrap().is_empty(), "{n}");
        assert!(blob_gone(s, claimed[2].blob).await, "{n}: the last went");
    }

    let pg = PgServer::start();
    let url = pg.database("removal");
    let a: SharedStore = Arc::new(PgStore::connect(&url, 4).await.unwrap().with_node("mx-a"));
    let b: SharedStore = Arc::new(PgStore::connect(&url, 4).await.unwrap().with_node("mx-b"));
    for round in 0..20 {
        let queue_id = format!("R{round}");
        a.enqueue(with_remote(
            &format!("race {round}"),
            vec![],
            queue_id.clone(),
            &["y@remote.test", "z@remote.test"],
        ))
        .await
        .unwrap();
        let now = tern_core::now_unix();
        let by_a = a.claim_due(now, 1, now + 300).await.unwrap();
        let by_b = b.claim_due(now, 1, now + 300).await.unwrap();
        assert_eq!((by_a.len(), by_b.len()), (1, 1), "round {round}");
        let blob = by_a[0].blob;
        let finish = |s: SharedStore, id: i64| async move {
            s.complete(outcomes(vec![(id, RcptOutcome::Delivered)]))
                .await
        };
        let (ra, rb) = tokio::join!(
            tokio::spawn(finish(a.clone(), by_a[0].id)),
            tokio::spawn(finish(b.clone(), by_b[0].id))
        );
        ra.unwrap().unwrap();
        rb.unwrap().unwrap();
        assert!(
            a.queued_message(&queue_id).await.unwrap().is_empty(),
            "round {round}"
        );
        assert!(
            a.queue_list().await.unwrap().is_empty(),
            "round {round}: message left behind"
        );
        assert!(blob_gone(&a, blob).await, "round {round}: body left behind");
    }
}

/// Two nodes on one store: a claim leases to its node; a node frees only
/// its own leases when it restarts; `nodes` shows each with its leases.
#[tokio::test]
async fn leases_belong_to_their_node() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let a = SqliteStore::open(&path, 16).await.unwrap();
    let b = SqliteStore::open(&path, 16).await.unwrap();
    two_nodes(
        "sqlite",
        Arc::new(a.with_node("mx-a")),
        Arc::new(b.with_node("mx-b")),
    )
    .await;
    let pg = PgServer::start();
    let url = pg.database("nodes");
    let files: Arc<dyn Blobs> = Arc::new(FileBlobs::open(&dir.path().join("blobs")).unwrap());
    let a = PgStore::connect(&url, 4)
        .await
        .unwrap()
        .with_blobs(files.clone());
    let b = PgStore::connect(&url, 4).await.unwrap().with_blobs(files);
    two_nodes(
        "postgres",
        Arc::new(a.with_node("mx-a")),
        Arc::new(b.with_node("mx-b")),
    )
    .await;
}

async fn two_nodes(n: &str, a: SharedStore, b: SharedStore) {
    let remote: Vec<String> = (0..4).map(|i| format!("r{i}@remote.test")).collect();
    let remote: Vec<&str> = remote.iter().map(String::as_str).collect();
    let m = with_remote("two-nodes", vec![], "q-two-nodes".into(), &remote);
    a.enqueue(m).await.unwrap();
    let now = tern_core::now_unix();
    let by_a = a.claim_due(now, 3, now + 300).await.unwrap();
    let by_b = b.claim_due(now, 10, now + 300).await.unwrap();
    assert_eq!((by_a.len(), by_b.len()), (3, 1), "{n}: disjoint claims");
    a.heartbeat(now, 1, "test").await.unwrap();
    b.heartbeat(now, 2, "test").await.unwrap();
    let held = |nodes: Vec<tern_store::NodeInfo>| {
        nodes
            .into_iter()
            .map(|n| (n.name, n.leases))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        held(a.nodes().await.unwrap()),
        vec![("mx-a".to_string(), 3), ("mx-b".to_string(), 1)],
        "{n}"
    );
    // mx-a restarts: its three are free again, mx-b's stays leased.
    a.release_leases().await.unwrap();
    let after = tern_core::now_unix();
    let again = b.claim_due(after, 10, after + 300).await.unwrap();
    assert_eq!(again.len(), 3, "{n}");
    assert!(
        by_b.iter().all(|r| again.iter().all(|x| x.id != r.id)),
        "{n}: mx-b's own lease was not freed by mx-a"
    );
    assert_eq!(
        held(b.nodes().await.unwrap()),
        vec![("mx-a".to_string(), 0), ("mx-b".to_string(), 4)],
        "{n}"
    );
    // mx-b falls silent holding all four: mx-a takes over only once mx-b's
    // last beat is before the silence bound, and only mx-b's leases.
    let now = tern_core::now_unix();
    assert!(
        a.take_over_silent(now, now - 30).await.unwrap().is_empty(),
        "{n}: mx-b beat just now"
    );
    assert!(
        a.claim_due(now, 10, now + 300).await.unwrap().is_empty(),
        "{n}"
    );
    let later = now + 100;
    assert_eq!(
        a.take_over_silent(later, later - 30).await.unwrap(),
        vec![("mx-b".to_string(), 4)],
        "{n}: mx-b silent"
    );
    assert_eq!(
        a.claim_due(later, 10, later + 300).await.unwrap().len(),
        4,
        "{n}: due again, for mx-a"
    );
    assert!(
        b.take_over_silent(later, later - 30)
            .await
            .unwrap()
            .iter()
            .all(|(o, _)| o != "mx-b"),
        "{n}: a node never takes over from itself"
    );
}

/// Deliveries at once (batched by the backend's group commit, and on
/// PostgreSQL from two nodes) get distinct, consecutive UIDs and MODSEQs,
/// and the usage adds up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_get_distinct_uids() {
    for b in backends().await {
        let (s, n) = (&b.store, b.name);
        let ann = account(s, "ann@example.test", 0).await;
        let bob = account(s, "bob@example.test", 0).await;
        deliver_at_once(n, vec![s.clone()], ann, bob).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let pg = PgServer::start();
    let url = pg.database("two");
    let files: Arc<dyn Blobs> = Arc::new(FileBlobs::open(&dir.path().join("blobs")).unwrap());
    let a: SharedStore = Arc::new(
        PgStore::connect(&url, 4)
            .await
            .unwrap()
            .with_blobs(files.clone()),
    );
    let b: SharedStore = Arc::new(PgStore::connect(&url, 4).await.unwrap().with_blobs(files));
    let ann = account(&a, "ann@example.test", 0).await;
    let bob = account(&a, "bob@example.test", 0).await;
    deliver_at_once("postgres, two nodes", vec![a, b], ann, bob).await;
}

async fn deliver_at_once(n: &str, stores: Vec<SharedStore>, ann: AccountId, bob: AccountId) {
    let total = 60;
    let mut tasks = Vec::new();
    for i in 0..total {
        let s = stores[i % stores.len()].clone();
        // Every third message goes to both accounts (locks in two mailboxes).
        let to = if i % 3 == 0 {
            vec![ann, bob]
        } else {
            vec![ann]
        };
        tasks.push(tokio::spawn(async move {
            s.deliver(message(&format!("c{i}"), to)).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let s = &stores[0];
    let mb = inbox(s, ann).await;
    assert_eq!(
        s.uids(mb).await.unwrap(),
        (1..=total as u32).collect::<Vec<_>>(),
        "{n}"
    );
    let mut modseqs: Vec<u64> = s
        .messages(mb)
        .await
        .unwrap()
        .iter()
        .map(|m| m.modseq)
        .collect();
    modseqs.sort_unstable();
    modseqs.dedup();
    assert_eq!(modseqs.len(), total, "{n}: distinct MODSEQs");
    assert!(
        s.mailbox_state(mb).await.unwrap().0 >= *modseqs.last().unwrap(),
        "{n}"
    );
    let accounts = s.list_accounts(None).await.unwrap();
    let a = accounts.iter().find(|a| a.id == ann).unwrap();
    let sizes: u64 = s
        .list(ann, "INBOX")
        .await
        .unwrap()
        .iter()
        .map(|m| m.size)
        .sum();
    assert_eq!((a.used, a.messages), (sizes, total as u64), "{n}");
    let bob_mb = inbox(s, bob).await;
    assert_eq!(s.uids(bob_mb).await.unwrap().len(), total / 3, "{n}");
}

/// An allowance counts every take, refuses past its limit without taking,
/// keeps the last window's takes in view at a window's edge, and on
/// PostgreSQL is one count for every node.
#[tokio::test]
async fn allowances_count_across_nodes() {
    let hour = 3600;
    let t = 1_700_000_000 / hour * hour + hour - 1; // the last second of an hour
    for b in backends().await {
        let (s, n) = (&b.store, b.name);
        assert!(s.take_allowance("k", 2, hour, t).await.unwrap(), "{n}");
        assert!(s.take_allowance("k", 2, hour, t).await.unwrap(), "{n}");
        assert!(
            !s.take_allowance("k", 2, hour, t).await.unwrap(),
            "{n}: used up"
        );
        assert!(
            !s.take_allowance("k", 2, hour, t + 1).await.unwrap(),
            "{n}: the next hour's first second still sees the two"
        );
        assert!(
            s.take_allowance("other", 2, hour, t).await.unwrap(),
            "{n}: per key"
        );
        assert!(
            s.take_allowance("k", 2, hour, t + hour + 1).await.unwrap(),
            "{n}: an hour later"
        );
    }
    let pg = PgServer::start();
    let url = pg.database("allowances");
    let a: SharedStore = Arc::new(PgStore::connect(&url, 2).await.unwrap());
    let b: SharedStore = Arc::new(PgStore::connect(&url, 2).await.unwrap());
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            s.take_allowance("shared", 7, hour, t).await.unwrap()
        }));
    }
    let mut taken = 0;
    for task in tasks {
        taken += usize::from(task.await.unwrap());
    }
    assert_eq!(taken, 7, "seven of twenty concurrent takes on two nodes");
}

/// The coordination counts beside allowances: rates, tallies and the
/// cache, on every backend, then across two nodes of one PostgreSQL.
#[tokio::test]
async fn rates_tallies_and_cache_across_nodes() {
    for b in backends().await {
        rates(&b.store, b.name).await;
        tallies(&b.store, b.name).await;
        cache(&b.store, b.name).await;
    }
    let pg = PgServer::start();
    let url = pg.database("coordination");
    let a: SharedStore = Arc::new(PgStore::connect(&url, 2).await.unwrap());
    let b: SharedStore = Arc::new(PgStore::connect(&url, 2).await.unwrap());
    rates_on_two_nodes(&a, &b).await;
    tallies_on_two_nodes(&a, &b).await;
    a.cache("mta-sts:b.test", "policy", T + 60).await.unwrap();
    assert_eq!(
        b.cached("mta-sts:b.test", T).await.unwrap().as_deref(),
        Some("policy")
    );
}

const T: i64 = 1_700_000_000;

/// A rate lets a burst through, then one an interval, and says how long
/// to wait.
async fn rates(s: &SharedStore, n: &str) {
    let t = T * 1000;
    assert_eq!(s.take_rate("r", 1000, 2, t).await.unwrap(), None, "{n}");
    assert_eq!(s.take_rate("r", 1000, 2, t).await.unwrap(), None, "{n}");
    assert_eq!(
        s.take_rate("r", 1000, 2, t + 400).await.unwrap(),
        Some(600),
        "{n}: the burst is used; one is back in 600 ms"
    );
    assert_eq!(
        s.take_rate("r", 1000, 2, t + 1000).await.unwrap(),
        None,
        "{n}"
    );
    assert_eq!(
        s.take_rate("other", 1000, 2, t).await.unwrap(),
        None,
        "{n}: per key"
    );
}

/// Concurrent takes on two nodes share one rate.
async fn rates_on_two_nodes(a: &SharedStore, b: &SharedStore) {
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            s.take_rate("shared", 60_000, 5, T * 1000)
                .await
                .unwrap()
                .is_none()
        }));
    }
    let mut taken = 0;
    for task in tasks {
        taken += usize::from(task.await.unwrap());
    }
    assert_eq!(
        taken, 5,
        "a burst of five of twenty concurrent takes on two nodes"
    );
}

fn keys(k: &[&str]) -> Vec<String> {
    k.iter().map(|s| s.to_string()).collect()
}

/// Tallies rise, fall without going below zero, are cleared, and lapse a
/// window after their last rise.
async fn tallies(s: &SharedStore, n: &str) {
    let t = T;
    assert_eq!(
        s.tally(&keys(&["ip", "net"]), 1, 60, t).await.unwrap(),
        [1, 1],
        "{n}"
    );
    assert_eq!(
        s.tally(&keys(&["net", "ip"]), 1, 60, t + 1).await.unwrap(),
        [2, 2],
        "{n}"
    );
    assert_eq!(
        s.tally(&keys(&["ip"]), -1, 60, t + 2).await.unwrap(),
        [1],
        "{n}"
    );
    assert_eq!(
        s.tally(&keys(&["new"]), -1, 60, t + 2).await.unwrap(),
        [0],
        "{n}: never below 0"
    );
    s.clear_tally("net").await.unwrap();
    assert_eq!(
        s.tally(&keys(&["net"]), 0, 60, t + 2).await.unwrap(),
        [0],
        "{n}: cleared"
    );
    assert_eq!(
        s.tally(&keys(&["ip"]), 0, 60, t + 61).await.unwrap(),
        [0],
        "{n}: lapsed a window after its last rise"
    );
}

/// Concurrent attempts on two nodes each get their own count; lapsed
/// tallies are swept.
async fn tallies_on_two_nodes(a: &SharedStore, b: &SharedStore) {
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            s.tally(&keys(&["auth-ip:192.0.2.1"]), 1, 900, T)
                .await
                .unwrap()[0]
        }));
    }
    let mut counts = Vec::new();
    for task in tasks {
        counts.push(task.await.unwrap());
    }
    counts.sort();
    assert_eq!(
        counts,
        (1..=20).collect::<Vec<u64>>(),
        "each attempt its own count"
    );
    assert!(b.sweep_counters(T + 901).await.unwrap() >= 1);
    assert_eq!(
        a.tally(&keys(&["auth-ip:192.0.2.1"]), 0, 900, T)
            .await
            .unwrap(),
        [0],
        "swept"
    );
}

/// A cached value is read until it lapses, replaced by a newer one, and
/// swept after.
async fn cache(s: &SharedStore, n: &str) {
    let t = T;
    assert_eq!(s.cached("mta-sts:a.test", t).await.unwrap(), None, "{n}");
    s.cache("mta-sts:a.test", "one", t + 10).await.unwrap();
    s.cache("mta-sts:a.test", "two", t + 10).await.unwrap();
    assert_eq!(
        s.cached("mta-sts:a.test", t).await.unwrap().as_deref(),
        Some("two"),
        "{n}"
    );
    assert_eq!(
        s.cached("mta-sts:a.test", t + 10).await.unwrap(),
        None,
        "{n}: lapsed"
    );
    s.sweep_counters(t + 10).await.unwrap();
    assert_eq!(
        s.cached("mta-sts:a.test", t).await.unwrap(),
        None,
        "{n}: swept"
    );
}
