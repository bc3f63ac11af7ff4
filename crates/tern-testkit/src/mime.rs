//! Hostile MIME structure for tests: messages nested as deep as asked.

/// `depth` levels of `multipart/mixed`, each with its own boundary (none a
/// prefix of another), around one `text/plain` part.
pub fn nested_multipart(depth: usize) -> Vec<u8> {
    let mut m =
        b"From: Mallory <m@remote.test>\r\nTo: alice@example.test\r\nSubject: deep\r\n".to_vec();
    for i in 0..depth {
        m.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=\"b{i}x\"\r\n\r\n--b{i}x\r\n")
                .as_bytes(),
        );
    }
    m.extend_from_slice(b"Content-Type: text/plain\r\n\r\ncore\r\n");
    for i in (0..depth).rev() {
        m.extend_from_slice(format!("--b{i}x--\r\n").as_bytes());
    }
    m
}

/// `depth` `message/rfc822` parts, each embedding the next (Subject: level).
pub fn nested_messages(depth: usize) -> Vec<u8> {
    let mut m = Vec::new();
    for _ in 0..depth {
        m.extend_from_slice(
            b"From: m@remote.test\r\nSubject: level\r\nContent-Type: message/rfc822\r\n\r\n",
        );
    }
    m.extend_from_slice(b"Subject: core\r\n\r\ncore\r\n");
    m
}
