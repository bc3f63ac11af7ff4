//! Starting a server for a test.

use std::net::SocketAddr;
use tern::server::Running;
use tern_core::{Address, Config};
use tern_store::SharedStore;
use tern_testkit::{DataDir, LineClient};

pub const ALICE: &str = "alice@example.test";
pub const ALICE_PW: &str = "alice-password";
pub const BOB: &str = "bob@example.test";
pub const BOB_PW: &str = "bob-password";

pub struct Server {
    pub data: DataDir,
    pub running: Option<Running>,
    pub smtp: SocketAddr,
    pub submission: SocketAddr,
    pub submissions: SocketAddr,
    pub pop3: SocketAddr,
    pub pop3s: SocketAddr,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub imap: SocketAddr,
    pub imaps: SocketAddr,
    pub store: SharedStore,
}

pub fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

/// Starts a server whose config has `extra` appended, with domain
/// example.test, accounts alice and bob, alias sales → alice, and domain
/// catchall.test whose unknown addresses go to its account `all`.
pub async fn start(extra: &str) -> Server {
    let data = DataDir::new(extra);
    let running = start_in(&data).await;
    let store = running.store.clone();
    store.add_domain("example.test", None).await.unwrap();
    store.add_account(&addr(ALICE), ALICE_PW, 0).await.unwrap();
    store.add_account(&addr(BOB), BOB_PW, 0).await.unwrap();
    store
        .add_alias(&addr("sales@example.test"), &addr(ALICE))
        .await
        .unwrap();
    store
        .add_domain("catchall.test", Some(&addr("all@catchall.test")))
        .await
        .unwrap();
    store
        .add_account(&addr("all@catchall.test"), "x", 0)
        .await
        .unwrap();
    Server {
        smtp: running.smtp[0],
        submission: running.submission[0],
        submissions: running.submissions[0],
        pop3: running.pop3[0],
        pop3s: running.pop3s[0],
        http: running.http[0],
        https: running.https[0],
        imap: running.imap[0],
        imaps: running.imaps[0],
        store,
        running: Some(running),
        data,
    }
}

/// Starts the services of an existing data folder.
pub async fn start_in(data: &DataDir) -> Running {
    let config = Config::load(&data.config_path()).unwrap();
    tern::server::start(config).await.unwrap()
}

impl Server {
    /// Opens an SMTP session and says EHLO.
    pub async fn smtp_session(&self) -> LineClient {
        let mut c = LineClient::connect(self.smtp).await.unwrap();
        let (code, _) = c.reply().await.unwrap();
        assert_eq!(code, 220);
        let (code, _) = c.smtp("EHLO client.example.net").await.unwrap();
        assert_eq!(code, 250);
        c
    }

    /// Messages (raw) in an account's INBOX.
    pub async fn inbox(&self, account: &str) -> Vec<Vec<u8>> {
        let accounts = self.store.list_accounts(None).await.unwrap();
        let id = accounts.iter().find(|a| a.address == account).unwrap().id;
        let mut out = Vec::new();
        for m in self.store.list(id, "INBOX").await.unwrap() {
            out.push(self.store.read_blob(m.blob).await.unwrap());
        }
        out
    }

    pub fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The body of a stored message (after the trace headers Tern added:
/// Return-Path, its Received line, Authentication-Results, X-Spam-Status).
pub fn after_trace(raw: &[u8]) -> &[u8] {
    let s = raw;
    let mut i = 0;
    let mut seen_received = false;
    let mut seen_results = false;
    let mut in_ours = false;
    while i < s.len() {
        let end = s[i..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|p| i + p + 2)
            .unwrap_or(s.len());
        let line = &s[i..end];
        let cont = line.starts_with(b"\t") || line.starts_with(b" ");
        if line.starts_with(b"Return-Path:") {
            in_ours = true;
        } else if line.starts_with(b"Received:") && !seen_received {
            seen_received = true;
            in_ours = true;
        } else if line.starts_with(b"Authentication-Results: mail.example.test") && !seen_results {
            seen_results = true;
            in_ours = true;
        } else if line.starts_with(b"X-Spam-Status: ") {
            in_ours = true;
        } else if !(cont && in_ours) {
            break;
        }
        i = end;
    }
    &s[i..]
}

/// Runs `tests/tools/TOOL` (a dkimpy script) with Debian's Python on `input`:
/// whether it succeeded, and its stdout followed by its stderr.
pub fn python_tool(tool: &str, args: &[&str], input: &[u8]) -> (bool, String, Vec<u8>) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let script = format!("{}/tests/tools/{tool}", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("/usr/bin/python3")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "python3 with dkimpy (apt-get install python3-dkim python3-nacl python3-dnspython)",
        );
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text, out.stdout)
}

/// Runs the `tern` binary with `args` (quiet logs): whether it succeeded, and its stdout.
pub fn tern_cli(args: &[&str], data: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(args)
        .arg("--data")
        .arg(data)
        .env("TERN_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A scripted remote SMTP host as `domain`'s MX (`mx.DOMAIN`), published
/// in the test DNS.
pub async fn mx_host(
    dns: &tern_testkit::dns::DnsServer,
    domain: &str,
    b: tern_testkit::remote::Behaviour,
) -> tern_testkit::remote::RemoteHost {
    let h = tern_testkit::remote::RemoteHost::start(b).await;
    let name = format!("mx.{domain}");
    dns.mx(domain, 10, &name).await;
    dns.ip(&name, h.ip()).await;
    h
}

/// A test DNS server for `zones` on port 53 of its own loopback address (so
/// resolv.conf-only programs can use it too).
pub async fn test_dns(zones: &[&str]) -> tern_testkit::dns::DnsServer {
    use tern_testkit::dns::DnsServer;
    loop {
        let addr = SocketAddr::new(tern_testkit::remote::unique_loopback(), 53);
        match DnsServer::start_on(addr, zones).await {
            Ok(d) => return d,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => panic!("test DNS on port 53: {e}"),
        }
    }
}

/// Gives example.test active DKIM keys (RSA `t1r` and Ed25519 `t1e`) and
/// publishes them in `dns`.
pub async fn example_dkim(store: &SharedStore, dns: &tern_testkit::dns::DnsServer) {
    use tern_auth::DkimAlgorithm;
    dkim_key(store, dns, "example.test", "t1r", DkimAlgorithm::Rsa2048).await;
    dkim_key(store, dns, "example.test", "t1e", DkimAlgorithm::Ed25519).await;
}

/// Gives `domain` an active DKIM key `selector` and publishes it in `dns`.
pub async fn dkim_key(
    store: &SharedStore,
    dns: &tern_testkit::dns::DnsServer,
    domain: &str,
    selector: &str,
    alg: tern_auth::DkimAlgorithm,
) {
    let k = tern_auth::DkimKey::generate(selector, alg).unwrap();
    store
        .add_dkim_key(tern_store::DkimKeyRow {
            domain: domain.into(),
            selector: selector.into(),
            algorithm: alg.name().into(),
            private_key: k.private_pem.clone(),
            status: "active".into(),
        })
        .await
        .unwrap();
    dns.txt(
        &format!("{selector}._domainkey.{domain}"),
        &k.txt().unwrap(),
    )
    .await;
}
