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

/// Why a message was refused after its data was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataProblem {
    /// Bigger than the size limit.
    TooBig,
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
}

impl DataReader {
    /// A reader for DATA: dot-transparency on, ends at CRLF.CRLF.
    pub fn data(max_size: usize, max_line: usize) -> Self {
        Self::new(true, max_size, max_line)
    }

    /// A reader for BDAT chunks: no dot handling, no terminator; call
    /// [`DataReader::finish_chunks`] after the last chunk.
    pub fn bdat(max_size: usize, max_line: usize) -> Self {
        Self::new(false, max_size, max_line)
    }

    fn new(dot_stuffing: bool, max_size: usize, max_line: usize) -> Self {
        Self {
            state: State::LineStart,
            out: Vec::with_capacity(8192.min(max_size)),
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
        if self.problem.is_some() {
            return;
        }
        if self.out.len() + bytes.len() > self.max_size {
            self.problem = Some(DataProblem::TooBig);
            self.out = Vec::new();
            return;
        }
        self.out.extend_from_slice(bytes);
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

    /// The message (empty if a limit was hit).
    pub fn into_message(self) -> Result<Vec<u8>, DataProblem> {
        match self.problem {
            Some(p) => Err(p),
            None => Ok(self.out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> (Option<usize>, Vec<u8>) {
        let mut r = DataReader::data(1 << 20, 1000);
        let end = r.feed(input);
        (end, r.into_message().unwrap())
    }

    /// Feeds one byte at a time, to check state carries across reads.
    fn run_bytewise(input: &[u8]) -> (Option<usize>, Vec<u8>) {
        let mut r = DataReader::data(1 << 20, 1000);
        for (i, b) in input.iter().enumerate() {
            if r.feed(std::slice::from_ref(b)).is_some() {
                return (Some(i + 1), r.into_message().unwrap());
            }
        }
        (None, r.into_message().unwrap())
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
        let mut r = DataReader::data(10, 1000);
        assert!(r.feed(b"0123456789abc\r\n.\r\n").is_some());
        assert_eq!(r.into_message(), Err(DataProblem::TooBig));
        let mut r = DataReader::data(1000, 10);
        assert!(r.feed(b"0123456789abc\r\n.\r\n").is_some());
        assert_eq!(r.into_message(), Err(DataProblem::LineTooLong));
        let mut r = DataReader::data(1000, 100);
        assert!(r.feed(b"a\0b\r\n.\r\n").is_some());
        assert_eq!(r.into_message(), Err(DataProblem::Nul));
    }

    #[test]
    fn bdat_normalises_without_dots() {
        let mut r = DataReader::bdat(1000, 1000);
        assert_eq!(r.feed(b".a\nb\r"), None);
        r.finish_chunks();
        assert_eq!(r.into_message().unwrap(), b".a\r\nb\r\n");
    }
}
