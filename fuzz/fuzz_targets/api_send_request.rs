//! `POST /v1/messages` bodies: whatever JSON arrives, building the message
//! never panics, and no header field comes out of a value (no CR/LF
//! injection): every header line of the built message is a continuation or
//! a field the API writes or the request named in `headers`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_api::build::{Content, SendRequest, build};

const OURS: &[&str] = &[
    "from",
    "to",
    "cc",
    "reply-to",
    "subject",
    "message-id",
    "date",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
];

fuzz_target!(|data: &[u8]| {
    let Ok(req) = serde_json::from_slice::<SendRequest>(data) else {
        return;
    };
    let content = Content {
        subject: req.subject.clone().unwrap_or_default(),
        text: req.text.clone(),
        html: req.html.clone(),
    };
    let Ok(built) = build(&req, content, "id@fuzz.test", 0, 1000) else {
        return;
    };
    let m = &built.message;
    let end = m
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let block = String::from_utf8_lossy(&m[..end]);
    for line in block.split("\r\n") {
        assert!(
            !line.contains(['\r', '\n']),
            "a bare CR or LF in the header block: {line:?}"
        );
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
        assert!(
            OURS.contains(&name.as_str()) || req.headers.keys().any(|k| k.eq_ignore_ascii_case(&name)),
            "header field {name:?} came from a value"
        );
    }
});
