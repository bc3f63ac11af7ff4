//! Acknowledged means durable: flood the real binary from several
//! connections, `kill -9` it mid-stream, restart, and check that every
//! acknowledged message is there exactly once and nothing is half-written.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tern_core::Config;
use tern_testkit::{DataDir, LineClient};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(data: &DataDir) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["serve", "--data"])
        .arg(data.path())
        .env("TERN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_for(port: u16) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not start on port {port}");
}

/// A data folder (`extra` appended to its config) whose `listener` is on a
/// fixed port, so a child process can be reached, with domain example.test
/// and the account alice@example.test (password "pw").
async fn data_with_alice(extra: &str, listener: &str) -> (DataDir, u16) {
    let port = free_port();
    let data = DataDir::new(extra);
    let toml = std::fs::read_to_string(data.config_path())
        .unwrap()
        .replace(
            &format!("{listener} = [\"127.0.0.1:0\"]"),
            &format!("{listener} = [\"127.0.0.1:{port}\"]"),
        );
    std::fs::write(data.config_path(), toml).unwrap();
    let config = Config::load(&data.config_path()).unwrap();
    let store = tern::server::open_store(&config).await.unwrap();
    store.add_domain("example.test", None).await.unwrap();
    store
        .add_account(
            &tern_core::Address::parse("alice@example.test").unwrap(),
            "pw",
            0,
        )
        .await
        .unwrap();
    (data, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_acknowledged() {
    flood_kill_restart("").await;
}

/// The same with bodies in fsynced files: a 250 means the file and the row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_acknowledged_with_bodies_in_files() {
    flood_kill_restart("[blobs]\nbackend = \"files\"\n").await;
}

/// The same with bodies in an S3-compatible bucket (moto on loopback): a
/// 250 means the service confirmed the object before the commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_acknowledged_with_bodies_in_s3() {
    let s3 = tern_testkit::s3::S3Server::start();
    s3.create_bucket("mail");
    flood_kill_restart(&format!(
        "[blobs]\nbackend = \"s3\"\nbucket = \"mail\"\nendpoint = \"{}\"\n\
         access_key_id = \"tern\"\nsecret_access_key = \"secret\"\n",
        s3.endpoint()
    ))
    .await;
}

/// The same on PostgreSQL with bodies in an S3-compatible bucket: a 250
/// means PostgreSQL committed and the bucket confirmed the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_acknowledged_on_postgres_and_s3() {
    let pg = tern_testkit::pg::PgServer::start();
    let s3 = tern_testkit::s3::S3Server::start();
    s3.create_bucket("mail");
    flood_kill_restart(&format!(
        "[store]\nbackend = \"postgres\"\nurl = \"{}\"\n\
         [blobs]\nbackend = \"s3\"\nbucket = \"mail\"\nendpoint = \"{}\"\n\
         access_key_id = \"tern\"\nsecret_access_key = \"secret\"\n",
        pg.database("tern"),
        s3.endpoint()
    ))
    .await;
}

/// Waits at least `min`, then until `n` messages are acknowledged or `max`
/// has passed.
async fn wait_for_acks(acked: &Mutex<Vec<String>>, n: usize, min: Duration, max: Duration) {
    let start = std::time::Instant::now();
    tokio::time::sleep(min).await;
    while acked.lock().unwrap().len() < n && start.elapsed() < max {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Floods the server (config `extra`) from six connections, kills it with
/// SIGKILL, restarts it and checks every acknowledged message is stored
/// whole, exactly once.
async fn flood_kill_restart(extra: &str) {
    let (data, port) = data_with_alice(extra, "smtp").await;
    let config = Config::load(&data.config_path()).unwrap();
    assert_eq!(
        tern::server::open_store(&config)
            .await
            .unwrap()
            .blob_store()
            .is_some(),
        !extra.is_empty()
    );
    let mut child = spawn(&data);
    wait_for(port).await;

    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut tasks = Vec::new();
    for t in 0..6 {
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(mut c) = LineClient::connect(([127, 0, 0, 1], port).into()).await else {
                return;
            };
            c.timeout = Duration::from_secs(5);
            if c.reply().await.is_err() || c.smtp("EHLO flood.test").await.is_err() {
                return;
            }
            for i in 0.. {
                let id = format!("<t{t}-m{i}@flood.test>");
                let body = format!(
                    "Message-ID: {id}\r\nSubject: flood\r\n\r\n{}\r\nEND-OF-MESSAGE {id}\r\n",
                    "x".repeat(2000)
                );
                match tern_testkit::send_message(
                    &mut c,
                    "f@flood.test",
                    &["alice@example.test"],
                    body.as_bytes(),
                )
                .await
                {
                    Ok((250, _)) => acked.lock().unwrap().push(id),
                    _ => return,
                }
            }
        }));
    }
    // Mid-stream: once the flood is going (at least 1.5 s, and 60
    // acknowledged or 15 s on slower backends).
    wait_for_acks(
        &acked,
        60,
        Duration::from_millis(1500),
        Duration::from_secs(15),
    )
    .await;
    // SIGKILL: no chance to flush or clean up.
    child.kill().unwrap();
    child.wait().unwrap();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 50,
        "the flood got going ({} acked)",
        acked.len()
    );

    // Restart the real server on the same data, then inspect the store.
    let mut child = spawn(&data);
    wait_for(port).await;
    let config = Config::load(&data.config_path()).unwrap();
    let store = tern::server::open_store(&config).await.unwrap();
    let account = store.list_accounts(None).await.unwrap()[0].id;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for m in store.list(account, "INBOX").await.unwrap() {
        let raw = String::from_utf8(store.read_blob(m.blob).await.unwrap()).unwrap();
        let id = raw
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: "))
            .expect("message id")
            .to_string();
        assert!(
            raw.ends_with(&format!("END-OF-MESSAGE {id}\r\n")),
            "complete message"
        );
        assert_eq!(raw.len() as u64, m.size);
        if let Some(blobs) = store.blob_store() {
            let key = tern_store::blobs::key_of(raw.as_bytes());
            assert_eq!(
                blobs.get(&key).await.unwrap(),
                raw.as_bytes(),
                "in the blob store"
            );
        }
        *seen.entry(id).or_default() += 1;
    }
    for id in &acked {
        assert_eq!(
            seen.get(id),
            Some(&1),
            "acknowledged {id} is stored exactly once"
        );
    }
    assert!(seen.values().all(|&n| n == 1), "no duplicates");
    // At most the in-flight messages (one per connection) were stored unacknowledged.
    assert!(seen.len() <= acked.len() + 6);
    // The restarted server accepts mail.
    let mut c = LineClient::connect(([127, 0, 0, 1], port).into())
        .await
        .unwrap();
    c.reply().await.unwrap();
    c.smtp("EHLO again.test").await.unwrap();
    let (code, _) = tern_testkit::send_message(
        &mut c,
        "a@b.test",
        &["alice@example.test"],
        b"Subject: after\r\n\r\nok\r\n",
    )
    .await
    .unwrap();
    assert_eq!(code, 250);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Mail queued for a remote domain survives `kill -9` while a delivery is
/// in progress, and is delivered exactly once after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_delivery_delivers_once_after_restart() {
    use tern_testkit::remote::{Behaviour, Greeting, RemoteHost};
    let dns = tern_testkit::dns::DnsServer::start([127, 0, 0, 1].into(), &["remote.test"])
        .await
        .unwrap();
    // The MX accepts TCP connections but never greets: Tern's first
    // attempt hangs in the middle of a delivery.
    let host = RemoteHost::start(Behaviour {
        greeting: Greeting::Stall,
        ..Default::default()
    })
    .await;
    dns.mx("remote.test", 10, "mx.remote.test").await;
    dns.ip("mx.remote.test", host.ip()).await;
    let (data, port) = data_with_alice(
        &format!(
            "[dns]\nnameservers = [\"{}\"]\n[queue]\nretry = [\"1s\"]\n",
            dns.addr
        ),
        "submission",
    )
    .await;
    let mut child = spawn(&data);
    wait_for(port).await;
    let mut c = LineClient::connect(([127, 0, 0, 1], port).into())
        .await
        .unwrap();
    c.reply().await.unwrap();
    c.smtp("EHLO client.test").await.unwrap();
    let (code, _) = c
        .smtp(&format!(
            "AUTH PLAIN {}",
            tern_testkit::sasl_plain("alice@example.test", "pw")
        ))
        .await
        .unwrap();
    assert_eq!(code, 235);
    for i in 0..3 {
        let body = format!(
            "From: alice@example.test\r\nMessage-ID: <crash-{i}@example.test>\r\nSubject: {i}\r\n\r\nbody {i}\r\n"
        );
        let (code, text) = tern_testkit::send_message(
            &mut c,
            "alice@example.test",
            &["bob@remote.test"],
            body.as_bytes(),
        )
        .await
        .unwrap();
        assert_eq!(code, 250, "{text}");
    }
    // Wait until Tern is stuck talking to the MX, then kill it.
    for _ in 0..200 {
        if host.connections() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(host.connections() > 0, "delivery started");
    child.kill().unwrap();
    child.wait().unwrap();

    host.set_behaviour(Behaviour::default());
    let mut child = spawn(&data);
    let got = host.wait_for(3, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got_later = host.messages();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(got_later.len(), 3, "no duplicates: {got_later:?}");
    let mut ids: Vec<String> = got
        .iter()
        .map(|m| {
            String::from_utf8_lossy(&m.data)
                .lines()
                .find_map(|l| l.strip_prefix("Message-ID: ").map(str::to_string))
                .unwrap()
        })
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        vec![
            "<crash-0@example.test>",
            "<crash-1@example.test>",
            "<crash-2@example.test>"
        ]
    );
    let config = Config::load(&data.config_path()).unwrap();
    let store = tern::server::open_store(&config).await.unwrap();
    assert!(
        tern_store::Queue::queue_list(store.as_ref())
            .await
            .unwrap()
            .is_empty()
    );
}

/// A POST /v1/messages; `Ok((status, id, replayed))`.
async fn api_send(
    http: &reqwest::Client,
    port: u16,
    key: &str,
    idem: &str,
) -> Result<(u16, String, bool), reqwest::Error> {
    let body = serde_json::json!({
        "from": "alice@example.test",
        "to": ["bob@remote.test"],
        "subject": idem,
        "text": "durable"
    });
    let r = http
        .post(format!("http://127.0.0.1:{port}/v1/messages"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .header("idempotency-key", idem)
        .body(body.to_string())
        .send()
        .await?;
    let status = r.status().as_u16();
    let replayed = r.headers().contains_key("idempotent-replayed");
    let v: serde_json::Value = serde_json::from_str(&r.text().await?).unwrap_or_default();
    Ok((status, v["id"].as_str().unwrap_or("").to_string(), replayed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_acceptance_events_and_idempotency_survive_kill_9() {
    use tern_testkit::webhook::{Mode, WebhookReceiver};
    // Remote mail goes to a closed port: it stays queued (deferred).
    let closed = free_port();
    let (data, port) = data_with_alice(
        &format!(
            "[api]\nrequests_per_second = 0\n[webhooks]\nallow_http = true\n[[queue.transport]]\ndomain = \"*\"\nhost = \"127.0.0.1\"\nport = {closed}\ntls = \"none\"\n"
        ),
        "http",
    )
    .await;
    let receiver = WebhookReceiver::start().await;
    receiver.set_mode(Mode::Fail(500));
    let key = {
        let config = Config::load(&data.config_path()).unwrap();
        let store = tern::server::open_store(&config).await.unwrap();
        let (secret, record) = tern_api::keys::generate(
            tern_api::keys::Scope::Admin,
            vec![],
            "t".into(),
            tern_core::now_unix(),
        );
        store.add_api_key(record).await.unwrap();
        let hook = tern_api::webhooks::new_endpoint(
            receiver.url.clone(),
            vec![tern_events::EventType::Accepted],
            String::new(),
            true,
        );
        receiver.set_secret(&hook.secret);
        store.add_webhook(hook).await.unwrap();
        secret
    };
    let mut child = spawn(&data);
    wait_for(port).await;

    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (acked, key) = (acked.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in 0.. {
                let idem = format!("t{t}-m{i}");
                match api_send(&http, port, &key, &idem).await {
                    Ok((202, id, _)) => acked.lock().unwrap().push((idem, id)),
                    _ => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 20,
        "the flood got going ({} acked)",
        acked.len()
    );

    receiver.set_mode(Mode::Accept);
    let mut child = spawn(&data);
    wait_for(port).await;
    let config = Config::load(&data.config_path()).unwrap();
    let store = tern::server::open_store(&config).await.unwrap();
    let queued: std::collections::HashSet<String> = store
        .queue_list()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.queue_id)
        .collect();
    let http = reqwest::Client::new();
    for (idem, id) in &acked {
        assert!(queued.contains(id), "{id} acknowledged and queued");
        let events = store
            .events(tern_store::EventQuery {
                message_id: Some(id.clone()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(
            events
                .iter()
                .any(|e| e.event_type == tern_events::EventType::Accepted),
            "{id} has its accepted event"
        );
        // The same request again: the first answer, nothing new queued.
        let (st, again, replayed) = api_send(&http, port, &key, idem).await.unwrap();
        assert_eq!((st, again.as_str(), replayed), (202, id.as_str(), true));
    }
    // Every acknowledged message's accepted event reaches the webhook.
    let ids: std::collections::HashSet<&str> = acked.iter().map(|(_, id)| id.as_str()).collect();
    receiver
        .wait_until(Duration::from_secs(60), |events| {
            let got: std::collections::HashSet<&str> = events
                .iter()
                .filter_map(|e| e["message_id"].as_str())
                .collect();
            ids.iter().all(|id| got.contains(id))
        })
        .await;
    assert_eq!(receiver.bad_signatures(), 0);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A bulk verification job survives `kill -9` mid-way: the answers stored
/// stay, the rest are answered after the restart, each address once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_jobs_resume_after_kill_9() {
    use crate::common::{mx_host, test_dns};

    use tern_testkit::remote::Behaviour;
    let dns = test_dns(&["slow1.test", "slow2.test", "slow3.test"]).await;
    let mut hosts = Vec::new();
    for d in ["slow1.test", "slow2.test", "slow3.test"] {
        hosts.push(
            mx_host(
                &dns,
                d,
                Behaviour {
                    mailboxes: Some(vec!["a7".into()]),
                    reply_delay: Duration::from_millis(3),
                    ..Behaviour::default()
                },
            )
            .await,
        );
    }
    let (data, port) = data_with_alice(
        &format!(
            "[api]\nrequests_per_second = 0\n[dns]\nnameservers = [\"{}\"]\n[verify]\ncommand_timeout = 5\nconnect_timeout = 5\n",
            dns.addr
        ),
        "http",
    )
    .await;
    let key = {
        let config = Config::load(&data.config_path()).unwrap();
        let store = tern::server::open_store(&config).await.unwrap();
        let (secret, record) = tern_api::keys::generate(
            tern_api::keys::Scope::Verify,
            vec![],
            "t".into(),
            tern_core::now_unix(),
        );
        tern_store::Platform::add_api_key(&*store, record)
            .await
            .unwrap();
        secret
    };
    // 1,800 addresses in chunks of 500: each chunk takes a while.
    let addresses: Vec<String> = (0..1800)
        .map(|i| format!("a{}@slow{}.test", i % 600, i / 600 + 1))
        .collect();
    let mut child = spawn(&data);
    wait_for(port).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("http://127.0.0.1:{port}/v1/verify/jobs"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(serde_json::json!({ "addresses": addresses }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    let progress = |http: reqwest::Client, key: String, id: String| async move {
        http.get(format!("http://127.0.0.1:{port}/v1/verify/jobs/{id}"))
            .bearer_auth(&key)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())?["done"]
            .as_u64()
    };
    // Killed once the first answers are stored (the 202 alone is durable
    // too: the job is stored before it is answered).
    let mut seen = 0;
    for _ in 0..1200 {
        seen = progress(http.clone(), key.clone(), id.clone())
            .await
            .unwrap_or(0);
        if seen > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(seen > 0, "the job got going");
    eprintln!("killed with {seen} of 1800 answered");

    let mut child = spawn(&data);
    wait_for(port).await;
    for _ in 0..2400 {
        if progress(http.clone(), key.clone(), id.clone()).await == Some(1800) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let config = Config::load(&data.config_path()).unwrap();
    let store = tern::server::open_store(&config).await.unwrap();
    let job = store.verify_job(&id).await.unwrap().unwrap();
    assert_eq!((job.total, job.done), (1800, 1800), "{job:?}");
    let items = store.verify_items(&id, None, 5000).await.unwrap();
    assert_eq!(items.len(), 1800);
    for (i, it) in items.iter().enumerate() {
        assert_eq!(it.address, addresses[i]);
        let want = if it.address.starts_with("a7@") {
            "deliverable"
        } else {
            "undeliverable"
        };
        assert_eq!(it.result.as_deref(), Some(want), "{it:?}");
    }
    let counts: u64 = job.counts.iter().map(|(_, n)| n).sum();
    assert_eq!(counts, 1800);
}

/// Three nodes on one PostgreSQL database and one bucket. Mail submitted on
/// node A for a remote domain is flooded in while the remote MX stalls
/// (A holds every recipient leased, none delivered); A is killed with
/// SIGKILL mid-flood; the MX recovers; B and C, once A has been silent for
/// three heartbeats, take over what A had leased and deliver it. Every acknowledged message
/// reaches the remote MX; the duplicates that at-least-once delivery
/// allows (A delivered, then died before recording it) are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_deliver_every_acknowledged_message_when_one_is_killed() {
    use tern_testkit::remote::{Behaviour, Greeting, RemoteHost};
    let dns = tern_testkit::dns::DnsServer::start([127, 0, 0, 1].into(), &["remote.test"])
        .await
        .unwrap();
    let host = RemoteHost::start(Behaviour {
        greeting: Greeting::Stall,
        ..Default::default()
    })
    .await;
    dns.mx("remote.test", 10, "mx.remote.test").await;
    dns.ip("mx.remote.test", host.ip()).await;
    let pg = tern_testkit::pg::PgServer::start();
    let url = pg.database("tern");
    let s3 = tern_testkit::s3::S3Server::start();
    s3.create_bucket("mail");
    let config = |node: &str| {
        format!(
            "[store]\nbackend = \"postgres\"\nurl = \"{url}\"\nmax_connections = 8\n\
             [blobs]\nbackend = \"s3\"\nbucket = \"mail\"\nendpoint = \"{}\"\n\
             access_key_id = \"tern\"\nsecret_access_key = \"secret\"\n\
             [node]\nname = \"{node}\"\nheartbeat = \"1s\"\n\
             [dns]\nnameservers = [\"{}\"]\n[queue]\nretry = [\"1s\"]\n",
            s3.endpoint(),
            dns.addr
        )
    };
    let (a_data, port) = data_with_alice(&config("mx-a"), "submission").await;
    let (b_data, c_data) = (DataDir::new(&config("mx-b")), DataDir::new(&config("mx-c")));
    let mut a = Reaped(spawn(&a_data));
    let _b = Reaped(spawn(&b_data));
    let _c = Reaped(spawn(&c_data));
    wait_for(port).await;

    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut tasks = Vec::new();
    for t in 0..4 {
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(mut s) = LineClient::connect(([127, 0, 0, 1], port).into()).await else {
                return;
            };
            s.timeout = Duration::from_secs(5);
            if s.reply().await.is_err() || s.smtp("EHLO flood.test").await.is_err() {
                return;
            }
            let auth = format!(
                "AUTH PLAIN {}",
                tern_testkit::sasl_plain("alice@example.test", "pw")
            );
            if !matches!(s.smtp(&auth).await, Ok((235, _))) {
                return;
            }
            for i in 0.. {
                let id = format!("<t{t}-m{i}@example.test>");
                let body = format!(
                    "From: alice@example.test\r\nMessage-ID: {id}\r\nSubject: relay\r\n\r\n{}\r\n",
                    "y".repeat(1000)
                );
                match tern_testkit::send_message(
                    &mut s,
                    "alice@example.test",
                    &["bob@remote.test"],
                    body.as_bytes(),
                )
                .await
                {
                    Ok((250, _)) => acked.lock().unwrap().push(id),
                    _ => return,
                }
            }
        }));
    }
    wait_for_acks(
        &acked,
        40,
        Duration::from_millis(1500),
        Duration::from_secs(20),
    )
    .await;
    a.0.kill().unwrap();
    a.0.wait().unwrap();
    assert!(host.connections() > 0, "mx-a was delivering");
    assert!(
        host.messages().is_empty(),
        "nothing got through the stalled MX"
    );
    host.set_behaviour(Behaviour::default());
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 30,
        "the flood got going ({} acked)",
        acked.len()
    );

    // Every acknowledged message arrives (B and C take over A's leases
    // three heartbeats after its last).
    let id_of = |m: &tern_testkit::remote::Received| {
        String::from_utf8_lossy(&m.data)
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: ").map(str::to_string))
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let counts = loop {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for m in host.messages() {
            *counts.entry(id_of(&m)).or_default() += 1;
        }
        if acked.iter().all(|id| counts.contains_key(id)) {
            break counts;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {} acknowledged messages delivered",
            acked.iter().filter(|id| counts.contains_key(*id)).count(),
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    eprintln!(
        "three nodes, mx-a killed: {} acknowledged, all delivered; {} duplicates, {} unacknowledged but delivered",
        acked.len(),
        duplicates,
        counts.len() - acked.len()
    );
    // At least once, and no more than what was in flight on mx-a.
    assert!(duplicates <= 200, "{duplicates} duplicates");
    // The queue empties: nothing is left leased to the dead node.
    let store = tern::server::open_store(&Config::load(&b_data.config_path()).unwrap())
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !tern_store::Queue::queue_list(store.as_ref())
        .await
        .unwrap()
        .is_empty()
    {
        assert!(std::time::Instant::now() < deadline, "the queue empties");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A child process killed when the test ends, failed or not.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
