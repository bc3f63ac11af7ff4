//! The message-data reader for DATA (RFC 5321 §4.1.1.4, §4.5.2) and BDAT
//! (RFC 3030).
//!
//! Written here rather than taken from `smtp-proto` because Tern needs a line
//! ending policy the crate does not have, plus streaming limits:
//!
//! * The message ends only at `CRLF . CRLF` (the data's start counts as
//!   following a CRLF). `LF . LF`, `CR . CR`, `LF . CRLF`, `CRLF . LF` and
//!   the other smuggling variants never end it.
//! * A bare LF or bare CR inside the data is **normalised** to CRLF, so every
//!   stored message has CRLF line endings and can be relayed without giving a
//!   later hop a different idea of where it ends. The same applies to BDAT.
//! * A line starting with `.` after a real CRLF has the dot removed
//!   (transparency, §4.5.2). After a bare line ending a dot is kept.
//! * Size and line length are counted as bytes arrive; past a limit the
//!   rest is discarded (but still read to the terminator) and the outcome
//!   says which limit was hit. NUL bytes are noted the same way.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Memory all sessions together may hold for message data being received
/// (`[smtp] max_data_memory`). A reader takes from it as its buffer grows;
/// when none is left, that message is read to its end and discarded, and
/// refused with a temporary error, so concurrent large (or oversized)
/// messages cannot take the server's memory, and nothing ever waits for
/// memory (no deadlock between sessions each holding part of it).
#[derive(Clone)]
pub struct DataBudget {
    max: usize,
    used: Arc<AtomicUsize>,
}

impl DataBudget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            used: Arc::default(),
        }
    }

    /// A budget that never runs out (tools and tests).
    pub fn unlimited() -> Self {
        Self::new(usize::MAX)
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= self.max)
            })
            .is_ok()
    }
}

/// Budget held for one message's data; given back when dropped.
pub struct Held {
    budget: DataBudget,
    bytes: usize,
}

impl Held {
    fn new(budget: DataBudget) -> Self {
        Self { budget, bytes: 0 }
    }

    fn grow(&mut self, n: usize) -> bool {
        let ok = self.budget.take(n);
        if ok {
            self.bytes += n;
        }
        ok
    }

    /// Keeps `n` bytes held, giving the rest back.
    fn shrink_to(&mut self, n: usize) {
        if self.bytes > n {
            self.budget.used.fetch_sub(self.bytes - n, Ordering::AcqRel);
            self.bytes = n;
        }
    }

    fn release(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
        self.bytes = 0;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.release();
    }
}

/// Why a message was refused after its data was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataProblem {
    /// Bigger than the size limit.
    TooBig,
    /// The server's memory for message data in transit was used up.
    Busy,
    /// A line longer than the line limit.
    LineTooLong,
    /// Contains a NUL byte.
    Nul,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line that followed a real CRLF (or the data start).
    LineStart,
    /// Inside a line (or at the start of one after a bare line ending).
    Text,
    /// Saw CR; waiting to see whether LF follows.
    Cr,
    /// Saw `.` at a line start.
    Dot,
    /// Saw `.` CR at a line start.
    DotCr,
}

/// Streaming reader of message data.
pub struct DataReader {
    state: State,
    out: Vec<u8>,
    dot_stuffing: bool,
    max_size: usize,
    max_line: usize,
    line_len: usize,
    received: usize,
    problem: Option<DataProblem>,
    bare_line_endings: usize,
    held: Held,
    /// Size of the message as normalised, counted even once not kept.
    size: usize,
}

impl DataReader {
    /// A reader for DATA: dot-transparency on, ends at CRLF.CRLF.
    pub fn data(max_size: usize, max_line: usize, budget: &DataBudget) -> Self {
        Self::new(true, max_size, max_line, budget)
    }

    /// A reader for BDAT chunks: no dot handling, no terminator; call
    /// [`DataReader::finish_chunks`] after the last chunk.
    pub fn bdat(max_size: usize, max_line: usize, budget: &DataBudget) -> Self {
        Self::new(false, max_size, max_line, budget)
    }

    fn new(dot_stuffing: bool, max_size: usize, max_line: usize, budget: &DataBudget) -> Self {
        Self {
            state: State::LineStart,
            out: Vec::new(),
            held: Held::new(budget.clone()),
            size: 0,
            dot_stuffing,
            max_size,
            max_line,
            line_len: 0,
            received: 0,
            problem: None,
            bare_line_endings: 0,
        }
    }

    fn emit(&mut self, bytes: &[u8]) {
        self.size = self.size.saturating_add(bytes.len());
        if self.problem.is_some() {
            return;
        }
        let needed = self.out.len() + bytes.len();
        if needed > self.max_size {
            self.fail(DataProblem::TooBig);
            return;
        }
        if needed > self.out.capacity() {
            // Grow by doubling, never past the size limit, with the memory
            // taken from the shared budget first: the new buffer in full,
            // since the old one lives until its bytes are copied over.
            let cap = needed
                .max(self.out.capacity() * 2)
                .max(8192)
                .min(self.max_size);
            if !self.held.grow(cap) {
                self.fail(DataProblem::Busy);
                return;
            }
            let old = self.out.capacity();
            self.out.reserve_exact(cap - self.out.len());
            self.held.shrink_to(cap);
            if old >= tern_core::memory::LARGE {
                tern_core::memory::give_back();
            }
        }
        self.out.extend_from_slice(bytes);
    }

    /// Stops keeping data: the rest is counted and discarded.
    fn fail(&mut self, problem: DataProblem) {
        self.problem = Some(problem);
        let freed = std::mem::take(&mut self.out).capacity();
        self.held.release();
        if freed >= tern_core::memory::LARGE {
            tern_core::memory::give_back();
        }
    }

    fn newline(&mut self) {
        self.emit(b"\r\n");
        self.line_len = 0;
    }

    fn text_byte(&mut self, b: u8) {
        match b {
            b'\r' => self.state = State::Cr,
            b'\n' => {
                self.bare_line_endings += 1;
                self.newline();
                self.state = State::Text;
            }
            _ => {
                if b == 0 && self.problem.is_none() {
                    self.problem = Some(DataProblem::Nul);
                }
                self.line_len += 1;
                if self.line_len + 2 > self.max_line && self.problem.is_none() {
                    self.problem = Some(DataProblem::LineTooLong);
                }
                self.emit(&[b]);
                self.state = State::Text;
            }
        }
    }

    /// Feeds bytes. For DATA returns `Some(n)` when the terminator has been
    /// seen, `n` being how many bytes of `input` it used (the rest belongs to
    /// the next command); `None` when all of `input` was consumed.
    pub fn feed(&mut self, input: &[u8]) -> Option<usize> {
        self.received += input.len();
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            i += 1;
            match self.state {
                State::LineStart if b == b'.' && self.dot_stuffing => self.state = State::Dot,
                State::LineStart | State::Text => {
                    // Fast path: copy a run of ordinary bytes at once.
                    if !matches!(b, b'\r' | b'\n' | 0) && self.state == State::Text {
                        let run = input[i - 1..]
                            .iter()
                            .position(|&c| matches!(c, b'\r' | b'\n' | 0))
                            .unwrap_or(input.len() - (i - 1));
                        let chunk = &input[i - 1..i - 1 + run];
                        self.line_len += run;
                        if self.line_len + 2 > self.max_line && self.problem.is_none() {
                            self.problem = Some(DataProblem::LineTooLong);
                        }
                        self.emit(chunk);
                        i += run - 1;
                    } else {
                        self.text_byte(b);
                    }
                }
                State::Cr => match b {
                    b'\n' => {
                        self.newline();
                        self.state = State::LineStart;
                    }
                    b'\r' => {
                        self.bare_line_endings += 1;
                        self.newline();
                        // Still after a CR: stay in Cr.
                    }
                    _ => {
                        self.bare_line_endings += 1;
                        self.newline();
                        self.text_byte(b);
                    }
                },
                State::Dot => match b {
                    b'\r' => self.state = State::DotCr,
                    _ => {
                        // A stuffed dot: drop it, keep the rest of the line.
                        self.state = State::Text;
                        self.text_byte(b);
                    }
                },
                State::DotCr => match b {
                    b'\n' => {
                        self.state = State::LineStart;
                        return Some(i);
                    }
                    _ => {
                        // ".<CR>" then not LF: the dot was stuffing, the CR bare.
                        self.bare_line_endings += 1;
                        self.newline();
                        if b == b'\r' {
                            self.state = State::Cr;
                        } else {
                            self.text_byte(b);
                        }
                    }
                },
            }
        }
        None
    }

    /// Ends a BDAT message: a trailing bare CR becomes CRLF.
    pub fn finish_chunks(&mut self) {
        if self.state == State::Cr {
            self.bare_line_endings += 1;
            self.newline();
            self.state = State::LineStart;
        }
    }

    /// Bytes received on the wire so far.
    pub fn received(&self) -> usize {
        self.received
    }

    /// How many bare CR or LF line endings were normalised.
    pub fn bare_line_endings(&self) -> usize {
        self.bare_line_endings
    }

    /// The limit that was hit, if any.
    pub fn problem(&self) -> Option<DataProblem> {
        self.problem
    }

    /// The message (or the limit that was hit), with the budget it holds:
    /// keep that until the message has been handled.
    pub fn into_message(self) -> Result<(Vec<u8>, Held), DataProblem> {
        match self.problem {
            // Too big as well: say so (permanent), not "busy" (retry).
            Some(DataProblem::Busy) if self.size > self.max_size => Err(DataProblem::TooBig),
            Some(p) => Err(p),
            None => Ok((self.out, self.held)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> (Option<usize>, Vec<u8>) {
        let mut r = DataReader::data(1 << 20, 1000, &DataBudget::unlimited());
        let end = r.feed(input);
        (end, r.into_message().unwrap().0)
    }

    /// Feeds one byte at a time, to check state carries across reads.
    fn run_bytewise(input: &[u8]) -> (Option<usize>, Vec<u8>) {
        let mut r = DataReader::data(1 << 20, 1000, &DataBudget::unlimited());
        for (i, b) in input.iter().enumerate() {
            if r.feed(std::slice::from_ref(b)).is_some() {
                return (Some(i + 1), r.into_message().unwrap().0);
            }
        }
        (None, r.into_message().unwrap().0)
    }

    #[test]
    fn ends_at_crlf_dot_crlf() {
        let (end, msg) = run(b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n");
        assert_eq!(end, Some(23));
        assert_eq!(msg, b"Subject: x\r\n\r\nbody\r\n");
        assert_eq!(
            run_bytewise(b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n").1,
            msg
        );
    }

    #[test]
    fn empty_message() {
        assert_eq!(run(b".\r\n"), (Some(3), vec![]));
    }

    #[test]
    fn unstuffs_dots() {
        let (_, msg) = run(b"..hidden\r\n...\r\n.\r\n");
        assert_eq!(msg, b".hidden\r\n..\r\n");
    }

    #[test]
    fn smuggling_variants_never_end() {
        for variant in [
            &b"a\n.\nb"[..],
            b"a\r.\rb",
            b"a\n.\r\nb",
            b"a\r\n.\nb",
            b"a\r.\r\nb",
            b"a\r\n.\rb",
            b"a\n.\rb",
            b"a\r\n.\r\r\nb",
        ] {
            let mut input = variant.to_vec();
            input.extend_from_slice(b"\r\n.\r\n");
            let (end, msg) = run(&input);
            assert_eq!(end, Some(input.len()), "{variant:?}");
            let (end2, msg2) = run_bytewise(&input);
            assert_eq!((end2, &msg2), (Some(input.len()), &msg), "{variant:?}");
            // Normalised: every CR is followed by LF and every LF preceded by CR.
            for (i, &b) in msg.iter().enumerate() {
                if b == b'\r' {
                    assert_eq!(msg.get(i + 1), Some(&b'\n'), "{variant:?} -> {msg:?}");
                }
                if b == b'\n' {
                    assert!(i > 0 && msg[i - 1] == b'\r', "{variant:?} -> {msg:?}");
                }
            }
        }
    }

    #[test]
    fn limits() {
        let mut r = DataReader::data(10, 1000, &DataBudget::unlimited());
        assert!(r.feed(b"0123456789abc\r\n.\r\n").is_some());
        assert_eq!(r.into_message().err(), Some(DataProblem::TooBig));
        let mut r = DataReader::data(1000, 10, &DataBudget::unlimited());
        assert!(r.feed(b"0123456789abc\r\n.\r\n").is_some());
        assert_eq!(r.into_message().err(), Some(DataProblem::LineTooLong));
        let mut r = DataReader::data(1000, 100, &DataBudget::unlimited());
        assert!(r.feed(b"a\0b\r\n.\r\n").is_some());
        assert_eq!(r.into_message().err(), Some(DataProblem::Nul));
    }

    #[test]
    fn bdat_normalises_without_dots() {
        let mut r = DataReader::bdat(1000, 1000, &DataBudget::unlimited());
        assert_eq!(r.feed(b".a\nb\r"), None);
        r.finish_chunks();
        assert_eq!(r.into_message().unwrap().0, b".a\r\nb\r\n");
    }

    #[test]
    fn data_memory_is_budgeted() {
        let budget = DataBudget::new(100_000);
        let line = [b'a'; 98];
        let mut a = DataReader::data(1 << 20, 1000, &budget);
        for _ in 0..600 {
            a.feed(&line);
            a.feed(b"\r\n");
        }
        assert!(
            budget.used() >= 60_000 && budget.used() <= 100_000,
            "{}",
            budget.used()
        );
        // The second message finds the budget used up: read on, refused.
        let mut b = DataReader::data(1 << 20, 1000, &budget);
        for _ in 0..600 {
            b.feed(&line);
            b.feed(b"\r\n");
        }
        assert_eq!(b.feed(b".\r\n"), Some(3));
        assert_eq!(b.into_message().err(), Some(DataProblem::Busy));
        // Refused for memory but over the size limit too: too big it is.
        let mut d = DataReader::data(10_000, 1000, &DataBudget::new(1));
        for _ in 0..600 {
            d.feed(&line);
            d.feed(b"\r\n");
        }
        assert_eq!(d.into_message().err(), Some(DataProblem::TooBig));
        let (body, held) = a.into_message().unwrap();
        assert_eq!(body.len(), 60_000);
        assert!(budget.used() > 0);
        drop(held);
        assert_eq!(budget.used(), 0, "given back");
        // Over the size limit: the buffer goes at once, and its budget with it.
        let mut c = DataReader::data(50_000, 1000, &budget);
        for _ in 0..600 {
            c.feed(&line);
            c.feed(b"\r\n");
        }
        assert_eq!(budget.used(), 0);
        assert_eq!(c.into_message().err(), Some(DataProblem::TooBig));
    }
}
