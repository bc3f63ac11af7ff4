//! `tern`: the command line.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::Read;
use std::path::{Path, PathBuf};
use tern_core::{Address, Config};

/// mimalloc instead of the system allocator: parsing and checking mail
/// allocates many short-lived buffers on every worker thread, where
/// glibc's arenas cost measurably more (bench/RESULTS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tern_store::Directory;

mod admin_cmd;
mod apikey_cmd;
mod blobs_cmd;
mod migrate_cmd;
mod node_cmd;
mod queue_cmd;
mod reports_cmd;
mod spam_cmd;
mod suppression_cmd;
mod webhook_cmd;

#[derive(Parser)]
#[command(
    name = "tern",
    version,
    about = "Tern: a domain's mail server in one program",
    after_help = "Examples:\n  tern dev                                        # demo server on ports 10000+\n  tern init --data /var/lib/tern --domain example.com --hostname mail.example.com\n  echo 's3cret' | tern account add alice@example.com --data /var/lib/tern --password-stdin\n  tern serve --data /var/lib/tern"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "TERN_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Args, Clone)]
struct DataArg {
    /// Data folder (holds tern.toml, the database and TLS files).
    #[arg(long, env = "TERN_DATA", default_value = "tern-data")]
    data: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Create a data folder: tern.toml, a self-signed certificate, the first domain.
    #[command(
        after_help = "Examples:\n  tern init --data /var/lib/tern --domain example.com --hostname mail.example.com\n  tern init --data ./test --domain example.test --port-base 10000   # 127.0.0.1:10025, :10110, ..."
    )]
    Init {
        #[command(flatten)]
        data: DataArg,
        /// The first local domain.
        #[arg(long)]
        domain: String,
        /// Host name of this server (default: mail.DOMAIN).
        #[arg(long)]
        hostname: Option<String>,
        /// Listen on 127.0.0.1 at N + each standard port (N+25 SMTP, N+110 POP3, …).
        #[arg(long)]
        port_base: Option<u16>,
        /// Recursive DNS resolver, IP:PORT (repeatable; default: the system's).
        #[arg(long = "nameserver", value_name = "IP:PORT")]
        nameservers: Vec<std::net::SocketAddr>,
    },
    /// Run the server.
    #[command(after_help = "Example:\n  tern serve --data /var/lib/tern")]
    Serve {
        #[command(flatten)]
        data: DataArg,
    },
    /// One-command demo: creates ./tern-data (domain example.test, ports 10000+,
    /// account demo@example.test) if missing, prints the login, and serves.
    #[command(
        after_help = "Example:\n  tern dev\n  swaks --server 127.0.0.1:10025 --to demo@example.test"
    )]
    Dev {
        #[command(flatten)]
        data: DataArg,
    },
    /// Manage accounts (changes apply to a running server at once).
    #[command(subcommand)]
    Account(AccountCmd),
    /// Manage aliases.
    #[command(subcommand)]
    Alias(AliasCmd),
    /// Manage local domains.
    #[command(subcommand)]
    Domain(DomainCmd),
    /// DNS records a domain must publish.
    #[command(subcommand)]
    Dns(DnsCmd),
    /// DKIM keys: list, rotate, activate.
    #[command(subcommand)]
    Dkim(DkimCmd),
    /// The outbound queue: list, show, retry, delete.
    #[command(subcommand)]
    Queue(queue_cmd::QueueCmd),
    /// The spam filter: train it from sorted mail.
    #[command(subcommand)]
    Spam(spam_cmd::SpamCmd),
    /// Reports received about our domains (DMARC aggregate, TLS-RPT).
    #[command(subcommand)]
    Reports(reports_cmd::ReportsCmd),
    /// API keys for the HTTP API: create, list, revoke.
    #[command(subcommand)]
    Apikey(apikey_cmd::ApiKeyCmd),
    /// Webhook endpoints: add, list, remove, replay.
    #[command(subcommand)]
    Webhook(webhook_cmd::WebhookCmd),
    /// Suppression lists: list, add, remove, import, export.
    #[command(subcommand)]
    Suppression(suppression_cmd::SuppressionCmd),
    /// Dashboard users: add, list, remove.
    #[command(subcommand)]
    Admin(admin_cmd::AdminCmd),
    /// Message bodies outside the database ([blobs]): status, move, check, collect.
    #[command(subcommand)]
    Blobs(blobs_cmd::BlobsCmd),
    /// Nodes sharing this store: heartbeat and queue leases of each.
    #[command(subcommand)]
    Node(node_cmd::NodeCmd),
    /// Move this installation from SQLite to PostgreSQL (all or nothing;
    /// counts checked after).
    Migrate(migrate_cmd::MigrateArgs),
    /// Tell whether addresses can receive mail: syntax, DNS (MX, implicit
    /// MX, null MX) and a probe of the MX that never sends (RCPT TO, a
    /// random address for catch-alls, greylisting waited out). Each answer
    /// is deliverable, undeliverable, risky or unknown, with reasons and a
    /// confidence. Needs no running server ([verify] in tern.toml).
    #[command(
        after_help = "Examples:\n  tern verify alice@example.com bob@example.org\n  tern verify --json -- alice@example.com          # one JSON object per line\n  tern verify --file list.txt --json > results.jsonl   # one address per line (or CSV, first column)\n  tern verify --csv list.csv --out results.csv         # bulk, progress bar, resumable\n  tern verify --update-disposable                      # fetch the newest disposable-domain list\n  tern verify --update-disposable ./my-list.txt        # or take one from a file (one domain per line)"
    )]
    Verify {
        /// Addresses to verify.
        addresses: Vec<String>,
        /// Read addresses from this file too (one per line; CSV: the first column).
        #[arg(long, alias = "csv")]
        file: Option<PathBuf>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        /// Write the results to this CSV file as they are found; a run that
        /// stopped is resumed with the same command (addresses already in
        /// the file are skipped).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace the list of disposable domains with a newer one, from a
        /// URL or a file (one domain per line); without a value, the
        /// disposable-email-domains project's current list. Kept in the
        /// data folder; verifications after it use it.
        #[arg(long, value_name = "URL|FILE", num_args = 0..=1,
              default_missing_value = tern_verify::disposable::UPSTREAM)]
        update_disposable: Option<String>,
        #[command(flatten)]
        data: DataArg,
    },
}

#[derive(Subcommand)]
enum DkimCmd {
    /// List a domain's DKIM keys with their status.
    #[command(after_help = "Example:\n  tern dkim list example.com")]
    List {
        domain: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// Generate new keys (RSA-2048 and Ed25519) as `pending`: publish their
    /// records (`tern dns records`), then `tern dkim activate`. The current
    /// keys keep signing until then.
    #[command(
        after_help = "Example:\n  tern dkim rotate example.com\n  tern dns records example.com   # publish the new selectors\n  tern dkim activate example.com t202612r"
    )]
    Rotate {
        domain: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// Make a pending key the active one for its algorithm (the old one is retired).
    #[command(after_help = "Example:\n  tern dkim activate example.com t202612r")]
    Activate {
        domain: String,
        selector: String,
        #[command(flatten)]
        data: DataArg,
    },
}

#[derive(Subcommand)]
enum DnsCmd {
    /// Print, as zone-file lines, every record DOMAIN must publish: MX, SPF,
    /// DKIM keys, DMARC, MTA-STS and TLS-RPT, and the MTA-STS policy text.
    #[command(after_help = "Example:\n  tern dns records example.com --data /var/lib/tern")]
    Records {
        domain: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// Check DOMAIN's DNS as the world sees it: MX points here, this host's
    /// addresses, SPF (one record, under 10 lookups, lets the sending
    /// addresses send), each active DKIM key published as held, DMARC and
    /// its policy, MTA-STS (record and the policy over HTTPS), TLS-RPT,
    /// reverse DNS of each sending address matching the EHLO name, and
    /// the blocklists of [dns] check_blocklists. Each failure prints the
    /// record or change that fixes it; exits 1 when something fails.
    #[command(
        after_help = "Examples:\n  tern dns check example.com\n  tern dns check example.com --json | jq '.[] | select(.status != \"pass\")'\n  tern dns check example.com >/dev/null || alert   # monitoring: exit 1 on a failure"
    )]
    Check {
        domain: String,
        /// The checks as a JSON array.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataArg,
    },
}

#[derive(Subcommand)]
enum AccountCmd {
    /// Create an account with INBOX, Sent, Drafts, Junk, Trash and Archive.
    #[command(
        after_help = "Examples:\n  echo 's3cret' | tern account add alice@example.com --password-stdin\n  tern account add bob@example.com --quota 2000000000   # prints a generated password"
    )]
    Add {
        address: String,
        #[command(flatten)]
        data: DataArg,
        /// Read the password from standard input (first line); otherwise one is generated and printed.
        #[arg(long)]
        password_stdin: bool,
        /// Quota in bytes (default from tern.toml; 0 = unlimited).
        #[arg(long)]
        quota: Option<u64>,
    },
    /// List accounts with their usage.
    #[command(after_help = "Example:\n  tern account list --domain example.com")]
    List {
        #[command(flatten)]
        data: DataArg,
        /// Only this domain.
        #[arg(long)]
        domain: Option<String>,
    },
    /// Delete an account and all its mail.
    #[command(after_help = "Example:\n  tern account del alice@example.com")]
    Del {
        address: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// Change a password.
    #[command(
        after_help = "Example:\n  echo 'n3w' | tern account passwd alice@example.com --password-stdin"
    )]
    Passwd {
        address: String,
        #[command(flatten)]
        data: DataArg,
        /// Read the password from standard input; otherwise one is generated and printed.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum AliasCmd {
    /// Deliver mail for ALIAS to the account TARGET, or forward it to TARGET
    /// when TARGET is in another domain (envelope sender rewritten with SRS,
    /// the copy ARC-sealed with the alias domain's DKIM key; junk is not
    /// forwarded).
    #[command(
        after_help = "Examples:\n  tern alias add sales@example.com alice@example.com\n  tern alias add me@example.com someone@gmail.com      # forwards"
    )]
    Add {
        alias: String,
        target: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// List aliases.
    #[command(after_help = "Example:\n  tern alias list")]
    List {
        #[command(flatten)]
        data: DataArg,
    },
    /// Remove an alias.
    #[command(after_help = "Example:\n  tern alias del sales@example.com")]
    Del {
        alias: String,
        #[command(flatten)]
        data: DataArg,
    },
}

#[derive(Subcommand)]
enum DomainCmd {
    /// Add a local domain.
    #[command(
        after_help = "Examples:\n  tern domain add example.org\n  tern domain add example.org --catch-all postmaster@example.org"
    )]
    Add {
        domain: String,
        #[command(flatten)]
        data: DataArg,
        /// Account receiving mail for unknown addresses of the domain (must exist later).
        #[arg(long)]
        catch_all: Option<String>,
    },
    /// List local domains.
    #[command(after_help = "Example:\n  tern domain list")]
    List {
        #[command(flatten)]
        data: DataArg,
    },
    /// Remove a domain (it must have no accounts or aliases).
    #[command(after_help = "Example:\n  tern domain del example.org")]
    Del {
        domain: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// Sender health: the last 7 days of delivered, bounced (by category),
    /// complained and unsubscribed mail from DOMAIN with rates, and whether
    /// it meets Gmail's and Yahoo's bulk-sender requirements (SPF, DKIM and
    /// DMARC published and aligned, one-click unsubscribe, complaints under
    /// 0.3%), asking the DNS as the world sees it; each unmet one with its fix.
    #[command(
        after_help = "Examples:\n  tern domain health example.com\n  tern domain health example.com --json | jq .last_7_days"
    )]
    Health {
        domain: String,
        #[command(flatten)]
        data: DataArg,
        /// Print the JSON that GET /v1/domains/DOMAIN/health returns.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    // Large message buffers go back to the system when freed, not after
    // mimalloc's purge delay (tern_core::memory).
    tern_core::memory::set_give_back(|| {
        // SAFETY: mi_collect only walks mimalloc's own heaps and may be
        // called from any thread at any time.
        unsafe { libmimalloc_sys::mi_collect(true) }
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run(cli.command))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TERN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn config_path(data: &Path) -> PathBuf {
    data.join("tern.toml")
}

fn load(data: &DataArg) -> Result<Config> {
    let path = config_path(&data.data);
    if !path.exists() {
        bail!(
            "no {} found; create it with `tern init --data {} --domain example.com`",
            path.display(),
            data.data.display()
        );
    }
    Ok(Config::load(&path)?)
}

fn parse_address(s: &str) -> Result<Address> {
    Address::parse(s).with_context(|| format!("invalid address {s:?}"))
}

fn read_password(from_stdin: bool) -> Result<(String, bool)> {
    if from_stdin {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        let p = s.lines().next().unwrap_or("").to_string();
        if p.is_empty() {
            bail!("empty password on standard input");
        }
        Ok((p, false))
    } else {
        Ok((generate_password(), true))
    }
}

fn generate_password() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

async fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Init {
            data,
            domain,
            hostname,
            port_base,
            nameservers,
        } => {
            let hostname = hostname.unwrap_or_else(|| format!("mail.{domain}"));
            init(&data.data, &domain, &hostname, port_base, &nameservers).await?;
            println!(
                "Created {} for {domain} (host name {hostname}).",
                data.data.display()
            );
            println!("Next:");
            println!(
                "  tern account add postmaster@{domain} --data {}   # prints a generated password",
                data.data.display()
            );
            println!("  tern serve --data {}", data.data.display());
            Ok(())
        }
        Command::Serve { data } => serve(load(&data)?).await,
        Command::Dev { data } => dev(&data.data).await,
        Command::Account(c) => account(c).await,
        Command::Alias(c) => alias(c).await,
        Command::Domain(c) => domain(c).await,
        Command::Dns(DnsCmd::Records { domain, data }) => dns_records(&domain, &data).await,
        Command::Dns(DnsCmd::Check { domain, json, data }) => {
            let config = load(&data)?;
            let store: tern_store::SharedStore = tern::server::open_store(&config).await?;
            let resolver = tern_dns::Resolver::new(&config.dns.nameservers)?;
            let checks = tern::dns_check::checks(&config, &store, &resolver, &domain).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&checks)?);
            } else {
                tern::dns_check::print(&domain, &checks);
            }
            if checks
                .iter()
                .any(|c| c.status == tern_dns::check::Status::Fail)
            {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Dkim(c) => dkim(c).await,
        Command::Queue(c) => queue_cmd::run(c).await,
        Command::Spam(c) => spam_cmd::run(c).await,
        Command::Blobs(c) => blobs_cmd::run(c).await,
        Command::Node(c) => node_cmd::run(c).await,
        Command::Migrate(a) => migrate_cmd::run(a).await,
        Command::Reports(c) => reports_cmd::run(c).await,
        Command::Apikey(c) => apikey_cmd::run(c).await,
        Command::Webhook(c) => webhook_cmd::run(c).await,
        Command::Suppression(c) => suppression_cmd::run(c).await,
        Command::Admin(c) => admin_cmd::run(c).await,
        Command::Verify {
            addresses,
            file,
            json,
            out,
            update_disposable,
            data,
        } => {
            let config = load(&data)?;
            if let Some(source) = update_disposable {
                tern::verify_cmd::update_disposable(&source, &config).await?;
                if addresses.is_empty() && file.is_none() {
                    return Ok(());
                }
            }
            tern::verify_cmd::run(addresses, file.as_deref(), json, out.as_deref(), &config).await
        }
    }
}

async fn init(
    dir: &Path,
    domain: &str,
    hostname: &str,
    port_base: Option<u16>,
    nameservers: &[std::net::SocketAddr],
) -> Result<()> {
    let path = config_path(dir);
    if path.exists() {
        bail!("{} already exists; not overwriting it", path.display());
    }
    if tern_core::address::normalize_domain(domain).is_none() {
        bail!("invalid domain {domain:?}");
    }
    if let Some(b) = port_base
        && b > 65535 - 995
    {
        bail!("--port-base must be at most {}", 65535 - 995);
    }
    std::fs::create_dir_all(dir.join("tls"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let (cert, key) = tern_core::tls::self_signed(hostname)?;
    std::fs::write(dir.join("tls/cert.pem"), cert)?;
    write_private(&dir.join("tls/key.pem"), key.as_bytes())?;
    std::fs::write(
        &path,
        tern_core::config::template(hostname, port_base, nameservers),
    )?;
    let config = Config::load(&path)?;
    let store = tern::server::open_store(&config).await?;
    store.add_domain(domain, None).await?;
    generate_dkim(store.as_ref(), domain, "active").await?;
    Ok(())
}

/// Generates the domain's DKIM keys (RSA-2048 and Ed25519), selectors
/// named for the month: `t202611r`, `t202611e`.
async fn generate_dkim(store: &dyn Directory, domain: &str, status: &str) -> Result<Vec<String>> {
    Ok(tern_auth::dkim_keys::generate_for_domain(store, domain, status).await?)
}

async fn dkim(cmd: DkimCmd) -> Result<()> {
    match cmd {
        DkimCmd::List { domain, data } => {
            let store = tern::server::open_store(&load(&data)?).await?;
            println!("{:<20} {:<10} STATUS", "SELECTOR", "ALGORITHM");
            for k in store.dkim_keys(&domain).await? {
                println!("{:<20} {:<10} {}", k.selector, k.algorithm, k.status);
            }
        }
        DkimCmd::Rotate { domain, data } => {
            let store = tern::server::open_store(&load(&data)?).await?;
            if !store
                .list_domains()
                .await?
                .iter()
                .any(|d| d.name == domain.to_lowercase())
            {
                bail!("{domain} is not a local domain");
            }
            let made = generate_dkim(store.as_ref(), &domain, "pending").await?;
            println!("New keys (pending): {}.", made.join(", "));
            println!(
                "Publish them: tern dns records {domain} --data {}",
                data.data.display()
            );
            for s in &made {
                println!(
                    "then:         tern dkim activate {domain} {s} --data {}",
                    data.data.display()
                );
            }
        }
        DkimCmd::Activate {
            domain,
            selector,
            data,
        } => {
            let store = tern::server::open_store(&load(&data)?).await?;
            store.activate_dkim_key(&domain, &selector).await?;
            println!(
                "{selector} now signs for {domain}; the key it replaces is retired (keep its record published for a few days)."
            );
        }
    }
    Ok(())
}

async fn dns_records(domain: &str, data: &DataArg) -> Result<()> {
    let config = load(data)?;
    let store = tern::server::open_store(&config).await?;
    let domain = domain.to_lowercase();
    if !store.list_domains().await?.iter().any(|d| d.name == domain) {
        bail!("{domain} is not a local domain; add it with `tern domain add {domain}`");
    }
    let mut dkim = Vec::new();
    for k in store.dkim_keys(&domain).await? {
        let key = tern_auth::DkimKey {
            selector: k.selector.clone(),
            algorithm: tern_auth::DkimAlgorithm::from_name(&k.algorithm)?,
            private_pem: k.private_key,
        };
        dkim.push(tern_dns::records::DkimRecord {
            selector: k.selector,
            txt: key.txt()?,
        });
    }
    // The server certificate's key, for a DANE TLSA record.
    let tlsa_spki_sha256 = {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::pem_file_iter(config.resolve(&config.tls.cert))
            .ok()
            .and_then(|mut certs| certs.next())
            .and_then(|c| c.ok())
            .and_then(|c| tern_queue::dane::spki_sha256(&c))
            .map(hex::encode)
    };
    let tracking_host = config.feedback.tracking_host.trim_matches('.').to_string();
    let setup = tern_dns::records::DomainSetup {
        domain: domain.clone(),
        hostname: config.server.hostname.clone(),
        dkim,
        mta_sts_id: chrono::Utc::now().format("%Y%m%d").to_string(),
        tlsa_spki_sha256,
    };
    print!("{}", tern_dns::records::zone(&setup));
    if !tracking_host.is_empty() {
        // [feedback] tracking_host: open and click links of this domain's mail.
        println!(
            "\n; Engagement tracking links ([feedback] tracking_host); the certificate must cover it too\n{tracking_host}.{domain}. 3600 IN CNAME {}.",
            config.server.hostname
        );
    }
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    opts.open(path)?.write_all(bytes)?;
    Ok(())
}

async fn serve(config: Config) -> Result<()> {
    tracing::info!(
        hostname = %config.server.hostname,
        data = %config.data_dir.display(),
        version = env!("CARGO_PKG_VERSION"),
        "tern starting"
    );
    let running = tern::server::start(config).await?;
    tokio::select! {
        r = running.wait() => r?,
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted, stopping"),
    }
    Ok(())
}

async fn dev(dir: &Path) -> Result<()> {
    let path = config_path(dir);
    let pw_file = dir.join("demo-password.txt");
    let key_file = dir.join("demo-api-key.txt");
    if !path.exists() {
        init(dir, "example.test", "mail.example.test", Some(10000), &[]).await?;
        // Development: webhooks may go to http:// and local receivers.
        let toml = std::fs::read_to_string(&path)?
            .replace("\nallow_http = false\n", "\nallow_http = true\n");
        std::fs::write(&path, toml)?;
        let config = Config::load(&path)?;
        let store = tern::server::open_store(&config).await?;
        let password = generate_password();
        store
            .add_account(
                &parse_address("demo@example.test")?,
                &password,
                config.store.default_quota,
            )
            .await?;
        write_private(&pw_file, format!("{password}\n").as_bytes())?;
        let (key, record) = tern_api::keys::generate(
            tern_api::keys::Scope::Admin,
            Vec::new(),
            "tern dev".into(),
            tern_core::now_unix(),
        );
        store.add_api_key(record).await?;
        write_private(&key_file, format!("{key}\n").as_bytes())?;
    }
    let config = Config::load(&path)?;
    let password = std::fs::read_to_string(&pw_file)
        .unwrap_or_else(|_| "(unknown: see tern account passwd)\n".into());
    // The demo login is a dashboard administrator too (also in data
    // folders made before the dashboard existed).
    if pw_file.exists() {
        let store = tern::server::open_store(&config).await?;
        if store.web_user("demo@example.test").await?.is_none() {
            store
                .put_web_user(tern_store::WebUser {
                    email: "demo@example.test".into(),
                    password_hash: tern_store::password::hash(password.trim())?,
                    domains: Vec::new(),
                    created: tern_core::now_unix(),
                })
                .await?;
        }
    }
    let first = |l: &[std::net::SocketAddr]| l.first().map(|a| a.to_string()).unwrap_or_default();
    let smtp = first(&config.listen.smtp);
    println!("Tern demo server, data in {}", dir.display());
    println!("  login:    demo@example.test");
    println!("  password: {}", password.trim());
    println!(
        "  SMTP {smtp}   IMAP {} (STARTTLS), {} (TLS)   POP3 {}   metrics http://{}/metrics",
        first(&config.listen.imap),
        first(&config.listen.imaps),
        first(&config.listen.pop3),
        first(&config.listen.http)
    );
    let key = std::fs::read_to_string(&key_file).unwrap_or_default();
    if !key.trim().is_empty() {
        println!(
            "  API http://{}/v1 (OpenAPI: /v1/openapi.json), admin key {}",
            first(&config.listen.http),
            key.trim()
        );
    }
    println!(
        "  dashboard http://{}/ (log in as demo@example.test with the password above)",
        first(&config.listen.http)
    );
    println!("Try:  swaks --server {smtp} --to demo@example.test");
    serve(config).await
}

async fn account(cmd: AccountCmd) -> Result<()> {
    match cmd {
        AccountCmd::Add {
            address,
            data,
            password_stdin,
            quota,
        } => {
            let config = load(&data)?;
            let store = tern::server::open_store(&config).await?;
            let addr = parse_address(&address)?;
            let (password, generated) = read_password(password_stdin)?;
            store
                .add_account(
                    &addr,
                    &password,
                    quota.unwrap_or(config.store.default_quota),
                )
                .await?;
            println!("Created {addr}.");
            if generated {
                println!("Password: {password}");
            }
        }
        AccountCmd::List { data, domain } => {
            let store = tern::server::open_store(&load(&data)?).await?;
            let accounts = store.list_accounts(domain.as_deref()).await?;
            println!(
                "{:<40} {:>10} {:>14} {:>14}",
                "ADDRESS", "MESSAGES", "USED", "QUOTA"
            );
            for a in accounts {
                let quota = if a.quota == 0 {
                    "unlimited".to_string()
                } else {
                    a.quota.to_string()
                };
                println!(
                    "{:<40} {:>10} {:>14} {:>14}",
                    a.address, a.messages, a.used, quota
                );
            }
        }
        AccountCmd::Del { address, data } => {
            let store = tern::server::open_store(&load(&data)?).await?;
            store.remove_account(&parse_address(&address)?).await?;
            println!("Deleted {address} and its mail.");
        }
        AccountCmd::Passwd {
            address,
            data,
            password_stdin,
        } => {
            let store = tern::server::open_store(&load(&data)?).await?;
            let (password, generated) = read_password(password_stdin)?;
            store
                .set_password(&parse_address(&address)?, &password)
                .await?;
            println!("Password changed for {address}.");
            if generated {
                println!("Password: {password}");
            }
        }
    }
    Ok(())
}

async fn alias(cmd: AliasCmd) -> Result<()> {
    match cmd {
        AliasCmd::Add {
            alias,
            target,
            data,
        } => {
            let store = tern::server::open_store(&load(&data)?).await?;
            store
                .add_alias(&parse_address(&alias)?, &parse_address(&target)?)
                .await?;
            println!("{alias} now delivers to {target}.");
        }
        AliasCmd::List { data } => {
            let store = tern::server::open_store(&load(&data)?).await?;
            for a in store.list_aliases().await? {
                println!("{:<40} -> {}", a.address, a.target);
            }
        }
        AliasCmd::Del { alias, data } => {
            let store = tern::server::open_store(&load(&data)?).await?;
            store.remove_alias(&parse_address(&alias)?).await?;
            println!("Removed alias {alias}.");
        }
    }
    Ok(())
}

async fn domain(cmd: DomainCmd) -> Result<()> {
    match cmd {
        DomainCmd::Add {
            domain,
            data,
            catch_all,
        } => {
            let store = tern::server::open_store(&load(&data)?).await?;
            let catch_all = catch_all.as_deref().map(parse_address).transpose()?;
            store.add_domain(&domain, catch_all.as_ref()).await?;
            generate_dkim(store.as_ref(), &domain, "active").await?;
            println!("Added domain {domain} (with DKIM keys).");
            println!(
                "Publish its DNS records: tern dns records {domain} --data {}",
                data.data.display()
            );
        }
        DomainCmd::List { data } => {
            let store = tern::server::open_store(&load(&data)?).await?;
            for d in store.list_domains().await? {
                match d.catch_all {
                    Some(c) => println!("{:<40} catch-all {}", d.name, c),
                    None => println!("{}", d.name),
                }
            }
        }
        DomainCmd::Del { domain, data } => {
            let store = tern::server::open_store(&load(&data)?).await?;
            store.remove_domain(&domain).await?;
            println!("Removed domain {domain}.");
        }
        DomainCmd::Health { domain, data, json } => {
            let config = load(&data)?;
            let store: tern_store::SharedStore = tern::server::open_store(&config).await?;
            let resolver = tern_dns::Resolver::new(&config.dns.nameservers)?;
            let h = tern_api::health::domain_health(
                &store,
                Some(&resolver),
                &domain,
                tern_core::now_unix(),
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&h)?);
            } else {
                print!("{}", tern::health_cmd::render(&h));
            }
        }
    }
    Ok(())
}

/// The progress bar long commands show: `{bar} 12/340 WHAT (rate, time left)`.
pub(crate) fn progress_bar(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {what} ({{per_sec}}, {{eta}} left)"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}
