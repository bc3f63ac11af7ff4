//! What arrives at return paths, unsubscribe and complaint addresses is
//! anyone's: the bounce reader (RFC 3464 and free text), the ARF reader,
//! the token readers, the reply classifier and the tracking rewriter of
//! HTML parts never panic, and what they keep stays bounded; a rewritten
//! link's token always reads back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_feedback::{Classifier, Keys, bounce, complaint};

static CLASSIFIER: std::sync::LazyLock<Classifier> = std::sync::LazyLock::new(Classifier::default);
static KEYS: std::sync::LazyLock<Keys> = std::sync::LazyLock::new(|| Keys::new(b"fuzzing key, fuzzing key, fuzz!"));

fuzz_target!(|data: &[u8]| {
    let b = bounce::parse(data, data.first().is_some_and(|b| b & 1 == 0));
    assert!(b.reports.len() <= bounce::MAX_REPORTS);
    for r in &b.reports {
        for f in [&r.recipient, &r.status, &r.diagnostic, &r.remote_mta].into_iter().flatten() {
            assert!(f.chars().count() <= bounce::MAX_FIELD);
        }
        if let Some(d) = &r.diagnostic {
            CLASSIFIER.classify(550, r.status.as_deref(), d);
        }
    }
    let _ = complaint::parse(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = KEYS.read_return_path(s, 1_800_000_000, 30);
        let _ = KEYS.read_unsubscribe_address(s);
        let _ = KEYS.read_unsubscribe_link(s);
        let code = s.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        CLASSIFIER.classify(code, tern_feedback::classify::find_status(s), s);
        let what = tern_feedback::tracking::Tracking { opens: true, clicks: true };
        // (Inputs naming the tracking host themselves could fake a link.)
        if let Ok(out) = tern_feedback::tracking::rewrite(s, "https://t.example", &KEYS, "0K6R4G2M9Q1ZX3A", "a@b.c", what)
            && !s.contains("t.example")
        {
            for part in out.split("https://t.example/t/c/").skip(1) {
                let end = part.find(['"', '\'', ' ', '>']).unwrap_or(part.len());
                assert!(KEYS.read_tracking(&part[..end]).is_ok(), "{}", &part[..end]);
            }
        }
    }
});
