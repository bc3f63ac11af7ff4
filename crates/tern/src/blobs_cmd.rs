//! `tern blobs`: where message bodies are ([blobs] in tern.toml), moving
//! the ones in the database out to the blob store, checking the blob store
//! holds every body it should, and collecting bodies nothing refers to.

use anyhow::{Result, bail};
use clap::Subcommand;
use std::time::Duration;

/// Blob store subcommands.
#[derive(Subcommand)]
pub enum BlobsCmd {
    /// How many bodies are in the database and in the blob store.
    #[command(after_help = "Example:\n  tern blobs status --data /var/lib/tern")]
    Status {
        #[command(flatten)]
        data: crate::DataArg,
    },
    /// Move bodies stored in the database to the configured blob store.
    /// Set [blobs] backend to "files" or "s3" and restart the server first:
    /// a server started without the blob store cannot read moved bodies
    /// (its FETCH answers NO [UNAVAILABLE]). Safe while the server runs; a
    /// stopped run is resumed by running it again. The database file keeps
    /// its size and reuses the space freed.
    #[command(
        after_help = "Example:\n  tern blobs move --data /var/lib/tern   # after setting [blobs] backend = \"s3\" and restarting"
    )]
    Move {
        /// Bodies moved per transaction.
        #[arg(long, default_value_t = 200)]
        batch: usize,
        #[command(flatten)]
        data: crate::DataArg,
    },
    /// Check that the blob store holds every body the database refers to
    /// (one lookup each); exits with status 1 naming those it does not.
    #[command(after_help = "Example:\n  tern blobs check --data /var/lib/tern")]
    Check {
        #[command(flatten)]
        data: crate::DataArg,
    },
    /// Delete from the blob store the bodies no message refers to any more
    /// now (the server does it every ten minutes).
    #[command(
        after_help = "Examples:\n  tern blobs collect --data /var/lib/tern\n  tern blobs collect --sweep      # also bodies a crash left without a message\n  tern blobs collect --grace 0s   # also bodies written in the last hour (no other process is delivering)"
    )]
    Collect {
        /// Leave bodies written within this long alone (a delivery by
        /// another process may be about to commit them).
        #[arg(long, default_value = "1h")]
        grace: String,
        /// Also go through everything the blob store holds and delete the
        /// bodies no message refers to (left by a crash between storing a
        /// body and committing its message): one listing per 256th.
        #[arg(long)]
        sweep: bool,
        #[command(flatten)]
        data: crate::DataArg,
    },
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

/// Runs a `tern blobs` subcommand.
pub async fn run(cmd: BlobsCmd) -> Result<()> {
    match cmd {
        BlobsCmd::Status { data } => {
            let config = crate::load(&data)?;
            let store = tern::server::open_store(&config).await?;
            let c = store.body_counts().await?;
            let place = store
                .blob_store()
                .map_or("none ([blobs] backend = \"local\")".into(), |b| {
                    b.describe()
                });
            println!("blob store:     {place}");
            println!(
                "in the database {:>10} bodies  {}",
                c.inline,
                mib(c.inline_bytes)
            );
            println!(
                "in blob store   {:>10} bodies  {}",
                c.external,
                mib(c.external_bytes)
            );
            println!("to collect      {:>10}", c.to_collect);
        }
        BlobsCmd::Move { batch, data } => {
            let config = crate::load(&data)?;
            let store = tern::server::open_store(&config).await?;
            let Some(place) = store.blob_store().map(|b| b.describe()) else {
                bail!("[blobs] backend is \"local\": set it to \"files\" or \"s3\" first");
            };
            let total = store.body_counts().await?.inline;
            let bar = crate::progress_bar(total, "bodies");
            let mut moved = 0;
            loop {
                let n = store.move_bodies_out(batch.max(1)).await?;
                if n == 0 {
                    break;
                }
                moved += n;
                bar.inc(n as u64);
            }
            bar.finish_and_clear();
            println!("Moved {moved} bodies to {place}.");
        }
        BlobsCmd::Check { data } => {
            let config = crate::load(&data)?;
            let store = tern::server::open_store(&config).await?;
            if store.blob_store().is_none() {
                bail!("[blobs] backend is \"local\": every body is in the database");
            }
            let bar = crate::progress_bar(store.body_counts().await?.external, "bodies");
            let (mut after, mut missing) = (0, Vec::new());
            loop {
                let (gone, last) = store.check_bodies(after, 500).await?;
                let Some(last) = last else { break };
                bar.inc(500.min((last - after) as u64));
                missing.extend(gone);
                after = last;
            }
            bar.finish_and_clear();
            if missing.is_empty() {
                println!("Every body the database refers to is in the blob store.");
            } else {
                for (id, hash) in &missing {
                    println!("missing: body {id} ({hash})");
                }
                println!("{} bodies are missing from the blob store.", missing.len());
                std::process::exit(1);
            }
        }
        BlobsCmd::Collect { grace, sweep, data } => {
            let grace: Duration =
                tern_core::config::parse_duration(&grace).map_err(anyhow::Error::msg)?;
            let config = crate::load(&data)?;
            let store = tern::server::open_store(&config).await?;
            let c = store.collect_blobs(grace).await?;
            if sweep {
                let bar = crate::progress_bar(256, "shards");
                let mut total = tern_store::sqlite::Swept::default();
                for shard in tern_store::blobs::shards() {
                    let s = store.sweep_blobs(&shard, grace).await?;
                    total.looked_at += s.looked_at;
                    total.deleted += s.deleted;
                    total.young += s.young;
                    bar.inc(1);
                }
                bar.finish_and_clear();
                println!(
                    "Swept {} stored bodies: {} no message refers to deleted, {} too recent to judge.",
                    total.looked_at, total.deleted, total.young
                );
            }
            println!(
                "Deleted {} bodies; {} in use again; {} written within {} left for later.",
                c.deleted,
                c.in_use,
                c.young,
                humanize(grace)
            );
        }
    }
    Ok(())
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}
