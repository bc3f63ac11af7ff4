//! ESEARCH answers: SEARCH RETURN (RFC 4731), SORT RETURN (ESORT, RFC 5267
//! §3), PARTIAL results (RFC 5267 §4.4) and searches kept up to date
//! (CONTEXT=SEARCH and CONTEXT=SORT, RFC 5267 §4: UPDATE, ADDTO,
//! REMOVEFROM, CANCELUPDATE).

use super::tokens::{Token, tokens};
use super::{Session, State, compress, search, sort};
use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::extensions::sort::SortCriterion;
use imap_codec::imap_types::search::SearchKey;
use std::fmt::Write as _;

/// Contexts a session may keep at once; more are refused with NOUPDATE.
pub(super) const MAX_CONTEXTS: usize = 10;

/// The RETURN options of a SEARCH or SORT.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct ReturnOpts {
    pub min: bool,
    pub max: bool,
    pub count: bool,
    pub all: bool,
    pub save: bool,
    /// PARTIAL: positions `first..=last`, 1-based; negative from the end.
    pub partial: Option<(i64, i64)>,
    /// UPDATE: keep the result up to date (CONTEXT).
    pub update: bool,
}

impl ReturnOpts {
    /// `RETURN ()` means ALL (RFC 4731 §3.1).
    fn normalized(mut self, empty: bool) -> Self {
        if empty {
            self.all = true;
        }
        self
    }
}

/// Parses the words of a RETURN list (upper case). Unknown options are an
/// error (BAD, RFC 4731 §3.1).
pub(super) fn parse_return(words: &[String]) -> Result<ReturnOpts, String> {
    let mut o = ReturnOpts::default();
    let mut it = words.iter();
    while let Some(w) = it.next() {
        match w.as_str() {
            "MIN" => o.min = true,
            "MAX" => o.max = true,
            "COUNT" => o.count = true,
            "ALL" => o.all = true,
            "SAVE" => o.save = true,
            "UPDATE" => o.update = true,
            // A hint that the search may be refined (RFC 5267 §4.1).
            "CONTEXT" => {}
            "PARTIAL" => {
                let range = it.next().ok_or("PARTIAL needs a range")?;
                let (a, b) = range.split_once(':').ok_or("PARTIAL needs first:last")?;
                let (a, b): (i64, i64) = (
                    a.parse().map_err(|_| "PARTIAL needs numbers")?,
                    b.parse().map_err(|_| "PARTIAL needs numbers")?,
                );
                // Both from the start or both from the end, never 0.
                if a == 0 || b == 0 || (a > 0) != (b > 0) {
                    return Err("Invalid PARTIAL range".into());
                }
                o.partial = Some((a.min(b), a.max(b)));
            }
            other => return Err(format!("Unknown RETURN option {other}")),
        }
    }
    Ok(o.normalized(words.is_empty()))
}

/// Takes `RETURN (...)` out of a `[UID] SEARCH|SORT RETURN (...) ...`
/// command (RFC 4731, RFC 5267); returns the command without it and the
/// option words, upper case.
pub(super) fn strip_return(bytes: &[u8]) -> Option<(Vec<u8>, Vec<String>)> {
    let line_end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    let upper = bytes[..line_end].to_ascii_uppercase();
    let (at, name_len) = [&b" SEARCH RETURN "[..], b" SORT RETURN "]
        .iter()
        .find_map(|pat| {
            upper
                .windows(pat.len())
                .position(|w| w == *pat)
                .map(|at| (at, pat.len() - 8))
        })?;
    let open = at + name_len + 8;
    if upper.get(open) != Some(&b'(') {
        return None;
    }
    let close = open + upper[open..].iter().position(|&b| b == b')')?;
    let options = String::from_utf8_lossy(&upper[open + 1..close])
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let mut out = bytes[..at + name_len].to_vec();
    out.extend_from_slice(&bytes[close + 1..]);
    Some((out, options))
}

/// Message numbers in the given order as a sequence set: runs that go up
/// by one become ranges, nothing is reordered (RFC 5267 §3: a sorted ALL).
pub(super) fn in_order(ids: &[u32]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let start = ids[i];
        let mut end = start;
        while i + 1 < ids.len() && ids[i + 1] == end.wrapping_add(1) {
            i += 1;
            end = ids[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        });
        i += 1;
    }
    parts.join(",")
}

/// An ESEARCH response (RFC 4731 §3.1) for results `ids`; `sorted` when
/// they come in SORT order (then MIN/MAX are the first and last, RFC 5267
/// §3.1, and ALL keeps the order).
pub(super) fn line(tag: &str, uid: bool, o: &ReturnOpts, ids: &[u32], sorted: bool) -> String {
    let mut line = format!("* ESEARCH (TAG \"{tag}\")");
    if uid {
        line.push_str(" UID");
    }
    let (min, max) = if sorted {
        (ids.first().copied(), ids.last().copied())
    } else {
        (ids.iter().min().copied(), ids.iter().max().copied())
    };
    if o.min
        && let Some(m) = min
    {
        let _ = write!(line, " MIN {m}");
    }
    if o.max
        && let Some(m) = max
    {
        let _ = write!(line, " MAX {m}");
    }
    if o.count {
        let _ = write!(line, " COUNT {}", ids.len());
    }
    if o.all && !ids.is_empty() {
        let set = if sorted { in_order(ids) } else { compress(ids) };
        let _ = write!(line, " ALL {set}");
    }
    if let Some((a, b)) = o.partial {
        // Positions are in result order (ascending for SEARCH).
        let mut ordered = ids.to_vec();
        if !sorted {
            ordered.sort_unstable();
        }
        let n = ordered.len() as i64;
        let (from, to) = if a > 0 {
            (a - 1, b - 1)
        } else {
            (n + a, n + b)
        };
        let picked: Vec<u32> = ordered
            .iter()
            .enumerate()
            .filter(|(i, _)| (*i as i64) >= from && (*i as i64) <= to)
            .map(|(_, id)| *id)
            .collect();
        let set = if picked.is_empty() {
            "NIL".to_string()
        } else if sorted {
            in_order(&picked)
        } else {
            compress(&picked)
        };
        let _ = write!(line, " PARTIAL ({a}:{b} {set})");
    }
    line.push_str("\r\n");
    line
}

/// A search kept up to date (RFC 5267 §4).
pub(super) struct Context {
    /// The tag of the command that asked for it.
    pub tag: String,
    /// UIDs in the answers (else sequence numbers).
    pub uid: bool,
    pub criteria: Vec1<SearchKey<'static>>,
    /// SORT criteria for CONTEXT=SORT.
    pub sort: Option<Vec1<SortCriterion>>,
    /// The result as last reported, as UIDs, in result order.
    pub result: Vec<u32>,
}

/// The ADDTO and REMOVEFROM lines turning `old` into `new` (both UIDs in
/// result order); `to_id` maps a UID to what the client sees. Positions
/// are 1-based for a sorted result and 0 (unordered) for a search.
pub(super) fn updates(
    c: &Context,
    old: &[u32],
    new: &[u32],
    to_id: impl Fn(u32) -> Option<u32>,
) -> Vec<String> {
    let sorted = c.sort.is_some();
    let old_set: std::collections::HashSet<u32> = old.iter().copied().collect();
    let new_set: std::collections::HashSet<u32> = new.iter().copied().collect();
    let head = format!(
        "* ESEARCH (TAG \"{}\"){}",
        c.tag,
        if c.uid { " UID" } else { "" }
    );
    let mut lines = Vec::new();
    let removed: Vec<(usize, u32)> = old
        .iter()
        .enumerate()
        .filter(|(_, u)| !new_set.contains(u))
        .map(|(i, u)| (i + 1, *u))
        .collect();
    if !removed.is_empty() {
        // Removed messages may be gone already: by UID then.
        let pairs: Vec<String> = removed
            .iter()
            .rev()
            .map(|(pos, u)| {
                let id = if c.uid { Some(*u) } else { to_id(*u) };
                let pos = if sorted { *pos } else { 0 };
                format!("{pos} {}", id.unwrap_or(*u))
            })
            .collect();
        lines.push(format!("{head} REMOVEFROM ({})\r\n", pairs.join(" ")));
    }
    let added: Vec<(usize, u32)> = new
        .iter()
        .enumerate()
        .filter(|(_, u)| !old_set.contains(u))
        .map(|(i, u)| (i + 1, *u))
        .collect();
    if !added.is_empty() {
        let pairs: Vec<String> = added
            .iter()
            .filter_map(|(pos, u)| {
                let id = if c.uid { Some(*u) } else { to_id(*u) }?;
                Some(format!("{} {id}", if sorted { *pos } else { 0 }))
            })
            .collect();
        if !pairs.is_empty() {
            lines.push(format!("{head} ADDTO ({})\r\n", pairs.join(" ")));
        }
    }
    lines
}

/// `tag CANCELUPDATE "tag1" …` (RFC 5267 §4.3): the command's tag and the
/// tags named; `None` for any other command.
pub(super) fn cancel_update(bytes: &[u8]) -> Option<(String, Vec<String>)> {
    let toks = tokens(bytes)?;
    let word = |t: &Token| match t {
        Token::Atom(a) | Token::Quoted(a) | Token::Literal(a, _) => {
            Some(String::from_utf8_lossy(a).into_owned())
        }
        _ => None,
    };
    let tag = word(toks.first()?)?;
    if !word(toks.get(1)?)?.eq_ignore_ascii_case("CANCELUPDATE") {
        return None;
    }
    Some((tag, toks[2..].iter().filter_map(word).collect()))
}

impl Session {
    /// Keeps a search up to date; false (and NO [NOUPDATE] sent) when the
    /// session keeps too many already.
    pub(super) fn add_context(
        &mut self,
        tag: &str,
        uid: bool,
        criteria: Vec1<SearchKey<'static>>,
        sort: Option<Vec1<SortCriterion>>,
        result: Vec<u32>,
    ) -> bool {
        if self.contexts.len() >= MAX_CONTEXTS {
            self.tagged(
                tag,
                "NO",
                &format!("[NOUPDATE \"{tag}\"] Too many searches kept up to date"),
            );
            return false;
        }
        self.contexts.retain(|c| c.tag != tag);
        self.contexts.push(Context {
            tag: tag.to_string(),
            uid,
            criteria,
            sort,
            result,
        });
        true
    }

    /// Runs the kept searches again and reports what entered or left them.
    pub(super) async fn update_contexts(&mut self) {
        let State::Selected(v) = &self.state else {
            self.contexts.clear();
            return;
        };
        let mut lines = Vec::new();
        let mut results = Vec::new();
        for c in &self.contexts {
            let found = search::run(c.criteria.as_ref(), v, &self.server.store).await;
            let new: Vec<u32> = match &c.sort {
                None => found.iter().map(|(_, r)| r.uid).collect(),
                Some(criteria) => {
                    let mut facts = self.facts(found).await;
                    sort::sort(&mut facts, criteria.as_ref());
                    facts.iter().map(|f| f.uid).collect()
                }
            };
            if new != c.result {
                lines.extend(updates(c, &c.result, &new, |u| v.seq_of(u)));
            }
            results.push(new);
        }
        for (c, r) in self.contexts.iter_mut().zip(results) {
            c.result = r;
        }
        for l in lines {
            self.out.extend_from_slice(l.as_bytes());
        }
    }

    /// CANCELUPDATE: stops keeping the searches of those tags.
    pub(super) fn cancel_update(&mut self, tag: &str, tags: Vec<String>) {
        if tags.is_empty() {
            self.tagged(tag, "BAD", "CANCELUPDATE needs the tags of the searches");
            return;
        }
        if let Some(unknown) = tags
            .iter()
            .find(|t| !self.contexts.iter().any(|c| &c.tag == *t))
        {
            let text = format!("No search kept up to date has tag {unknown}");
            self.tagged(tag, "NO", &text);
            return;
        }
        self.contexts.retain(|c| !tags.contains(&c.tag));
        self.tagged(tag, "OK", "CANCELUPDATE completed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn return_options() {
        assert!(parse_return(&[]).unwrap().all);
        let o = parse_return(&words("MIN PARTIAL -1:-5 UPDATE CONTEXT")).unwrap();
        assert!(o.min && o.update && !o.all);
        assert_eq!(o.partial, Some((-5, -1)));
        assert!(parse_return(&words("PARTIAL 0:5")).is_err());
        assert!(parse_return(&words("PARTIAL 1:-5")).is_err());
        assert!(parse_return(&words("FOO")).is_err());
    }

    /// RFC 5267 §3 and §4.4, in the shape of its examples.
    #[test]
    fn sorted_and_partial_answers() {
        let all = ReturnOpts {
            all: true,
            min: true,
            max: true,
            ..Default::default()
        };
        assert_eq!(
            line(
                "A",
                true,
                &all,
                &[23765, 23764, 23763, 23761, 23760, 1],
                true
            ),
            "* ESEARCH (TAG \"A\") UID MIN 23765 MAX 1 ALL 23765,23764,23763,23761,23760,1\r\n"
        );
        assert_eq!(in_order(&[5, 6, 7, 2, 3]), "5:7,2:3");
        let partial = ReturnOpts {
            partial: Some((1, 3)),
            ..Default::default()
        };
        assert_eq!(
            line("B", false, &partial, &[9, 4, 7, 1], false),
            "* ESEARCH (TAG \"B\") PARTIAL (1:3 1,4,7)\r\n"
        );
        let last = ReturnOpts {
            partial: Some((-2, -1)),
            ..Default::default()
        };
        assert_eq!(
            line("C", false, &last, &[9, 4, 7, 1], true),
            "* ESEARCH (TAG \"C\") PARTIAL (-2:-1 7,1)\r\n"
        );
        assert_eq!(
            line("D", false, &partial, &[], false),
            "* ESEARCH (TAG \"D\") PARTIAL (1:3 NIL)\r\n"
        );
        let (cmd, opts) = strip_return(b"a UID SORT RETURN (ALL) (DATE) UTF-8 ALL\r\n").unwrap();
        assert_eq!(cmd, b"a UID SORT (DATE) UTF-8 ALL\r\n");
        assert_eq!(opts, ["ALL"]);
    }
}
