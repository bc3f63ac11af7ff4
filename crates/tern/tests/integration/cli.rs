//! The command line, run as users run it.

use std::io::Write;
use std::process::{Command, Stdio};

fn tern(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(args)
        .env("TERN_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn init_accounts_aliases_domains() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let d = d.to_str().unwrap();
    let (ok, out) = tern(
        &[
            "init",
            "--data",
            d,
            "--domain",
            "example.com",
            "--port-base",
            "30000",
        ],
        None,
    );
    assert!(ok, "{out}");
    let toml = std::fs::read_to_string(format!("{d}/tern.toml")).unwrap();
    assert!(toml.contains("smtp = [\"127.0.0.1:30025\"]"));
    assert!(toml.contains("hostname = \"mail.example.com\""));
    assert!(std::path::Path::new(&format!("{d}/tls/key.pem")).exists());
    let (ok, _) = tern(&["init", "--data", d, "--domain", "example.com"], None);
    assert!(!ok, "init refuses to overwrite");

    let (ok, out) = tern(
        &[
            "account",
            "add",
            "alice@example.com",
            "--data",
            d,
            "--password-stdin",
        ],
        Some("pw1\n"),
    );
    assert!(ok, "{out}");
    let (ok, out) = tern(&["account", "add", "bob@example.com", "--data", d], None);
    assert!(ok && out.contains("Password: "), "{out}");
    let (ok, out) = tern(&["account", "add", "x@elsewhere.com", "--data", d], None);
    assert!(!ok && out.contains("not a local domain"), "{out}");
    let (ok, out) = tern(&["account", "add", "alice@example.com", "--data", d], None);
    assert!(!ok && out.contains("already exists"), "{out}");
    let (ok, out) = tern(
        &[
            "alias",
            "add",
            "sales@example.com",
            "alice@example.com",
            "--data",
            d,
        ],
        None,
    );
    assert!(ok, "{out}");
    let (_, out) = tern(&["alias", "list", "--data", d], None);
    assert!(
        out.contains("sales@example.com") && out.contains("-> alice@example.com"),
        "{out}"
    );
    // One address is one thing: a forwarding alias (target in another
    // domain) cannot reuse an account's or alias's address, nor the reverse.
    let (ok, out) = tern(
        &[
            "alias",
            "add",
            "me@example.com",
            "me@gmail.test",
            "--data",
            d,
        ],
        None,
    );
    assert!(ok, "{out}");
    for taken in [
        vec!["alias", "add", "sales@example.com", "x@gmail.test"],
        vec!["alias", "add", "me@example.com", "alice@example.com"],
        vec!["account", "add", "me@example.com"],
    ] {
        let mut args = taken.clone();
        args.extend(["--data", d]);
        let (ok, out) = tern(&args, Some("pw\n"));
        assert!(!ok && out.contains("already exists"), "{taken:?}: {out}");
    }
    let (ok, _) = tern(&["domain", "add", "example.org", "--data", d], None);
    assert!(ok);
    let (_, out) = tern(&["domain", "list", "--data", d], None);
    assert!(
        out.contains("example.com") && out.contains("example.org"),
        "{out}"
    );
    let (ok, out) = tern(&["domain", "del", "example.com", "--data", d], None);
    assert!(!ok && out.contains("remove them first"), "{out}");
    let (ok, _) = tern(&["domain", "del", "example.org", "--data", d], None);
    assert!(ok);
    let (ok, _) = tern(
        &[
            "account",
            "passwd",
            "alice@example.com",
            "--data",
            d,
            "--password-stdin",
        ],
        Some("pw2\n"),
    );
    assert!(ok);
    let (_, out) = tern(&["account", "list", "--data", d], None);
    assert!(
        out.contains("alice@example.com") && out.contains("bob@example.com"),
        "{out}"
    );
    let (ok, _) = tern(&["account", "del", "bob@example.com", "--data", d], None);
    assert!(ok);
    let (_, out) = tern(&["account", "list", "--data", d], None);
    assert!(!out.contains("bob@example.com"), "{out}");
    let (ok, out) = tern(&["serve", "--data", &format!("{d}-missing")], None);
    assert!(!ok && out.contains("tern init"), "{out}");
}

#[test]
fn every_command_has_help_with_examples() {
    for args in [
        vec!["--help"],
        vec!["init", "--help"],
        vec!["serve", "--help"],
        vec!["dev", "--help"],
        vec!["account", "add", "--help"],
        vec!["account", "list", "--help"],
        vec!["account", "del", "--help"],
        vec!["account", "passwd", "--help"],
        vec!["alias", "add", "--help"],
        vec!["alias", "list", "--help"],
        vec!["alias", "del", "--help"],
        vec!["domain", "add", "--help"],
        vec!["domain", "list", "--help"],
        vec!["domain", "del", "--help"],
        vec!["dns", "records", "--help"],
        vec!["dkim", "list", "--help"],
        vec!["dkim", "rotate", "--help"],
        vec!["dkim", "activate", "--help"],
        vec!["queue", "list", "--help"],
        vec!["queue", "show", "--help"],
        vec!["queue", "retry", "--help"],
        vec!["queue", "delete", "--help"],
        vec!["spam", "train", "--help"],
        vec!["reports", "dmarc", "--help"],
    ] {
        let (ok, out) = tern(&args, None);
        assert!(ok, "{args:?}");
        assert!(out.contains("Example"), "{args:?} has no example:\n{out}");
    }
}

#[test]
fn dev_creates_a_demo_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tern"))
        .arg("dev")
        .current_dir(dir.path())
        .env("TERN_LOG", "warn")
        .env_remove("TERN_DATA")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut up = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect("127.0.0.1:10025").is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let password =
        std::fs::read_to_string(dir.path().join("tern-data/demo-password.txt")).unwrap_or_default();
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(up, "SMTP on 127.0.0.1:10025");
    assert!(text.contains("login:    demo@example.test"), "{text}");
    assert!(
        !password.trim().is_empty() && text.contains(password.trim()),
        "{text}"
    );
    assert!(dir.path().join("tern-data/tern.toml").exists());
    // The demo login is a dashboard administrator.
    assert!(text.contains("dashboard http://127.0.0.1:10080/"), "{text}");
    let data = dir.path().join("tern-data");
    let (ok, list) = tern(&["admin", "list", "--data", data.to_str().unwrap()], None);
    assert!(ok, "{list}");
    assert!(
        list.contains("demo@example.test") && list.contains("administrator"),
        "{list}"
    );
}

#[test]
fn dns_records_with_dkim_keys() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let d = d.to_str().unwrap();
    let (ok, out) = tern(
        &[
            "init",
            "--data",
            d,
            "--domain",
            "example.com",
            "--port-base",
            "30100",
        ],
        None,
    );
    assert!(ok, "{out}");
    let (ok, zone) = tern(&["dns", "records", "example.com", "--data", d], None);
    assert!(ok, "{zone}");
    assert!(
        zone.contains("example.com.\t3600\tIN\tMX\t10 mail.example.com."),
        "{zone}"
    );
    assert!(zone.contains("\"v=spf1 mx -all\""));
    assert!(zone.contains("_dmarc.example.com.\t3600\tIN\tTXT\t\"v=DMARC1; p=none; rua=mailto:dmarc-reports@example.com\""));
    assert!(zone.contains("_mta-sts.example.com."));
    assert!(zone.contains(
        "_smtp._tls.example.com.\t3600\tIN\tTXT\t\"v=TLSRPTv1; rua=mailto:tls-reports@example.com\""
    ));
    // DANE: TLSA 3 1 1 of the server certificate's key; openssl (an
    // independent implementation) computes the same digest.
    let tlsa = zone
        .lines()
        .find(|l| l.starts_with("_25._tcp.mail.example.com.\t3600\tIN\tTLSA\t3 1 1 "))
        .unwrap_or_else(|| panic!("TLSA record: {zone}"));
    let digest = tlsa.rsplit(' ').next().unwrap();
    assert_eq!(digest.len(), 64, "{tlsa}");
    let openssl = std::process::Command::new("bash")
        .args(["-o", "pipefail", "-c"])
        .arg(format!(
            "openssl x509 -in {d}/tls/cert.pem -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum"
        ))
        .output();
    if let Ok(out) = openssl
        && out.status.success()
    {
        let theirs = String::from_utf8_lossy(&out.stdout);
        assert!(
            theirs.starts_with(digest),
            "openssl: {theirs} tern: {digest}"
        );
    }
    let rsa = zone
        .lines()
        .find(|l| l.contains("._domainkey.") && l.contains("k=rsa"))
        .expect("RSA key");
    let ed = zone
        .lines()
        .find(|l| l.contains("._domainkey.") && l.contains("k=ed25519"))
        .expect("Ed25519 key");
    assert!(
        rsa.contains("\" \""),
        "a 2048-bit key is split into 255-byte strings: {rsa}"
    );
    // The Ed25519 p= is 32 raw bytes: 44 base64 characters.
    let p = ed.split("p=").nth(1).unwrap().trim_end_matches('"');
    assert_eq!(p.len(), 44, "{ed}");
    // A second domain gets its own keys.
    let (ok, out) = tern(&["domain", "add", "example.org", "--data", d], None);
    assert!(ok && out.contains("tern dns records example.org"), "{out}");
    let (ok, zone) = tern(&["dns", "records", "example.org", "--data", d], None);
    assert!(ok && zone.contains("._domainkey.example.org."), "{zone}");
    let (ok, out) = tern(&["dns", "records", "nowhere.test", "--data", d], None);
    assert!(!ok && out.contains("not a local domain"), "{out}");
}

#[test]
fn dkim_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let d = d.to_str().unwrap();
    assert!(tern(&["init", "--data", d, "--domain", "example.com"], None).0);
    let (_, list) = tern(&["dkim", "list", "example.com", "--data", d], None);
    assert_eq!(list.matches(" active").count(), 2, "{list}");
    let (ok, out) = tern(&["dkim", "rotate", "example.com", "--data", d], None);
    assert!(ok, "{out}");
    let (_, list) = tern(&["dkim", "list", "example.com", "--data", d], None);
    assert_eq!(list.matches(" pending").count(), 2, "{list}");
    let (_, zone) = tern(&["dns", "records", "example.com", "--data", d], None);
    assert_eq!(
        zone.matches("._domainkey.example.com.").count(),
        4,
        "pending keys are published too"
    );
    let new_rsa = list
        .lines()
        .find(|l| l.contains("rsa") && l.contains("pending"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let (ok, out) = tern(
        &["dkim", "activate", "example.com", &new_rsa, "--data", d],
        None,
    );
    assert!(ok, "{out}");
    let (_, list) = tern(&["dkim", "list", "example.com", "--data", d], None);
    assert!(
        list.lines()
            .any(|l| l.starts_with(&new_rsa) && l.ends_with("active")),
        "{list}"
    );
    assert_eq!(list.matches(" retired").count(), 1, "{list}");
    let (ok, _) = tern(
        &["dkim", "activate", "example.com", "nosuch", "--data", d],
        None,
    );
    assert!(!ok);
}

#[tokio::test]
async fn queue_list_show_retry_delete() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let d = d.to_str().unwrap();
    let (ok, out) = tern(
        &[
            "init",
            "--data",
            d,
            "--domain",
            "example.com",
            "--port-base",
            "31000",
            "--nameserver",
            "127.0.0.1:5399",
        ],
        None,
    );
    assert!(ok, "{out}");
    let toml = std::fs::read_to_string(format!("{d}/tern.toml")).unwrap();
    assert!(
        toml.contains("nameservers = [\"127.0.0.1:5399\"]"),
        "{toml}"
    );
    let (ok, out) = tern(&["queue", "list", "--data", d], None);
    assert!(ok && out.contains("The queue is empty."), "{out}");
    {
        let config =
            tern_core::Config::load(std::path::Path::new(&format!("{d}/tern.toml"))).unwrap();
        let store = tern::server::open_store(&config).await.unwrap();
        for (qid, to) in [("QA1", "x@remote.test"), ("QA2", "y@other.test")] {
            let mut m = tern_store::NewMessage::local(
                qid.into(),
                b"From: a@example.com\r\nSubject: queued\r\n\r\nbody\r\n".to_vec(),
                "a@example.com".into(),
                vec![],
                tern_core::now_unix(),
                "{}".into(),
            );
            m.outbound.push(tern_store::OutboundRcpt {
                address: to.into(),
                domain: to.split('@').nth(1).unwrap().into(),
                params: "{}".into(),
            });
            m.expires_at = tern_core::now_unix() + 3600;
            tern_store::MailStore::deliver(store.as_ref(), m)
                .await
                .unwrap();
        }
    }
    let (ok, out) = tern(&["queue", "list", "--data", d], None);
    assert!(ok, "{out}");
    assert!(
        out.contains("QA1") && out.contains("x@remote.test") && out.contains("QA2"),
        "{out}"
    );
    assert!(
        out.contains("2 message(s), 2 recipient(s) queued."),
        "{out}"
    );
    let (ok, out) = tern(&["queue", "show", "QA1", "--data", d], None);
    assert!(
        ok && out.contains("Subject: queued") && out.contains("x@remote.test"),
        "{out}"
    );
    let (ok, out) = tern(&["queue", "retry", "--all", "--data", d], None);
    assert!(ok && out.contains("recipient(s) due now"), "{out}");
    let (ok, out) = tern(&["queue", "retry", "--data", d], None);
    assert!(!ok && out.contains("--all"), "{out}");
    let (ok, out) = tern(&["queue", "delete", "QA1", "--data", d], None);
    assert!(ok && out.contains("Removed QA1"), "{out}");
    let (ok, out) = tern(&["queue", "delete", "QA1", "--data", d], None);
    assert!(!ok && out.contains("not in the queue"), "{out}");
    let (ok, out) = tern(&["queue", "list", "--data", d], None);
    assert!(ok && !out.contains("QA1") && out.contains("QA2"), "{out}");
    let (ok, out) = tern(&["queue", "--help"], None);
    assert!(ok && out.contains("retry"), "{out}");
}

/// `tern node list` shows the running server by its `[node] name`, alive,
/// with its process id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_list_shows_the_running_server() {
    let s = crate::common::start("[node]\nname = \"mx-test\"\n").await;
    let data = s.data.path().to_path_buf();
    let mut out = String::new();
    for _ in 0..50 {
        let (ok, text) = crate::common::tern_cli(&["node", "list"], &data);
        assert!(ok, "{text}");
        out = text;
        if out.contains("mx-test") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let line = out
        .lines()
        .find(|l| l.starts_with("mx-test"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains(" alive "), "{line}");
    assert!(line.contains(&std::process::id().to_string()), "{line}");
}
