//! The blob role's contract (`tern_store::blobs`), checked on every backend:
//! a folder of fsynced files and an S3-compatible service (moto's server on
//! loopback, which the test command installs). Then the SQLite store with
//! its bodies in each: delivery, APPEND, reading back, and the collector
//! deleting a body only when no message refers to it any more.

use std::sync::Arc;
use std::time::Duration;
use tern_core::config::BlobsConfig;
use tern_store::blobs::{self, Blobs, FileBlobs, S3Blobs};
use tern_store::sqlite::SqliteStore;
use tern_store::{Appended, BodyStore, Directory, Folders, MailStore, NewMessage, StoreError};
use tern_testkit::s3::S3Server;

fn s3_blobs(server: &S3Server, bucket: &str) -> S3Blobs {
    server.create_bucket(bucket);
    S3Blobs::new(&BlobsConfig {
        bucket: bucket.into(),
        endpoint: server.endpoint(),
        region: "us-east-1".into(),
        access_key_id: "tern".into(),
        secret_access_key: "secret".into(),
        path_style: true,
        prefix: "mail/".into(),
        ..Default::default()
    })
    .unwrap()
}

/// The contract of `Blobs`, as its module documents it.
async fn contract(b: &dyn Blobs) {
    let body = Arc::new(b"Subject: hi\r\n\r\nbody\r\n".to_vec());
    let key = blobs::key_of(&body);
    assert!(matches!(b.get(&key).await, Err(StoreError::NotFound(_))));
    assert_eq!(b.written_at(&key).await.unwrap(), None);
    b.delete(&key).await.unwrap();

    b.put(&key, body.clone()).await.unwrap();
    assert_eq!(b.get(&key).await.unwrap(), *body);
    let first = b.written_at(&key).await.unwrap().expect("a write time");
    // A second put of the same body is harmless and refreshes its age.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    b.put(&key, body.clone()).await.unwrap();
    let second = b.written_at(&key).await.unwrap().unwrap();
    assert!(
        second > first,
        "put refreshes the write time: {first:?} {second:?}"
    );
    assert_eq!(b.get(&key).await.unwrap(), *body);

    // A large body goes and comes back whole.
    let big = Arc::new(
        (0..3_000_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let big_key = blobs::key_of(&big);
    b.put(&big_key, big.clone()).await.unwrap();
    assert_eq!(b.get(&big_key).await.unwrap(), *big);

    b.delete(&key).await.unwrap();
    assert!(matches!(b.get(&key).await, Err(StoreError::NotFound(_))));
    assert_eq!(b.get(&big_key).await.unwrap().len(), big.len());

    // Keys are hashes; nothing else reaches a path or a URL.
    for bad in [
        "../../etc/passwd",
        "",
        "ABCDEF",
        &"g".repeat(64),
        &key[..63],
    ] {
        assert!(matches!(
            b.put(bad, body.clone()).await,
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(b.get(bad).await, Err(StoreError::Invalid(_))));
    }
}

#[tokio::test]
async fn files_keep_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let b = FileBlobs::open(&dir.path().join("blobs")).unwrap();
    contract(&b).await;
    // No temporary file is left behind.
    let leftovers: Vec<_> = tern_testkit::files_under(&dir.path().join("blobs"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn s3_keeps_the_contract() {
    let server = S3Server::start();
    let b = s3_blobs(&server, "contract");
    contract(&b).await;
    // An unreachable service is an error, not a hang or a panic.
    let gone = S3Blobs::new(&BlobsConfig {
        bucket: "x".into(),
        endpoint: "http://127.0.0.1:9".into(),
        region: "us-east-1".into(),
        access_key_id: "a".into(),
        secret_access_key: "b".into(),
        path_style: true,
        prefix: String::new(),
        ..Default::default()
    })
    .unwrap();
    let key = blobs::key_of(b"x");
    assert!(matches!(
        gone.put(&key, Arc::new(b"x".to_vec())).await,
        Err(StoreError::Blob(_))
    ));
}

fn message(id: &str, body: &str, to: i64) -> NewMessage {
    NewMessage::local(
        id.into(),
        format!("From: a@example.net\r\nSubject: {id}\r\n\r\n{body}\r\n").into_bytes(),
        "a@example.net".into(),
        vec![to],
        1_700_000_000,
        "{}".into(),
    )
}

/// The store in `dir`, with bodies in `blobs` (`None`: in the database).
async fn open_store(dir: &tempfile::TempDir, blobs: Option<Arc<dyn Blobs>>) -> SqliteStore {
    let s = SqliteStore::open(&dir.path().join("t.db"), 16)
        .await
        .unwrap();
    match blobs {
        Some(b) => s.with_blobs(b),
        None => s,
    }
}

async fn account(s: &SqliteStore, address: &str, quota: u64) -> (i64, i64) {
    let a = tern_core::Address::parse(address).unwrap();
    let id = s.add_account(&a, "pw", quota).await.unwrap();
    let inbox = s.mailboxes(id).await.unwrap();
    (id, inbox.iter().find(|m| m.name == "INBOX").unwrap().id)
}

/// The store with bodies in `b`: nothing of a body in the database but its
/// hash, every read served from the blob store, and the collector removing
/// a body only after the last message using it is gone.
async fn store_with(b: Arc<dyn Blobs>) {
    let dir = tempfile::tempdir().unwrap();
    let s = open_store(&dir, Some(b.clone())).await;
    s.add_domain("example.test", None).await.unwrap();
    let (ann, inbox) = account(&s, "ann@example.test", 0).await;
    let (bob, _) = account(&s, "bob@example.test", 0).await;
    // The same body twice (one blob store key) and another one.
    s.deliver(message("one", "same", ann)).await.unwrap();
    s.deliver(message("one", "same", bob)).await.unwrap();
    s.deliver(message("two", "other", ann)).await.unwrap();
    let (_, uids) = s
        .append(
            ann,
            inbox,
            vec![Appended {
                raw: b"Subject: appended\r\n\r\nthree\r\n".to_vec(),
                flags: vec!["\\Seen".into()],
                internaldate: 1_700_000_001,
            }],
            None,
        )
        .await
        .unwrap();
    assert_eq!(uids.len(), 1);

    let listed = s.list(ann, "INBOX").await.unwrap();
    assert_eq!(listed.len(), 3);
    let mut keys = Vec::new();
    for m in &listed {
        let raw = s.read_blob(m.blob).await.unwrap();
        let key = blobs::key_of(&raw);
        assert_eq!(
            b.get(&key).await.unwrap(),
            raw,
            "the body is in the blob store"
        );
        keys.push(key);
    }
    let db = std::fs::read(dir.path().join("t.db")).unwrap();
    let wal = std::fs::read(dir.path().join("t.db-wal")).unwrap_or_default();
    for hay in [&db, &wal] {
        assert!(
            !hay.windows(7).any(|w| w == b"three\r\n"),
            "no body in the database"
        );
    }

    // Ann expunges everything; Bob still has the shared body.
    let uids: Vec<u32> = listed.iter().map(|m| m.uid).collect();
    s.expunge(ann, "INBOX", &uids).await.unwrap();
    // Within the grace period nothing is deleted.
    let young = s.collect_blobs(Duration::from_secs(3600)).await.unwrap();
    assert_eq!((young.deleted, young.young, young.in_use), (0, 2, 1));
    let done = s.collect_blobs(Duration::ZERO).await.unwrap();
    assert_eq!((done.deleted, done.in_use), (2, 0), "{done:?}");
    let bobs = s.list(bob, "INBOX").await.unwrap();
    assert_eq!(
        b.get(&keys[0]).await.unwrap(),
        s.read_blob(bobs[0].blob).await.unwrap(),
        "Bob's body stays"
    );
    for k in &keys[1..] {
        assert!(matches!(b.get(k).await, Err(StoreError::NotFound(_))));
    }
    // Nothing is left to collect; Bob's expunge hands the last one over.
    assert_eq!(s.collect_blobs(Duration::ZERO).await.unwrap().deleted, 0);
    s.expunge(bob, "INBOX", &[bobs[0].uid]).await.unwrap();
    assert_eq!(s.collect_blobs(Duration::ZERO).await.unwrap().deleted, 1);
    assert!(matches!(
        b.get(&keys[0]).await,
        Err(StoreError::NotFound(_))
    ));

    // A write that fails after its body was stored (over quota) leaves the
    // body to the collector, which removes it.
    let (cy, cy_inbox) = account(&s, "cy@example.test", 10).await;
    let raw = b"Subject: too big\r\n\r\nfor a ten-byte quota\r\n".to_vec();
    let key = blobs::key_of(&raw);
    let refused = s
        .append(
            cy,
            cy_inbox,
            vec![Appended {
                raw,
                flags: vec![],
                internaldate: 0,
            }],
            None,
        )
        .await;
    assert!(matches!(refused, Err(StoreError::OverQuota)), "{refused:?}");
    assert!(b.get(&key).await.is_ok());
    assert_eq!(s.collect_blobs(Duration::ZERO).await.unwrap().deleted, 1);
    assert!(matches!(b.get(&key).await, Err(StoreError::NotFound(_))));

    // Bodies written inline before a blob store was configured still read.
    drop(s);
    let plain = open_store(&dir, None).await;
    plain
        .deliver(message("inline", "kept in the database", ann))
        .await
        .unwrap();
    drop(plain);
    let s = open_store(&dir, Some(b)).await;
    let m = &s.list(ann, "INBOX").await.unwrap()[0];
    let raw = String::from_utf8(s.read_blob(m.blob).await.unwrap()).unwrap();
    assert!(raw.contains("kept in the database"), "{raw}");
}

#[tokio::test]
async fn the_store_keeps_bodies_in_files() {
    let dir = tempfile::tempdir().unwrap();
    store_with(Arc::new(
        FileBlobs::open(&dir.path().join("blobs")).unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn the_store_keeps_bodies_in_s3() {
    let server = S3Server::start();
    store_with(Arc::new(s3_blobs(&server, "store"))).await;
}

/// A store whose bodies are in a blob store that is not configured any more
/// says so instead of returning an empty body.
#[tokio::test]
async fn a_missing_blob_store_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let files = Arc::new(FileBlobs::open(&dir.path().join("blobs")).unwrap());
    let s = open_store(&dir, Some(files)).await;
    s.add_domain("example.test", None).await.unwrap();
    let (ann, _) = account(&s, "ann@example.test", 0).await;
    s.deliver(message("one", "body", ann)).await.unwrap();
    drop(s);
    let s = open_store(&dir, None).await;
    let m = &s.list(ann, "INBOX").await.unwrap()[0];
    let e = s.read_blob(m.blob).await.unwrap_err();
    assert!(e.to_string().contains("[blobs] backend"), "{e}");
}

/// A body stored without a message (a crash between the put and the
/// commit) is found by the sweep of its shard and deleted once it is older
/// than the grace period; bodies messages refer to stay.
async fn sweep_with(b: Arc<dyn Blobs>) {
    let dir = tempfile::tempdir().unwrap();
    let s = open_store(&dir, Some(b.clone())).await;
    s.add_domain("example.test", None).await.unwrap();
    let (ann, _) = account(&s, "ann@example.test", 0).await;
    for i in 0..20 {
        s.deliver(message(&format!("kept-{i}"), "body", ann))
            .await
            .unwrap();
    }
    let orphan = Arc::new(b"Subject: orphan\r\n\r\nno message refers to me\r\n".to_vec());
    let key = blobs::key_of(&orphan);
    b.put(&key, orphan).await.unwrap();
    let sweep = |grace| {
        let s = &s;
        async move {
            let mut total = (0, 0, 0);
            for shard in blobs::shards() {
                let r = s.sweep_blobs(&shard, grace).await.unwrap();
                total = (
                    total.0 + r.looked_at,
                    total.1 + r.deleted,
                    total.2 + r.young,
                );
            }
            total
        }
    };
    assert_eq!(sweep(Duration::from_secs(3600)).await, (21, 0, 1));
    assert_eq!(sweep(Duration::ZERO).await, (21, 1, 0));
    assert!(matches!(b.get(&key).await, Err(StoreError::NotFound(_))));
    for m in s.list(ann, "INBOX").await.unwrap() {
        assert!(s.read_blob(m.blob).await.is_ok());
    }
    assert_eq!(sweep(Duration::ZERO).await, (20, 0, 0));
}

#[tokio::test]
async fn orphans_are_swept_from_files() {
    let dir = tempfile::tempdir().unwrap();
    sweep_with(Arc::new(
        FileBlobs::open(&dir.path().join("blobs")).unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn orphans_are_swept_from_s3() {
    let server = S3Server::start();
    sweep_with(Arc::new(s3_blobs(&server, "sweep"))).await;
}
