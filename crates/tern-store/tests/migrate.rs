//! `tern migrate`'s copy: an installation on SQLite (bodies in it, and in
//! files) moved into PostgreSQL keeps its accounts and logins, UIDs,
//! UIDVALIDITYs, MODSEQs, flags, tombstones, bodies, queue, events, API
//! keys and secrets, and the counts match.

use std::sync::Arc;
use tern_core::Address;
use tern_store::blobs::FileBlobs;
use tern_store::postgres::PgStore;
use tern_store::sqlite::SqliteStore;
use tern_store::*;
use tern_testkit::pg::PgServer;

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

/// What a user sees of a mailbox: (UID, flags, MODSEQ, body) of each message.
async fn view(
    s: &dyn Store,
    account: AccountId,
    name: &str,
) -> (u32, u32, Vec<(u32, Vec<String>, u64, Vec<u8>)>) {
    let mb = s.find_mailbox(account, name, false).await.unwrap();
    let mut out = Vec::new();
    for m in s.messages(mb.id).await.unwrap() {
        out.push((m.uid, m.flags, m.modseq, s.read_blob(m.blob).await.unwrap()));
    }
    (mb.uidvalidity, mb.uidnext, out)
}

async fn migrated(with_files: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tern.db");
    let files: Option<Arc<dyn Blobs>> = with_files
        .then(|| Arc::new(FileBlobs::open(&dir.path().join("blobs")).unwrap()) as Arc<dyn Blobs>);
    let src = SqliteStore::open(&path, 16).await.unwrap();
    src.add_domain("example.test", None).await.unwrap();
    let ann = src
        .add_account(&Address::parse("ann@example.test").unwrap(), "ann-pw", 0)
        .await
        .unwrap();
    let bob = src
        .add_account(&Address::parse("bob@example.test").unwrap(), "bob-pw", 0)
        .await
        .unwrap();
    src.add_alias(
        &Address::parse("sales@example.test").unwrap(),
        &Address::parse("ann@example.test").unwrap(),
    )
    .await
    .unwrap();
    // Bodies in the database first; with files, later ones in the blob store.
    for i in 0..3 {
        src.deliver(message(&format!("m{i}"), vec![ann, bob]))
            .await
            .unwrap();
    }
    drop(src);
    let src = match &files {
        Some(f) => SqliteStore::open(&path, 16)
            .await
            .unwrap()
            .with_blobs(f.clone()),
        None => SqliteStore::open(&path, 16).await.unwrap(),
    };
    src.deliver(message("m3", vec![ann])).await.unwrap();
    let inbox = src.find_mailbox(ann, "INBOX", false).await.unwrap().id;
    src.set_flags(
        inbox,
        &[1, 3],
        FlagMode::Add,
        &["\\Seen".into(), "$Work".into()],
        None,
    )
    .await
    .unwrap();
    src.expunge_uids(inbox, &[2]).await.unwrap();
    src.create_mailbox(ann, "Projects/2026").await.unwrap();
    let mut out = message("out", vec![]);
    out.expires_at = tern_core::now_unix() + 86_400;
    out.outbound = vec![OutboundRcpt {
        address: "x@remote.test".into(),
        domain: "remote.test".into(),
        params: "{}".into(),
    }];
    out.events = vec![Event::new(EventType::Accepted, "q-out").to("x@remote.test")];
    src.enqueue(out).await.unwrap();
    src.add_api_key(ApiKey {
        id: "key1".into(),
        hash: "h".into(),
        scope: "send".into(),
        domains: vec!["example.test".into()],
        name: "app".into(),
        created: 1,
        revoked: None,
    })
    .await
    .unwrap();
    let secret = src.shared_secret("srs", vec![9; 32]).await.unwrap();
    let src: Arc<dyn Store> = Arc::new(src);
    let before_ann = view(&*src, ann, "INBOX").await;
    let before_bob = view(&*src, bob, "INBOX").await;
    let before_queue = src.queue_list().await.unwrap();
    let before_accounts = src.list_accounts(None).await.unwrap();

    let pg = PgServer::start();
    let url = pg.database("tern");
    let mut target = PgStore::connect(&url, 4).await.unwrap();
    if let Some(f) = &files {
        target = target.with_blobs(f.clone());
    }
    let moved = tern_store::migrate::sqlite_to_postgres(&path, files.clone(), &target, &|_, _| {})
        .await
        .unwrap();
    assert!(moved.mismatches().is_empty(), "{:?}", moved.tables);
    let dst: Arc<dyn Store> = Arc::new(target);
    assert_eq!(view(&*dst, ann, "INBOX").await, before_ann);
    assert_eq!(view(&*dst, bob, "INBOX").await, before_bob);
    assert_eq!(dst.list_accounts(None).await.unwrap(), before_accounts);
    let queue = dst.queue_list().await.unwrap();
    assert_eq!(
        queue
            .iter()
            .map(|q| (q.id, q.address.clone()))
            .collect::<Vec<_>>(),
        before_queue
            .iter()
            .map(|q| (q.id, q.address.clone()))
            .collect::<Vec<_>>()
    );
    assert!(dst.read_blob(queue[0].blob).await.is_ok());
    let mb = dst.find_mailbox(ann, "INBOX", false).await.unwrap().id;
    assert_eq!(
        dst.vanished_since(mb, 0).await.unwrap(),
        vec![2],
        "tombstone"
    );
    assert!(dst.find_mailbox(ann, "Projects/2026", false).await.is_ok());
    assert!(
        dst.authenticate("ann@example.test", "ann-pw")
            .await
            .unwrap()
            .is_some()
    );
    assert!(matches!(
        dst.resolve(&Address::parse("sales@example.test").unwrap(), true).await.unwrap(),
        Recipient::Local(r) if r.account == ann
    ));
    assert_eq!(dst.api_key("key1").await.unwrap().unwrap().name, "app");
    assert_eq!(dst.shared_secret("srs", vec![0; 32]).await.unwrap(), secret);
    let events = dst
        .events(EventQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    // New mail continues the sequences: the next UID, a new account id.
    dst.deliver(message("after", vec![ann])).await.unwrap();
    assert_eq!(*dst.uids(mb).await.unwrap().last().unwrap(), 5);
    let cy = dst
        .add_account(&Address::parse("cy@example.test").unwrap(), "pw", 0)
        .await
        .unwrap();
    assert!(cy > bob);
    // A second migration into the same database is refused.
    let again = tern_store::migrate::sqlite_to_postgres(
        &path,
        files,
        &PgStore::connect(&url, 2).await.unwrap(),
        &|_, _| {},
    )
    .await;
    assert!(matches!(again, Err(StoreError::Invalid(_))), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installation_moves_to_postgres_whole() {
    migrated(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_already_in_files_stay_there() {
    migrated(true).await;
}
