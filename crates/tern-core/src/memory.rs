//! Giving memory back to the operating system after large buffers are
//! freed. The allocator is the binary's choice (mimalloc), so the binary
//! installs how to do it; libraries only say when.
//!
//! mimalloc keeps freed memory for a while before returning it, which is
//! right for the many small buffers of ordinary mail, but lets a burst of
//! large message buffers (24 oversized messages refused at once) stay
//! resident well past `[smtp] max_data_memory`. Measured with
//! `bench/hostile_memory.sh`: peak 467 MB without, at the budget with.

use std::sync::OnceLock;

static GIVE_BACK: OnceLock<fn()> = OnceLock::new();

/// Installs the allocator's "return freed memory now" (once, at startup).
pub fn set_give_back(f: fn()) {
    let _ = GIVE_BACK.set(f);
}

/// Bytes freed at once from which it pays to return memory at once.
pub const LARGE: usize = 4 << 20;

/// Returns freed memory to the operating system, if the binary said how.
/// Call after freeing at least [`LARGE`] bytes.
pub fn give_back() {
    if let Some(f) = GIVE_BACK.get() {
        f();
    }
}
