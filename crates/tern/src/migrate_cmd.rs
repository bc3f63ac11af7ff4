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
/// `[blobs]` names (files, S3), before the commit; bodies already there stay.
/// Stop `tern serve` first; afterwards set `[store] backend = "postgres"` and
/// `url`, and start it again.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  tern migrate --data /var/lib/tern --to postgres://tern:secret@db.example.net/tern\n  tern migrate --data /var/lib/tern --to 'postgres://tern@db/tern?sslmode=verify-full'"
)]
pub struct MigrateArgs {
    #[command(flatten)]
    data: crate::DataArg,
    /// The target PostgreSQL database (empty; the schema is created).
    #[arg(long, value_name = "URL")]
    to: String,
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
    if let Some(b) = &blobs {
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
    println!(
        "\nEvery count matches. Now, in {}:\n  [store]\n  backend = \"postgres\"\n  url = \"{}\"\nand start tern serve again. The SQLite database is left as it was.",
        crate::config_path(&args.data.data).display(),
        args.to
    );
    Ok(())
}
