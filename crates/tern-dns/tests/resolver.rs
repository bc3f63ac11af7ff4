//! The resolver against the testkit's authoritative server on loopback.

use std::net::IpAddr;
use tern_dns::{Mx, Resolver};
use tern_testkit::dns::DnsServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_txt_and_addresses() {
    let dns = DnsServer::start("127.0.0.1".parse().unwrap(), &["example.net", "other.test"])
        .await
        .unwrap();
    dns.mx("example.net", 20, "mx2.example.net").await;
    dns.mx("example.net", 10, "mx1.example.net").await;
    dns.ip("mx1.example.net", "127.0.0.11".parse().unwrap())
        .await;
    dns.ip("mx1.example.net", "::1".parse().unwrap()).await;
    let long = format!("v=DKIM1; k=rsa; p={}", "A".repeat(400));
    dns.txt("s1._domainkey.example.net", &long).await;
    dns.txt("example.net", "v=spf1 mx -all").await;

    let r = Resolver::new(&[dns.addr]).unwrap();
    assert_eq!(
        r.mx("example.net").await.unwrap(),
        vec![
            Mx {
                preference: 10,
                exchange: "mx1.example.net".into()
            },
            Mx {
                preference: 20,
                exchange: "mx2.example.net".into()
            },
        ]
    );
    assert!(
        r.mx("other.test").await.unwrap().is_empty(),
        "no MX: empty, not an error"
    );
    assert!(r.mx("nonexistent.other.test").await.unwrap().is_empty());
    let mut ips = r.ips("mx1.example.net").await.unwrap();
    ips.sort();
    assert_eq!(
        ips,
        vec![
            "127.0.0.11".parse::<IpAddr>().unwrap(),
            "::1".parse().unwrap()
        ]
    );
    assert_eq!(
        r.txt("s1._domainkey.example.net").await.unwrap(),
        vec![long],
        "strings joined"
    );
    assert_eq!(
        r.txt("example.net").await.unwrap(),
        vec!["v=spf1 mx -all".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_and_forward_confirmed() {
    let dns = DnsServer::start("127.0.0.1".parse().unwrap(), &["example.net"])
        .await
        .unwrap();
    dns.ip("mx.example.net", "127.7.8.9".parse().unwrap()).await;
    let r = Resolver::new(&[dns.addr]).unwrap();
    // hickory answers loopback reverse lookups itself (RFC 6761: "localhost"),
    // so the testkit's PTR records cannot be used for 127/8; what can be
    // checked is that a name is confirmed only when it points back.
    let lo: IpAddr = "127.0.0.1".parse().unwrap();
    assert_eq!(r.fcrdns(lo).await.as_deref(), Some("localhost"));
    assert_eq!(r.fcrdns("127.7.8.9".parse().unwrap()).await, None);
}
