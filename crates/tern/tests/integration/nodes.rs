//! Several Tern nodes on one PostgreSQL database and one S3-compatible
//! bucket (a private PostgreSQL and moto's server, on loopback): the whole
//! server runs on the shared backends, and what one node accepts the
//! others serve.

use crate::common::*;
use std::time::{Duration, Instant};
use tern_testkit::pg::PgServer;
use tern_testkit::s3::S3Server;
use tern_testkit::{DataDir, LineClient, send_message};

/// The shared backends and the config every node has (its own name apart).
struct Shared {
    _pg: PgServer,
    s3: S3Server,
    url: String,
}

impl Shared {
    fn start() -> Self {
        let pg = PgServer::start();
        let url = pg.database("tern");
        let s3 = S3Server::start();
        s3.create_bucket("tern-mail");
        Self { _pg: pg, s3, url }
    }

    fn config(&self, node: &str) -> String {
        format!(
            "[store]\nbackend = \"postgres\"\nurl = \"{}\"\nmax_connections = 8\n\
             [blobs]\nbackend = \"s3\"\nbucket = \"tern-mail\"\nendpoint = \"{}\"\n\
             access_key_id = \"tern\"\nsecret_access_key = \"secret\"\npath_style = true\n\
             [node]\nname = \"{node}\"\n",
            self.url,
            self.s3.endpoint()
        )
    }
}

async fn imap_login(addr: std::net::SocketAddr) -> LineClient {
    let mut c = LineClient::connect(addr).await.unwrap();
    c.line().await.unwrap().unwrap();
    c.cmd(&format!("a LOGIN {ALICE} {ALICE_PW}")).await.unwrap();
    let (r, _) = tagged(&mut c, "a").await;
    assert!(r.starts_with("OK"), "{r}");
    c
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

async fn smtp_deliver(addr: std::net::SocketAddr, subject: &str) {
    let mut c = LineClient::connect(addr).await.unwrap();
    assert_eq!(c.reply().await.unwrap().0, 220);
    assert_eq!(c.smtp("EHLO client.example.net").await.unwrap().0, 250);
    let msg = format!(
        "From: Bob <bob@remote.test>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n"
    );
    let (code, _) = send_message(&mut c, "bob@remote.test", &[ALICE], msg.as_bytes())
        .await
        .unwrap();
    assert_eq!(code, 250);
}

/// Mail received over SMTP on node A is in the bucket and PostgreSQL; node
/// B serves it over IMAP, and B's IDLE session hears of the next one A
/// receives (LISTEN/NOTIFY); both nodes show in `nodes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_received_on_one_node_is_served_and_announced_by_another() {
    let shared = Shared::start();
    let a = start(&shared.config("mx-a")).await;
    let b_data = DataDir::new(&shared.config("mx-b"));
    let b = start_in(&b_data).await;

    smtp_deliver(a.smtp, "first").await;
    let mut c = imap_login(b.imap[0]).await;
    c.cmd("b SELECT INBOX").await.unwrap();
    let (r, u) = tagged(&mut c, "b").await;
    assert!(r.starts_with("OK"), "{r}");
    assert!(u.contains(&"* 1 EXISTS".to_string()), "{u:?}");
    c.cmd("c FETCH 1 (BODY.PEEK[TEXT])").await.unwrap();
    let (r, u) = tagged(&mut c, "c").await;
    assert!(r.starts_with("OK"), "{r}");
    assert!(u.join("\n").contains("body of first"), "{u:?}");

    c.cmd("d IDLE").await.unwrap();
    let cont = c.line().await.unwrap().unwrap();
    assert!(cont.starts_with('+'), "{cont}");
    let sent = Instant::now();
    smtp_deliver(a.smtp, "second").await;
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let l = c.line().await.unwrap().unwrap();
            if l == "* 2 EXISTS" {
                return;
            }
        }
    })
    .await;
    assert!(
        heard.is_ok(),
        "node B's IDLE never heard of node A's delivery"
    );
    eprintln!(
        "IDLE on mx-b heard mx-a's delivery {} ms after the SMTP session began",
        sent.elapsed().as_millis()
    );
    c.send(b"DONE\r\n").await.unwrap();
    let (r, _) = tagged(&mut c, "d").await;
    assert!(r.starts_with("OK"), "{r}");

    // Both nodes beat; `tern node list` reads the same rows.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let names: Vec<String> = a
            .store
            .nodes()
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.name)
            .collect();
        if names == ["mx-a", "mx-b"] {
            break;
        }
        assert!(Instant::now() < deadline, "nodes: {names:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The bodies are in the bucket, under their hashes.
    let inbox = a.inbox(ALICE).await;
    assert_eq!(inbox.len(), 2);
    let blobs = b.store.blob_store().expect("the bucket").clone();
    for raw in &inbox {
        assert_eq!(
            &blobs.get(&tern_store::blobs::key_of(raw)).await.unwrap(),
            raw
        );
    }
    b.shutdown();
}

/// `tern migrate`: a server that ran on SQLite is stopped, its data folder
/// moved to PostgreSQL with the command, its config switched, and the same
/// server on PostgreSQL serves the same message with the same UID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tern_migrate_moves_a_server_to_postgres() {
    let mut s = start("").await;
    smtp_deliver(s.smtp, "before the move").await;
    let mut c = imap_login(s.imap).await;
    c.cmd("b SELECT INBOX").await.unwrap();
    let (_, before) = tagged(&mut c, "b").await;
    drop(c);
    s.stop();

    let pg = PgServer::start();
    let url = pg.database("tern");
    let data = s.data.path().to_path_buf();
    let (ok, out) = crate::common::tern_cli(&["migrate", "--to", &url], &data);
    assert!(ok, "{out}");
    assert!(out.contains("Every count matches"), "{out}");
    assert!(!out.contains("MISMATCH"), "{out}");
    let (ok, again) = crate::common::tern_cli(&["migrate", "--to", &url], &data);
    assert!(
        !ok,
        "a second migration into the same database is refused: {again}"
    );

    let toml = std::fs::read_to_string(s.data.config_path()).unwrap();
    std::fs::write(
        s.data.config_path(),
        format!("{toml}\n[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n"),
    )
    .unwrap();
    let running = start_in(&s.data).await;
    let mut c = imap_login(running.imap[0]).await;
    c.cmd("b SELECT INBOX").await.unwrap();
    let (r, after) = tagged(&mut c, "b").await;
    assert!(r.starts_with("OK"), "{r}");
    let keep = |u: &[String]| {
        u.iter()
            .filter(|l| l.contains("EXISTS") || l.contains("UIDVALIDITY") || l.contains("UIDNEXT"))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(keep(&after), keep(&before), "same mailbox after the move");
    c.cmd("c UID FETCH 1 (BODY.PEEK[TEXT])").await.unwrap();
    let (r, u) = tagged(&mut c, "c").await;
    assert!(r.starts_with("OK"), "{r}");
    assert!(u.join("\n").contains("body of before the move"), "{u:?}");
    running.shutdown();
}

async fn imap_login_from(source: &str, addr: std::net::SocketAddr, password: &str) -> String {
    let mut c = LineClient::connect_from(source.parse().unwrap(), addr)
        .await
        .unwrap();
    c.line().await.unwrap().unwrap();
    c.cmd(&format!("a LOGIN {ALICE} {password}")).await.unwrap();
    tagged(&mut c, "a").await.0
}

/// What one node counts, the others enforce: failed logins on node A
/// refuse that address on node B (and nowhere else); a network's SMTP
/// connection rate and an API key's request rate are one allowance
/// across the nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_counted_on_one_node_hold_on_another() {
    let shared = Shared::start();
    let limits = "[auth]\nslow_after = 100\nblock_after = 3\nnetwork_block_after = 100\n\
                  [smtp]\nconnections_per_minute_per_network = 2\n\
                  [api]\nrequests_per_second = 1\n";
    let a = start(&format!("{}{limits}", shared.config("mx-a"))).await;
    let b_data = DataDir::new(&format!("{}{limits}", shared.config("mx-b")));
    let b = start_in(&b_data).await;

    for _ in 0..3 {
        let r = imap_login_from("127.61.0.7", a.imap, "wrong").await;
        assert!(r.starts_with("NO"), "{r}");
    }
    let r = imap_login_from("127.61.0.7", b.imap[0], ALICE_PW).await;
    assert!(
        r.starts_with("NO"),
        "node B refuses the address node A saw guessing: {r}"
    );
    let r = imap_login_from("127.62.0.7", b.imap[0], ALICE_PW).await;
    assert!(r.starts_with("OK"), "another address logs in: {r}");

    let greet = |addr: std::net::SocketAddr| async move {
        let mut c = LineClient::connect_from("127.63.0.1".parse().unwrap(), addr)
            .await
            .unwrap();
        c.reply().await.unwrap().0
    };
    assert_eq!(greet(a.smtp).await, 220);
    assert_eq!(greet(b.smtp[0]).await, 220);
    assert_eq!(
        greet(a.smtp).await,
        421,
        "the network's two connections a minute were taken on two nodes"
    );

    let key = crate::api::api_key(&a.store, tern_api::keys::Scope::Admin).await;
    let get = |http: std::net::SocketAddr| {
        let key = key.clone();
        async move {
            reqwest::Client::new()
                .get(format!("http://{http}/v1/events"))
                .header("authorization", format!("Bearer {key}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // A burst of two, then one a second, for the key on every node: with
    // requests alternating between the nodes, one is refused before the
    // fifth (a limit per node would let four through).
    let mut statuses = Vec::new();
    for i in 0..4 {
        statuses.push(get(if i % 2 == 0 { a.http } else { b.http[0] }).await);
    }
    assert_eq!(statuses[..2], [200, 200], "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    b.shutdown();
}

/// `tern migrate --blobs s3://…`: the bodies go to the bucket named on the
/// command line (credentials from `[blobs]`), not into PostgreSQL; the
/// command prints the `[blobs]` lines, and the server started on them
/// serves the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tern_migrate_puts_the_bodies_in_the_bucket_it_is_given() {
    let mut s = start("[blobs]\naccess_key_id = \"tern\"\nsecret_access_key = \"secret\"\n").await;
    smtp_deliver(s.smtp, "into the bucket").await;
    let raw = s.inbox(ALICE).await;
    assert_eq!(raw.len(), 1);
    s.stop();

    let pg = PgServer::start();
    let url = pg.database("tern");
    let s3 = S3Server::start();
    s3.create_bucket("moved");
    let blobs_url = format!("s3://moved/mail?endpoint={}&path_style=true", s3.endpoint());
    let data = s.data.path().to_path_buf();
    let (ok, out) =
        crate::common::tern_cli(&["migrate", "--to", &url, "--blobs", &blobs_url], &data);
    assert!(ok, "{out}");
    assert!(
        out.contains("backend = \"s3\"") && out.contains("bucket = \"moved\""),
        "{out}"
    );

    let bucket = tern_store::blobs::S3Blobs::new(&tern_core::config::BlobsConfig {
        backend: tern_core::config::BlobBackend::S3,
        bucket: "moved".into(),
        prefix: "mail".into(),
        endpoint: s3.endpoint(),
        access_key_id: "tern".into(),
        secret_access_key: "secret".into(),
        ..Default::default()
    })
    .unwrap();
    use tern_store::Blobs;
    assert_eq!(
        bucket
            .get(&tern_store::blobs::key_of(&raw[0]))
            .await
            .unwrap(),
        raw[0],
        "the body is in the bucket"
    );

    let toml = std::fs::read_to_string(s.data.config_path()).unwrap();
    std::fs::write(
        s.data.config_path(),
        toml.replace(
            "[blobs]\n",
            &format!(
                "[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n[blobs]\nbackend = \"s3\"\n\
                 bucket = \"moved\"\nprefix = \"mail\"\nendpoint = \"{}\"\n",
                s3.endpoint()
            ),
        ),
    )
    .unwrap();
    let running = start_in(&s.data).await;
    let mut c = imap_login(running.imap[0]).await;
    c.cmd("b SELECT INBOX").await.unwrap();
    tagged(&mut c, "b").await;
    c.cmd("c FETCH 1 (BODY.PEEK[TEXT])").await.unwrap();
    let (r, u) = tagged(&mut c, "c").await;
    assert!(r.starts_with("OK"), "{r}");
    assert!(u.join("\n").contains("body of into the bucket"), "{u:?}");
    running.shutdown();
}
