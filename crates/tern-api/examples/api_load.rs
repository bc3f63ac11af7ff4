//! Load generator for `bench/api.sh`: N `POST /v1/messages` from C concurrent
//! keep-alive HTTP/1.1 connections, one recipient and a body of SIZE bytes
//! each; prints the acceptance rate and latency percentiles.
//!
//! A plain HTTP/1.1 client on one thread (requests prepared once, answers
//! read by Content-Length), so that it costs the server's two cores about
//! as little as smtp-source does on the SMTP side of the comparison.
//!
//! usage: api_load http://HOST:PORT KEY N CONCURRENCY SIZE

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request on `conn`; the status of the answer.
async fn request(
    conn: &mut tokio::net::TcpStream,
    req: &[u8],
    buf: &mut Vec<u8>,
) -> std::io::Result<u16> {
    conn.write_all(req).await?;
    buf.clear();
    loop {
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + len {
            let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            return Ok(status);
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: api_load http://HOST:PORT KEY N CONCURRENCY SIZE");
        std::process::exit(2);
    }
    let addr = args[1]
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let key = args[2].clone();
    let n: usize = args[3].parse().expect("N");
    let c: usize = args[4].parse().expect("CONCURRENCY");
    let size: usize = args[5].parse().expect("SIZE");
    let line = "The quick brown fox jumps over the lazy dog 0123456789.\r\n";
    let text: String = line.repeat(size / line.len() + 1)[..size].to_string();
    // The body with a fixed-width counter in the subject, spliced per request.
    let body = serde_json::json!({
        "from": "bench@example.test",
        "to": ["x@relay.test"],
        "subject": "bench 0000000000",
        "text": text,
    })
    .to_string();
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let template = Arc::new(format!("{head}{body}").into_bytes());
    let counter_at = head.len() + body.find("0000000000").expect("counter");
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..c {
        let (addr, template, next, failed) =
            (addr.clone(), template.clone(), next.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect");
            conn.set_nodelay(true).ok();
            let mut req = template.to_vec();
            let mut buf = Vec::with_capacity(4096);
            let mut lat: Vec<Duration> = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                req[counter_at..counter_at + 10].copy_from_slice(format!("{i:010}").as_bytes());
                let t = Instant::now();
                match request(&mut conn, &req, &mut buf).await {
                    Ok(202) => {}
                    Ok(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        conn = tokio::net::TcpStream::connect(&addr)
                            .await
                            .expect("reconnect");
                        conn.set_nodelay(true).ok();
                    }
                }
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("task"));
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort();
    let pct =
        |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1000.0;
    println!(
        "accepted={} failed={} secs={:.2} rate={:.0}/s p50={:.1}ms p99={:.1}ms",
        n - failed.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        secs,
        n as f64 / secs,
        pct(0.5),
        pct(0.99)
    );
}
