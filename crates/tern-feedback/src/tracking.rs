//! Engagement tracking (opt-in): an HTML part's links are rewritten to
//! signed redirects and an open pixel is added, before the message is
//! signed. A redirect goes only to the URL that was in the message (the
//! token carries it under the signature: no open redirect); a forged
//! token is a 404. Text parts are never touched.
//!
//! Opens and clicks by machines are flagged, not dropped, so that human
//! rates leave them out: Apple Mail Privacy Protection fetches every
//! pixel from Apple's network (17.0.0.0/8) whether the message is read or
//! not; link scanners of mail security gateways follow every link seconds
//! after delivery, often with tell-tale user agents or `HEAD` requests.
//! Gmail's and Yahoo's image proxies fetch when the person opens the
//! message, so they count as people.

use crate::token::{Keys, MAX_TRACKING_TOKEN};
use lol_html::html_content::ContentType;
use lol_html::{RewriteStrSettings, element, rewrite_str};
use std::cell::Cell;
use std::net::IpAddr;

/// What to track in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tracking {
    /// Add the open pixel.
    pub opens: bool,
    /// Rewrite links.
    pub clicks: bool,
}

/// Why an HTML part could not be rewritten.
#[derive(Debug, thiserror::Error)]
#[error("the HTML part could not be rewritten for tracking: {0}")]
pub struct RewriteError(String);

/// The HTML with links rewritten to `{base}/t/c/TOKEN` and the pixel
/// `{base}/t/o/TOKEN` added (at the end of `<body>`, or of the document
/// without one). Only `http`/`https` links are rewritten, and not those
/// marked `data-notrack` (the attribute is removed).
pub fn rewrite(
    html: &str,
    base: &str,
    keys: &Keys,
    queue_id: &str,
    recipient: &str,
    what: Tracking,
) -> Result<String, RewriteError> {
    let base = base.trim_end_matches('/');
    let saw_body = Cell::new(false);
    let pixel = format!(
        "<img src=\"{base}/t/o/{}\" width=\"1\" height=\"1\" alt=\"\" style=\"display:block;border:0;width:1px;height:1px\">",
        keys.open_token(queue_id, recipient)
    );
    let mut handlers = Vec::new();
    if what.clicks {
        handlers.push(element!("a[href]", |el| {
            if el.has_attribute("data-notrack") {
                el.remove_attribute("data-notrack");
                return Ok(());
            }
            let Some(href) = el.get_attribute("href") else {
                return Ok(());
            };
            // The URL as a browser follows it: attribute values keep their
            // character references (`&amp;`).
            let decoded = decode_references(href.trim());
            let url = decoded.as_str();
            let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
            if !(lower.starts_with("http://") || lower.starts_with("https://")) {
                return Ok(());
            }
            let token = keys.click_token(queue_id, recipient, url);
            if token.len() <= MAX_TRACKING_TOKEN {
                el.set_attribute("href", &format!("{base}/t/c/{token}"))?;
            }
            Ok(())
        }));
    }
    if what.opens {
        handlers.push(element!("body", |el| {
            saw_body.set(true);
            el.append(&pixel, ContentType::Html);
            Ok(())
        }));
    }
    if handlers.is_empty() {
        return Ok(html.to_string());
    }
    let mut out = rewrite_str(
        html,
        RewriteStrSettings {
            element_content_handlers: handlers,
            ..RewriteStrSettings::new()
        },
    )
    .map_err(|e| RewriteError(e.to_string()))?;
    if what.opens && !saw_body.get() {
        out.push_str(&pixel);
    }
    Ok(out)
}

/// HTML character references in an attribute value decoded (the numeric
/// ones and the named ones URLs contain; others are left as written).
fn decode_references(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest[..rest.len().min(12)].find(';');
        let decoded = end.and_then(|e| {
            let name = &rest[1..e];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => {
                    let n = if let Some(h) = name.strip_prefix("#x").or(name.strip_prefix("#X")) {
                        u32::from_str_radix(h, 16).ok()
                    } else {
                        name.strip_prefix('#').and_then(|d| d.parse().ok())
                    };
                    n.and_then(char::from_u32)
                }
            };
            c.map(|c| (c, e + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Why an open or click is a machine's, if it is.
pub fn machine(
    user_agent: Option<&str>,
    ip: IpAddr,
    head_request: bool,
    seconds_after_delivery: Option<i64>,
    is_open: bool,
) -> Option<&'static str> {
    if head_request {
        return Some("head_request");
    }
    let ua = user_agent.unwrap_or("").trim();
    if ua.is_empty() {
        return Some("no_user_agent");
    }
    let apple_network = matches!(ip, IpAddr::V4(v4) if v4.octets()[0] == 17);
    if is_open && (apple_network || ua == "Mozilla/5.0") {
        return Some("apple_mail_privacy_protection");
    }
    let lower = ua.to_ascii_lowercase();
    if SCANNERS.iter().any(|s| lower.contains(s)) {
        return Some("scanner");
    }
    if !is_open && seconds_after_delivery.is_some_and(|s| (0..10).contains(&s)) {
        return Some("too_soon_after_delivery");
    }
    None
}

/// User agents of link scanners, crawlers and HTTP libraries.
const SCANNERS: &[&str] = &[
    "bot",
    "spider",
    "crawler",
    "scanner",
    "python",
    "curl/",
    "wget",
    "go-http-client",
    "java/",
    "okhttp",
    "libwww",
    "httpclient",
    "barracuda",
    "mimecast",
    "proofpoint",
    "symantec",
    "forcepoint",
    "trendmicro",
    "safelinks",
    "microsoft office existence discovery",
    "headlesschrome",
    "phantomjs",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Tracked;

    const Q: &str = "0K6R4G2M9Q1ZX3A";

    #[test]
    fn links_and_pixel() {
        let k = Keys::new(b"0123456789abcdef0123456789abcdef");
        let html = "<html><body><p>Hi <a href=\"https://shop.example/x?a=1&amp;b=2\">shop</a> \
                    <a href=\"mailto:help@example.com\">help</a> <a data-notrack href=\"https://example.com/keep\">k</a> \
                    <a href='#top'>top</a></p></body></html>";
        let out = rewrite(
            html,
            "https://track.example.com/",
            &k,
            Q,
            "ann@example.net",
            Tracking {
                opens: true,
                clicks: true,
            },
        )
        .unwrap();
        assert!(out.contains("href=\"mailto:help@example.com\""));
        assert!(out.contains("href=\"https://example.com/keep\""));
        assert!(!out.contains("data-notrack"));
        assert!(out.contains("href='#top'"));
        let start = out.find("https://track.example.com/t/c/").unwrap()
            + "https://track.example.com/t/c/".len();
        let token = &out[start..start + out[start..].find('"').unwrap()];
        match k.read_tracking(token).unwrap() {
            // The URL as the browser would follow it (entities decoded).
            Tracked::Click { url, recipient, .. } => {
                assert_eq!(url, "https://shop.example/x?a=1&b=2");
                assert_eq!(recipient, "ann@example.net");
            }
            t => panic!("{t:?}"),
        }
        let pixel = out.find("/t/o/").unwrap();
        assert!(pixel < out.find("</body>").unwrap());
        // Without a body, the pixel goes at the end; with nothing asked, nothing changes.
        let bare = rewrite(
            "<p>x</p>",
            "https://t.example",
            &k,
            Q,
            "a@b.c",
            Tracking {
                opens: true,
                clicks: false,
            },
        )
        .unwrap();
        assert!(bare.starts_with("<p>x</p><img src=\"https://t.example/t/o/"));
        assert_eq!(
            rewrite(
                "<p>x</p>",
                "https://t.example",
                &k,
                Q,
                "a@b.c",
                Tracking::default()
            )
            .unwrap(),
            "<p>x</p>"
        );
    }

    #[test]
    fn references() {
        assert_eq!(
            decode_references("a&amp;b&#38;c&#x26;d&nbsp;e&"),
            "a&b&c&d&nbsp;e&"
        );
    }

    #[test]
    fn machines_are_told_apart() {
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let chrome = Some(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
        );
        assert_eq!(machine(chrome, ip, false, Some(3600), true), None);
        assert_eq!(machine(chrome, ip, false, Some(3600), false), None);
        assert_eq!(
            machine(chrome, ip, false, Some(2), false),
            Some("too_soon_after_delivery")
        );
        assert_eq!(
            machine(Some("Mozilla/5.0"), ip, false, None, true),
            Some("apple_mail_privacy_protection")
        );
        assert_eq!(
            machine(chrome, "17.58.1.2".parse().unwrap(), false, None, true),
            Some("apple_mail_privacy_protection")
        );
        assert_eq!(
            machine(
                Some(
                    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
                ),
                ip,
                false,
                None,
                true
            ),
            None
        );
        assert_eq!(
            machine(Some("python-requests/2.31"), ip, false, None, false),
            Some("scanner")
        );
        assert_eq!(machine(None, ip, false, None, false), Some("no_user_agent"));
        assert_eq!(machine(chrome, ip, true, None, false), Some("head_request"));
    }
}
