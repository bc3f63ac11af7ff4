//! `tern webhook …`: endpoints that receive events as signed POSTs.

use anyhow::{Result, bail};
use clap::Subcommand;
use tern_events::EventType;

/// Webhook subcommands.
#[derive(Subcommand)]
pub enum WebhookCmd {
    /// Add an endpoint; prints its id and signing secret (shown only now).
    #[command(
        after_help = "Examples:\n  tern webhook add https://app.example.com/hooks/mail --events bounced,complained\n  tern webhook add https://app.example.com/hooks/all --batch --domain example.com"
    )]
    Add {
        /// Where events are POSTed (https://; http:// only with [webhooks] allow_http).
        url: String,
        /// Event types, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        /// Only events about this domain's mail.
        #[arg(long)]
        domain: Option<String>,
        /// Up to 100 events per POST.
        #[arg(long)]
        batch: bool,
        #[command(flatten)]
        data: crate::DataArg,
    },
    /// List endpoints with their pending events and failures.
    #[command(after_help = "Example:\n  tern webhook list")]
    List {
        #[command(flatten)]
        data: crate::DataArg,
    },
    /// Remove an endpoint and its pending events.
    #[command(after_help = "Example:\n  tern webhook remove wh_abcdefghijklmnop")]
    Remove {
        /// Endpoint id.
        id: String,
        #[command(flatten)]
        data: crate::DataArg,
    },
    /// Send the stored events of a time range again.
    #[command(
        after_help = "Example:\n  tern webhook replay wh_abcdefghijklmnop --since 2026-12-01T00:00:00Z"
    )]
    Replay {
        /// Endpoint id.
        id: String,
        /// From this time (RFC 3339).
        #[arg(long)]
        since: String,
        /// Before this time (RFC 3339; default: now).
        #[arg(long)]
        until: Option<String>,
        #[command(flatten)]
        data: crate::DataArg,
    },
}

fn time(s: &str) -> Result<i64> {
    match tern_events::event::parse_time(s) {
        Some(t) => Ok(t),
        None => bail!("{s} is not an RFC 3339 time (2026-12-01T00:00:00Z)"),
    }
}

/// Runs a webhook subcommand.
pub async fn run(cmd: WebhookCmd) -> Result<()> {
    match cmd {
        WebhookCmd::Add {
            url,
            events,
            domain,
            batch,
            data,
        } => {
            let config = crate::load(&data)?;
            if let Err(e) = tern_api::webhooks::check_url(&url, config.webhooks.allow_http) {
                bail!("{url}: {e}");
            }
            let mut types = Vec::new();
            for e in &events {
                match EventType::parse(e.trim()) {
                    Some(t) => types.push(t),
                    None => bail!(
                        "{e} is not an event type ({})",
                        EventType::ALL.map(|t| t.as_str()).join(", ")
                    ),
                }
            }
            let hook =
                tern_api::webhooks::new_endpoint(url, types, domain.unwrap_or_default(), batch);
            let store = tern::server::open_store(&config).await?;
            store.add_webhook(hook.clone()).await?;
            println!("id:     {}", hook.id);
            println!("secret: {}", hook.secret);
            eprintln!(
                "Verify each POST's webhook-signature with this secret; it is not shown again."
            );
        }
        WebhookCmd::List { data } => {
            let store = crate::queue_cmd::open(&data).await?;
            let hooks = store.webhooks().await?;
            if hooks.is_empty() {
                println!("No webhooks. Add one with `tern webhook add URL`.");
            }
            for h in hooks {
                let pending = store.outbox_len(&h.id).await?;
                println!(
                    "{}  {}\n    events: {}  domain: {}  batch: {}  pending: {pending}  failures: {}",
                    h.id,
                    h.url,
                    if h.events.is_empty() {
                        "all".to_string()
                    } else {
                        h.events
                            .iter()
                            .map(|e| e.as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    },
                    if h.domain.is_empty() {
                        "any"
                    } else {
                        &h.domain
                    },
                    h.batch,
                    h.failures
                );
            }
        }
        WebhookCmd::Remove { id, data } => {
            let store = crate::queue_cmd::open(&data).await?;
            if !store.remove_webhook(&id).await? {
                bail!("no webhook {id}");
            }
            println!("Webhook {id} removed.");
        }
        WebhookCmd::Replay {
            id,
            since,
            until,
            data,
        } => {
            let store = crate::queue_cmd::open(&data).await?;
            let q = tern_store::EventQuery {
                since: Some(time(&since)?),
                until: until.as_deref().map(time).transpose()?,
                ..Default::default()
            };
            let n = store.replay_webhook(&id, q).await?;
            println!("{n} event(s) queued for {id} again.");
        }
    }
    Ok(())
}
