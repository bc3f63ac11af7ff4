//! Load for `bench/bounces.sh`: bounce intake against plain inbound mail,
//! same client, same message size, same run.
//!
//! 1. Sends `n` messages through the HTTP API (not timed) so that `n`
//!    return paths exist, and computes each one's return path from the
//!    store's shared `feedback` secret as the queue does.
//! 2. Times `n` plain messages over SMTP to a mailbox (`--to`).
//! 3. Times `n` RFC 3464 DSNs over SMTP, each to its return path: each
//!    becomes a `bounced` event (and a suppression) before its `250`.
//!
//! usage: bounce_load --smtp 127.0.0.1:25 --http 127.0.0.1:80 --key KEY
//!        --data DIR --to postmaster@example.test [--n 5000] [--c 10]

use std::time::Instant;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn arg(name: &str, default: Option<&str>) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .or(default.map(str::to_string))
        .unwrap_or_else(|| panic!("{name} is needed"))
}

async fn reply(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> u16 {
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
            panic!("connection closed");
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        }
    }
}

/// Sends each (from, to, message) over one connection; returns failures.
async fn smtp_worker(addr: String, jobs: Vec<(String, String, String)>) -> usize {
    let s = TcpStream::connect(&addr).await.expect("connect");
    s.set_nodelay(true).ok();
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    reply(&mut r).await;
    w.write_all(b"EHLO load.example.net\r\n").await.unwrap();
    reply(&mut r).await;
    let mut failed = 0;
    for (from, to, msg) in jobs {
        w.write_all(format!("MAIL FROM:<{from}>\r\n").as_bytes())
            .await
            .unwrap();
        let a = reply(&mut r).await;
        w.write_all(format!("RCPT TO:<{to}>\r\n").as_bytes())
            .await
            .unwrap();
        let b = reply(&mut r).await;
        if a != 250 || b != 250 {
            failed += 1;
            w.write_all(b"RSET\r\n").await.unwrap();
            reply(&mut r).await;
            continue;
        }
        w.write_all(b"DATA\r\n").await.unwrap();
        reply(&mut r).await;
        w.write_all(msg.as_bytes()).await.unwrap();
        w.write_all(b"\r\n.\r\n").await.unwrap();
        if reply(&mut r).await != 250 {
            failed += 1;
        }
    }
    w.write_all(b"QUIT\r\n").await.ok();
    failed
}

async fn timed(addr: &str, jobs: Vec<(String, String, String)>, c: usize) -> (f64, usize) {
    let mut parts: Vec<Vec<_>> = (0..c).map(|_| Vec::new()).collect();
    for (i, j) in jobs.into_iter().enumerate() {
        parts[i % c].push(j);
    }
    let t = Instant::now();
    let tasks: Vec<_> = parts
        .into_iter()
        .map(|p| tokio::spawn(smtp_worker(addr.to_string(), p)))
        .collect();
    let mut failed = 0;
    for t in tasks {
        failed += t.await.unwrap();
    }
    (t.elapsed().as_secs_f64(), failed)
}

fn dsn(rp: &str, rcpt: &str, size: usize) -> String {
    let mut m = format!(
        "From: Mail Delivery System <MAILER-DAEMON@mx.relay.test>\r\nTo: {rp}\r\n\
         Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\
         --b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.relay.test\r\n\r\n\
         Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: 5.1.1\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown\r\n\r\n\
         --b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    );
    while m.len() < size {
        m.push_str("X-Original-Header: padding to the size of the plain messages\r\n");
    }
    m.push_str("\r\n--b--");
    m
}

#[tokio::main]
async fn main() {
    let smtp = arg("--smtp", None);
    let http = arg("--http", None);
    let key = arg("--key", None);
    let data = arg("--data", None);
    let to = arg("--to", None);
    let n: usize = arg("--n", Some("5000")).parse().unwrap();
    let c: usize = arg("--c", Some("10")).parse().unwrap();
    let domain = to.rsplit_once('@').map(|(_, d)| d.to_string()).unwrap();

    // 1. n messages through the API (not timed).
    let client = reqwest::Client::new();
    let mut sent = Vec::with_capacity(n);
    let t = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let tasks: Vec<_> = chunk
            .iter()
            .map(|i| {
                let (client, http, key, domain) = (client.clone(), http.clone(), key.clone(), domain.clone());
                let rcpt = format!("user{i}@relay.test");
                tokio::spawn(async move {
                    let body = serde_json::json!({"from": format!("shop@{domain}"), "to": [rcpt.clone()],
                        "subject": "Receipt", "text": "Thank you."});
                    let text = client
                        .post(format!("http://{http}/v1/messages"))
                        .bearer_auth(key)
                        .header("content-type", "application/json")
                        .body(body.to_string())
                        .send()
                        .await
                        .expect("API")
                        .text()
                        .await
                        .expect("API answer");
                    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
                    (v["id"].as_str().expect("an id").to_string(), rcpt)
                })
            })
            .collect();
        for t in tasks {
            sent.push(t.await.unwrap());
        }
    }
    eprintln!(
        "setup: {n} messages through the API in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let config =
        tern_core::Config::load(&std::path::Path::new(&data).join("tern.toml")).expect("config");
    let store = tern::server::open_store(&config).await.expect("store");
    // The running server made it; asking with a fresh value only reads it.
    let secret = store
        .shared_secret("feedback", vec![0; 32])
        .await
        .expect("feedback secret");
    let keys = tern_feedback::Keys::new(&secret);
    let now = tern_core::now_unix();
    let bounces: Vec<_> = sent
        .iter()
        .map(|(id, rcpt)| {
            let rp = keys.return_path(id, rcpt, &domain, now);
            let m = dsn(&rp, rcpt, 1500);
            (String::new(), rp, m)
        })
        .collect();
    let size = bounces[0].2.len();
    let plain: Vec<_> = (0..n)
        .map(|i| {
            let mut m = format!(
                "From: sender{i}@remote.test\r\nTo: {to}\r\nSubject: hello {i}\r\n\
                 Message-ID: <{i}.load@remote.test>\r\n\r\n"
            );
            while m.len() < size {
                m.push_str("The quick brown fox jumps over the lazy dog, again and again.\r\n");
            }
            (format!("sender{i}@remote.test"), to.clone(), m)
        })
        .collect();

    // 2 and 3, timed.
    let (ps, pf) = timed(&smtp, plain, c).await;
    let (bs, bf) = timed(&smtp, bounces, c).await;
    println!(
        "plain inbound: {n} in {ps:.2}s = {:.0}/s ({pf} failed)",
        n as f64 / ps
    );
    println!(
        "bounce intake: {n} in {bs:.2}s = {:.0}/s ({bf} failed)",
        n as f64 / bs
    );
    println!("ratio bounce/plain: {:.2}", ps / bs);
}
