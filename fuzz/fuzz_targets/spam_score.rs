//! The spam filter's rules and tokenizer on hostile messages: never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tern_filter::tokens::tokens(data);
    let msg = mail_parser::MessageParser::default().parse(data);
    let ctx = tern_filter::rules::Context {
        helo: "x",
        auth: "spf=fail dkim=fail dmarc=fail",
        rdns: None,
    };
    let hits = tern_filter::rules::check(data, msg.as_ref(), &ctx);
    assert!(hits.iter().all(|(n, s)| !n.is_empty() && s.is_finite()));
});
