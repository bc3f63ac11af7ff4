//! `tern dns check`: a domain published correctly in the test DNS passes
//! every check; each record broken in turn fails its check, prints the
//! fix, and makes the command exit 1. And Tern serves the MTA-STS policy
//! `tern dns records` tells people to point at it.

use crate::common::*;
use std::net::IpAddr;
use tern_testkit::dns::DnsServer;
use tern_testkit::pki::{PolicyServer, TestCa};
use tern_testkit::remote::unique_loopback;

const D: &str = "example.test";
const HOST: &str = "mail.example.test";

/// What is broken in a world.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Break {
    Nothing,
    Mx,
    SpfMissing,
    SpfExcludesUs,
    SpfTooManyLookups,
    DkimOtherKey,
    DmarcMissing,
    MtaStsMissing,
    MtaStsPolicyOtherMx,
    TlsRptMissing,
    PtrElsewhere,
    Blocklisted,
}

struct World {
    _dns: DnsServer,
    _policy: PolicyServer,
    data: tern_testkit::DataDir,
}

async fn world(b: Break) -> World {
    let dns = test_dns(&[
        D,
        "other.test",
        "bl.test",
        "dbl.test",
        "2.0.192.in-addr.arpa",
    ])
    .await;
    // The sending address is only looked up (PTR, SPF, blocklists), never
    // connected to: a documentation address (RFC 5737), since the resolver
    // answers loopback reverse lookups itself (localhost).
    let v4 = std::net::Ipv4Addr::new(192, 0, 2, 25);
    let ip = IpAddr::V4(v4);
    let ca = TestCa::new();
    let policy_mx = if b == Break::MtaStsPolicyOtherMx {
        "mx.other.test"
    } else {
        HOST
    };
    let policy = PolicyServer::start(
        std::net::SocketAddr::new(unique_loopback(), 443),
        &ca,
        &format!("mta-sts.{D}"),
        Some(&format!(
            "version: STSv1\nmode: enforce\nmx: {policy_mx}\nmax_age: 86400\n"
        )),
    )
    .await
    .expect("policy server on port 443");
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.cert_pem()).unwrap();
    let data = tern_testkit::DataDir::new(&format!(
        "[dns]\nnameservers = [\"{}\"]\ncheck_blocklists = [\"bl.test\"]\ncheck_domain_blocklists = [\"dbl.test\"]\n[queue]\nsource_ips = [\"{ip}\"]\ntls_ca_file = \"{}\"\n",
        dns.addr,
        ca_path.display()
    ));
    std::mem::forget(dir);
    let config = tern_core::Config::load(&data.config_path()).unwrap();
    let store: tern_store::SharedStore = tern::server::open_store(&config).await.unwrap();
    store.add_domain(D, None).await.unwrap();
    dkim_key(&store, &dns, D, "t1", tern_auth::DkimAlgorithm::Ed25519).await;
    if b == Break::DkimOtherKey {
        // The record no longer matches the key Tern signs with.
        let other = tern_auth::DkimKey::generate("t1", tern_auth::DkimAlgorithm::Ed25519).unwrap();
        store
            .add_dkim_key(tern_store::DkimKeyRow {
                domain: D.into(),
                selector: "t2".into(),
                algorithm: "ed25519".into(),
                private_key: other.private_pem.clone(),
                status: "active".into(),
            })
            .await
            .unwrap();
        let stale = tern_auth::DkimKey::generate("t2", tern_auth::DkimAlgorithm::Ed25519).unwrap();
        dns.txt(&format!("t2._domainkey.{D}"), &stale.txt().unwrap())
            .await;
    }
    drop(store);
    if b == Break::Mx {
        dns.mx(D, 10, "mx.other.test").await;
    } else {
        dns.mx(D, 10, HOST).await;
    }
    dns.ip(HOST, ip).await;
    match b {
        Break::SpfMissing => {}
        Break::SpfExcludesUs => dns.txt(D, "v=spf1 ip4:192.0.2.1 -all").await,
        Break::SpfTooManyLookups => {
            let mut spf = String::from("v=spf1 mx");
            for i in 0..11 {
                spf.push_str(&format!(" include:s{i}.other.test"));
                dns.txt(&format!("s{i}.other.test"), "v=spf1 ip4:192.0.2.1 -all")
                    .await;
            }
            dns.txt(D, &format!("{spf} -all")).await;
        }
        _ => dns.txt(D, "v=spf1 mx -all").await,
    }
    if b != Break::DmarcMissing {
        dns.txt(
            &format!("_dmarc.{D}"),
            &format!("v=DMARC1; p=reject; rua=mailto:dmarc@{D}"),
        )
        .await;
    }
    if b != Break::MtaStsMissing {
        dns.txt(&format!("_mta-sts.{D}"), "v=STSv1; id=20261204")
            .await;
    }
    dns.ip(&format!("mta-sts.{D}"), policy.addr.ip()).await;
    if b != Break::TlsRptMissing {
        dns.txt(
            &format!("_smtp._tls.{D}"),
            &format!("v=TLSRPTv1; rua=mailto:tls@{D}"),
        )
        .await;
    }
    let o = v4.octets();
    let rev = format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0]);
    if b == Break::PtrElsewhere {
        dns.ptr(&rev, "host-127-0-0-1.other.test").await;
    } else {
        dns.ptr(&rev, HOST).await;
    }
    if b == Break::Blocklisted {
        dns.ip(
            &tern_dns::check::blocklist_name(ip, "bl.test"),
            "127.0.0.2".parse().unwrap(),
        )
        .await;
    }
    World {
        _dns: dns,
        _policy: policy,
        data,
    }
}

fn run(w: &World) -> (bool, String, Vec<serde_json::Value>) {
    let (ok, text) = tern_cli(&["dns", "check", D], w.data.path());
    let (_, json) = tern_cli(&["dns", "check", D, "--json"], w.data.path());
    let start = json.find('[').unwrap_or(0);
    let checks: Vec<serde_json::Value> =
        serde_json::from_str(&json[start..]).unwrap_or_else(|e| panic!("{e}: {json}"));
    (ok, text, checks)
}

fn status<'a>(checks: &'a [serde_json::Value], name: &str) -> &'a str {
    checks
        .iter()
        .find(|c| c["name"].as_str().is_some_and(|n| n.starts_with(name)))
        .and_then(|c| c["status"].as_str())
        .unwrap_or_else(|| panic!("no check {name}: {checks:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_domain_passes_and_each_broken_record_fails_with_its_fix() {
    let w = world(Break::Nothing).await;
    let (ok, text, checks) = run(&w);
    assert!(ok, "{text}");
    for c in &checks {
        assert_eq!(c["status"], "pass", "{text}");
    }
    for name in [
        "mx",
        "host_address",
        "spf",
        "spf_lookups",
        "spf_covers:",
        "dkim:t1",
        "dmarc",
        "mta_sts",
        "mta_sts_policy",
        "tls_rpt",
        "fcrdns:",
        "blocklist:bl.test:",
        "blocklist:dbl.test:",
    ] {
        assert_eq!(status(&checks, name), "pass", "{name}: {text}");
    }

    // (what is broken, the check that fails, its fix, checks that fail
    // with it because they depend on it)
    let cases: &[(Break, &str, &str, &[&str])] = &[
        // SPF's `mx` follows the MX: it no longer covers us either.
        (
            Break::Mx,
            "mx",
            "example.test. 3600 IN MX 10 mail.example.test.",
            &["spf_covers:"],
        ),
        (Break::SpfMissing, "spf", "\"v=spf1 mx -all\"", &[]),
        (Break::SpfExcludesUs, "spf_covers:", "add ip4:", &[]),
        (
            Break::SpfTooManyLookups,
            "spf_lookups",
            "ip4:/ip6: ranges",
            // Receivers stop at 10 lookups: a permerror (RFC 7208 §4.6.4).
            &["spf_covers:"],
        ),
        (
            Break::DkimOtherKey,
            "dkim:t2",
            "t2._domainkey.example.test.",
            &[],
        ),
        (Break::DmarcMissing, "dmarc", "_dmarc.example.test.", &[]),
        (
            Break::MtaStsMissing,
            "mta_sts",
            "_mta-sts.example.test.",
            &[],
        ),
        (
            Break::MtaStsPolicyOtherMx,
            "mta_sts_policy",
            "\"mx: mail.example.test\"",
            &[],
        ),
        (
            Break::TlsRptMissing,
            "tls_rpt",
            "_smtp._tls.example.test.",
            &[],
        ),
        (
            Break::PtrElsewhere,
            "fcrdns:",
            "PTR record to mail.example.test.",
            &[],
        ),
        (Break::Blocklisted, "blocklist:bl.test:", "delist", &[]),
    ];
    for &(b, check, fix, also) in cases {
        let w = world(b).await;
        let (ok, text, checks) = run(&w);
        assert!(!ok, "{b:?} exits non-zero: {text}");
        assert_eq!(status(&checks, check), "fail", "{b:?}: {text}");
        assert!(text.contains(fix), "{b:?} prints its fix ({fix}): {text}");
        // Only what was broken (and what depends on it) fails.
        let failing: Vec<&str> = checks
            .iter()
            .filter(|c| c["status"] == "fail")
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert!(
            failing
                .iter()
                .all(|n| n.starts_with(check) || also.iter().any(|a| n.starts_with(a))),
            "{b:?}: {failing:?}\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tern_serves_the_mta_sts_policy_of_its_domains() {
    let s = start("").await;
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let get = |host: &'static str| {
        let http = http.clone();
        let url = format!(
            "https://127.0.0.1:{}/.well-known/mta-sts.txt",
            s.https.port()
        );
        async move {
            let r = http.get(url).header("host", host).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (st, body) = get("mta-sts.example.test").await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        body,
        "version: STSv1\nmode: testing\nmx: mail.example.test\nmax_age: 86400\n"
    );
    let (st, _) = get("mta-sts.not-ours.test").await;
    assert_eq!(st, 404);
    let (st, _) = get("example.test").await;
    assert_eq!(st, 404);
}
