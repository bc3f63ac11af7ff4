//! An authoritative DNS server for tests, on loopback, with zones the test
//! programs (MX, A, AAAA, TXT, TLSA, and anything else as raw `RData`),
//! served by hickory-server over UDP and TCP on the same port. A signed
//! server ([`DnsServer::start_signed`]) serves one DNSSEC-signed root zone
//! whose key is the resolver's trust anchor, so DANE can be tested with
//! real signatures and real validation. Denials are NSEC, and
//! hickory-server proves a name absent with the one NSEC that covers it:
//! enough when the name's parent exists (a TLSA query for an MX host that
//! has addresses but no TLSA), not for names under absent parents.

use hickory_server::Server;
use hickory_server::dnssec::NxProofKind;
use hickory_server::proto::dnssec::crypto::EcdsaSigningKey;
use hickory_server::proto::dnssec::rdata::DNSKEY;
use hickory_server::proto::dnssec::{Algorithm, DnssecSigner, SigningKey};
use hickory_server::proto::op::{Header, HeaderCounts, Metadata};
pub use hickory_server::proto::rr::RData;
use hickory_server::proto::rr::rdata::tlsa::{CertUsage, Matching, Selector};
use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, MX, PTR, SOA, TLSA, TXT};
use hickory_server::proto::rr::{LowerName, Name, Record};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, DnssecZoneHandler, ZoneType};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};

/// A running DNS server.
pub struct DnsServer {
    /// Where it listens (UDP and TCP).
    pub addr: SocketAddr,
    zones: Vec<(Name, Arc<InMemoryZoneHandler>)>,
    /// The root zone's DNSKEY record in zone-file syntax, when signed.
    trust_anchor: Option<String>,
    /// Names whose queries go unanswered (a server that times out).
    silent: Arc<RwLock<HashSet<LowerName>>>,
    _server: Server<Answering>,
}

/// The zones' catalog, except that queries for a silent name are dropped
/// without an answer, as a broken authoritative server does: the asker
/// sees a timeout, not an error code.
struct Answering {
    catalog: Catalog,
    silent: Arc<RwLock<HashSet<LowerName>>>,
}

#[async_trait::async_trait]
impl RequestHandler for Answering {
    async fn handle_request<R: ResponseHandler, T: hickory_server::net::runtime::Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        if let Ok(info) = request.request_info()
            && self
                .silent
                .read()
                .expect("silent names")
                .contains(info.query.name())
        {
            // Nothing is sent; the header is only what the server logs.
            return ResponseInfo::from(Header {
                metadata: Metadata::response_from_request(info.metadata),
                counts: HeaderCounts::default(),
            });
        }
        self.catalog
            .handle_request::<R, T>(request, response_handle)
            .await
    }
}

fn name(s: &str) -> Name {
    let fq = if s.ends_with('.') {
        s.to_string()
    } else {
        format!("{s}.")
    };
    // Any bytes may stand in a label (RFC 2181 §11), as SPF's test zones
    // use (`foo:bar/baz.example.com`); host-name parsing refuses them.
    Name::from_str(&fq).unwrap_or_else(|_| {
        let mut n = Name::from_labels(fq[..fq.len() - 1].split('.').map(str::as_bytes))
            .expect("valid DNS name");
        n.set_fqdn(true);
        n
    })
}

impl DnsServer {
    /// Starts a server on `ip` (any port) authoritative for `zones`.
    pub async fn start(ip: IpAddr, zones: &[&str]) -> std::io::Result<Self> {
        Self::start_on(SocketAddr::new(ip, 0), zones).await
    }

    /// Starts a server on `addr` — port 53 lets programs that only read
    /// `/etc/resolv.conf` use it (inside a mount namespace).
    pub async fn start_on(addr: SocketAddr, zones: &[&str]) -> std::io::Result<Self> {
        Self::start_with(addr, zones, false).await
    }

    /// Starts a server on `ip` (any port) with one DNSSEC-signed zone, the
    /// root: every name the test adds lives in it and is signed (ECDSA
    /// P-256), and [`DnsServer::trust_anchor`] is the key to trust.
    pub async fn start_signed(ip: IpAddr) -> std::io::Result<Self> {
        Self::start_with(SocketAddr::new(ip, 0), &["."], true).await
    }

    /// The signed root zone's key as a trust-anchor file line (`. 3600 IN
    /// DNSKEY …`), for `[dns] trust_anchor`.
    pub fn trust_anchor(&self) -> Option<&str> {
        self.trust_anchor.as_deref()
    }

    async fn start_with(addr: SocketAddr, zones: &[&str], signed: bool) -> std::io::Result<Self> {
        // UDP and TCP share the port: with port 0, the port UDP got may be
        // taken for TCP by another process; then try another.
        let mut tries = 0;
        let (udp, tcp, addr) = loop {
            let udp = UdpSocket::bind(addr).await?;
            let bound = udp.local_addr()?;
            match TcpListener::bind(bound).await {
                Ok(tcp) => break (udp, tcp, bound),
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse
                        && addr.port() == 0
                        && tries < 20 =>
                {
                    tries += 1
                }
                Err(e) => return Err(e),
            }
        };
        let mut catalog = Catalog::new();
        let mut handlers = Vec::new();
        let mut trust_anchor = None;
        // The root zone too, empty: a name outside the test's zones does
        // not exist (NXDOMAIN), as in a small internet, rather than being
        // refused (which resolvers report as a DNS failure).
        let mut all: Vec<&str> = zones.to_vec();
        if !all.contains(&".") {
            all.push(".");
        }
        for z in all {
            let origin = name(z);
            let mut h = InMemoryZoneHandler::empty(
                origin.clone(),
                ZoneType::Primary,
                AxfrPolicy::Deny,
                signed.then_some(NxProofKind::Nsec),
            );
            let soa = SOA::new(
                name(&format!("ns.{}", z.trim_start_matches('.'))),
                name(&format!("hostmaster.{}", z.trim_start_matches('.'))),
                1,
                3600,
                600,
                86400,
                60,
            );
            h.upsert_mut(Record::from_rdata(origin.clone(), 3600, RData::SOA(soa)), 1);
            if signed {
                let (signer, anchor) = zone_signer(&origin);
                h.add_zone_signing_key_mut(signer)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                h.secure_zone_mut()
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                trust_anchor = Some(anchor);
            }
            let h = Arc::new(h);
            catalog.upsert(LowerName::new(&origin), vec![h.clone()]);
            handlers.push((origin, h));
        }
        let silent = Arc::new(RwLock::new(HashSet::new()));
        let mut server = Server::new(Answering {
            catalog,
            silent: silent.clone(),
        });
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 65535);
        Ok(Self {
            addr,
            zones: handlers,
            trust_anchor,
            silent,
            _server: server,
        })
    }

    /// Makes every query for `owner` (any type) go unanswered: resolvers
    /// asking it time out.
    pub fn time_out(&self, owner: &str) {
        self.silent
            .write()
            .expect("silent names")
            .insert(LowerName::new(&name(owner)));
    }

    /// Adds a record (in the zone that contains it), signed if the zone is.
    pub async fn add(&self, owner: &str, ttl: u32, data: RData) {
        let zone = self.upsert(owner, ttl, data).await;
        if self.trust_anchor.is_some() {
            zone.secure_zone().await.expect("re-sign the zone");
        }
    }

    /// Adds a record to a signed zone without signing it: validators see
    /// it as bogus (a forged answer) — until the next [`DnsServer::add`]
    /// re-signs the zone.
    pub async fn add_unsigned(&self, owner: &str, ttl: u32, data: RData) {
        self.upsert(owner, ttl, data).await;
    }

    /// Adds a TLSA record (RFC 6698) at `_port._tcp.host`.
    pub async fn tlsa(
        &self,
        host: &str,
        port: u16,
        usage: u8,
        selector: u8,
        matching: u8,
        data: Vec<u8>,
    ) {
        self.add(
            &format!("_{port}._tcp.{host}"),
            300,
            tlsa_rdata(usage, selector, matching, data),
        )
        .await;
    }

    async fn upsert(&self, owner: &str, ttl: u32, data: RData) -> Arc<InMemoryZoneHandler> {
        let owner = name(owner);
        let zone = self
            .zones
            .iter()
            .filter(|(o, _)| o.zone_of(&owner))
            .max_by_key(|(o, _)| o.num_labels())
            .unwrap_or_else(|| panic!("no zone for {owner}"));
        zone.1.upsert(Record::from_rdata(owner, ttl, data), 2).await;
        zone.1.clone()
    }

    /// Adds an MX record.
    pub async fn mx(&self, domain: &str, preference: u16, exchange: &str) {
        self.add(domain, 300, RData::MX(MX::new(preference, name(exchange))))
            .await;
    }

    /// Adds an A or AAAA record.
    pub async fn ip(&self, host: &str, ip: IpAddr) {
        let data = match ip {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        };
        self.add(host, 300, data).await;
    }

    /// Whether `s` is a name DNS can carry (labels of 1–63 bytes, at most
    /// 255 in all).
    pub fn valid_name(s: &str) -> bool {
        let fq = if s.ends_with('.') {
            s.to_string()
        } else {
            format!("{s}.")
        };
        fq.len() <= 255
            && (fq == "."
                || fq[..fq.len() - 1]
                    .split('.')
                    .all(|l| (1..=63).contains(&l.len())))
            && (Name::from_str(&fq).is_ok()
                || Name::from_labels(fq[..fq.len() - 1].split('.').map(str::as_bytes)).is_ok())
    }

    /// Adds a TXT record made of exactly these strings.
    pub async fn txt_strings(&self, owner: &str, strings: &[String]) {
        self.add(owner, 300, RData::TXT(TXT::new(strings.to_vec())))
            .await;
    }

    /// Adds a PTR record.
    pub async fn ptr(&self, owner: &str, target: &str) {
        self.add(owner, 300, RData::PTR(PTR(name(target)))).await;
    }

    /// Adds a CNAME record.
    pub async fn cname(&self, owner: &str, target: &str) {
        self.add(owner, 300, RData::CNAME(CNAME(name(target))))
            .await;
    }

    /// Adds a TXT record (split into 255-byte strings as needed).
    pub async fn txt(&self, owner: &str, value: &str) {
        let parts: Vec<String> = value
            .as_bytes()
            .chunks(255)
            .map(|c| String::from_utf8_lossy(c).to_string())
            .collect();
        self.add(owner, 300, RData::TXT(TXT::new(parts))).await;
    }
}

/// TLSA record data (RFC 6698 §2.1).
pub fn tlsa_rdata(usage: u8, selector: u8, matching: u8, data: Vec<u8>) -> RData {
    RData::TLSA(TLSA::new(
        CertUsage::from(usage),
        Selector::from(selector),
        Matching::from(matching),
        data,
    ))
}

/// A fresh ECDSA P-256 signing key for `origin` and its DNSKEY as a
/// trust-anchor line.
fn zone_signer(origin: &Name) -> (DnssecSigner, String) {
    let alg = Algorithm::ECDSAP256SHA256;
    let pkcs8 = EcdsaSigningKey::generate_pkcs8(alg).expect("generate a zone key");
    let key = EcdsaSigningKey::from_pkcs8(&pkcs8, alg).expect("load the zone key");
    let public = key.to_public_key().expect("public key");
    let dnskey = DNSKEY::from_key(&public);
    let anchor = format!("{origin} 3600 IN DNSKEY {dnskey}\n");
    let signer = DnssecSigner::new(
        dnskey,
        Box::new(key),
        origin.clone(),
        Duration::from_secs(7 * 86400),
    );
    (signer, anchor)
}

/// A DNS responder on loopback that answers every query with NXDOMAIN at
/// once, shared by the whole test process: the default resolver of test
/// servers, so nothing asks the machine's resolvers and lookups that no
/// test programmed fail fast instead of timing out.
pub fn nxdomain_server() -> SocketAddr {
    static ADDR: std::sync::OnceLock<SocketAddr> = std::sync::OnceLock::new();
    *ADDR.get_or_init(|| answer_every_query_with(3))
}

/// A DNS responder on loopback that answers every query with SERVFAIL at
/// once (a resolver whose upstream is broken), shared by the process.
pub fn servfail_server() -> SocketAddr {
    static ADDR: std::sync::OnceLock<SocketAddr> = std::sync::OnceLock::new();
    *ADDR.get_or_init(|| answer_every_query_with(2))
}

fn answer_every_query_with(rcode: u8) -> SocketAddr {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind test DNS responder");
    let addr = sock.local_addr().expect("addr");
    std::thread::Builder::new()
        .name(format!("test-dns-rcode-{rcode}"))
        .spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok((n, peer)) = sock.recv_from(&mut buf) {
                if let Some(reply) = empty_reply(&buf[..n], rcode) {
                    let _ = sock.send_to(&reply, peer);
                }
            }
        })
        .expect("spawn test DNS responder");
    addr
}

/// An answer to a query with `rcode`: its header and question, nothing
/// else.
fn empty_reply(q: &[u8], rcode: u8) -> Option<Vec<u8>> {
    if q.len() < 12 || u16::from_be_bytes([q[4], q[5]]) != 1 {
        return None;
    }
    // Walk the question name (labels), then QTYPE and QCLASS.
    let mut i = 12;
    loop {
        let len = *q.get(i)? as usize;
        if len & 0xC0 != 0 {
            return None;
        }
        i += 1 + len;
        if len == 0 {
            break;
        }
    }
    let end = i + 4;
    if end > q.len() {
        return None;
    }
    let mut r = q[..end].to_vec();
    r[2] = 0x80 | (q[2] & 0x79); // QR, same opcode, RD copied; AA off
    r[3] = 0x80 | (rcode & 0x0F); // RA, RCODE
    r[6..12].fill(0); // no answer, authority or additional records
    Some(r)
}
