//! The coordination role's shared counters: allowances such as "at most N
//! messages an hour per account" or "N connections a minute per network",
//! counted across every node of a store (tallies, the other kind of count,
//! are [`tern_core::tally::Tallies`], which every store implements too).
//!
//! Each allowance is counted in fixed windows of its period; a take is
//! allowed when the current window's count plus the previous window's,
//! weighted by how much of it still lies within one period back, stays
//! within the limit (a sliding-window estimate: no burst at a window's
//! edge, one counter row per window).

use crate::Result;
use async_trait::async_trait;

/// Shared counters.
#[async_trait]
pub trait Allowances: Send + Sync {
    /// Takes one from the allowance `key` of `limit` per `period` seconds at
    /// `now` (Unix seconds); `false`, and nothing taken, when it is used up.
    async fn take_allowance(&self, key: &str, limit: u32, period: i64, now: i64) -> Result<bool>;
    /// Takes one from the rate `key` at `now_ms` (Unix milliseconds): at
    /// most `burst` at once, refilled one every `interval_ms` (GCRA, as
    /// [`gcra`] decides). `None` when taken; else, and nothing taken, the
    /// milliseconds until one is left.
    async fn take_rate(
        &self,
        key: &str,
        interval_ms: i64,
        burst: u32,
        now_ms: i64,
    ) -> Result<Option<i64>>;
    /// Drops what can no longer count at `now`: allowance windows more than
    /// a period old, lapsed tallies and cache entries. Returns how many.
    async fn sweep_counters(&self, now: i64) -> Result<u64>;
}

/// Where `now` falls: its window, and the weight of the previous window
/// (the share of it within one period before `now`).
pub(crate) fn window_of(now: i64, period: i64) -> (i64, f64) {
    let period = period.max(1);
    let elapsed = now.rem_euclid(period) as f64 / period as f64;
    (now.div_euclid(period), 1.0 - elapsed)
}

/// Whether one more fits: `current` taken in this window, `previous` in
/// the last, weighted by `weight`.
pub(crate) fn fits(current: u64, previous: u64, weight: f64, limit: u32) -> bool {
    current as f64 + 1.0 + previous as f64 * weight <= f64::from(limit)
}

/// The generic cell rate algorithm: with `tat` the theoretical arrival
/// time of the next request (none yet: `now`), one more at `now` is allowed
/// when the arrival time it moves to lies within `burst` intervals of
/// `now`. `Ok(new tat)` when allowed; `Err(milliseconds to wait)` when not.
pub fn gcra(
    tat: Option<i64>,
    now: i64,
    interval: i64,
    burst: u32,
) -> std::result::Result<i64, i64> {
    let next = tat.unwrap_or(now).max(now).saturating_add(interval);
    let horizon = interval.saturating_mul(i64::from(burst));
    if next - now <= horizon {
        Ok(next)
    } else {
        Err(next - now - horizon)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_an_interval() {
        // 2 at once, then one a second.
        let mut tat = None;
        for _ in 0..2 {
            tat = Some(gcra(tat, 10_000, 1000, 2).unwrap());
        }
        assert_eq!(gcra(tat, 10_000, 1000, 2), Err(1000));
        assert_eq!(gcra(tat, 10_500, 1000, 2), Err(500));
        let t = gcra(tat, 11_000, 1000, 2).unwrap();
        assert_eq!(gcra(Some(t), 11_000, 1000, 2), Err(1000));
        // After two idle intervals the whole burst is back.
        assert!(gcra(Some(t), 13_000, 1000, 2).is_ok());
        assert!(
            gcra(
                Some(gcra(Some(t), 13_000, 1000, 2).unwrap()),
                13_000,
                1000,
                2
            )
            .is_ok()
        );
    }

    #[test]
    fn no_burst_at_the_edge_of_a_window() {
        // Two taken at the end of one hour: the first seconds of the next
        // still count them.
        let (w, weight) = window_of(3599, 3600);
        assert_eq!(w, 0);
        assert!(fits(1, 0, weight, 2));
        let (w, weight) = window_of(3600, 3600);
        assert_eq!(w, 1);
        assert!(!fits(0, 2, weight, 2), "the last hour's two still count");
        // Half an hour in, half of them do.
        let (_, weight) = window_of(5400, 3600);
        assert!(fits(0, 2, weight, 2));
        assert!(!fits(1, 2, weight, 2));
    }
}
