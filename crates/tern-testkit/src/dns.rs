//! An authoritative DNS server for tests, on loopback, with zones the test
//! programs (MX, A, AAAA, TXT, and anything else as raw `RData`), served by
//! hickory-server over UDP and TCP on the same port.

use hickory_server::Server;
use hickory_server::proto::rr::rdata::{A, AAAA, MX, SOA, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};

/// A running DNS server.
pub struct DnsServer {
    /// Where it listens (UDP and TCP).
    pub addr: SocketAddr,
    zones: Vec<(Name, Arc<InMemoryZoneHandler>)>,
    _server: Server<Catalog>,
}

fn name(s: &str) -> Name {
    let fq = if s.ends_with('.') {
        s.to_string()
    } else {
        format!("{s}.")
    };
    Name::from_str(&fq).expect("valid DNS name")
}

impl DnsServer {
    /// Starts a server on `ip` (any port) authoritative for `zones`.
    pub async fn start(ip: IpAddr, zones: &[&str]) -> std::io::Result<Self> {
        Self::start_on(SocketAddr::new(ip, 0), zones).await
    }

    /// Starts a server on `addr` — port 53 lets programs that only read
    /// `/etc/resolv.conf` use it (inside a mount namespace).
    pub async fn start_on(addr: SocketAddr, zones: &[&str]) -> std::io::Result<Self> {
        let udp = UdpSocket::bind(addr).await?;
        let addr = udp.local_addr()?;
        let tcp = TcpListener::bind(addr).await?;
        let mut catalog = Catalog::new();
        let mut handlers = Vec::new();
        for z in zones {
            let origin = name(z);
            let mut h =
                InMemoryZoneHandler::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
            let soa = SOA::new(
                name(&format!("ns.{z}")),
                name(&format!("hostmaster.{z}")),
                1,
                3600,
                600,
                86400,
                60,
            );
            h.upsert_mut(Record::from_rdata(origin.clone(), 3600, RData::SOA(soa)), 1);
            let h = Arc::new(h);
            catalog.upsert(LowerName::new(&origin), vec![h.clone()]);
            handlers.push((origin, h));
        }
        let mut server = Server::new(catalog);
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 65535);
        Ok(Self {
            addr,
            zones: handlers,
            _server: server,
        })
    }

    /// Adds a record (in the zone that contains it).
    pub async fn add(&self, owner: &str, ttl: u32, data: RData) {
        let owner = name(owner);
        let zone = self
            .zones
            .iter()
            .filter(|(o, _)| o.zone_of(&owner))
            .max_by_key(|(o, _)| o.num_labels())
            .unwrap_or_else(|| panic!("no zone for {owner}"));
        zone.1.upsert(Record::from_rdata(owner, ttl, data), 2).await;
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
