//! `tern verify`: addresses from the command line or a file, verified
//! domain by domain (a progress bar for long lists), printed as a table or
//! one JSON object per line.

use anyhow::{Context, Result};
use std::path::Path;
use std::sync::Arc;
use tern_core::config::Config;

/// The verifier's settings from `[verify]` and `[server]`.
pub fn settings(config: &Config) -> Result<tern_verify::Settings> {
    let v = &config.verify;
    let mut s = tern_verify::Settings::new(&config.server.hostname);
    if !v.helo_name.is_empty() {
        s.helo = v.helo_name.clone();
    }
    if !v.mail_from.is_empty() {
        s.mail_from = v.mail_from.clone();
    }
    s.connect_timeout = std::time::Duration::from_secs(v.connect_timeout.max(1));
    s.command_timeout = std::time::Duration::from_secs(v.command_timeout.max(1));
    s.greylist_wait = tern_core::config::parse_duration(&v.greylist_wait)
        .map_err(|e| anyhow::anyhow!("[verify] greylist_wait: {e}"))?;
    s.greylist_retries = v.greylist_retries;
    s.max_hosts = v.max_hosts.max(1);
    s.connections_per_host = v.connections_per_host.max(1);
    s.source = v.source_addresses.clone();
    s.cache_ttl = tern_core::config::parse_duration(&v.cache_ttl)
        .map_err(|e| anyhow::anyhow!("[verify] cache_ttl: {e}"))?;
    Ok(s)
}

/// The verifier as `[verify]` and the data folder set it up: the
/// disposable-domain list updated into the data folder, if any.
pub fn verifier(config: &Config) -> Result<tern_verify::Verifier> {
    verifier_with(tern_dns::Resolver::new(&config.dns.nameservers)?, config)
}

/// The same, asking `resolver`.
pub fn verifier_with(
    resolver: tern_dns::Resolver,
    config: &Config,
) -> Result<tern_verify::Verifier> {
    let list = tern_verify::disposable::List::load(&config.data_dir)
        .context("reading the disposable-domain list in the data folder")?;
    Ok(tern_verify::Verifier::new(resolver, settings(config)?).with_disposable(list))
}

/// Runs `tern verify`.
pub async fn run(
    mut addresses: Vec<String>,
    file: Option<&Path>,
    json: bool,
    out: Option<&Path>,
    config: &Config,
) -> Result<()> {
    if let Some(f) = file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        for line in text.lines() {
            let first = line
                .split([',', ';', '\t'])
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches('"');
            if first.contains('@') {
                addresses.push(first.to_string());
            }
        }
    }
    if addresses.is_empty() {
        anyhow::bail!("no addresses: give them as arguments or with --file");
    }
    let verifier = Arc::new(verifier(config)?);
    if let Some(out) = out {
        return to_csv(&verifier, addresses, out, config.verify.concurrency).await;
    }
    let bar = (addresses.len() > 20).then(|| {
        let b = indicatif::ProgressBar::new(addresses.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} addresses, {eta} left")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let b2 = bar.clone();
    let answers = verifier
        .verify_all(&addresses, config.verify.concurrency, move |n| {
            if let Some(b) = &b2 {
                b.set_position(n as u64);
            }
        })
        .await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if json {
        for a in &answers {
            println!("{}", serde_json::to_string(a)?);
        }
        return Ok(());
    }
    let width = answers
        .iter()
        .map(|a| a.address.chars().count())
        .max()
        .unwrap_or(7)
        .max(7);
    println!(
        "{:<width$}  {:<13}  {:>4}  why",
        "address", "result", "conf"
    );
    for a in &answers {
        let mut why: Vec<String> = a
            .reasons
            .iter()
            .map(|r| {
                serde_json::to_value(r)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            })
            .collect();
        if let Some(s) = &a.smtp {
            why.push(format!("{} said {} {}", s.host, s.code, s.message));
        } else if let Some(d) = &a.detail {
            why.push(d.clone());
        }
        if let Some(s) = &a.suggestion {
            why.push(format!("did you mean {s}?"));
        }
        println!(
            "{:<width$}  {:<13}  {:>4.2}  {}",
            a.address,
            a.result.as_str(),
            a.confidence,
            why.join("; ")
        );
    }
    Ok(())
}

/// The CSV columns of `--out`.
const COLUMNS: [&str; 9] = [
    "address",
    "result",
    "reasons",
    "confidence",
    "suggestion",
    "mx",
    "smtp_code",
    "smtp_message",
    "catch_all",
];

/// Bulk verification into a CSV file, written a chunk at a time so that a
/// run that stops loses at most one chunk; addresses already in the file
/// are skipped, which makes the same command resume.
async fn to_csv(
    verifier: &Arc<tern_verify::Verifier>,
    addresses: Vec<String>,
    out: &Path,
    concurrency: usize,
) -> Result<()> {
    let mut done = std::collections::HashSet::new();
    if out.exists() {
        let mut r =
            csv::Reader::from_path(out).with_context(|| format!("reading {}", out.display()))?;
        for rec in r.records() {
            if let Some(a) = rec?.get(0) {
                done.insert(a.to_string());
            }
        }
    }
    let todo: Vec<String> = addresses
        .into_iter()
        .filter(|a| !done.contains(a))
        .collect();
    let fresh = !out.exists();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .with_context(|| format!("opening {}", out.display()))?;
    let mut w = csv::Writer::from_writer(file);
    if fresh {
        w.write_record(COLUMNS)?;
    }
    let bar = indicatif::ProgressBar::new(todo.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} addresses, {per_sec}, {eta} left",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    if !done.is_empty() {
        eprintln!(
            "{}: {} addresses already verified, {} to go",
            out.display(),
            done.len(),
            todo.len()
        );
    }
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for chunk in todo.chunks(500) {
        let base = bar.position();
        let b2 = bar.clone();
        let answers = verifier
            .verify_all(chunk, concurrency, move |n| {
                b2.set_position(base + n as u64)
            })
            .await;
        for a in &answers {
            *counts.entry(a.result.as_str()).or_default() += 1;
            let reasons: Vec<String> = a
                .reasons
                .iter()
                .filter_map(|r| serde_json::to_value(r).ok()?.as_str().map(str::to_string))
                .collect();
            w.write_record([
                a.address.clone(),
                a.result.as_str().to_string(),
                reasons.join(";"),
                format!("{:.2}", a.confidence),
                a.suggestion.clone().unwrap_or_default(),
                a.mx.join(";"),
                a.smtp
                    .as_ref()
                    .map(|s| s.code.to_string())
                    .unwrap_or_default(),
                a.smtp
                    .as_ref()
                    .map(|s| s.message.clone())
                    .unwrap_or_default(),
                a.catch_all.map(|c| c.to_string()).unwrap_or_default(),
            ])?;
        }
        w.flush()?;
        bar.set_position(base + chunk.len() as u64);
    }
    bar.finish_and_clear();
    let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    eprintln!(
        "{}: {} verified ({})",
        out.display(),
        todo.len(),
        if summary.is_empty() {
            "nothing new".into()
        } else {
            summary.join(", ")
        }
    );
    Ok(())
}

/// Most bytes of a disposable-domain list (the upstream one is ~200 KB).
const MAX_LIST: usize = 20 << 20;

/// `tern verify --update-disposable SOURCE`: fetches a list of disposable
/// domains (an `http(s)://` URL or a file), checks that it looks like one,
/// and keeps it in the data folder with its source and date, replacing
/// the previous copy atomically.
pub async fn update_disposable(source: &str, config: &Config) -> Result<()> {
    let text = if source.starts_with("https://") || source.starts_with("http://") {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()?;
        let resp = client
            .get(source)
            .send()
            .await
            .with_context(|| format!("fetching {source}"))?;
        if !resp.status().is_success() {
            anyhow::bail!("fetching {source}: HTTP {}", resp.status());
        }
        let body = resp.bytes().await.context("reading the list")?;
        if body.len() > MAX_LIST {
            anyhow::bail!("{source} is larger than {MAX_LIST} bytes: not a domain list");
        }
        String::from_utf8_lossy(&body).into_owned()
    } else {
        let meta = std::fs::metadata(source).with_context(|| format!("reading {source}"))?;
        if meta.len() > MAX_LIST as u64 {
            anyhow::bail!("{source} is larger than {MAX_LIST} bytes: not a domain list");
        }
        std::fs::read_to_string(source).with_context(|| format!("reading {source}"))?
    };
    let list = tern_verify::disposable::List::parse(&text);
    if list.len() < 10 {
        anyhow::bail!(
            "{source} holds {} domain names: not a disposable-domain list (nothing changed)",
            list.len()
        );
    }
    let before = tern_verify::disposable::List::load(&config.data_dir)?;
    let mut domains: Vec<&str> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect();
    domains.sort_unstable();
    domains.dedup();
    let body = format!(
        "# Disposable mail domains for `tern verify`.\n# Source: {source}\n# Fetched: {}\n{}\n",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        domains.join("\n")
    );
    let path = config.data_dir.join(tern_verify::disposable::DATA_FILE);
    write_atomically(&path, body.as_bytes())?;
    println!(
        "{} disposable domains from {source} (was {}), kept in {}",
        list.len(),
        before.len(),
        path.display()
    );
    Ok(())
}

/// Writes `path` through a temporary file, fsynced, then renamed.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().context("no parent folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}
