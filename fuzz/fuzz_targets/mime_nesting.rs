//! Deep and wide MIME: the fuzzer's bytes are a program that builds a
//! message (open a multipart or an embedded message, repeat the last
//! opening up to thousands of times, add a leaf, close, raw bytes). The
//! analysis stored at delivery must stay within the nesting and part
//! limits, keep every offset inside the message, and BODYSTRUCTURE and
//! section extraction over it must finish without recursion trouble.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tern_store::meta::{self, MAX_MIME_DEPTH, MAX_MIME_PARTS};

fn build(program: &[u8]) -> Vec<u8> {
    let mut m = b"From: f@example.com\r\nSubject: fuzz\r\n".to_vec();
    let mut open: Vec<Option<String>> = Vec::new();
    let mut last = 0u8;
    let mut i = 0;
    while i < program.len() && m.len() < 256 << 10 {
        let op = program[i];
        i += 1;
        let times = match op % 8 {
            // Repeat the previous opening (op >> 3) * 8 times: up to 248
            // levels at once, well past the depth limit.
            7 => usize::from(op >> 3) * 8,
            _ => 1,
        };
        let kind = if op % 8 == 7 { last } else { op % 8 };
        for _ in 0..times {
            match kind {
                0..=2 => {
                    let b = format!("b{}x{}", open.len(), kind);
                    let sub = ["mixed", "alternative", "digest"][usize::from(kind)];
                    m.extend_from_slice(
                        format!("Content-Type: multipart/{sub}; boundary=\"{b}\"\r\n\r\n--{b}\r\n")
                            .as_bytes(),
                    );
                    open.push(Some(b));
                }
                3 => {
                    m.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\nSubject: in\r\n");
                    open.push(None);
                }
                4 => m.extend_from_slice(b"Content-Type: text/plain\r\n\r\nleaf\r\n"),
                5 => {
                    if let Some(Some(b)) = open.last() {
                        m.extend_from_slice(format!("--{b}\r\n").as_bytes());
                    }
                }
                6 => match open.pop() {
                    Some(Some(b)) => m.extend_from_slice(format!("--{b}--\r\n").as_bytes()),
                    Some(None) | None => m.extend_from_slice(b"\r\n"),
                },
                _ => {}
            }
        }
        if op % 8 != 7 {
            last = op % 8;
        }
        if op % 8 == 6 && i < program.len() {
            // Raw bytes from the program, up to the next CR or LF.
            let n = program[i..].iter().take(32).position(|&b| b == b'\n').unwrap_or(0);
            m.extend_from_slice(&program[i..i + n]);
            i += n;
        }
    }
    m
}

fn check(raw: &[u8]) {
    let m = meta::analyze(raw);
    assert!(m.parts.len() <= MAX_MIME_PARTS * 4);
    let mut stack = vec![(0usize, 1usize)];
    let mut seen = 0;
    while let Some((i, d)) = stack.pop() {
        let Some(p) = m.parts.get(i) else { break };
        seen += 1;
        assert!(seen <= m.parts.len(), "the part graph is a tree");
        assert!(d <= 4 * (MAX_MIME_DEPTH + 2), "depth {d}");
        assert!(p.header_offset <= p.body_offset || p.body_offset == 0);
        assert!(p.end_offset as usize <= raw.len());
        for &c in &p.children {
            assert!((c as usize) < m.parts.len());
            stack.push((c as usize, d + 1));
        }
    }
    let mut out = Vec::new();
    tern_imap::write::body_structure(&mut out, &m, raw, 0, true);
    assert!(!out.is_empty());
}

fuzz_target!(|input: &[u8]| {
    check(&build(input));
    check(input);
});
