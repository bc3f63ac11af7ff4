//! Greylisting (RFC 6647): the first delivery attempt of an unknown
//! (client network, sender, recipient) triplet is deferred with a 4xx;
//! a retry after `delay` (and within `retry_window`) passes, and the
//! triplet then passes at once for `pass_lifetime`. Real MTAs retry;
//! much bulk spamware does not.
//!
//! State is kept in memory (bounded); entries changed since the last save
//! are marked and written to the store every two seconds
//! ([`Greylist::take_changes`], in one batch), and read back at start
//! ([`Greylist::restore`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Most triplets remembered; beyond, the oldest half is forgotten.
const MAX_ENTRIES: usize = 200_000;

/// The decision for one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Greylisted {
    /// Accept.
    Pass,
    /// Defer; try again in this many seconds.
    Defer(u64),
}

struct Entry {
    first_seen: i64,
    passed_until: i64,
    /// Changed since the last [`Greylist::take_changes`].
    dirty: bool,
}

/// The greylist.
pub struct Greylist {
    delay: i64,
    retry_window: i64,
    pass_lifetime: i64,
    entries: Mutex<HashMap<Key, Entry>>,
}

type Key = (IpAddr, String, String);

impl Greylist {
    /// A greylist with the given timings (seconds).
    pub fn new(delay: u64, retry_window: u64, pass_lifetime: u64) -> Self {
        Self {
            delay: delay as i64,
            retry_window: retry_window as i64,
            pass_lifetime: pass_lifetime as i64,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Loads stored triplets.
    pub fn restore(&self, rows: Vec<tern_store::GreylistRow>) {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for r in rows.into_iter().take(MAX_ENTRIES) {
            if let Ok(net) = r.network.parse() {
                map.insert(
                    (net, r.sender, r.rcpt),
                    Entry {
                        first_seen: r.first_seen,
                        passed_until: r.passed_until,
                        dirty: false,
                    },
                );
            }
        }
    }

    /// The triplets changed since the last call, for the store, and the
    /// time before which untouched ones are stale.
    pub fn take_changes(&self, now: i64) -> (Vec<tern_store::GreylistRow>, i64) {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let rows = map
            .iter_mut()
            .filter(|(_, e)| e.dirty)
            .map(|(k, e)| {
                e.dirty = false;
                tern_store::GreylistRow {
                    network: k.0.to_string(),
                    sender: k.1.clone(),
                    rcpt: k.2.clone(),
                    first_seen: e.first_seen,
                    passed_until: e.passed_until,
                }
            })
            .collect();
        (rows, now - self.retry_window.max(self.delay))
    }

    /// Decides about an attempt at `now` (Unix seconds). `network` is the
    /// client's network (a /24 or /64: big senders retry from another
    /// address of the same pool).
    pub fn check(&self, network: IpAddr, sender: &str, rcpt: &str, now: i64) -> Greylisted {
        let key = (
            network,
            sender.to_ascii_lowercase(),
            rcpt.to_ascii_lowercase(),
        );
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_ENTRIES {
            let mut ages: Vec<i64> = map.values().map(|e| e.first_seen).collect();
            ages.sort_unstable();
            let cutoff = ages[ages.len() / 2];
            map.retain(|_, e| e.first_seen > cutoff || e.passed_until > now);
        }
        match map.get_mut(&key) {
            Some(e)
                if e.passed_until > now
                    || (now - e.first_seen >= self.delay
                        && now - e.first_seen <= self.retry_window) =>
            {
                e.passed_until = now + self.pass_lifetime;
                e.dirty = true;
                Greylisted::Pass
            }
            Some(e) if now - e.first_seen < self.delay => {
                Greylisted::Defer((self.delay - (now - e.first_seen)) as u64)
            }
            _ => {
                map.insert(
                    key,
                    Entry {
                        first_seen: now,
                        passed_until: 0,
                        dirty: true,
                    },
                );
                Greylisted::Defer(self.delay as u64)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triplets() {
        let g = Greylist::new(300, 4 * 3600, 36 * 86400);
        let net: IpAddr = "192.0.2.0".parse().unwrap();
        assert_eq!(g.check(net, "a@x", "b@y", 1000), Greylisted::Defer(300));
        assert_eq!(g.check(net, "a@x", "b@y", 1100), Greylisted::Defer(200));
        assert_eq!(g.check(net, "a@x", "b@y", 1300), Greylisted::Pass);
        assert_eq!(
            g.check(net, "A@X", "b@y", 999_999),
            Greylisted::Pass,
            "remembered"
        );
        assert_eq!(
            g.check(net, "c@x", "b@y", 1300),
            Greylisted::Defer(300),
            "new triplet"
        );
        // A retry after the window starts over.
        assert_eq!(
            g.check(net, "c@x", "b@y", 1300 + 5 * 3600),
            Greylisted::Defer(300)
        );
    }
}
