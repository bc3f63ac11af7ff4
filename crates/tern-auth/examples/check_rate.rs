//! How long the inbound checks take per message, with every DNS answer
//! cached: `check_rate NAMESERVER MESSAGE [N]`, the message from
//! `bench.example` as bench/inbound_checks.sh makes it (its zone served by
//! the testkit's `zone_dns` example). Prints microseconds per check.

use std::time::Instant;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(ns), Some(file)) = (args.next(), args.next()) else {
        eprintln!("usage: check_rate NAMESERVER MESSAGE [N]");
        std::process::exit(2);
    };
    let n: u32 = args.next().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let msg = std::fs::read(file).expect("message");
    let msg: Vec<u8> = if msg.windows(2).any(|w| w == b"\r\n") {
        msg
    } else {
        String::from_utf8_lossy(&msg)
            .replace('\n', "\r\n")
            .into_bytes()
    };
    let resolver = tern_dns::Resolver::new(&[ns.parse().expect("IP:PORT")]).expect("resolver");
    let auth = tern_auth::InboundAuth::new(
        mail_auth::MessageAuthenticator(resolver.hickory()),
        "mx.bench.test",
    );
    // As the server runs it: counting DMARC evaluations for reports.
    let auth = if std::env::var_os("NO_REPORTS").is_some() {
        auth
    } else {
        auth.with_reports(std::sync::Arc::new(tern_auth::DmarcReports::default()))
    };
    let ip = "127.0.0.1".parse().unwrap();
    let v = auth
        .check(ip, "vm", "sender@bench.example", &msg, None)
        .await;
    println!("{}", v.summary);
    let start = Instant::now();
    for _ in 0..n {
        auth.check(ip, "vm", "sender@bench.example", &msg, None)
            .await;
    }
    println!(
        "inbound checks: {:.1} µs per message",
        start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
    );
}
