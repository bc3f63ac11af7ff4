//! The coordination role's shared counters: allowances such as "at most N
//! messages an hour per account", counted across every node of a store.
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

#[cfg(test)]
mod tests {
    use super::*;

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
