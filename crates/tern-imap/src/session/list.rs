//! LIST and LSUB: RFC 9051 §6.3.9 with LIST-EXTENDED (RFC 5258), LIST-STATUS
//! (RFC 5819) and SPECIAL-USE (RFC 6154).
//!
//! imap-codec parses only the basic `LIST reference pattern`, so the
//! extended command is parsed here: selection options, several patterns in
//! parentheses, and return options, each checked against what the RFCs
//! define (anything else is BAD, RFC 5258 §3).

use super::tokens::{Token, tokens};
use super::{Session, store_err};
use crate::view;
use crate::write::Str;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use tern_store::MailboxRow;

/// A LIST or LSUB command, parsed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct ListCommand {
    /// The reference name.
    pub reference: Vec<u8>,
    /// The mailbox patterns (one unless given in parentheses).
    pub patterns: Vec<Vec<u8>>,
    /// Selection options, upper case.
    pub selection: Vec<String>,
    /// Return options but STATUS, upper case.
    pub returns: Vec<String>,
    /// The STATUS return option's items (RFC 5819), upper case.
    pub status: Vec<String>,
}

const SELECTION: [&str; 4] = ["SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"];
const RETURNS: [&str; 3] = ["SUBSCRIBED", "CHILDREN", "SPECIAL-USE"];
const STATUS_ITEMS: [&str; 9] = [
    "MAILBOXID",
    "MESSAGES",
    "UIDNEXT",
    "UIDVALIDITY",
    "UNSEEN",
    "SIZE",
    "RECENT",
    "HIGHESTMODSEQ",
    "DELETED",
];

/// What a command's bytes are, seen from LIST's side.
pub(super) enum Parsed {
    /// Not a LIST command: the codec decodes it.
    Other,
    /// A LIST command that breaks the grammar: BAD with this text.
    Bad(String, String),
    /// A LIST command: its tag and arguments.
    List(String, ListCommand),
}

fn upper(t: &[u8]) -> String {
    String::from_utf8_lossy(t).to_ascii_uppercase()
}

/// Parses `tag LIST …` (RFC 5258 §4 grammar:
/// `"LIST" [SP list-select-opts] SP mailbox SP mbox-or-pat
/// [SP list-return-opts]`).
pub(super) fn parse(bytes: &[u8]) -> Parsed {
    let Some(sp) = bytes.iter().position(|&b| b == b' ') else {
        return Parsed::Other;
    };
    let rest = &bytes[sp + 1..];
    if rest.len() < 5 || !rest[..5].eq_ignore_ascii_case(b"LIST ") {
        return Parsed::Other;
    }
    let tag = String::from_utf8_lossy(&bytes[..sp]).to_string();
    match parse_args(&rest[5..]) {
        Ok(cmd) => Parsed::List(tag, cmd),
        Err(why) => Parsed::Bad(tag, why),
    }
}

fn parse_args(args: &[u8]) -> Result<ListCommand, String> {
    let toks = tokens(args).ok_or("Syntax error in LIST")?;
    let mut it = toks.into_iter().peekable();
    let mut cmd = ListCommand::default();
    let word = |t: Option<Token>| match t {
        Some(Token::Atom(a) | Token::Quoted(a) | Token::Literal(a, _)) => Ok(a),
        _ => Err("Syntax error in LIST".to_string()),
    };
    // Selection options.
    if it.peek() == Some(&Token::Open) {
        it.next();
        loop {
            match it.next() {
                Some(Token::Close) => break,
                Some(Token::Atom(a)) => {
                    let o = upper(&a);
                    if !SELECTION.contains(&o.as_str()) {
                        return Err(format!("Unknown LIST selection option {o}"));
                    }
                    cmd.selection.push(o);
                }
                _ => return Err("Syntax error in LIST selection options".into()),
            }
        }
    }
    cmd.reference = word(it.next())?;
    // One pattern, or several in parentheses.
    if it.peek() == Some(&Token::Open) {
        it.next();
        loop {
            match it.next() {
                Some(Token::Close) => break,
                Some(Token::Atom(a) | Token::Quoted(a) | Token::Literal(a, _)) => {
                    cmd.patterns.push(a)
                }
                _ => return Err("Syntax error in LIST patterns".into()),
            }
        }
        if cmd.patterns.is_empty() {
            return Err("LIST needs a pattern".into());
        }
    } else {
        cmd.patterns.push(word(it.next())?);
    }
    // Return options.
    if let Some(t) = it.next() {
        if !matches!(&t, Token::Atom(a) if upper(a) == "RETURN") || it.next() != Some(Token::Open) {
            return Err("Syntax error in LIST: RETURN (options) expected".into());
        }
        loop {
            match it.next() {
                Some(Token::Close) => break,
                Some(Token::Atom(a)) if upper(&a) == "STATUS" => {
                    if it.next() != Some(Token::Open) {
                        return Err("Syntax error in LIST RETURN STATUS".into());
                    }
                    loop {
                        match it.next() {
                            Some(Token::Close) => break,
                            Some(Token::Atom(a)) => {
                                let item = upper(&a);
                                if !STATUS_ITEMS.contains(&item.as_str()) {
                                    return Err(format!("Unknown STATUS item {item}"));
                                }
                                cmd.status.push(item);
                            }
                            _ => return Err("Syntax error in LIST RETURN STATUS".into()),
                        }
                    }
                }
                Some(Token::Atom(a)) => {
                    let o = upper(&a);
                    if !RETURNS.contains(&o.as_str()) {
                        return Err(format!("Unknown LIST return option {o}"));
                    }
                    cmd.returns.push(o);
                }
                _ => return Err("Syntax error in LIST return options".into()),
            }
        }
        if it.next().is_some() {
            return Err("Syntax error in LIST: unexpected arguments".into());
        }
    }
    // RFC 5258 §3: RECURSIVEMATCH alone (or with REMOTE) means nothing.
    if cmd.selection.iter().any(|o| o == "RECURSIVEMATCH")
        && !cmd
            .selection
            .iter()
            .any(|o| o == "SUBSCRIBED" || o == "SPECIAL-USE")
    {
        return Err("RECURSIVEMATCH needs another selection option".into());
    }
    Ok(cmd)
}

/// One line of the answer.
struct Entry<'a> {
    name: String,
    mailbox: Option<&'a MailboxRow>,
    subscribed: bool,
    /// A subscribed name lies below it (CHILDINFO, RFC 5258 §3.5).
    subscribed_child: bool,
}

/// The ancestors of `a/b/c`: `a`, `a/b`.
fn ancestors(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices('/').map(move |(i, _)| &name[..i])
}

impl Session {
    /// Answers LIST (or LSUB with `lsub`).
    pub(super) async fn list(&mut self, tag: &str, cmd: ListCommand, lsub: bool) {
        let what = if lsub { "LSUB" } else { "LIST" };
        if !lsub && cmd.patterns.len() == 1 && cmd.patterns[0].is_empty() {
            // The hierarchy delimiter and root (RFC 9051 §6.3.9).
            let _ = write!(Str(&mut self.out), "* LIST (\\Noselect) \"/\" \"\"\r\n");
            self.tagged(tag, "OK", "LIST completed");
            return;
        }
        let account = self.account_id();
        let (boxes, subscriptions) = match (
            self.server.store.mailboxes(account).await,
            self.server.store.subscriptions(account).await,
        ) {
            (Ok(b), Ok(s)) => (b, s),
            (Err(e), _) | (_, Err(e)) => {
                self.tagged(tag, "NO", &format!("{} {e}", store_err(&e)));
                return;
            }
        };
        let full: Vec<Vec<u8>> = cmd
            .patterns
            .iter()
            .filter(|p| !p.is_empty())
            // RFC 9051 §6.3.9: the reference is put before the pattern as
            // it is (`archive/` + `%` = `archive/%`, `a` + `*` = `a*`,
            // which matches `a` itself); a pattern starting at the root
            // stands alone.
            .map(|p| {
                if p.starts_with(b"/") {
                    return p.clone();
                }
                let mut f = cmd.reference.clone();
                f.extend_from_slice(p);
                f
            })
            .collect();
        let matches = |name: &str| {
            full.iter().any(|p| {
                crate::pattern::matches(p, name.as_bytes())
                    || (name == "INBOX"
                        && crate::pattern::matches(&p.to_ascii_uppercase(), b"INBOX"))
            })
        };
        let has = |v: &[String], x: &str| v.iter().any(|o| o == x);
        let by_name: HashMap<&str, &MailboxRow> =
            boxes.iter().map(|b| (b.name.as_str(), b)).collect();
        let subscribed: HashSet<&str> = subscriptions.iter().map(String::as_str).collect();
        let select_subscribed = lsub || has(&cmd.selection, "SUBSCRIBED");
        let recursive = has(&cmd.selection, "RECURSIVEMATCH");
        let only_special = has(&cmd.selection, "SPECIAL-USE");
        let percent = full.iter().any(|p| p.contains(&b'%'));

        let mut names: BTreeSet<&str> = BTreeSet::new();
        if select_subscribed {
            names.extend(subscribed.iter().filter(|n| matches(n)));
        } else {
            names.extend(
                boxes
                    .iter()
                    .filter(|b| !only_special || b.special_use.is_some())
                    .map(|b| b.name.as_str())
                    .filter(|n| matches(n)),
            );
        }
        // Names that are not selected themselves but have a selected name
        // below them: with RECURSIVEMATCH always (listed with CHILDINFO),
        // and with `%` as levels of hierarchy (RFC 9051 §6.3.9, RFC 3501
        // §6.3.9 for LSUB) — for LIST only where no mailbox exists.
        let below: Vec<&str> = if select_subscribed {
            subscribed.iter().copied().collect()
        } else if only_special {
            boxes
                .iter()
                .filter(|b| b.special_use.is_some())
                .map(|b| b.name.as_str())
                .collect()
        } else {
            boxes.iter().map(|b| b.name.as_str()).collect()
        };
        let mut childinfo: HashSet<&str> = HashSet::new();
        let mut parents: BTreeSet<&str> = BTreeSet::new();
        for name in &below {
            for parent in ancestors(name) {
                if !matches(parent) {
                    continue;
                }
                if recursive {
                    childinfo.insert(parent);
                    parents.insert(parent);
                } else if percent
                    && !names.contains(parent)
                    && if lsub {
                        true
                    } else {
                        !select_subscribed && !by_name.contains_key(parent)
                    }
                {
                    parents.insert(parent);
                }
            }
        }
        let mut entries: Vec<Entry<'_>> = names
            .union(&parents)
            .map(|&n| Entry {
                name: n.to_string(),
                mailbox: by_name.get(n).copied(),
                subscribed: subscribed.contains(n),
                subscribed_child: childinfo.contains(n) && select_subscribed,
            })
            .collect();
        entries.sort_by(|a, b| (a.name != "INBOX", &a.name).cmp(&(b.name != "INBOX", &b.name)));

        let show_subscribed = select_subscribed || has(&cmd.returns, "SUBSCRIBED") || self.rev2;
        for e in &entries {
            let selected = names.contains(e.name.as_str());
            let mut attrs: Vec<&str> = Vec::new();
            if lsub {
                // LSUB (RFC 3501 §6.3.9): a level shown only for what is
                // subscribed below it cannot be selected from here.
                if !selected {
                    attrs.push("\\Noselect");
                }
            } else {
                let has_children = boxes.iter().any(|b| {
                    b.name.len() > e.name.len() + 1
                        && b.name.starts_with(&e.name)
                        && b.name.as_bytes()[e.name.len()] == b'/'
                });
                match e.mailbox {
                    None => attrs.push("\\NonExistent"),
                    Some(b) => {
                        if let Some(u) = &b.special_use {
                            attrs.push(u);
                        }
                    }
                }
                if e.mailbox.is_some() || has_children {
                    attrs.insert(
                        0,
                        if has_children {
                            "\\HasChildren"
                        } else {
                            "\\HasNoChildren"
                        },
                    );
                }
                if e.subscribed && show_subscribed {
                    attrs.push("\\Subscribed");
                }
            }
            let _ = write!(Str(&mut self.out), "* {what} ({}) \"/\" ", attrs.join(" "));
            view::name(&mut self.out, &e.name);
            if e.subscribed_child {
                self.out
                    .extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
            }
            self.out.extend_from_slice(b"\r\n");
            if let (false, Some(b)) = (cmd.status.is_empty(), e.mailbox) {
                self.list_status(b, &cmd.status).await;
            }
        }
        self.tagged(tag, "OK", &format!("{what} completed"));
    }

    /// The STATUS line LIST-STATUS adds for a mailbox (RFC 5819 §2).
    async fn list_status(&mut self, b: &MailboxRow, items: &[String]) {
        let items: Vec<&str> = items.iter().map(String::as_str).collect();
        let parts = self.status_parts(b, &items).await;
        self.out.extend_from_slice(b"* STATUS ");
        view::name(&mut self.out, &b.name);
        let _ = write!(Str(&mut self.out), " ({parts})\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::{ListCommand, Parsed, parse};

    fn list(line: &str) -> ListCommand {
        match parse(line.as_bytes()) {
            Parsed::List(_, c) => c,
            Parsed::Bad(_, why) => panic!("{line}: BAD {why}"),
            Parsed::Other => panic!("{line}: not LIST"),
        }
    }

    fn bad(line: &str) -> String {
        match parse(line.as_bytes()) {
            Parsed::Bad(_, why) => why,
            _ => panic!("{line} should be BAD"),
        }
    }

    /// RFC 5258 §4's grammar, with its examples' shapes.
    #[test]
    fn extended_list_grammar() {
        let c = list("A01 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\" RETURN (CHILDREN)\r\n");
        assert_eq!(c.selection, ["SUBSCRIBED", "RECURSIVEMATCH"]);
        assert_eq!(c.patterns, [b"%".to_vec()]);
        assert_eq!(c.returns, ["CHILDREN"]);
        let c = list(
            "A02 LIST \"\" (\"INBOX\" Drafts {4}\r\nSent) RETURN (STATUS (MESSAGES UNSEEN))\r\n",
        );
        assert_eq!(
            c.patterns,
            [b"INBOX".to_vec(), b"Drafts".to_vec(), b"Sent".to_vec()]
        );
        assert_eq!(c.status, ["MESSAGES", "UNSEEN"]);
        assert!(c.returns.is_empty());
        let c = list("A03 list \"\" *\r\n");
        assert_eq!(
            c,
            ListCommand {
                patterns: vec![b"*".to_vec()],
                ..Default::default()
            }
        );
        assert!(matches!(parse(b"A04 LSUB \"\" *\r\n"), Parsed::Other));
        assert!(matches!(parse(b"A05 LISTX \"\" *\r\n"), Parsed::Other));
    }

    /// RFC 5258 §3: unknown options are BAD; RECURSIVEMATCH needs company.
    #[test]
    fn unknown_options_are_bad() {
        assert!(bad("a LIST (FOO) \"\" *\r\n").contains("FOO"));
        assert!(bad("a LIST \"\" * RETURN (BAR)\r\n").contains("BAR"));
        assert!(bad("a LIST \"\" * RETURN (STATUS (NOPE))\r\n").contains("NOPE"));
        assert!(bad("a LIST (RECURSIVEMATCH) \"\" *\r\n").contains("RECURSIVEMATCH"));
        assert!(bad("a LIST (REMOTE RECURSIVEMATCH) \"\" *\r\n").contains("RECURSIVEMATCH"));
        bad("a LIST \"\" () \r\n");
        bad("a LIST \"\" * EXTRA\r\n");
        bad("a LIST \"\" * RETURN (CHILDREN) x\r\n");
        bad("a LIST \"\r\n");
    }
}
