//! A standalone authoritative DNS server for benchmarks and manual tests:
//! serves the records listed in a file (one `NAME TYPE VALUE` per line;
//! TYPE is A, AAAA, TXT or MX with VALUE `PREF HOST`); every other name
//! is NXDOMAIN.
//!
//!     cargo run --release -p tern-testkit --example zone_dns -- 127.0.0.1:5353 zone.txt

use std::net::SocketAddr;
use tern_testkit::dns::DnsServer;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(file)) = (args.next(), args.next()) else {
        eprintln!("usage: zone_dns ADDR:PORT ZONEFILE");
        std::process::exit(2);
    };
    let addr: SocketAddr = addr.parse().expect("ADDR:PORT");
    let text = std::fs::read_to_string(&file).expect("zone file");
    let dns = DnsServer::start_on(addr, &[]).await.expect("bind");
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let mut parts = line.splitn(3, char::is_whitespace);
        let (Some(name), Some(kind), Some(value)) = (parts.next(), parts.next(), parts.next())
        else {
            eprintln!("skipping {line:?}");
            continue;
        };
        let value = value.trim();
        match kind {
            "A" | "AAAA" => dns.ip(name, value.parse().expect("address")).await,
            "TXT" => dns.txt(name, value.trim_matches('"')).await,
            "MX" => {
                let (pref, host) = value.split_once(' ').expect("MX PREF HOST");
                dns.mx(name, pref.parse().expect("preference"), host.trim())
                    .await
            }
            other => eprintln!("unknown type {other}"),
        }
    }
    println!("serving {} on {}", file, dns.addr);
    std::future::pending::<()>().await;
}
