//! `BODY[section]` extraction (RFC 9051 §6.4.5) from the stored bytes and
//! the metadata computed at delivery: no re-parsing of the message.

use imap_codec::imap_types::fetch::{Part, Section};
use tern_store::meta::MessageMeta;

/// Finds the part a part number designates (`1.2` → second child of the
/// first child). A non-multipart message has one part, numbered 1; the
/// numbers after an embedded `message/rfc822` part address the parts of
/// the message inside it (RFC 9051 §6.4.5).
fn part_index(meta: &MessageMeta, path: &Part) -> Option<usize> {
    let mut idx = 0usize;
    // Whether `idx` is a message's root entity (the top level, or the
    // message inside a message/rfc822 part): only there is `1` the body of
    // a single-part entity; a leaf part has no parts below it.
    let mut at_message = true;
    for (depth, n) in path.0.as_ref().iter().enumerate() {
        let n = n.get() as usize;
        let mut p = meta.parts.get(idx)?;
        if depth > 0
            && p.ctype == "message"
            && let Some(&root) = p.children.first()
        {
            idx = root as usize;
            p = meta.parts.get(idx)?;
            at_message = true;
        }
        if p.ctype == "multipart" && !p.children.is_empty() {
            idx = *p.children.get(n - 1)? as usize;
        } else if n != 1 || !at_message {
            return None;
        }
        at_message = false;
    }
    Some(idx)
}

fn header_lines<'a>(raw: &'a [u8], meta: &MessageMeta, names: &[Vec<u8>], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for h in &meta.headers {
        let matched = names
            .iter()
            .any(|n| n.eq_ignore_ascii_case(h.name.as_bytes()));
        if matched != not {
            let field: &'a [u8] = raw
                .get(h.start as usize..h.end as usize)
                .unwrap_or_default();
            out.extend_from_slice(field);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The bytes of `section` of a message (`None` = the whole message).
pub fn extract(raw: &[u8], meta: &MessageMeta, section: Option<&Section<'_>>) -> Vec<u8> {
    let slice = |a: u32, b: u32| raw.get(a as usize..b as usize).unwrap_or_default().to_vec();
    let body_offset = meta.body_offset.min(raw.len() as u32);
    match section {
        None => raw.to_vec(),
        Some(Section::Header(None)) => slice(0, body_offset),
        Some(Section::Text(None)) => slice(body_offset, raw.len() as u32),
        Some(Section::HeaderFields(None, names)) | Some(Section::HeaderFieldsNot(None, names)) => {
            let not = matches!(section, Some(Section::HeaderFieldsNot(..)));
            let names: Vec<Vec<u8>> = names.as_ref().iter().map(|n| n.as_ref().to_vec()).collect();
            if !meta.parsed {
                return b"\r\n".to_vec();
            }
            header_lines(raw, meta, &names, not)
        }
        Some(Section::Part(path)) => match part_index(meta, path) {
            Some(0) if meta.parts.first().is_none_or(|p| p.ctype != "multipart") => {
                slice(body_offset, raw.len() as u32)
            }
            Some(i) => meta
                .parts
                .get(i)
                .map(|p| slice(p.body_offset, p.end_offset))
                .unwrap_or_default(),
            None => Vec::new(),
        },
        Some(Section::Mime(path)) => match part_index(meta, path).and_then(|i| meta.parts.get(i)) {
            Some(p) => slice(p.header_offset, p.body_offset),
            None => Vec::new(),
        },
        // HEADER/TEXT of an enclosed message/rfc822 part: analyse its body.
        Some(Section::Header(Some(path)))
        | Some(Section::Text(Some(path)))
        | Some(Section::HeaderFields(Some(path), _))
        | Some(Section::HeaderFieldsNot(Some(path), _)) => {
            let Some(p) = part_index(meta, path).and_then(|i| meta.parts.get(i)) else {
                return Vec::new();
            };
            let inner_raw = raw
                .get(p.body_offset as usize..p.end_offset as usize)
                .unwrap_or_default();
            let inner = tern_store::meta::analyze(inner_raw);
            let inner_section = match section {
                Some(Section::Header(_)) => Section::Header(None),
                Some(Section::Text(_)) => Section::Text(None),
                Some(Section::HeaderFields(_, n)) => Section::HeaderFields(None, n.clone()),
                Some(Section::HeaderFieldsNot(_, n)) => Section::HeaderFieldsNot(None, n.clone()),
                _ => return Vec::new(),
            };
            extract(inner_raw, &inner, Some(&inner_section))
        }
    }
}

/// Applies `<origin.length>`.
pub fn partial(bytes: Vec<u8>, partial: Option<(u32, std::num::NonZeroU32)>) -> Vec<u8> {
    match partial {
        None => bytes,
        Some((origin, len)) => {
            let start = (origin as usize).min(bytes.len());
            let end = start.saturating_add(len.get() as usize).min(bytes.len());
            bytes[start..end].to_vec()
        }
    }
}

/// The section as it is echoed in the response: `BODY[1.MIME]`.
pub fn section_name(section: Option<&Section<'_>>) -> String {
    fn part(p: &Part) -> String {
        p.0.as_ref()
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(".")
    }
    fn names(
        n: &imap_codec::imap_types::core::Vec1<imap_codec::imap_types::core::AString<'_>>,
    ) -> String {
        n.as_ref()
            .iter()
            .map(|a| String::from_utf8_lossy(a.as_ref()).to_ascii_uppercase())
            .collect::<Vec<_>>()
            .join(" ")
    }
    let with = |p: &Option<Part>, s: &str| match p {
        Some(p) => format!("{}.{s}", part(p)),
        None => s.to_string(),
    };
    match section {
        None => String::new(),
        Some(Section::Part(p)) => part(p),
        Some(Section::Header(p)) => with(p, "HEADER"),
        Some(Section::Text(p)) => with(p, "TEXT"),
        Some(Section::Mime(p)) => format!("{}.MIME", part(p)),
        Some(Section::HeaderFields(p, n)) => format!("{} ({})", with(p, "HEADER.FIELDS"), names(n)),
        Some(Section::HeaderFieldsNot(p, n)) => {
            format!("{} ({})", with(p, "HEADER.FIELDS.NOT"), names(n))
        }
    }
}
