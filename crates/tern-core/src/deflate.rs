//! Raw DEFLATE (RFC 1951, no zlib header) for a whole connection, as the
//! IMAP COMPRESS extension uses it (RFC 4978 §3–4): everything written is
//! compressed and sync-flushed at each flush, so the peer can decode each
//! response as soon as it arrives; everything read is inflated.
//!
//! Inflation is bounded per call ([`Deflate::inflate`] produces at most
//! `limit` bytes and keeps the rest of the input for later), so a small
//! hostile input that expands a thousandfold ("zip bomb") costs no more
//! memory than the caller's buffer limit allows.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::io;

/// Compression state of one connection, both directions.
pub struct Deflate {
    out: Compress,
    input: Decompress,
    /// Compressed input received and not inflated yet.
    pending: Vec<u8>,
}

impl Default for Deflate {
    fn default() -> Self {
        Self::new()
    }
}

impl Deflate {
    /// Fresh streams; compression at level 1 (fast: mail is mostly text and
    /// level 1 already gets most of the gain, RFC 4978 §4).
    pub fn new() -> Self {
        Self {
            out: Compress::new(Compression::fast(), false),
            input: Decompress::new(false),
            pending: Vec::new(),
        }
    }

    /// Compresses `data` onto `out` and ends with a sync flush (the peer can
    /// decode everything so far).
    pub fn deflate(&mut self, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let start = self.out.total_in();
        loop {
            out.reserve(data.len() / 2 + 256);
            let done = (self.out.total_in() - start) as usize;
            self.out
                .compress_vec(&data[done..], out, FlushCompress::Sync)
                .map_err(io::Error::other)?;
            let done = (self.out.total_in() - start) as usize;
            // The flush is complete once all input is taken and the output
            // was not filled up.
            if done == data.len() && out.len() < out.capacity() {
                return Ok(());
            }
        }
    }

    /// Adds compressed bytes received from the peer.
    pub fn push(&mut self, compressed: &[u8]) {
        self.pending.extend_from_slice(compressed);
    }

    /// Inflates pending input onto `out`, at most `limit` bytes; returns
    /// how many it produced (0: more input is needed). A corrupt stream is
    /// an error.
    pub fn inflate(&mut self, out: &mut Vec<u8>, limit: usize) -> io::Result<usize> {
        let before = out.len();
        out.reserve(limit);
        let spare = out.len() + limit;
        while out.len() < spare && !self.pending.is_empty() {
            let (in0, len0) = (self.input.total_in(), out.len());
            // `decompress_vec` writes into spare capacity only; cap it.
            let mut chunk = Vec::with_capacity(spare - out.len());
            let status = self
                .input
                .decompress_vec(&self.pending, &mut chunk, FlushDecompress::Sync)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let used = (self.input.total_in() - in0) as usize;
            self.pending.drain(..used);
            out.extend_from_slice(&chunk);
            if status == Status::StreamEnd {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "compressed stream ended",
                ));
            }
            if used == 0 && out.len() == len0 {
                break;
            }
        }
        Ok(out.len() - before)
    }

    /// Whether compressed input is waiting to be inflated.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::Deflate;

    #[test]
    fn round_trip_in_pieces() {
        let (mut a, mut b) = (Deflate::new(), Deflate::new());
        let text: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("* {i} FETCH (FLAGS (\\Seen))\r\n").into_bytes())
            .collect();
        let mut wire = Vec::new();
        for part in text.chunks(7_000) {
            a.deflate(part, &mut wire).unwrap();
        }
        assert!(
            wire.len() * 5 < text.len(),
            "{} of {}",
            wire.len(),
            text.len()
        );
        // Fed a byte at a time, read at most 1 KiB per call.
        let mut got = Vec::new();
        for byte in &wire {
            b.push(std::slice::from_ref(byte));
            while b.inflate(&mut got, 1024).unwrap() > 0 {}
        }
        assert_eq!(got, text);
    }

    #[test]
    fn a_bomb_is_inflated_a_limit_at_a_time() {
        let mut a = Deflate::new();
        let mut wire = Vec::new();
        a.deflate(&vec![b'x'; 8 << 20], &mut wire).unwrap();
        assert!(wire.len() < 64 * 1024, "{}", wire.len());
        let mut b = Deflate::new();
        b.push(&wire);
        let mut out = Vec::new();
        assert_eq!(b.inflate(&mut out, 4096).unwrap(), 4096);
        assert_eq!(out.len(), 4096);
        assert!(b.has_pending());
    }

    #[test]
    fn garbage_is_an_error() {
        let mut b = Deflate::new();
        b.push(&[0xff; 64]);
        assert!(b.inflate(&mut Vec::new(), 4096).is_err());
    }
}
