//! How long the spam filter takes per message: `filter_rate MESSAGE [N]`
//! (an untrained classifier in a fresh store, no DNSBL). Prints
//! microseconds per check.

use std::sync::Arc;
use std::time::Instant;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let Some(file) = args.next() else {
        eprintln!("usage: filter_rate MESSAGE [N]");
        std::process::exit(2);
    };
    let n: u32 = args.next().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let msg = std::fs::read(file).expect("message");
    let dir = tempfile::tempdir().expect("tempdir");
    let store: tern_store::SharedStore = Arc::new(
        tern_store::sqlite::SqliteStore::open(&dir.path().join("t.db"), 64)
            .await
            .expect("store"),
    );
    let resolver = tern_dns::Resolver::new(&["127.0.0.1:9".parse().unwrap()]).expect("resolver");
    let filter = tern_filter::Filter::new(store, resolver, Default::default());
    let facts = tern_filter::Facts {
        ip: "127.0.0.1".parse().unwrap(),
        helo: "vm",
        auth: "spf=pass dkim=pass dmarc=pass",
        rdns: Some("localhost"),
        account: Some(1),
    };
    let r = filter.check(&msg, &facts).await;
    println!("score {:.1} {}", r.score, r.tests());
    let start = Instant::now();
    for _ in 0..n {
        filter.check(&msg, &facts).await;
    }
    println!(
        "filter: {:.1} µs per message",
        start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
    );
}
