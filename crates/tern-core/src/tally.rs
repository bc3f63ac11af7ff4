//! Tallies: counts that rise with events and lapse a while after the last
//! one (failed logins per address, network and account). The store keeps
//! them, so that every node of a shared store counts the same attempts;
//! [`MemoryTallies`] is the in-process kind, for a store one process owns.

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;

/// A tally backend failed (the shared store was unreachable).
#[derive(Debug, thiserror::Error)]
#[error("tally: {0}")]
pub struct TallyError(pub String);

/// Counts by key, shared by whoever shares the backend.
#[async_trait]
pub trait Tallies: Send + Sync {
    /// Adds `change` to the count of each of `keys` at `now` (Unix seconds)
    /// and returns the counts after it, in the order of `keys`, as one step
    /// (two callers never see the same count after an increase). A count
    /// lapses to 0 `window` seconds after its last increase; a decrease
    /// never takes it below 0 nor renews it.
    async fn tally(
        &self,
        keys: &[String],
        change: i64,
        window: i64,
        now: i64,
    ) -> Result<Vec<u64>, TallyError>;
    /// Forgets the count of `key`.
    async fn clear_tally(&self, key: &str) -> Result<(), TallyError>;
}

/// One count: its value and the Unix second it lapses at.
#[derive(Clone, Copy, Default)]
struct Count {
    n: u64,
    until: i64,
}

/// Tallies in this process's memory, bounded: past [`MemoryTallies::MAX`]
/// keys the lapsed ones go.
#[derive(Default)]
pub struct MemoryTallies(Mutex<HashMap<String, Count>>);

impl MemoryTallies {
    /// Keys kept before lapsed counts are dropped.
    pub const MAX: usize = 100_000;

    /// [`Tallies::tally`] without the `async`.
    pub fn apply(&self, keys: &[String], change: i64, window: i64, now: i64) -> Vec<u64> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > Self::MAX {
            map.retain(|_, c| c.until > now);
        }
        keys.iter()
            .map(|k| {
                let c = map.entry(k.clone()).or_default();
                if c.until <= now {
                    c.n = 0;
                }
                c.n = c.n.saturating_add_signed(change);
                if change > 0 {
                    c.until = now.saturating_add(window);
                }
                c.n
            })
            .collect()
    }

    /// [`Tallies::clear_tally`] without the `async`.
    pub fn clear(&self, key: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

#[async_trait]
impl Tallies for MemoryTallies {
    async fn tally(
        &self,
        keys: &[String],
        change: i64,
        window: i64,
        now: i64,
    ) -> Result<Vec<u64>, TallyError> {
        Ok(self.apply(keys, change, window, now))
    }

    async fn clear_tally(&self, key: &str) -> Result<(), TallyError> {
        self.clear(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_rise_fall_and_lapse() {
        let t = MemoryTallies::default();
        let k = |s: &str| vec![s.to_string()];
        assert_eq!(t.apply(&k("a"), 1, 60, 1000), [1]);
        assert_eq!(t.apply(&[k("a"), k("b")].concat(), 1, 60, 1010), [2, 1]);
        assert_eq!(t.apply(&k("a"), -1, 60, 1020), [1]);
        assert_eq!(t.apply(&k("b"), -5, 60, 1020), [0], "never below 0");
        // The decrease did not renew "a": its last increase was at 1010.
        assert_eq!(t.apply(&k("a"), 0, 60, 1070), [0]);
        t.apply(&k("c"), 3, 60, 1000);
        t.clear("c");
        assert_eq!(t.apply(&k("c"), 0, 60, 1000), [0]);
    }
}
