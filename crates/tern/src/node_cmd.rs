//! `tern node list`: the Tern nodes sharing this store, when each last said
//! it was alive and how many queue recipients each holds leased.

use anyhow::Result;
use clap::Subcommand;
use tern_store::nodes::SILENT_BEATS;

/// Node subcommands.
#[derive(Subcommand)]
pub enum NodeCmd {
    /// The nodes that have run on this store: name, state (alive when heard
    /// from within three heartbeats), start, last heartbeat, process,
    /// version and queue leases held.
    #[command(after_help = "Example:\n  tern node list --data /var/lib/tern")]
    List {
        #[command(flatten)]
        data: crate::DataArg,
    },
}

fn when(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| unix.to_string())
}

fn ago(secs: i64) -> String {
    match secs.max(0) {
        s if s < 120 => format!("{s} s ago"),
        s if s < 7200 => format!("{} min ago", s / 60),
        s if s < 172_800 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86_400),
    }
}

/// Runs a `tern node` subcommand.
pub async fn run(cmd: NodeCmd) -> Result<()> {
    match cmd {
        NodeCmd::List { data } => {
            let config = crate::load(&data)?;
            let store = tern::server::open_store(&config).await?;
            let nodes = tern_store::Nodes::nodes(store.as_ref()).await?;
            if nodes.is_empty() {
                println!("No node has run on this store yet (`tern serve` starts one).");
                return Ok(());
            }
            let now = tern_core::now_unix();
            let beat = config
                .node
                .heartbeat_secs()
                .map_err(|e| anyhow::anyhow!("[node] heartbeat: {e}"))?;
            println!(
                "{:<20} {:<7} {:<24} {:<16} {:>8} {:<8} {:>7}",
                "NAME", "STATE", "STARTED", "HEARTBEAT", "PID", "VERSION", "LEASES"
            );
            for n in nodes {
                let state = if now - n.heartbeat <= SILENT_BEATS * beat {
                    "alive"
                } else {
                    "silent"
                };
                println!(
                    "{:<20} {:<7} {:<24} {:<16} {:>8} {:<8} {:>7}",
                    n.name,
                    state,
                    when(n.started_at),
                    ago(now - n.heartbeat),
                    n.pid,
                    n.version,
                    n.leases
                );
            }
        }
    }
    Ok(())
}
