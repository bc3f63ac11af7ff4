//! Queue identifiers: short, unique, sortable by time, safe in logs and headers.

use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A new id: 11 base-32 characters of microsecond time, then 4 of a
/// per-process counter mixed with the process id, e.g. `0K6R4G2M9Q1ZX3A`.
pub fn queue_id() -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) ^ (std::process::id() << 12);
    let mut out = String::with_capacity(15);
    for i in (0..11).rev() {
        out.push(ALPHABET[((micros >> (i * 5)) & 31) as usize] as char);
    }
    for i in (0..4).rev() {
        out.push(ALPHABET[((n >> (i * 5)) & 31) as usize] as char);
    }
    out
}

/// The smallest queue id made at or after `unix_secs`: queue ids sort by
/// time, so ranges of them are ranges of time.
pub fn queue_id_lower_bound(unix_secs: i64) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let micros = (unix_secs.max(0) as u64).saturating_mul(1_000_000);
    let mut out = String::with_capacity(15);
    for i in (0..11).rev() {
        out.push(ALPHABET[((micros >> (i * 5)) & 31) as usize] as char);
    }
    out.push_str("0000");
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn unique() {
        let mut ids: Vec<String> = (0..10_000).map(|_| super::queue_id()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 10_000);
        let now = crate::now_unix();
        assert!(super::queue_id_lower_bound(now - 1) <= ids[0]);
        assert!(super::queue_id_lower_bound(now + 2) > ids[9_999]);
    }
}
