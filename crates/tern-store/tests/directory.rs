//! The directory and node roles, the same checks on every backend that has
//! them: SQLite and PostgreSQL (a private server on loopback, `initdb` in a
//! temporary folder; the test command installs PostgreSQL).

use std::sync::Arc;
use tern_core::Address;
use tern_store::postgres::PgStore;
use tern_store::sqlite::SqliteStore;
use tern_store::{Directory, DkimKeyRow, Nodes, Recipient, StoreError};
use tern_testkit::pg::PgServer;

trait Roles: Directory + Nodes {}
impl<T: Directory + Nodes> Roles for T {}

fn addr(a: &str) -> Address {
    Address::parse(a).unwrap()
}

fn key(domain: &str, selector: &str, algorithm: &str, status: &str) -> DkimKeyRow {
    DkimKeyRow {
        domain: domain.into(),
        selector: selector.into(),
        algorithm: algorithm.into(),
        private_key: format!("pem of {selector}"),
        status: status.into(),
    }
}

/// Every rule of the directory, as users meet it through `tern domain`,
/// `tern account`, `tern alias`, `tern dkim` and every login.
async fn directory_rules(name: &str, s: Arc<dyn Roles>) {
    // Domains: normalised, once each.
    s.add_domain("Example.TEST", None).await.unwrap();
    assert!(
        matches!(
            s.add_domain("example.test", None).await,
            Err(StoreError::Exists(_))
        ),
        "{name}"
    );
    assert!(
        matches!(
            s.add_domain("not a domain", None).await,
            Err(StoreError::Invalid(_))
        ),
        "{name}"
    );
    s.add_domain("other.test", None).await.unwrap();
    let names: Vec<String> = s
        .list_domains()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, vec!["example.test", "other.test"], "{name}");

    // Accounts: only in local domains, an address used once.
    let ann = s
        .add_account(&addr("ann@example.test"), "ann-pw", 1000)
        .await
        .unwrap();
    assert!(
        matches!(
            s.add_account(&addr("ann@example.test"), "x", 0).await,
            Err(StoreError::Exists(_))
        ),
        "{name}"
    );
    assert!(
        matches!(
            s.add_account(&addr("x@elsewhere.test"), "x", 0).await,
            Err(StoreError::Invalid(_))
        ),
        "{name}"
    );
    assert!(
        matches!(
            s.add_account(&addr("empty@example.test"), "", 0).await,
            Err(StoreError::Invalid(_))
        ),
        "{name}"
    );
    let bob = s
        .add_account(&addr("bob@other.test"), "bob-pw", 0)
        .await
        .unwrap();
    assert_ne!(ann, bob);
    let accounts = s.list_accounts(Some("EXAMPLE.test")).await.unwrap();
    assert_eq!(accounts.len(), 1, "{name}");
    assert_eq!(
        (accounts[0].address.as_str(), accounts[0].quota),
        ("ann@example.test", 1000)
    );

    // Logins: right, wrong, unknown, changed; case and spaces around the name.
    assert_eq!(
        s.authenticate(" ANN@example.test", "ann-pw").await.unwrap(),
        Some(ann),
        "{name}"
    );
    assert_eq!(
        s.authenticate("ann@example.test", "wrong").await.unwrap(),
        None,
        "{name}"
    );
    assert_eq!(
        s.authenticate("nobody@example.test", "ann-pw")
            .await
            .unwrap(),
        None,
        "{name}"
    );
    s.set_password(&addr("ann@example.test"), "new-pw")
        .await
        .unwrap();
    assert_eq!(
        s.authenticate("ann@example.test", "ann-pw").await.unwrap(),
        None,
        "{name}"
    );
    assert_eq!(
        s.authenticate("ann@example.test", "new-pw").await.unwrap(),
        Some(ann),
        "{name}"
    );
    assert!(
        matches!(
            s.set_password(&addr("nobody@example.test"), "x").await,
            Err(StoreError::NotFound(_))
        ),
        "{name}"
    );

    // Aliases: to a local account, or forwarding to another domain.
    s.add_alias(&addr("sales@example.test"), &addr("ann@example.test"))
        .await
        .unwrap();
    s.add_alias(&addr("fwd@example.test"), &addr("someone@gmail.example"))
        .await
        .unwrap();
    assert!(
        matches!(
            s.add_alias(&addr("sales@example.test"), &addr("ann@example.test"))
                .await,
            Err(StoreError::Exists(_))
        ),
        "{name}"
    );
    assert!(
        matches!(
            s.add_alias(&addr("ann@example.test"), &addr("bob@other.test"))
                .await,
            Err(StoreError::Exists(_))
        ),
        "{name}: an account's address is taken"
    );
    assert!(
        matches!(
            s.add_alias(&addr("x@example.test"), &addr("missing@other.test"))
                .await,
            Err(StoreError::NotFound(_))
        ),
        "{name}"
    );
    let aliases: Vec<(String, String)> = s
        .list_aliases()
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.address, a.target))
        .collect();
    assert_eq!(
        aliases,
        vec![
            ("fwd@example.test".into(), "someone@gmail.example".into()),
            ("sales@example.test".into(), "ann@example.test".into())
        ],
        "{name}"
    );

    // Resolution: account, alias, forward, unknown, not ours, catch-all.
    let local = |r: Recipient| match r {
        Recipient::Local(l) => Some((l.account, l.address)),
        _ => None,
    };
    assert_eq!(
        local(s.resolve(&addr("ann@example.test"), true).await.unwrap()),
        Some((ann, "ann@example.test".into())),
        "{name}"
    );
    assert_eq!(
        local(s.resolve(&addr("sales@example.test"), true).await.unwrap()),
        Some((ann, "ann@example.test".into())),
        "{name}"
    );
    assert_eq!(
        s.resolve(&addr("fwd@example.test"), true).await.unwrap(),
        Recipient::Forward("someone@gmail.example".into()),
        "{name}"
    );
    assert_eq!(
        s.resolve(&addr("nobody@example.test"), true).await.unwrap(),
        Recipient::UnknownUser,
        "{name}"
    );
    assert_eq!(
        s.resolve(&addr("ann@elsewhere.test"), true).await.unwrap(),
        Recipient::NotLocal,
        "{name}"
    );
    s.add_domain("catch.test", Some(&addr("all@catch.test")))
        .await
        .unwrap();
    let all = s
        .add_account(&addr("all@catch.test"), "x", 0)
        .await
        .unwrap();
    assert_eq!(
        local(s.resolve(&addr("anything@catch.test"), true).await.unwrap()).map(|l| l.0),
        Some(all),
        "{name}"
    );
    assert_eq!(
        s.resolve(&addr("anything@catch.test"), false)
            .await
            .unwrap(),
        Recipient::UnknownUser,
        "{name}: no catch-all when not allowed"
    );

    // DKIM keys: one selector once; activating retires the active key of
    // the same algorithm only.
    s.add_dkim_key(key("example.test", "s1", "rsa", "active"))
        .await
        .unwrap();
    s.add_dkim_key(key("example.test", "e1", "ed25519", "active"))
        .await
        .unwrap();
    s.add_dkim_key(key("example.test", "s2", "rsa", "pending"))
        .await
        .unwrap();
    assert!(
        matches!(
            s.add_dkim_key(key("example.test", "s2", "rsa", "pending"))
                .await,
            Err(StoreError::Exists(_))
        ),
        "{name}"
    );
    assert!(
        matches!(
            s.add_dkim_key(key("unknown.test", "s1", "rsa", "active"))
                .await,
            Err(StoreError::NotFound(_))
        ),
        "{name}"
    );
    s.activate_dkim_key("EXAMPLE.test", "s2").await.unwrap();
    let states: Vec<(String, String)> = s
        .dkim_keys("example.test")
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.selector, k.status))
        .collect();
    assert_eq!(
        states,
        vec![
            ("s1".into(), "retired".into()),
            ("e1".into(), "active".into()),
            ("s2".into(), "active".into())
        ],
        "{name}"
    );

    // Removing: a domain in use is refused; an account takes its aliases
    // and its place as catch-all with it.
    assert!(
        matches!(
            s.remove_domain("example.test").await,
            Err(StoreError::Invalid(_))
        ),
        "{name}"
    );
    s.remove_account(&addr("ann@example.test")).await.unwrap();
    assert!(
        s.list_aliases()
            .await
            .unwrap()
            .iter()
            .all(|a| a.address != "sales@example.test"),
        "{name}"
    );
    s.remove_account(&addr("all@catch.test")).await.unwrap();
    let catch = s
        .list_domains()
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.name == "catch.test");
    assert_eq!(catch.unwrap().catch_all, None, "{name}");
    assert!(
        matches!(
            s.remove_domain("example.test").await,
            Err(StoreError::Invalid(_))
        ),
        "{name}: a forwarding alias keeps the domain"
    );
    s.remove_alias(&addr("fwd@example.test")).await.unwrap();
    assert!(
        matches!(
            s.remove_alias(&addr("fwd@example.test")).await,
            Err(StoreError::NotFound(_))
        ),
        "{name}"
    );
    s.remove_domain("example.test").await.unwrap();
    assert!(
        s.dkim_keys("example.test").await.unwrap().is_empty(),
        "{name}: keys go with the domain"
    );
    assert!(
        matches!(
            s.remove_domain("example.test").await,
            Err(StoreError::NotFound(_))
        ),
        "{name}"
    );
}

/// Heartbeats: one row per node, refreshed.
async fn node_rules(name: &str, a: Arc<dyn Roles>, b: Arc<dyn Roles>) {
    a.heartbeat(100, 11, "1.0").await.unwrap();
    b.heartbeat(200, 22, "1.0").await.unwrap();
    a.heartbeat(300, 33, "1.1").await.unwrap();
    let nodes = a.nodes().await.unwrap();
    let seen: Vec<(String, i64, u32, String)> = nodes
        .iter()
        .map(|n| (n.name.clone(), n.started_at, n.pid, n.version.clone()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("node-a".into(), 300, 33, "1.1".into()),
            ("node-b".into(), 200, 22, "1.0".into())
        ],
        "{name}"
    );
    let now = tern_core::now_unix();
    assert!(
        nodes.iter().all(|n| (now - n.heartbeat).abs() < 60),
        "{name}"
    );
    // A shared secret is made once: the first node's value is every node's.
    let first = a.shared_secret("srs", vec![1; 32]).await.unwrap();
    assert_eq!(first, vec![1; 32], "{name}");
    assert_eq!(
        b.shared_secret("srs", vec![2; 32]).await.unwrap(),
        first,
        "{name}: the second node gets the first one's"
    );
    assert_eq!(
        b.shared_secret("feedback", vec![3; 32]).await.unwrap(),
        vec![3; 32],
        "{name}: one secret per name"
    );
}

#[tokio::test]
async fn sqlite_keeps_the_directory_rules() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let s = SqliteStore::open(&path, 16).await.unwrap();
    directory_rules("sqlite", Arc::new(s)).await;
    let a = SqliteStore::open(&path, 16)
        .await
        .unwrap()
        .with_node("node-a");
    let b = SqliteStore::open(&path, 16)
        .await
        .unwrap()
        .with_node("node-b");
    node_rules("sqlite", Arc::new(a), Arc::new(b)).await;
}

#[tokio::test]
async fn postgres_keeps_the_directory_rules() {
    let pg = PgServer::start();
    let url = pg.database("tern");
    let s = PgStore::connect(&url, 4).await.unwrap();
    directory_rules("postgres", Arc::new(s)).await;
    // Two nodes on one database; connecting again finds the schema current.
    let a = PgStore::connect(&url, 2).await.unwrap().with_node("node-a");
    let b = PgStore::connect(&url, 2).await.unwrap().with_node("node-b");
    node_rules("postgres", Arc::new(a), Arc::new(b)).await;
}

/// UIDVALIDITY is never given twice, even when accounts are created on
/// several nodes at once.
#[tokio::test]
async fn postgres_uidvalidity_is_unique_across_nodes() {
    let pg = PgServer::start();
    let url = pg.database("tern");
    let a = Arc::new(PgStore::connect(&url, 4).await.unwrap());
    let b = Arc::new(PgStore::connect(&url, 4).await.unwrap());
    a.add_domain("example.test", None).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            s.add_account(&addr(&format!("u{i}@example.test")), "pw", 0)
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let count: Vec<i64> = sqlx_uidvalidities(&url).await;
    let mut unique = count.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(count.len(), 8 * tern_store::DEFAULT_MAILBOXES.len());
    assert_eq!(unique.len(), count.len(), "a UIDVALIDITY was given twice");
}

async fn sqlx_uidvalidities(url: &str) -> Vec<i64> {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar("SELECT uidvalidity FROM mailboxes")
        .fetch_all(&mut c)
        .await
        .unwrap()
}

/// A change on one node reaches the watchers of that account on every node
/// (LISTEN/NOTIFY on the account's channel), and only them; a watch that
/// is dropped and made again still hears.
#[tokio::test]
async fn postgres_changes_reach_every_node() {
    let pg = PgServer::start();
    let url = pg.database("tern");
    let a = PgStore::connect(&url, 2).await.unwrap();
    let b = PgStore::connect(&url, 2).await.unwrap();
    let wait = std::time::Duration::from_secs(10);
    let mut b42 = b.watch_changes(42).await;
    let mut a7 = a.watch_changes(7).await;
    let mut b7 = b.watch_changes(7).await;
    a.changed(42).await.unwrap();
    assert!(
        tokio::time::timeout(wait, b42.changed()).await.unwrap(),
        "B hears A's change"
    );
    b.changed(7).await.unwrap();
    assert!(
        tokio::time::timeout(wait, a7.changed()).await.unwrap(),
        "A hears B's change"
    );
    assert!(
        tokio::time::timeout(wait, b7.changed()).await.unwrap(),
        "B hears its own"
    );
    // 42's change was not told to the watchers of 7.
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), a7.changed())
            .await
            .is_err(),
        "only the account's watchers hear"
    );
    drop(b42);
    let mut again = b.watch_changes(42).await;
    a.changed(42).await.unwrap();
    assert!(
        tokio::time::timeout(wait, again.changed()).await.unwrap(),
        "listening again"
    );
}

/// What an address resolves to on `s`, asked until it is `want` (at most
/// two seconds: well under the five a remembered answer may live, so only
/// the directory's change notice can make it so in time).
async fn resolves_to(s: &PgStore, a: &str, want: fn(&Recipient) -> bool) -> Recipient {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let r = s.resolve(&addr(a), false).await.unwrap();
        if want(&r) || tokio::time::Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A node remembers its recipient lookups, and forgets them when the
/// directory changes on any node: an account added on node A is found on
/// node B at once ("no such user" is never remembered); B's own deliveries
/// count in the usage it remembers for the quota check; an account removed
/// on A is forgotten by B when A's notice arrives.
#[tokio::test]
async fn postgres_lookups_follow_directory_changes_on_every_node() {
    use tern_store::{MailStore, NewMessage};
    let pg = PgServer::start();
    let url = pg.database("tern");
    let a = PgStore::connect(&url, 2).await.unwrap().with_node("node-a");
    let b = PgStore::connect(&url, 2).await.unwrap().with_node("node-b");
    a.add_domain("example.test", None).await.unwrap();
    let x = "x@example.test";
    assert_eq!(
        b.resolve(&addr(x), false).await.unwrap(),
        Recipient::UnknownUser
    );
    let id = a.add_account(&addr(x), "pw", 1_000_000).await.unwrap();
    let found = resolves_to(&b, x, |r| matches!(r, Recipient::Local(_))).await;
    let Recipient::Local(l) = found else {
        panic!("node B still answers {found:?} after node A added {x}");
    };
    assert_eq!((l.account, l.quota, l.used), (id, 1_000_000, 0));

    let raw = b"Subject: hi\r\n\r\nhello\r\n".to_vec();
    b.deliver_all(vec![NewMessage::local(
        "q-1".into(),
        raw.clone(),
        "s@example.net".into(),
        vec![id],
        1_700_000_000,
        "{}".into(),
    )])
    .await
    .unwrap();
    let Recipient::Local(l) = b.resolve(&addr(x), false).await.unwrap() else {
        panic!("{x} vanished");
    };
    assert_eq!(l.used, raw.len() as u64, "node B's delivery counted");

    // Added and removed on the same node: seen before the call returns.
    a.add_alias(&addr("sales@example.test"), &addr(x))
        .await
        .unwrap();
    assert!(matches!(
        a.resolve(&addr("sales@example.test"), false).await.unwrap(),
        Recipient::Local(_)
    ));
    a.remove_account(&addr(x)).await.unwrap();
    assert_eq!(
        a.resolve(&addr(x), false).await.unwrap(),
        Recipient::UnknownUser
    );
    assert_eq!(
        resolves_to(&b, x, |r| *r == Recipient::UnknownUser).await,
        Recipient::UnknownUser,
        "node B forgot {x}"
    );
}
