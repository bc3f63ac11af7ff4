//! A private PostgreSQL server for tests: `initdb` in a temporary folder and
//! `postgres` on a free loopback port with its own socket folder (Debian's
//! `postgresql` package, which the test command installs). As root, the
//! server runs as the `postgres` user, which owns the folder.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A running PostgreSQL; stopped (and its folder removed) when dropped.
pub struct PgServer {
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

/// The folder of PostgreSQL's programs (`initdb`, `postgres`): the newest
/// `/usr/lib/postgresql/N/bin`, or whatever `PATH` has.
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn program(name: &str) -> PathBuf {
    bin_dir().map_or_else(|| PathBuf::from(name), |d| d.join(name))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// `cmd` as the `postgres` user when we are root (initdb refuses root).
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl PgServer {
    /// Creates a cluster (user `tern`, trust authentication on loopback)
    /// and starts it.
    ///
    /// # Panics
    /// When PostgreSQL is not installed (`apt-get install postgresql`;
    /// `./test.sh` does it) or does not start within 30 seconds.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let sockets = dir.path().join("sockets");
        std::fs::create_dir_all(&sockets).expect("mkdir");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown the PostgreSQL folder");
        }
        let out = as_postgres(&program("initdb"))
            .args(["-D"])
            .arg(&data)
            .args([
                "-U",
                "tern",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            ])
            .output()
            .expect("initdb (apt-get install postgresql; ./test.sh installs it)");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}",
            sockets.display()
        );
        let out = as_postgres(&program("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .args(["-w", "-t", "30", "-o", &options, "-l"])
            .arg(dir.path().join("server.log"))
            .arg("start")
            .output()
            .expect("pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
        );
        let server = Self {
            data,
            port,
            _dir: dir,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "PostgreSQL did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// A URL for database `name`, creating it first.
    pub fn database(&self, name: &str) -> String {
        let server = format!("postgres://tern@127.0.0.1:{}", self.port);
        createdb(&server, name);
        format!("{server}/{name}")
    }
}

/// Creates database `name` on `server` (`postgres://user@host:port`).
fn createdb(server: &str, name: &str) {
    let (host, port, user) = url_parts(server);
    let out = Command::new(program("createdb"))
        .args(["-h", &host, "-p", &port, "-U", &user, name])
        .output()
        .expect("createdb");
    assert!(
        out.status.success(),
        "createdb {name} on {server}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// With `TERN_TEST_PG` set to a PostgreSQL server's URL
/// (`postgres://tern@127.0.0.1:PORT`, no database), a new empty database on
/// it for one test's server, and its URL: test.sh runs the protocol suites
/// a second time this way, every [`crate::DataDir`] without a `[store]` of
/// its own then on PostgreSQL. `None` when unset (the embedded store).
pub fn suite_database() -> Option<String> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let server = std::env::var("TERN_TEST_PG")
        .ok()
        .filter(|s| !s.is_empty())?;
    let server = server.trim_end_matches('/');
    let name = format!(
        "suite_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    createdb(server, &name);
    Some(format!("{server}/{name}"))
}

/// (host, port, user) of `postgres://user@host:port`.
fn url_parts(server: &str) -> (String, String, String) {
    let rest = server
        .strip_prefix("postgres://")
        .or_else(|| server.strip_prefix("postgresql://"))
        .unwrap_or(server);
    let (user, host_port) = rest.split_once('@').unwrap_or(("tern", rest));
    let (host, port) = host_port.split_once(':').unwrap_or((host_port, "5432"));
    (host.to_string(), port.to_string(), user.to_string())
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = as_postgres(&program("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}
