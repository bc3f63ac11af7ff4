//! Load for `bench/verify.sh`: bulk verification in a simulated internet —
//! a test DNS server and DOMAINS scripted MX hosts, each on its own
//! loopback address at port 25 (needs root), answering every command
//! after DELAY ms; ADDRESSES addresses spread over the domains, half of
//! them existing mailboxes. Prints addresses per second, peak memory, and
//! connections opened per domain.
//!
//! usage: verify_load [ADDRESSES=10000] [DOMAINS=200] [DELAY_MS=20] [CONCURRENCY=10]

use std::sync::Arc;
use std::time::{Duration, Instant};
use tern_testkit::remote::{Behaviour, RemoteHost};

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(10_000);
    let domains = args.get(1).copied().unwrap_or(200);
    let delay = Duration::from_millis(args.get(2).copied().unwrap_or(20) as u64);
    let concurrency = args.get(3).copied().unwrap_or(10);
    let per_domain = n.div_ceil(domains);
    let dns =
        tern_testkit::dns::DnsServer::start(tern_testkit::remote::unique_loopback(), &["v.test"])
            .await
            .expect("test DNS");
    let mut hosts = Vec::new();
    for d in 0..domains {
        let mailboxes: Vec<String> = (0..per_domain)
            .step_by(2)
            .map(|i| format!("u{i}"))
            .collect();
        let h = RemoteHost::start(Behaviour {
            mailboxes: Some(mailboxes),
            reply_delay: delay,
            starttls: false,
            ..Behaviour::default()
        })
        .await;
        let domain = format!("d{d}.v.test");
        dns.mx(&domain, 10, &format!("mx.{domain}")).await;
        dns.ip(&format!("mx.{domain}"), h.ip()).await;
        hosts.push(h);
    }
    let addresses: Vec<String> = (0..n)
        .map(|i| format!("u{}@d{}.v.test", i / domains, i % domains))
        .collect();
    let resolver = tern_dns::Resolver::new(&[dns.addr]).expect("resolver");
    let mut settings = tern_verify::Settings::new("verifier.bench.test");
    settings.command_timeout = Duration::from_secs(10);
    let v = Arc::new(tern_verify::Verifier::new(resolver, settings));
    let t = Instant::now();
    let answers = v.verify_all(&addresses, concurrency, |_| {}).await;
    let secs = t.elapsed().as_secs_f64();
    let mut by = std::collections::BTreeMap::<&str, usize>::new();
    for a in &answers {
        *by.entry(a.result.as_str()).or_default() += 1;
    }
    let conns: Vec<usize> = hosts.iter().map(|h| h.connections()).collect();
    println!(
        "addresses={n} domains={domains} delay_ms={} concurrency={concurrency} secs={secs:.2} rate={:.0}/s peak_rss_mib={:.1}",
        delay.as_millis(),
        n as f64 / secs,
        peak_rss_kib() as f64 / 1024.0
    );
    println!(
        "results: {}",
        by.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "connections per domain: min={} max={} total={}",
        conns.iter().min().unwrap_or(&0),
        conns.iter().max().unwrap_or(&0),
        conns.iter().sum::<usize>()
    );
}
