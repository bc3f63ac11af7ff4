//! A private certificate authority for tests that need certificates a
//! verifying client accepts (MTA-STS, `tls = "required"`), and a minimal
//! HTTPS server for the MTA-STS policy file (RFC 8461 §3.3).

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A CA that issues leaf certificates for host names.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: Vec<u8>,
}

/// A leaf certificate issued for DANE tests.
pub struct Issued {
    /// Leaf then CA certificate (PEM): DANE-TA needs the anchor in the chain.
    pub chain_pem: String,
    /// The leaf's private key (PEM).
    pub key_pem: String,
    /// The leaf's SubjectPublicKeyInfo (DER), what `TLSA 3 1 x` digests.
    pub spki_der: Vec<u8>,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    /// A new CA with a fresh key.
    pub fn new() -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Tern Test CA");
        let cert = params.self_signed(&key).expect("CA cert");
        Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate (PEM), for clients to trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A certificate for `host` signed by this CA: `(chain PEM, key PEM)`.
    pub fn issue(&self, host: &str) -> (String, String) {
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(vec![host.to_string()]).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, host);
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        (cert.pem(), key.serialize_pem())
    }

    /// The CA certificate (DER), what `TLSA 2 0 x` digests.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// A certificate for `host` with the CA in its chain, and its key's
    /// SubjectPublicKeyInfo.
    pub fn issue_chain(&self, host: &str) -> Issued {
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(vec![host.to_string()]).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, host);
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        Issued {
            chain_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
            spki_der: rcgen::PublicKeyData::subject_public_key_info(&key),
        }
    }

    /// A TLS acceptor presenting a certificate for `host`.
    pub fn acceptor(&self, host: &str) -> TlsAcceptor {
        let (cert, key) = self.issue(host);
        acceptor_from_pem(&cert, &key).expect("acceptor")
    }
}

/// A TLS acceptor from PEM certificate chain and key.
pub fn acceptor_from_pem(cert: &str, key: &str) -> std::io::Result<TlsAcceptor> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("c.pem"), cert)?;
    std::fs::write(dir.path().join("k.pem"), key)?;
    let cfg = tern_core::tls::server_config(&dir.path().join("c.pem"), &dir.path().join("k.pem"))
        .map_err(std::io::Error::other)?;
    Ok(TlsAcceptor::from(cfg))
}

/// An HTTPS server answering `GET /.well-known/mta-sts.txt` with a policy
/// the test can change; anything else gets 404.
pub struct PolicyServer {
    /// Where it listens.
    pub addr: SocketAddr,
    policy: Arc<Mutex<Option<String>>>,
    fetches: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PolicyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PolicyServer {
    /// Serves `policy` over TLS (certificate for `host` from `ca`) on `addr`.
    pub async fn start(
        addr: SocketAddr,
        ca: &TestCa,
        host: &str,
        policy: Option<&str>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let acceptor = ca.acceptor(host);
        let policy = Arc::new(Mutex::new(policy.map(str::to_string)));
        let fetches = Arc::new(Mutex::new(0));
        let (p2, f2) = (policy.clone(), fetches.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, policy, fetches) = (acceptor.clone(), p2.clone(), f2.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut req = Vec::new();
                    let mut buf = [0u8; 2048];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16384 {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&req);
                    let wanted = text.starts_with("GET /.well-known/mta-sts.txt ");
                    let body = policy.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    let resp = match (wanted, body) {
                        (true, Some(b)) => {
                            *fetches.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                                b.len()
                            )
                        }
                        _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_string(),
                    };
                    let _ = tls.write_all(resp.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Ok(Self {
            addr,
            policy,
            fetches,
            task,
        })
    }

    /// Replaces the policy (`None`: 404).
    pub fn set_policy(&self, policy: Option<&str>) {
        *self.policy.lock().unwrap_or_else(|e| e.into_inner()) = policy.map(str::to_string);
    }

    /// How many times the policy was served.
    pub fn fetches(&self) -> usize {
        *self.fetches.lock().unwrap_or_else(|e| e.into_inner())
    }
}
