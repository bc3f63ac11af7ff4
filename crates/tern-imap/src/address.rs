//! Address header values (RFC 5322 §3.4) as IMAP sees them: the items of
//! an ENVELOPE address list (RFC 9051 §7.5.2), and the text SEARCH FROM,
//! TO, CC and BCC match against.

/// One item of an ENVELOPE address list (RFC 9051 §7.5.2).
pub enum Item {
    /// A mailbox.
    Mailbox {
        /// Display name.
        name: Option<String>,
        /// Obsolete source route (`@relay1,@relay2`).
        route: Option<String>,
        /// Local part.
        local: String,
        /// Domain.
        domain: String,
    },
    /// `(NIL NIL "name" NIL)`: a group begins.
    GroupStart(String),
    /// `(NIL NIL NIL NIL)`: it ends.
    GroupEnd,
}

/// Parses an address header value into ENVELOPE items, keeping groups
/// (`undisclosed-recipients:;` is a group with no members). Comments and
/// folding are gone (RFC 5322 §3.2.2), encoded words decoded.
pub fn items(raw: &str) -> Vec<Item> {
    let text = format!("To: {}\r\n\r\n", strip_comments(raw));
    let Some(msg) = mail_parser::MessageParser::default().parse(text.as_bytes()) else {
        return vec![];
    };
    let Some(list) = msg.to() else { return vec![] };
    let mailbox = |a: &mail_parser::Addr<'_>| {
        let addr = a.address.as_deref()?;
        // An obsolete source route (RFC 5322 §4.4) comes first:
        // `@relay1,@relay2:user@host`.
        let (route, addr) = match addr.strip_prefix('@').and_then(|_| addr.split_once(':')) {
            Some((route, rest)) => (Some(route.to_string()), rest),
            None => (None, addr),
        };
        let (local, domain) = addr.rsplit_once('@').unwrap_or((addr, ""));
        Some(Item::Mailbox {
            name: a.name.as_deref().map(str::to_string),
            route,
            // A comment beside the `@` leaves white space, which is not
            // part of the address (RFC 5322 §3.4.1, CFWS).
            local: local.trim().to_string(),
            domain: domain.trim().to_string(),
        })
    };
    match list {
        mail_parser::Address::List(l) => l.iter().filter_map(mailbox).collect(),
        mail_parser::Address::Group(groups) => {
            let mut out = Vec::new();
            for g in groups {
                match &g.name {
                    Some(name) => {
                        out.push(Item::GroupStart(name.to_string()));
                        out.extend(g.addresses.iter().filter_map(mailbox));
                        out.push(Item::GroupEnd);
                    }
                    None => out.extend(g.addresses.iter().filter_map(mailbox)),
                }
            }
            out
        }
    }
}

/// The value without its comments (RFC 5322 §3.2.2: nested parentheses,
/// `\\` quoting), each replaced by a space; quoted strings are kept whole.
/// Comments are not part of a display name nor of an address.
fn strip_comments(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let (mut depth, mut quoted, mut escaped) = (0u32, false, false);
    for c in raw.chars() {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(c);
            }
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    out.push(' ');
                }
            }
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// What SEARCH FROM/TO/CC/BCC match (RFC 9051 §6.4.4: "contains the
/// specified string in the envelope structure's … field"): each mailbox as
/// `name <local@domain>` and each group's name, comments and quoting gone.
pub fn search_text(raw: &str) -> String {
    let mut text = String::new();
    for item in items(raw) {
        match item {
            Item::Mailbox {
                name,
                local,
                domain,
                ..
            } => {
                if let Some(n) = name {
                    text.push_str(&n);
                    text.push(' ');
                }
                text.push('<');
                text.push_str(&local);
                if !domain.is_empty() {
                    text.push('@');
                    text.push_str(&domain);
                }
                text.push_str(">, ");
            }
            Item::GroupStart(g) => {
                text.push_str(&g);
                text.push_str(": ");
            }
            Item::GroupEnd => text.push_str("; "),
        }
    }
    text
}

#[cfg(test)]
mod tests {
    /// RFC 5322 Appendix A.5, "White Space, Comments, and Other Oddities":
    /// comments and folding inside addresses are not part of them.
    #[test]
    fn comments_are_not_addresses() {
        let from =
            super::search_text("Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>");
        assert!(from.contains("<pete@silly.test>"), "{from}");
        assert!(!from.contains("account"), "{from}");
        let to = super::search_text(
            "A Group(Some people)\r\n     :Chris Jones <c@(Chris's host.)public.example>,\r\n         joe@example.org,\r\n  John <jdoe@one.test> (my dear friend); (the end of the group)",
        );
        for want in [
            "<c@public.example>",
            "<joe@example.org>",
            "John <jdoe@one.test>",
            "A Group",
        ] {
            assert!(to.contains(want), "{want} in {to}");
        }
    }
}
