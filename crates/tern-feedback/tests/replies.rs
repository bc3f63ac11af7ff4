//! The rule table against replies the providers publish (`replies.txt`,
//! each with its source): every one must get its category, hard or soft,
//! and the blocklist it names.

use tern_feedback::{Category, Classifier};

#[test]
fn published_replies_are_classified() {
    let table = include_str!("replies.txt");
    let c = Classifier::default();
    let mut failures = Vec::new();
    let mut n = 0;
    for line in table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let f: Vec<&str> = line.splitn(5, '\t').collect();
        assert_eq!(f.len(), 5, "malformed line: {line}");
        let (category, hard, blocklist, reply) = (f[0], f[1] == "h", f[2], f[4]);
        let category = Category::parse(category).unwrap_or_else(|| panic!("category in {line}"));
        let code: u16 = reply[..3].parse().expect("reply code");
        let status = tern_feedback::classify::find_status(reply);
        let got = c.classify(code, status, reply);
        let want_blocklist = (blocklist != "-").then_some(blocklist);
        if got.category != category
            || got.hard != hard
            || got.blocklist.as_deref() != want_blocklist
        {
            failures.push(format!(
                "{reply}\n    want {category} {} {want_blocklist:?}, got {} {} {:?}",
                if hard { "hard" } else { "soft" },
                got.category,
                if got.hard { "hard" } else { "soft" },
                got.blocklist
            ));
        }
        n += 1;
    }
    assert!(n >= 100, "only {n} replies");
    assert!(
        failures.is_empty(),
        "{} of {n} misclassified:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
