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

/// DNSSEC: answers from a signed zone validate against its key; a record
/// slipped in unsigned is bogus; a missing record is a secure denial; with
/// another trust anchor nothing is secure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dnssec_validation() {
    use tern_dns::Security;
    let dns = DnsServer::start_signed("127.0.0.1".parse().unwrap())
        .await
        .unwrap();
    dns.mx("dane.test", 10, "mx.dane.test").await;
    dns.ip("mx.dane.test", "127.0.0.1".parse().unwrap()).await;
    dns.tlsa("mx.dane.test", 25, 3, 1, 1, vec![7; 32]).await;
    dns.ip("mx.nodane.test", "127.0.0.1".parse().unwrap()).await;
    // Last: the next add would sign it.
    dns.add_unsigned(
        "forged.test",
        300,
        hickory_server::proto::rr::RData::MX(hickory_server::proto::rr::rdata::MX::new(
            10,
            "mx.dane.test.".parse().unwrap(),
        )),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let anchor = dir.path().join("root.key");
    std::fs::write(&anchor, dns.trust_anchor().unwrap()).unwrap();
    let r = Resolver::new(&[dns.addr])
        .unwrap()
        .with_dnssec(&[dns.addr], Some(&anchor))
        .unwrap();

    assert!(r.dnssec_works().await);
    let mx = r.secure_mx("dane.test").await.unwrap();
    assert_eq!(mx.security, Security::Secure, "{mx:?}");
    assert_eq!(mx.data[0].exchange, "mx.dane.test");
    assert_eq!(
        r.secure_addresses("mx.dane.test").await.unwrap(),
        Security::Secure
    );
    let tlsa = r.tlsa("mx.dane.test", 25).await.unwrap();
    assert_eq!(tlsa.security, Security::Secure, "{tlsa:?}");
    assert_eq!((tlsa.data[0].usage, tlsa.data[0].selector), (3, 1));
    let none = r.tlsa("mx.nodane.test", 25).await.unwrap();
    assert_eq!(
        (none.data.len(), none.security),
        (0, Security::Secure),
        "authenticated denial"
    );
    let forged = r.secure_mx("forged.test").await.unwrap();
    assert_eq!(forged.security, Security::Bogus, "{forged:?}");

    // The IANA root keys do not sign this test root: nothing is secure.
    let other = Resolver::new(&[dns.addr])
        .unwrap()
        .with_dnssec(&[dns.addr], None)
        .unwrap();
    assert!(!other.dnssec_works().await);
    let mx = other.secure_mx("dane.test").await;
    assert!(
        !matches!(mx, Ok(ref v) if v.security == Security::Secure),
        "{mx:?}"
    );
}
