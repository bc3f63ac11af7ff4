//! SORT and THREAD (RFC 5256): base subjects, sort keys and the
//! ORDEREDSUBJECT and REFERENCES threading algorithms, over header blocks
//! read in one pass from the store.

use imap_codec::imap_types::extensions::sort::{SortCriterion, SortKey};
use std::cmp::Ordering;
use std::collections::HashMap;
use tern_store::MessageRow;

/// What sorting and threading need from one message.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Sequence number.
    pub seq: u32,
    /// UID.
    pub uid: u32,
    /// Size in bytes.
    pub size: u64,
    /// INTERNALDATE.
    pub arrival: i64,
    /// Date: header (falls back to INTERNALDATE), Unix seconds.
    pub date: i64,
    /// Base subject (RFC 5256 §2.1).
    pub subject: String,
    /// First From/To/Cc mailbox (local part), lower-case.
    pub from: String,
    /// See `from`.
    pub to: String,
    /// See `from`.
    pub cc: String,
    /// Display name of From, else its address.
    pub display_from: String,
    /// Display name of To, else its address.
    pub display_to: String,
    /// Message-ID (without angle brackets).
    pub message_id: Option<String>,
    /// References, then In-Reply-To when References is absent.
    pub references: Vec<String>,
}

fn first_addr(a: Option<&mail_parser::Address<'_>>) -> (String, String) {
    let Some(first) = a.and_then(|a| a.first()) else {
        return (String::new(), String::new());
    };
    // i;ascii-casemap (RFC 4790 §9.2, RFC 5256 §2.2): ASCII folded to
    // upper case, so `[` and `_` sort after letters.
    let addr = first.address.as_deref().unwrap_or("").to_ascii_uppercase();
    let local = addr.split('@').next().unwrap_or("").to_string();
    let display = first
        .name
        .as_deref()
        .map(str::to_ascii_uppercase)
        .unwrap_or_else(|| addr.clone());
    (local, display)
}

fn ids(v: &mail_parser::HeaderValue<'_>) -> Vec<String> {
    match v {
        mail_parser::HeaderValue::Text(t) => vec![t.to_string()],
        mail_parser::HeaderValue::TextList(l) => l.iter().map(|s| s.to_string()).collect(),
        _ => vec![],
    }
}

/// Reads the facts of a message from its header block.
pub fn facts(seq: u32, row: &MessageRow, header: &[u8]) -> Facts {
    let mut f = Facts {
        seq,
        uid: row.uid,
        size: row.size,
        arrival: row.internaldate,
        date: row.internaldate,
        ..Facts::default()
    };
    let Some(msg) = mail_parser::MessageParser::default().parse_headers(header) else {
        return f;
    };
    if let Some(d) = msg.date() {
        f.date = d.to_timestamp();
    }
    f.subject = base_subject(msg.subject().unwrap_or(""));
    (f.from, f.display_from) = first_addr(msg.from());
    (f.to, f.display_to) = first_addr(msg.to());
    (f.cc, _) = first_addr(msg.cc());
    f.message_id = msg.message_id().map(str::to_string);
    f.references = ids(msg.references());
    if f.references.is_empty() {
        f.references = ids(msg.in_reply_to());
    }
    f
}

/// RFC 5256 §2.1 base subject: without "Re:", "Fwd:", "[list]" prefixes and
/// "(fwd)" trailers, whitespace collapsed, case-folded.
/// The end of a `subj-blob` at the start of `s` (RFC 5256 §5:
/// `"[" *BLOBCHAR "]"`, BLOBCHAR excluding `[` and `]`), just past its `]`.
fn blob_end(s: &str) -> Option<usize> {
    let inner = s.strip_prefix('[')?;
    let close = inner.find(']')?;
    (!inner[..close].contains('[')).then_some(close + 2)
}

pub fn base_subject(subject: &str) -> String {
    let mut s: String = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    loop {
        let before = s.clone();
        // Trailers.
        loop {
            let t = s.trim_end();
            if t.to_ascii_lowercase().ends_with("(fwd)") {
                s = t[..t.len() - 5].trim_end().to_string();
            } else {
                s = t.to_string();
                break;
            }
        }
        // Leaders: blobs and re/fw/fwd prefixes.
        loop {
            let t = s.trim_start();
            let lower = t.to_ascii_lowercase();
            let mut rest = None;
            for p in ["re", "fwd", "fw"] {
                if let Some(r) = lower.strip_prefix(p) {
                    let r = r.trim_start();
                    let r = match blob_end(r) {
                        Some(i) => r[i..].trim_start(),
                        None => r,
                    };
                    if let Some(r) = r.strip_prefix(':') {
                        rest = Some(t.len() - r.len());
                        break;
                    }
                }
            }
            if rest.is_none()
                && let Some(i) = blob_end(t)
                && !t[i..].trim().is_empty()
            {
                rest = Some(i);
            }
            match rest {
                Some(i) => s = t[i..].to_string(),
                None => {
                    s = t.to_string();
                    break;
                }
            }
        }
        // "[Fwd: ...]" wrapper.
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("[fwd:") && s.ends_with(']') {
            s = s[5..s.len() - 1].to_string();
        }
        if s == before {
            break;
        }
    }
    // Compared with i;ascii-casemap (RFC 5256 §2.1): ASCII upper case.
    s.to_ascii_uppercase()
}

/// Orders messages by SORT criteria; ties by sequence number.
pub fn sort(facts: &mut [Facts], criteria: &[SortCriterion]) {
    facts.sort_by(|a, b| {
        for c in criteria {
            let o = match c.key {
                SortKey::Arrival => a.arrival.cmp(&b.arrival),
                SortKey::Date => a.date.cmp(&b.date),
                SortKey::Size => a.size.cmp(&b.size),
                SortKey::Subject => a.subject.cmp(&b.subject),
                SortKey::From => a.from.cmp(&b.from),
                SortKey::To => a.to.cmp(&b.to),
                SortKey::Cc => a.cc.cmp(&b.cc),
                SortKey::DisplayFrom => a.display_from.cmp(&b.display_from),
                SortKey::DisplayTo => a.display_to.cmp(&b.display_to),
            };
            let o = if c.reverse { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        a.seq.cmp(&b.seq)
    });
}

/// A thread tree: a message number and its children.
///
/// A thread is as deep as the longest reply chain in a mailbox, which
/// senders choose, so nothing over it recurses: building, formatting and
/// dropping walk explicit stacks.
#[derive(Debug, PartialEq, Eq)]
pub struct Node {
    /// Sequence number or UID (what the command asked for); [`DUMMY`] for
    /// a missing parent that holds its children together.
    pub id: u32,
    /// Replies.
    pub children: Vec<Node>,
}

/// The id of a dummy container: no message has number 0.
pub const DUMMY: u32 = 0;

impl Drop for Node {
    fn drop(&mut self) {
        let mut pending = std::mem::take(&mut self.children);
        while let Some(mut n) = pending.pop() {
            pending.append(&mut n.children);
        }
    }
}

/// Writes threads in RFC 5256 §4 syntax: `(1 2 (3)(4 5))`.
pub fn format_threads(threads: &[Node]) -> String {
    enum Step<'a> {
        Node(&'a Node),
        Text(char),
    }
    let mut out = String::new();
    let mut stack = Vec::new();
    for t in threads {
        stack.push(Step::Text(')'));
        stack.push(Step::Node(t));
        out.push('(');
        while let Some(step) = stack.pop() {
            let n = match step {
                Step::Text(c) => {
                    out.push(c);
                    continue;
                }
                Step::Node(n) => n,
            };
            if n.id == DUMMY {
                // A dummy shows only its children, each in parentheses.
                for c in n.children.iter().rev() {
                    stack.push(Step::Text(')'));
                    stack.push(Step::Node(c));
                    stack.push(Step::Text('('));
                }
                continue;
            }
            out.push_str(&n.id.to_string());
            match n.children.as_slice() {
                [] => {}
                [only] => {
                    out.push(' ');
                    stack.push(Step::Node(only));
                }
                many => {
                    out.push(' ');
                    for c in many.iter().rev() {
                        stack.push(Step::Text(')'));
                        stack.push(Step::Node(c));
                        stack.push(Step::Text('('));
                    }
                }
            }
        }
    }
    out
}

/// ORDEREDSUBJECT (RFC 5256 §3): messages with the same base subject form
/// a thread, ordered by date; the first is the parent of all the others.
pub fn ordered_subject(mut facts: Vec<Facts>, id: impl Fn(&Facts) -> u32) -> Vec<Node> {
    facts.sort_by(|a, b| a.date.cmp(&b.date).then(a.seq.cmp(&b.seq)));
    let mut groups: Vec<(String, Vec<Facts>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for f in facts {
        match index.get(&f.subject) {
            Some(&i) => groups[i].1.push(f),
            None => {
                index.insert(f.subject.clone(), groups.len());
                groups.push((f.subject.clone(), vec![f]));
            }
        }
    }
    groups
        .into_iter()
        .map(|(_, g)| Node {
            id: id(&g[0]),
            children: g[1..]
                .iter()
                .map(|f| Node {
                    id: id(f),
                    children: vec![],
                })
                .collect(),
        })
        .collect()
}

/// REFERENCES (RFC 5256 §3, after Zawinski): each message's References
/// (or In-Reply-To) chain links parent to child, missing messages standing
/// in as dummy containers; loops are cut; dummies are pruned (step 4: an
/// empty one goes, one inside a thread or with a single child gives its
/// children to its parent, one at the root with several children stays
/// and is written `((1)(2))`); threads whose roots share a base subject
/// are merged under the earliest root (step 5, message roots only);
/// siblings and threads ordered by date (a dummy by its first child's).
pub fn references(facts: Vec<Facts>, id: impl Fn(&Facts) -> u32) -> Vec<Node> {
    let n = facts.len();
    let mut by_msgid: HashMap<String, usize> = HashMap::new();
    for (i, f) in facts.iter().enumerate() {
        if let Some(m) = &f.message_id {
            by_msgid.entry(m.clone()).or_insert(i);
        }
    }
    // Containers 0..n are the messages; dummies follow, one per missing id.
    let mut parent: Vec<Option<usize>> = vec![None; n];
    let mut missing: HashMap<String, usize> = HashMap::new();
    for (i, f) in facts.iter().enumerate() {
        let mut chain: Vec<usize> = Vec::with_capacity(f.references.len());
        for r in &f.references {
            let c = match by_msgid.get(r) {
                Some(&p) => p,
                None => *missing.entry(r.clone()).or_insert_with(|| {
                    parent.push(None);
                    parent.len() - 1
                }),
            };
            if c != i && chain.last() != Some(&c) {
                chain.push(c);
            }
        }
        // Step 1A/1B: each reference is the parent of the next, unless
        // it has one already.
        for w in chain.windows(2) {
            if parent[w[1]].is_none() && w[0] != w[1] {
                parent[w[1]] = Some(w[0]);
            }
        }
        // Step 1C: the last reference is the message's parent.
        if let Some(&last) = chain.last() {
            parent[i] = Some(last);
        }
    }
    let total = parent.len();
    // Break cycles: walk up, dropping the link that closes a loop. Each
    // container is walked over once (marked on the way, done after), so a
    // long chain costs its length, not its length squared.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut mark = vec![Mark::New; total];
    let mut path = Vec::new();
    for i in 0..total {
        let mut cur = i;
        while mark[cur] == Mark::New {
            mark[cur] = Mark::OnPath;
            path.push(cur);
            match parent[cur] {
                Some(p) if mark[p] == Mark::OnPath => {
                    parent[cur] = None;
                    break;
                }
                Some(p) => cur = p,
                None => break,
            }
        }
        for j in path.drain(..) {
            mark[j] = Mark::Done;
        }
    }
    // Step 4: prune dummies until nothing changes.
    let mut alive = vec![true; total];
    loop {
        let mut kids: Vec<Vec<usize>> = vec![Vec::new(); total];
        for (c, p) in parent.iter().enumerate() {
            if let Some(p) = p
                && alive[c]
            {
                kids[*p].push(c);
            }
        }
        let mut changed = false;
        for d in n..total {
            if !alive[d] {
                continue;
            }
            let k = &kids[d];
            let at_root = parent[d].is_none();
            if k.is_empty() {
                alive[d] = false;
                changed = true;
            } else if !at_root || k.len() == 1 {
                for &c in k {
                    parent[c] = parent[d];
                }
                alive[d] = false;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); total];
    let mut roots = Vec::new();
    for (c, p) in parent.iter().enumerate() {
        if !alive[c] {
            continue;
        }
        match p {
            Some(p) => children[*p].push(c),
            None => roots.push(c),
        }
    }
    // A dummy's date and sequence are its earliest child's.
    let key = |c: usize| -> (i64, u32) {
        if c < n {
            (facts[c].date, facts[c].seq)
        } else {
            children[c]
                .iter()
                .filter(|&&k| k < n)
                .map(|&k| (facts[k].date, facts[k].seq))
                .min()
                .unwrap_or((i64::MAX, u32::MAX))
        }
    };
    let keys: Vec<(i64, u32)> = (0..total).map(key).collect();
    let by_date = |a: &usize, b: &usize| keys[*a].cmp(&keys[*b]);
    roots.sort_by(by_date);
    // Step 5: merge threads by base subject.
    let mut first_with: HashMap<&str, usize> = HashMap::new();
    let mut kept = Vec::new();
    for r in roots {
        let subject = if r < n { facts[r].subject.as_str() } else { "" };
        match first_with.get(subject) {
            Some(&parent) if !subject.is_empty() => children[parent].push(r),
            _ => {
                if !subject.is_empty() {
                    first_with.insert(subject, r);
                }
                kept.push(r);
            }
        }
    }
    // Build bottom-up: children before parents (reverse pre-order).
    let mut order = Vec::with_capacity(total);
    let mut stack: Vec<usize> = kept.iter().rev().copied().collect();
    while let Some(i) = stack.pop() {
        order.push(i);
        stack.extend(children[i].iter().copied());
    }
    let mut built: Vec<Option<Node>> = (0..total).map(|_| None).collect();
    for &i in order.iter().rev() {
        let mut kids = std::mem::take(&mut children[i]);
        kids.sort_by(by_date);
        built[i] = Some(Node {
            id: if i < n { id(&facts[i]) } else { DUMMY },
            children: kids.into_iter().filter_map(|k| built[k].take()).collect(),
        });
    }
    kept.into_iter().filter_map(|r| built[r].take()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_subjects() {
        assert_eq!(
            base_subject("Re: Fwd: [list] Hello  world (fwd)"),
            "HELLO WORLD"
        );
        assert_eq!(base_subject("RE[2]: test"), "TEST");
        assert_eq!(base_subject("[Fwd: Re: thing]"), "THING");
        assert_eq!(base_subject("[only]"), "[ONLY]");
        assert_eq!(base_subject("Re: [Fwd: [Fwd: Re: deep] ]"), "DEEP");
        assert_eq!(base_subject("fwd: RE: [x] Fw: [FWD: hi]"), "HI");
        // i;ascii-casemap folds to upper case: '[' and '_' sort after letters.
        let mut v = vec![
            base_subject("_under"),
            base_subject("zeta"),
            base_subject("apple"),
        ];
        v.sort();
        assert_eq!(v, ["APPLE", "ZETA", "_UNDER"]);
    }

    #[test]
    fn thread_format() {
        let t = vec![
            Node {
                id: 1,
                children: vec![Node {
                    id: 2,
                    children: vec![],
                }],
            },
            Node {
                id: 3,
                children: vec![
                    Node {
                        id: 4,
                        children: vec![],
                    },
                    Node {
                        id: 5,
                        children: vec![],
                    },
                ],
            },
        ];
        assert_eq!(format_threads(&t), "(1 2)(3 (4)(5))");
    }

    #[test]
    fn deep_reply_chain() {
        // 100,000 messages, each replying to the one before (the first to
        // nothing, or in a loop to the last).
        let n = 100_000u32;
        let chain = |looped: bool| -> Vec<Facts> {
            (1..=n)
                .map(|i| Facts {
                    seq: i,
                    uid: i,
                    date: i64::from(i),
                    message_id: Some(format!("m{i}")),
                    references: match (i, looped) {
                        (1, false) => vec![],
                        (1, true) => vec![format!("m{n}")],
                        _ => vec![format!("m{}", i - 1)],
                    },
                    ..Facts::default()
                })
                .collect()
        };
        let t = references(chain(false), |f| f.seq);
        let s = format_threads(&t);
        assert!(s.starts_with("(1 2 3 "), "{}", &s[..20]);
        assert!(s.ends_with(" 99999 100000)"));
        drop(t);
        // A loop of references through every message is cut once.
        let t = references(chain(true), |f| f.seq);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn references_tree() {
        let f = |seq, mid: &str, refs: &[&str], date| Facts {
            seq,
            uid: seq,
            date,
            message_id: Some(mid.into()),
            references: refs.iter().map(|s| s.to_string()).collect(),
            ..Facts::default()
        };
        let mut facts = vec![
            f(1, "a", &[], 1),
            f(2, "b", &["a"], 2),
            f(3, "c", &["a", "b"], 3),
            f(4, "d", &["missing", "a"], 4),
            f(5, "e", &[], 5),
            f(6, "g", &[], 6),
        ];
        facts[5].subject = "same".into();
        facts[4].subject = "same".into();
        let t = references(facts, |f| f.seq);
        assert_eq!(
            format_threads(&t),
            "(1 (2 3)(4))(5 6)",
            "5 and 6 merged by subject"
        );
        // Step 4B: two replies to a message that is not here stay together
        // under a dummy at the root; a lone one is promoted.
        let facts = vec![
            f(1, "x", &["gone"], 1),
            f(2, "y", &["gone"], 2),
            f(3, "z", &["other-gone"], 3),
            f(4, "w", &["gone2", "z"], 4),
        ];
        let t = references(facts, |f| f.seq);
        assert_eq!(format_threads(&t), "((1)(2))(3 4)");
    }
}
