//! `tern suppression …`: addresses mail is not sent to.

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use tern_store::{Suppression, SuppressionQuery};

const REASONS: &[&str] = &["hard_bounce", "complaint", "unsubscribe", "manual"];

/// Suppression subcommands.
#[derive(Subcommand)]
pub enum SuppressionCmd {
    /// List entries.
    #[command(
        after_help = "Examples:\n  tern suppression list\n  tern suppression list --reason hard_bounce --domain example.com"
    )]
    List {
        /// Only this sending domain's list ("global" for the global one).
        #[arg(long)]
        domain: Option<String>,
        /// Only this reason (hard_bounce, complaint, unsubscribe, manual).
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        data: crate::DataArg,
    },
    /// Suppress addresses.
    #[command(
        after_help = "Example:\n  tern suppression add bob@example.net carol@example.org --reason manual"
    )]
    Add {
        /// Addresses.
        #[arg(required = true)]
        addresses: Vec<String>,
        /// hard_bounce, complaint, unsubscribe or manual.
        #[arg(long, default_value = "manual")]
        reason: String,
        /// Only for mail from this domain (default: all domains).
        #[arg(long)]
        domain: Option<String>,
        #[command(flatten)]
        data: crate::DataArg,
    },
    /// Remove an address.
    #[command(after_help = "Example:\n  tern suppression remove bob@example.net")]
    Remove {
        /// The address.
        address: String,
        /// From this sending domain's list (default: the global list).
        #[arg(long)]
        domain: Option<String>,
        #[command(flatten)]
        data: crate::DataArg,
    },
    /// Import a CSV file (address[,reason[,domain]] per line; "-" reads stdin).
    #[command(after_help = "Example:\n  tern suppression import bounces.csv --reason hard_bounce")]
    Import {
        /// The file, or - for stdin.
        file: String,
        /// Reason for lines that give none.
        #[arg(long, default_value = "manual")]
        reason: String,
        #[command(flatten)]
        data: crate::DataArg,
    },
    /// Export every entry as CSV (address,domain,reason,created,expires,detail).
    #[command(after_help = "Example:\n  tern suppression export > suppressions.csv")]
    Export {
        #[command(flatten)]
        data: crate::DataArg,
    },
}

fn check_reason(r: &str) -> Result<()> {
    if !REASONS.contains(&r) {
        bail!("reason must be one of {}", REASONS.join(", "));
    }
    Ok(())
}

/// The CSV reader for imports (RFC 4180 quoting, csv crate): no header
/// row required, lines of one to three fields, `#` comments, fields trimmed.
fn csv_reader<R: std::io::Read>(r: R) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(r)
}

/// Runs a suppression subcommand.
pub async fn run(cmd: SuppressionCmd) -> Result<()> {
    match cmd {
        SuppressionCmd::List {
            domain,
            reason,
            data,
        } => {
            if let Some(r) = &reason {
                check_reason(r)?;
            }
            let store = crate::queue_cmd::open(&data).await?;
            let mut q = SuppressionQuery {
                domain: domain.map(|d| if d == "global" { String::new() } else { d }),
                reason,
                limit: 1000,
                ..Default::default()
            };
            let mut n = 0;
            loop {
                let page = store.list_suppressions(q.clone()).await?;
                for s in &page {
                    if n == 0 {
                        println!(
                            "{:<40} {:<20} {:<12} CREATED",
                            "ADDRESS", "DOMAIN", "REASON"
                        );
                    }
                    n += 1;
                    println!(
                        "{:<40} {:<20} {:<12} {}",
                        s.address,
                        if s.domain.is_empty() {
                            "(all)"
                        } else {
                            &s.domain
                        },
                        s.reason,
                        tern_events::event::format_time(s.created * 1000)
                    );
                }
                match page.last() {
                    Some(l) if page.len() == 1000 => {
                        q.after = Some((l.address.clone(), l.domain.clone()))
                    }
                    _ => break,
                }
            }
            println!("{n} suppressed address(es).");
        }
        SuppressionCmd::Add {
            addresses,
            reason,
            domain,
            data,
        } => {
            check_reason(&reason)?;
            let now = tern_core::now_unix();
            let mut entries = Vec::new();
            for a in &addresses {
                let parsed = tern_core::Address::parse(a)
                    .with_context(|| format!("{a} is not an address"))?;
                entries.push(Suppression {
                    address: parsed.to_string().to_lowercase(),
                    domain: domain.clone().unwrap_or_default().to_lowercase(),
                    reason: reason.clone(),
                    created: now,
                    expires: None,
                    detail: "added with tern suppression add".into(),
                });
            }
            let store = crate::queue_cmd::open(&data).await?;
            let n = entries.len();
            store.add_suppressions(entries).await?;
            println!("{n} address(es) suppressed.");
        }
        SuppressionCmd::Remove {
            address,
            domain,
            data,
        } => {
            let store = crate::queue_cmd::open(&data).await?;
            if !store
                .remove_suppression(&address, domain.as_deref().unwrap_or(""))
                .await?
            {
                bail!("{address} is not on that list");
            }
            println!("{address} removed.");
        }
        SuppressionCmd::Import { file, reason, data } => {
            check_reason(&reason)?;
            let reader: Box<dyn std::io::Read> = if file == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                Box::new(std::io::BufReader::new(
                    std::fs::File::open(&file).with_context(|| format!("opening {file}"))?,
                ))
            };
            let store = crate::queue_cmd::open(&data).await?;
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {pos} imported ({per_sec}) {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            let now = tern_core::now_unix();
            let (mut batch, mut total, mut skipped) = (Vec::new(), 0u64, 0u64);
            for record in csv_reader(reader).records() {
                let f = record?;
                let line = f.position().map_or(0, |p| p.line());
                let addr = f.get(0).unwrap_or("");
                if addr.is_empty() || addr.eq_ignore_ascii_case("address") {
                    continue;
                }
                let Ok(parsed) = tern_core::Address::parse(addr) else {
                    skipped += 1;
                    bar.println(format!("line {line}: {addr:?} is not an address; skipped"));
                    continue;
                };
                let r = f
                    .get(1)
                    .filter(|r| !r.is_empty())
                    .map_or_else(|| reason.clone(), str::to_string);
                if !REASONS.contains(&r.as_str()) {
                    skipped += 1;
                    bar.println(format!("line {line}: reason {r:?} unknown; skipped"));
                    continue;
                }
                batch.push(Suppression {
                    address: parsed.to_string().to_lowercase(),
                    domain: f.get(2).unwrap_or("").to_lowercase(),
                    reason: r,
                    created: now,
                    expires: None,
                    detail: format!("imported from {file}"),
                });
                if batch.len() == 5000 {
                    total += batch.len() as u64;
                    store.add_suppressions(std::mem::take(&mut batch)).await?;
                    bar.set_position(total);
                }
            }
            total += batch.len() as u64;
            store.add_suppressions(batch).await?;
            bar.finish_and_clear();
            println!("{total} address(es) imported, {skipped} line(s) skipped.");
        }
        SuppressionCmd::Export { data } => {
            let store = crate::queue_cmd::open(&data).await?;
            let mut out = csv::Writer::from_writer(std::io::stdout().lock());
            out.write_record([
                "address", "domain", "reason", "created", "expires", "detail",
            ])?;
            let mut q = SuppressionQuery {
                limit: 1000,
                ..Default::default()
            };
            loop {
                let page = store.list_suppressions(q.clone()).await?;
                for s in &page {
                    out.write_record([
                        s.address.as_str(),
                        s.domain.as_str(),
                        s.reason.as_str(),
                        &tern_events::event::format_time(s.created * 1000),
                        &s.expires
                            .map(|e| tern_events::event::format_time(e * 1000))
                            .unwrap_or_default(),
                        s.detail.as_str(),
                    ])?;
                }
                match page.last() {
                    Some(l) if page.len() == 1000 => {
                        q.after = Some((l.address.clone(), l.domain.clone()))
                    }
                    _ => break,
                }
            }
            out.flush()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    fn fields(line: &str) -> Vec<String> {
        let mut r = super::csv_reader(line.as_bytes());
        let rec = r.records().next().unwrap().unwrap();
        rec.iter().map(str::to_string).collect()
    }

    fn quote(s: &str) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record([s]).unwrap();
        String::from_utf8(w.into_inner().unwrap())
            .unwrap()
            .trim_end()
            .to_string()
    }

    #[test]
    fn csv() {
        assert_eq!(
            fields("a@b.c, hard_bounce ,"),
            vec!["a@b.c", "hard_bounce", ""]
        );
        assert_eq!(fields("\"x,\"\"y\"\"\",z"), vec!["x,\"y\"", "z"]);
        assert_eq!(quote("a,b"), "\"a,b\"");
    }
}
