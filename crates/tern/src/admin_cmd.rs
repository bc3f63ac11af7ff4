//! `tern admin …`: the dashboard's users. Administrators see every domain;
//! a user given `--domain` (a domain owner) sees only those domains' mail.

use anyhow::{Result, bail};
use clap::Subcommand;
use tern_store::WebUser;

/// Dashboard user subcommands.
#[derive(Subcommand)]
pub enum AdminCmd {
    /// Add a dashboard user, or set a new password (and domains) for one.
    /// Prints a generated password unless one comes on standard input.
    #[command(
        after_help = "Examples:\n  tern admin add ops@example.com                      # an administrator, password printed\n  echo 's3cret' | tern admin add ops@example.com --password-stdin\n  tern admin add shop-owner@example.org --domain example.org   # sees only example.org\n\nThen log in at http://HOST:PORT/ (the [listen] http or https address)."
    )]
    Add {
        /// The login (an email address).
        email: String,
        /// Limit the user to this domain (repeat for several); none: an administrator.
        #[arg(long = "domain")]
        domains: Vec<String>,
        /// Read the password from standard input (first line).
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        data: crate::DataArg,
    },
    /// List dashboard users.
    #[command(after_help = "Example:\n  tern admin list")]
    List {
        #[command(flatten)]
        data: crate::DataArg,
    },
    /// Remove a dashboard user (its sessions end at once).
    #[command(after_help = "Example:\n  tern admin remove ops@example.com")]
    Remove {
        email: String,
        #[command(flatten)]
        data: crate::DataArg,
    },
}

/// Runs a `tern admin` subcommand.
pub async fn run(cmd: AdminCmd) -> Result<()> {
    match cmd {
        AdminCmd::Add {
            email,
            domains,
            password_stdin,
            data,
        } => {
            let email = email.trim().to_ascii_lowercase();
            if !email.contains('@') || email.len() > 254 {
                bail!("{email:?} is not an email address");
            }
            let store = tern::server::open_store(&crate::load(&data)?).await?;
            let (password, generated) = crate::read_password(password_stdin)?;
            let hash = tern_store::password::hash(&password)?;
            let created = store
                .web_user(&email)
                .await?
                .map_or_else(tern_core::now_unix, |u| u.created);
            let domains: Vec<String> = domains.iter().map(|d| d.to_ascii_lowercase()).collect();
            store
                .put_web_user(WebUser {
                    email: email.clone(),
                    password_hash: hash,
                    domains: domains.clone(),
                    created,
                })
                .await?;
            if domains.is_empty() {
                println!("{email} is a dashboard administrator.");
            } else {
                println!("{email} sees {}.", domains.join(", "));
            }
            if generated {
                println!("Password: {password}");
            }
        }
        AdminCmd::List { data } => {
            let store = tern::server::open_store(&crate::load(&data)?).await?;
            println!("{:<40} {:<30} ADDED", "EMAIL", "DOMAINS");
            for u in store.web_users().await? {
                let domains = if u.domains.is_empty() {
                    "all (administrator)".to_string()
                } else {
                    u.domains.join(",")
                };
                let added = chrono::DateTime::from_timestamp(u.created, 0)
                    .map(|t| t.format("%Y-%m-%d").to_string())
                    .unwrap_or_default();
                println!("{:<40} {:<30} {added}", u.email, domains);
            }
        }
        AdminCmd::Remove { email, data } => {
            let store = tern::server::open_store(&crate::load(&data)?).await?;
            if !store.remove_web_user(&email).await? {
                bail!("no dashboard user {email}");
            }
            println!("Removed {email}.");
        }
    }
    Ok(())
}
