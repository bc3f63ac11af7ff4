//! `tern migrate`: moves an installation from its SQLite database to
//! PostgreSQL, checks the counts, and says what to change in tern.toml.

use anyhow::{Context, Result, bail};
use clap::Args;
use std::sync::Mutex;

/// Copy this data folder's SQLite database into an empty PostgreSQL
/// database: domains, accounts and passwords, mailboxes with their UIDs,
/// UIDVALIDITY, MODSEQs and flags, the queue, events, message logs, API
/// keys, webhooks, suppressions, DKIM keys, spam data, reports and shared
/// secrets, in one transaction (all or nothing); then compare the counts.
/// Bodies in the database go into PostgreSQL, or into the blob store
/// `--blobs` or `[blobs]` names (files, S3), before the commit; bodies
/// already in the configured blob store stay (or are copied to the one
/// `--blobs` names). Stop `tern serve` first; afterwards set `[store]` (and
/// `[blobs]`) as printed, and start it again.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  tern migrate --data /var/lib/tern --to postgres://tern:secret@db.example.net/tern\n  tern migrate --data /var/lib/tern --to 'postgres://tern@db/tern?sslmode=verify-full'\n  AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… tern migrate --data /var/lib/tern \\\n      --to postgres://tern@db/tern --blobs 's3://tern-mail?endpoint=https://s3.example.net&region=eu-west-1'\n  tern migrate --data /var/lib/tern --to postgres://tern@db/tern --blobs file:///srv/tern-blobs"
)]
pub struct MigrateArgs {
    #[command(flatten)]
    data: crate::DataArg,
    /// The target PostgreSQL database (empty; the schema is created).
    #[arg(long, value_name = "URL")]
    to: String,
    /// Put the bodies in this blob store instead of PostgreSQL:
    /// `s3://BUCKET[/PREFIX][?endpoint=URL&region=R&path_style=true|false]`
    /// (credentials from `[blobs]`, else AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY) or `file:///FOLDER`.
    #[arg(long, value_name = "URL")]
    blobs: Option<String>,
}

/// The `[blobs]` section `--blobs` names: `base` (the data folder's) with
/// the URL's backend, bucket or folder, prefix and options.
fn blobs_from_url(
    url: &str,
    base: &tern_core::config::BlobsConfig,
) -> Result<tern_core::config::BlobsConfig> {
    use tern_core::config::BlobBackend;
    let u = url::Url::parse(url).with_context(|| format!("--blobs {url}"))?;
    let mut b = base.clone();
    match u.scheme() {
        "s3" => {
            b.backend = BlobBackend::S3;
            b.bucket = u.host_str().unwrap_or_default().to_string();
            if b.bucket.is_empty() {
                bail!("--blobs {url}: no bucket (s3://BUCKET)");
            }
            b.prefix = u.path().trim_matches('/').to_string();
            for (k, v) in u.query_pairs() {
                match &*k {
                    "endpoint" => b.endpoint = v.into_owned(),
                    "region" => b.region = v.into_owned(),
                    "path_style" => b.path_style = v == "true",
                    other => bail!("--blobs {url}: unknown option {other:?}"),
                }
            }
        }
        "file" => {
            b.backend = BlobBackend::Files;
            b.path = u
                .to_file_path()
                .map_err(|()| anyhow::anyhow!("--blobs {url}: not a folder"))?;
        }
        other => bail!("--blobs {url}: {other:?} is neither s3 nor file"),
    }
    Ok(b)
}

/// Runs `tern migrate`.
pub async fn run(args: MigrateArgs) -> Result<()> {
    let config = crate::load(&args.data)?;
    if config.store.backend != tern_core::config::StoreBackend::Sqlite {
        bail!("this data folder already uses [store] backend = \"postgres\"");
    }
    let sqlite = config.resolve(&config.store.database);
    if !sqlite.exists() {
        bail!("no database at {}", sqlite.display());
    }
    let blobs = tern::server::open_blobs(&config)?;
    let mut target = tern_store::postgres::PgStore::connect(&args.to, 4)
        .await
        .context("connecting to the target PostgreSQL database")?;
    let named = match &args.blobs {
        Some(url) => {
            let mut to = config.clone();
            to.blobs = blobs_from_url(url, &config.blobs)?;
            Some(to)
        }
        None => None,
    };
    let target_blobs = match &named {
        Some(to) => tern::server::open_blobs(to)?,
        None => blobs.clone(),
    };
    if let Some(b) = &target_blobs {
        target = target.with_blobs(b.clone());
    }
    let total = tern_store::migrate::source_rows(&sqlite)?;
    let bar = crate::progress_bar(total, "rows");
    let seen: Mutex<std::collections::HashMap<String, u64>> = Mutex::default();
    let progress = |table: &str, rows: u64| {
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        let before = seen.insert(table.to_string(), rows).unwrap_or(0);
        bar.inc(rows.saturating_sub(before));
    };
    let moved = tern_store::migrate::sqlite_to_postgres(&sqlite, blobs, &target, &progress)
        .await
        .context("migrating")?;
    bar.finish_and_clear();
    println!("{:<28} {:>12} {:>12}", "TABLE", "SQLITE", "POSTGRESQL");
    for (table, from, to) in &moved.tables {
        let mark = if from == to { "" } else { "  MISMATCH" };
        println!("{table:<28} {from:>12} {to:>12}{mark}");
    }
    if !moved.mismatches().is_empty() {
        bail!("the counts differ (see MISMATCH above)");
    }
    let blobs_lines = match &named {
        Some(to) => {
            let b = &to.blobs;
            match b.backend {
                tern_core::config::BlobBackend::S3 => format!(
                    "  [blobs]\n  backend = \"s3\"\n  bucket = \"{}\"\n  prefix = \"{}\"\n  endpoint = \"{}\"\n  region = \"{}\"\n  path_style = {}\n",
                    b.bucket, b.prefix, b.endpoint, b.region, b.path_style
                ),
                _ => format!(
                    "  [blobs]\n  backend = \"files\"\n  path = \"{}\"\n",
                    b.path.display()
                ),
            }
        }
        None => String::new(),
    };
    println!(
        "\nEvery count matches. Now, in {}:\n  [store]\n  backend = \"postgres\"\n  url = \"{}\"\n{blobs_lines}and start tern serve again. The SQLite database is left as it was.",
        crate::config_path(&args.data.data).display(),
        args.to
    );
    Ok(())
}
