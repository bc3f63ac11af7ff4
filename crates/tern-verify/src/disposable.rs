//! Disposable (throwaway) mail domains: mail to them is read once, if at
//! all, and the address is gone within the hour — a list cleaned for
//! sending should not keep them.
//!
//! The list shipped with Tern is the disposable-email-domains project's
//! (`data/disposable-domains.txt` names its source, version and date); a
//! newer copy fetched with `tern verify --update-disposable` into the data
//! folder takes precedence ([`List::load`]).

use std::collections::HashSet;
use std::path::Path;

/// The list built into Tern.
const SHIPPED: &str = include_str!("../data/disposable-domains.txt");

/// Where an updated copy lives, relative to the data folder.
pub const DATA_FILE: &str = "verify/disposable-domains.txt";

/// Where `tern verify --update-disposable` fetches from by default: the
/// project's own list.
pub const UPSTREAM: &str = "https://raw.githubusercontent.com/disposable-email-domains/disposable-email-domains/main/disposable_email_blocklist.conf";

/// A set of disposable domains and where it came from.
#[derive(Debug, Clone)]
pub struct List {
    domains: HashSet<String>,
    /// The first comment lines of the file: its source and date.
    pub origin: String,
}

impl Default for List {
    fn default() -> Self {
        Self::parse(SHIPPED)
    }
}

impl List {
    /// A list from text: one domain per line, `#` comments, blank lines
    /// ignored. Entries that are not domain names are skipped.
    pub fn parse(text: &str) -> Self {
        let origin = text
            .lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| l.trim_start_matches('#').trim())
            .collect::<Vec<_>>()
            .join("\n");
        let domains = text
            .lines()
            .map(|l| {
                l.split('#')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .filter(|l| {
                l.contains('.')
                    && l.len() <= 253
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            })
            .collect();
        Self { domains, origin }
    }

    /// The updated copy in `data_dir` when there is one, else the list
    /// shipped with Tern.
    pub fn load(data_dir: &Path) -> std::io::Result<Self> {
        match std::fs::read_to_string(data_dir.join(DATA_FILE)) {
            Ok(text) => Ok(Self::parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e),
        }
    }

    /// How many domains.
    pub fn len(&self) -> usize {
        self.domains.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// Whether `domain` (A-labels, lower case) or a domain above it is on
    /// the list: the services hand out subdomains too.
    pub fn contains(&self, domain: &str) -> bool {
        let mut d = domain;
        loop {
            if self.domains.contains(d) {
                return true;
            }
            match d.split_once('.') {
                Some((_, rest)) if rest.contains('.') => d = rest,
                _ => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_list_names_its_source_and_knows_the_big_services() {
        let l = List::default();
        assert!(l.len() > 5000, "{}", l.len());
        assert!(
            l.origin.contains("disposable-email-domains"),
            "{}",
            l.origin
        );
        for d in ["mailinator.com", "guerrillamail.com", "10minutemail.com"] {
            assert!(l.contains(d), "{d}");
        }
        assert!(l.contains("x.mailinator.com"), "subdomains count");
        for d in ["gmail.com", "example.com", "com"] {
            assert!(!l.contains(d), "{d}");
        }
    }

    #[test]
    fn parse_skips_comments_and_junk() {
        let l = List::parse("# from a test\n\nThrow.Example\nnot a domain\nbad/one.example\n");
        assert_eq!(l.len(), 1);
        assert!(l.contains("throw.example"));
        assert_eq!(l.origin, "from a test");
    }
}
