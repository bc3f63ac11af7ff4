//! `tern queue …`: look at and act on the outbound queue. Works with or
//! without a running server (same database); a running server notices
//! `retry` within a few seconds.

use anyhow::{Result, bail};
use clap::Subcommand;
use std::collections::BTreeMap;
use tern_core::now_unix;
use tern_store::{QueuedRcpt, SharedStore};

/// Queue subcommands.
#[derive(Subcommand)]
pub enum QueueCmd {
    /// One line per queued recipient, with its attempts and last error.
    #[command(after_help = "Example:\n  tern queue list --data /var/lib/tern")]
    List {
        #[command(flatten)]
        data: crate::DataArg,
    },
    /// A queued message: envelope, recipients with their state, headers.
    #[command(after_help = "Example:\n  tern queue show 01JD3K5V6Q --data /var/lib/tern")]
    Show {
        /// Queue id (as in `tern queue list` and the logs).
        queue_id: String,
        #[command(flatten)]
        data: crate::DataArg,
    },
    /// Try a message (or everything with --all) again now.
    #[command(after_help = "Examples:\n  tern queue retry 01JD3K5V6Q\n  tern queue retry --all")]
    Retry {
        /// Queue id; omit with --all.
        queue_id: Option<String>,
        /// Every queued recipient.
        #[arg(long, conflicts_with = "queue_id")]
        all: bool,
        #[command(flatten)]
        data: crate::DataArg,
    },
    /// Remove a message from the queue without telling its sender.
    #[command(after_help = "Example:\n  tern queue delete 01JD3K5V6Q")]
    Delete {
        /// Queue id.
        queue_id: String,
        #[command(flatten)]
        data: crate::DataArg,
    },
}

/// "3m", "2h", "in 40s", for people.
fn human(secs: i64) -> String {
    let s = secs.abs();
    let t = if s < 120 {
        format!("{s}s")
    } else if s < 7200 {
        format!("{}m", s / 60)
    } else if s < 172_800 {
        format!("{}h", s / 3600)
    } else {
        format!("{}d", s / 86400)
    };
    if secs < 0 { format!("-{t}") } else { t }
}

fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

/// Runs a queue subcommand.
pub async fn run(cmd: QueueCmd) -> Result<()> {
    match cmd {
        QueueCmd::List { data } => {
            let store = open(&data).await?;
            let rows = store.queue_list().await?;
            if rows.is_empty() {
                println!("The queue is empty.");
                return Ok(());
            }
            let now = now_unix();
            println!(
                "{:<14} {:>5} {:<28} {:<30} {:>4} {:>6}  LAST ERROR",
                "QUEUE ID", "AGE", "FROM", "TO", "TRY", "NEXT"
            );
            let mut messages = BTreeMap::new();
            for r in &rows {
                *messages.entry(r.message_id).or_insert(0) += 1;
                let next = if r.leased_until > now {
                    "sending".to_string()
                } else if r.next_attempt <= now {
                    "now".to_string()
                } else {
                    human(r.next_attempt - now)
                };
                let from = if r.mail_from.is_empty() {
                    "<>"
                } else {
                    &r.mail_from
                };
                println!(
                    "{:<14} {:>5} {:<28} {:<30} {:>4} {:>6}  {}",
                    r.queue_id,
                    human(now - r.created_at),
                    shorten(from, 28),
                    shorten(&r.address, 30),
                    r.attempts,
                    next,
                    r.last_error.as_deref().unwrap_or("-")
                );
            }
            println!(
                "{} message(s), {} recipient(s) queued.",
                messages.len(),
                rows.len()
            );
        }
        QueueCmd::Show { queue_id, data } => {
            let store = open(&data).await?;
            let rows: Vec<QueuedRcpt> = store
                .queue_list()
                .await?
                .into_iter()
                .filter(|r| r.queue_id == queue_id)
                .collect();
            let Some(first) = rows.first() else {
                bail!("{queue_id} is not in the queue (delivered, returned or deleted)");
            };
            let now = now_unix();
            println!("Queue id:  {}", first.queue_id);
            println!(
                "From:      <{}>",
                if first.mail_from.is_empty() {
                    ""
                } else {
                    &first.mail_from
                }
            );
            println!("Size:      {} bytes", first.size);
            println!(
                "Queued:    {} ({} ago)",
                tern_core::rfc5322_date(first.created_at),
                human(now - first.created_at)
            );
            println!(
                "Expires:   {} (in {})",
                tern_core::rfc5322_date(first.expires_at),
                human(first.expires_at - now)
            );
            println!("Recipients:");
            for r in &rows {
                println!(
                    "  {}  attempts {}, next {}{}",
                    r.address,
                    r.attempts,
                    if r.leased_until > now {
                        "now (being sent)".into()
                    } else if r.next_attempt <= now {
                        "now".into()
                    } else {
                        format!("in {}", human(r.next_attempt - now))
                    },
                    r.last_error
                        .as_deref()
                        .map(|e| format!("\n    last error: {e}"))
                        .unwrap_or_default()
                );
                println!("    waiting: {}", tern_queue::waiting::reason(r, now));
            }
            let body = store.read_blob(first.blob).await?;
            let end = body
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .unwrap_or(body.len());
            println!("Headers:");
            for line in String::from_utf8_lossy(&body[..end]).lines() {
                println!("  {line}");
            }
        }
        QueueCmd::Retry {
            queue_id,
            all,
            data,
        } => {
            if queue_id.is_none() && !all {
                bail!("give a queue id, or --all");
            }
            let store = open(&data).await?;
            let n = store.queue_retry(queue_id.as_deref(), now_unix()).await?;
            println!("{n} recipient(s) due now.");
        }
        QueueCmd::Delete { queue_id, data } => {
            let store = open(&data).await?;
            let n = store.queue_delete(&queue_id).await?;
            if n == 0 {
                bail!("{queue_id} is not in the queue");
            }
            println!("Removed {queue_id} ({n} recipient(s)); no notice was sent.");
        }
    }
    Ok(())
}

/// The store of the data folder `data`.
pub async fn open(data: &crate::DataArg) -> Result<SharedStore> {
    let config = crate::load(data)?;
    tern::server::open_store(&config).await
}
