//! Event ids: ULIDs (26 Crockford base-32 characters, 48 bits of
//! millisecond time then 80 random bits), strictly increasing within a
//! process, so that ids sort by time and serve as pagination cursors.
//!
//! Written here rather than taken from a crate: the format is twenty lines
//! and the monotonic guarantee needs the process-wide state kept below.

use std::sync::Mutex;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static LAST: Mutex<(u64, u128)> = Mutex::new((0, 0));

/// A new id, greater than every id this process made before.
pub fn new_id() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    let (ms, random) = if ms <= last.0 {
        // Same millisecond (or the clock stepped back): the next value.
        let r = (last.1 + 1) & ((1u128 << 80) - 1);
        (if r == 0 { last.0 + 1 } else { last.0 }, r)
    } else {
        // Leave headroom so that increments within the millisecond never wrap.
        (ms, rand::random::<u128>() & ((1u128 << 79) - 1))
    };
    *last = (ms, random);
    encode(ms, random)
}

/// The smallest id at or after `ms` (Unix milliseconds): a cursor bound for
/// time ranges.
pub fn lower_bound(ms: i64) -> String {
    encode(ms.max(0) as u64, 0)
}

/// The time an id was made (Unix milliseconds), if it is one.
pub fn time_of(id: &str) -> Option<i64> {
    if id.len() != 26 {
        return None;
    }
    let mut v: u64 = 0;
    for b in id.bytes().take(10) {
        let d = ALPHABET.iter().position(|a| *a == b.to_ascii_uppercase())? as u64;
        v = (v << 5) | d;
    }
    i64::try_from(v).ok()
}

fn encode(ms: u64, random: u128) -> String {
    let value: u128 = ((ms as u128 & ((1 << 48) - 1)) << 80) | random;
    (0..26)
        .rev()
        .map(|i| ALPHABET[((value >> (i * 5)) & 31) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increasing_and_timed() {
        let ids: Vec<String> = (0..10_000).map(|_| new_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        let t = time_of(&ids[0]).unwrap();
        let now = chrono::Utc::now().timestamp_millis();
        assert!((now - t).abs() < 60_000);
        assert!(lower_bound(t) <= ids[0]);
        assert!(lower_bound(t + 60_000) > ids[9_999]);
    }
}
