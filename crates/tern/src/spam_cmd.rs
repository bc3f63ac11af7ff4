//! `tern spam train`: teaches the spam filter from folders of mail people
//! already sorted (Maildir folders, directories of .eml files, mbox files).
//! `tern spam policy`: spam thresholds per domain or account.

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use std::path::{Path, PathBuf};

/// Spam filter subcommands.
#[derive(Subcommand)]
pub enum SpamCmd {
    /// Learn from sorted mail: every message under --spam is spam, under --ham is not.
    /// Folders may be Maildirs (cur/ and new/), directories of message files,
    /// or mbox files. Without --account the global classifier learns.
    #[command(
        after_help = "Examples:\n  tern spam train --spam ~/Maildir/.Junk --ham ~/Maildir/cur --data /var/lib/tern\n  tern spam train --spam spam.mbox --account alice@example.com"
    )]
    Train {
        /// Folder or mbox of spam (repeatable).
        #[arg(long)]
        spam: Vec<PathBuf>,
        /// Folder or mbox of legitimate mail (repeatable).
        #[arg(long)]
        ham: Vec<PathBuf>,
        /// Also train this account's own classifier.
        #[arg(long)]
        account: Option<String>,
        #[command(flatten)]
        data: crate::DataArg,
    },
    /// Spam thresholds for a domain or an account (overriding [filter]'s
    /// junk_score and reject_score; an account's override its domain's).
    /// Refusal happens only when every recipient of a message would refuse it.
    #[command(subcommand)]
    Policy(PolicyCmd),
}

/// `tern spam policy …`
#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Sets thresholds for TARGET (a domain or an account address); a
    /// threshold left out is inherited.
    #[command(
        after_help = "Examples:\n  tern spam policy set example.com --junk-score 4 --reject-score 12\n  tern spam policy set ceo@example.com --reject-score 1000   # never refuse, only file in Junk"
    )]
    Set {
        /// Domain or account address.
        target: String,
        /// Score from which mail goes to Junk.
        #[arg(long)]
        junk_score: Option<f64>,
        /// Score from which mail is refused (550 5.7.1, before 250).
        #[arg(long)]
        reject_score: Option<f64>,
        #[command(flatten)]
        data: crate::DataArg,
    },
    /// Lists the thresholds set.
    #[command(after_help = "Example:\n  tern spam policy list")]
    List {
        #[command(flatten)]
        data: crate::DataArg,
    },
    /// Removes TARGET's thresholds (it inherits again).
    #[command(after_help = "Example:\n  tern spam policy clear example.com")]
    Clear {
        /// Domain or account address.
        target: String,
        #[command(flatten)]
        data: crate::DataArg,
    },
}

/// Every message in a Maildir, a directory of message files, or an mbox
/// file (Maildir and mbox read with mail-parser's mailbox iterators).
fn messages(path: &Path) -> Result<Vec<Vec<u8>>> {
    let ctx = || format!("reading {}", path.display());
    if path.is_file() {
        let mut head = [0u8; 5];
        let n = std::io::Read::read(&mut std::fs::File::open(path).with_context(ctx)?, &mut head)?;
        if &head[..n] == b"From " {
            let reader = std::io::BufReader::new(std::fs::File::open(path).with_context(ctx)?);
            return mail_parser::mailbox::mbox::MessageIterator::new(reader)
                .map(|m| Ok(m.with_context(ctx)?.unwrap_contents()))
                .collect();
        }
        return Ok(vec![std::fs::read(path).with_context(ctx)?]);
    }
    if path.join("cur").is_dir() && path.join("new").is_dir() {
        return mail_parser::mailbox::maildir::MessageIterator::new(path)
            .with_context(ctx)?
            .map(|m| Ok(m.with_context(ctx)?.contents().to_vec()))
            .collect();
    }
    let mut files: Vec<_> = std::fs::read_dir(path)
        .with_context(ctx)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read(f).with_context(ctx))
        .collect()
}

/// Runs a spam subcommand.
pub async fn run(cmd: SpamCmd) -> Result<()> {
    match cmd {
        SpamCmd::Policy(p) => policy(p).await?,
        SpamCmd::Train {
            spam,
            ham,
            account,
            data,
        } => {
            if spam.is_empty() && ham.is_empty() {
                bail!("give --spam and/or --ham folders");
            }
            let config = crate::load(&data)?;
            let store = tern::server::open_store(&config).await?;
            let account_id = match &account {
                None => None,
                Some(a) => Some(
                    tern_store::Directory::list_accounts(store.as_ref(), None)
                        .await?
                        .into_iter()
                        .find(|x| x.address.eq_ignore_ascii_case(a))
                        .map(|x| x.id)
                        .with_context(|| format!("no account {a}"))?,
                ),
            };
            let resolver = tern_dns::Resolver::new(&config.dns.nameservers)?;
            let filter = tern_filter::Filter::new(store, resolver, config.filter.clone());
            let mut sets = Vec::new();
            for p in &spam {
                sets.push((true, messages(p)?));
            }
            for p in &ham {
                sets.push((false, messages(p)?));
            }
            let total: usize = sets.iter().map(|(_, m)| m.len()).sum();
            let bar = crate::progress_bar(total as u64, "messages");
            let (mut n_spam, mut n_ham) = (0, 0);
            for (is_spam, msgs) in sets {
                for m in msgs {
                    filter.learn(&m, account_id, is_spam).await?;
                    if is_spam {
                        n_spam += 1;
                    } else {
                        n_ham += 1;
                    }
                    bar.inc(1);
                }
            }
            bar.finish_and_clear();
            println!(
                "Learnt {n_spam} spam and {n_ham} ham messages{} (a running server uses them within 10 s).",
                account
                    .map(|a| format!(" (global and for {a})"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}

async fn policy(cmd: PolicyCmd) -> Result<()> {
    use tern_store::FilterPolicy;
    match cmd {
        PolicyCmd::Set {
            target,
            junk_score,
            reject_score,
            data,
        } => {
            if junk_score.is_none() && reject_score.is_none() {
                bail!("give --junk-score, --reject-score or both (use 'clear' to remove)");
            }
            if let (Some(j), Some(r)) = (junk_score, reject_score)
                && j > r
            {
                bail!("the junk score ({j}) must not exceed the reject score ({r})");
            }
            let target = target.trim().to_ascii_lowercase();
            if target.is_empty() || target.starts_with('@') || target.ends_with('@') {
                bail!("{target:?} is neither a domain nor an address");
            }
            let store = tern::server::open_store(&crate::load(&data)?).await?;
            store
                .set_filter_policy(FilterPolicy {
                    target: target.clone(),
                    junk_score,
                    reject_score,
                })
                .await?;
            println!(
                "Spam thresholds for {target} set (a running server applies them within 30 s)."
            );
        }
        PolicyCmd::List { data } => {
            let store = tern::server::open_store(&crate::load(&data)?).await?;
            let rows = store.filter_policies().await?;
            if rows.is_empty() {
                println!("No thresholds set: [filter] junk_score and reject_score apply.");
            }
            let show = |v: Option<f64>| v.map_or("inherit".to_string(), |v| format!("{v:.1}"));
            for p in rows {
                println!(
                    "{:<40} junk {:>8}  reject {:>8}",
                    p.target,
                    show(p.junk_score),
                    show(p.reject_score)
                );
            }
        }
        PolicyCmd::Clear { target, data } => {
            let store = tern::server::open_store(&crate::load(&data)?).await?;
            store
                .set_filter_policy(FilterPolicy {
                    target: target.trim().to_ascii_lowercase(),
                    junk_score: None,
                    reject_score: None,
                })
                .await?;
            println!("Thresholds for {target} removed.");
        }
    }
    Ok(())
}
