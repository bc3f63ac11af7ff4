//! `tern apikey …`: API keys for the HTTP API. The secret is shown once, at
//! creation; the store keeps its hash.

use anyhow::{Result, bail};
use clap::Subcommand;
use tern_api::keys::{self, Scope};

/// API key subcommands.
#[derive(Subcommand)]
pub enum ApiKeyCmd {
    /// Make a key; prints it alone on one line (store it now: it is not shown again).
    #[command(
        after_help = "Examples:\n  tern apikey create --scope send --domain example.com --name shop --data /var/lib/tern\n  KEY=$(tern apikey create --scope admin)\n  curl -H \"Authorization: Bearer $KEY\" http://127.0.0.1:8080/v1/events"
    )]
    Create {
        /// send (send messages), read (events, messages, lists), verify (POST /v1/verify) or admin (everything).
        #[arg(long)]
        scope: String,
        /// Limit sending to these From: domains (repeatable; default: any of ours).
        #[arg(long = "domain")]
        domains: Vec<String>,
        /// A name to recognise the key by.
        #[arg(long, default_value = "")]
        name: String,
        #[command(flatten)]
        data: crate::DataArg,
    },
    /// List keys (ids, scopes, domains; never secrets).
    #[command(after_help = "Example:\n  tern apikey list")]
    List {
        #[command(flatten)]
        data: crate::DataArg,
    },
    /// Revoke a key at once.
    #[command(after_help = "Example:\n  tern apikey revoke k3n2x7q9abcd")]
    Revoke {
        /// The key's id (as `tern apikey list` shows), or the whole key.
        id: String,
        #[command(flatten)]
        data: crate::DataArg,
    },
}

/// Runs an apikey subcommand.
pub async fn run(cmd: ApiKeyCmd) -> Result<()> {
    match cmd {
        ApiKeyCmd::Create {
            scope,
            domains,
            name,
            data,
        } => {
            let Some(scope) = Scope::parse(&scope) else {
                bail!("--scope must be send, read, verify or admin");
            };
            let store = crate::queue_cmd::open(&data).await?;
            let local = store.list_domains().await?;
            for d in &domains {
                if !local.iter().any(|l| l.name.eq_ignore_ascii_case(d)) {
                    bail!("{d} is not a local domain (tern domain add {d})");
                }
            }
            let domains = domains.iter().map(|d| d.to_lowercase()).collect();
            let (secret, record) = keys::generate(scope, domains, name, tern_core::now_unix());
            let id = record.id.clone();
            store.add_api_key(record).await?;
            eprintln!(
                "API key {id} ({}) created; it is shown only now:",
                scope.as_str()
            );
            println!("{secret}");
        }
        ApiKeyCmd::List { data } => {
            let store = crate::queue_cmd::open(&data).await?;
            let keys = store.api_keys().await?;
            if keys.is_empty() {
                println!("No API keys. Make one with `tern apikey create --scope send`.");
                return Ok(());
            }
            println!(
                "{:<14} {:<6} {:<24} {:<20} {:<25} STATE",
                "ID", "SCOPE", "DOMAINS", "NAME", "CREATED"
            );
            for k in keys {
                println!(
                    "{:<14} {:<6} {:<24} {:<20} {:<25} {}",
                    k.id,
                    k.scope,
                    if k.domains.is_empty() {
                        "any".to_string()
                    } else {
                        k.domains.join(",")
                    },
                    k.name,
                    tern_events::event::format_time(k.created * 1000),
                    match k.revoked {
                        Some(t) => format!("revoked {}", tern_events::event::format_time(t * 1000)),
                        None => "valid".into(),
                    }
                );
            }
        }
        ApiKeyCmd::Revoke { id, data } => {
            let id = keys::id_of(&id).map(str::to_string).unwrap_or(id);
            let store = crate::queue_cmd::open(&data).await?;
            if !store.revoke_api_key(&id, tern_core::now_unix()).await? {
                bail!("no valid API key {id}");
            }
            println!(
                "API key {id} revoked (a running server refuses it within {} s).",
                tern_api::auth::KEY_TTL.as_secs()
            );
        }
    }
    Ok(())
}
