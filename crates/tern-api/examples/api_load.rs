//! Load generator for `bench/api.sh`: N `POST /v1/messages` from C concurrent
//! keep-alive clients, one recipient and a body of SIZE bytes each; prints
//! the acceptance rate and latency percentiles.
//!
//! usage: api_load URL KEY N CONCURRENCY SIZE

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: api_load URL KEY N CONCURRENCY SIZE");
        std::process::exit(2);
    }
    let url = format!("{}/v1/messages", args[1].trim_end_matches('/'));
    let key = args[2].clone();
    let n: usize = args[3].parse().expect("N");
    let c: usize = args[4].parse().expect("CONCURRENCY");
    let size: usize = args[5].parse().expect("SIZE");
    let line = "The quick brown fox jumps over the lazy dog 0123456789.\r\n";
    let text: String = line.repeat(size / line.len() + 1)[..size].to_string();
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..c {
        let (url, key, text, next, failed) = (
            url.clone(),
            key.clone(),
            text.clone(),
            next.clone(),
            failed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            // One client (one keep-alive connection) per task.
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client");
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let body = serde_json::json!({
                    "from": "bench@example.test",
                    "to": ["x@relay.test"],
                    "subject": format!("bench {i}"),
                    "text": text,
                })
                .to_string();
                let t = Instant::now();
                let ok = http
                    .post(&url)
                    .header("authorization", format!("Bearer {key}"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16() == 202)
                    .unwrap_or(false);
                lat.push(t.elapsed());
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
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
