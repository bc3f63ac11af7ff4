//! A domain's DNS as the world sees it, checked against what Tern needs
//! (`tern dns check DOMAIN`, the dashboard's Domains page): MX, the
//! server's addresses, SPF (one record, at most 10 lookups — RFC 7208
//! §4.5, §4.6.4), each DKIM key published as held (RFC 6376 §3.6.1),
//! DMARC (RFC 7489 §6.1), the MTA-STS record (RFC 8461 §3.1), TLS-RPT
//! (RFC 8460 §3), forward-confirmed reverse DNS of each sending address
//! naming the EHLO host, and DNS blocklists (RFC 5782). Each check is a
//! value with what was found and, when it fails, the exact record or
//! change that fixes it. Checks that need more than DNS (SPF evaluation,
//! the MTA-STS policy over HTTPS) are added by the caller.

use crate::Resolver;
use crate::records::txt_strings;
use serde::Serialize;
use std::net::IpAddr;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// As it should be.
    Pass,
    /// Works, but could be better (a `p=none` DMARC policy).
    Warn,
    /// Wrong or missing: mail suffers.
    Fail,
}

/// One check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// `mx`, `spf`, `dkim:SELECTOR`, `fcrdns:IP`, …
    pub name: String,
    /// Its outcome.
    pub status: Status,
    /// What the DNS says.
    pub found: String,
    /// What to publish or change, when it is not a pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    /// A check with `status`.
    pub fn new(name: impl Into<String>, status: Status, found: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status,
            found: found.into(),
            fix: None,
        }
    }

    /// The fix, kept only when the check did not pass.
    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        if self.status != Status::Pass {
            self.fix = Some(fix.into());
        }
        self
    }

    fn pass_if(name: impl Into<String>, ok: bool, found: impl Into<String>) -> Self {
        Self::new(name, if ok { Status::Pass } else { Status::Fail }, found)
    }
}

/// What the domain should publish.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// The mail domain.
    pub domain: String,
    /// This server's host name: the MX target and the EHLO name.
    pub hostname: String,
    /// The addresses mail leaves from.
    pub sending_ips: Vec<IpAddr>,
    /// Active DKIM keys: selector and the record to publish
    /// (`v=DKIM1; k=…; p=…`).
    pub dkim: Vec<(String, String)>,
    /// DNS blocklists of addresses (`zen.spamhaus.org`).
    pub ip_blocklists: Vec<String>,
    /// DNS blocklists of domains (`dbl.spamhaus.org`).
    pub domain_blocklists: Vec<String>,
}

/// The blocklists asked by default.
pub const DEFAULT_IP_BLOCKLISTS: &[&str] = &[
    "zen.spamhaus.org",
    "bl.spamcop.net",
    "b.barracudacentral.org",
];
/// The domain blocklists asked by default.
pub const DEFAULT_DOMAIN_BLOCKLISTS: &[&str] = &["dbl.spamhaus.org"];

/// Every DNS check of `e.domain`, in a fixed order.
pub async fn check(r: &Resolver, e: &Expected) -> Vec<Check> {
    let mut out = vec![mx(r, e).await, host_addresses(r, e).await];
    out.extend(spf(r, e).await);
    for (selector, record) in &e.dkim {
        out.push(dkim(r, &e.domain, selector, record).await);
    }
    out.push(dmarc(r, &e.domain).await);
    out.push(mta_sts_record(r, &e.domain).await);
    out.push(tls_rpt(r, &e.domain).await);
    for ip in &e.sending_ips {
        out.push(fcrdns(r, *ip, &e.hostname).await);
    }
    out.extend(blocklists(r, e).await);
    out
}

async fn mx(r: &Resolver, e: &Expected) -> Check {
    let (d, h) = (&e.domain, &e.hostname);
    let fix = format!("{d}. 3600 IN MX 10 {h}.");
    match r.mx(d).await {
        Err(err) => Check::new("mx", Status::Fail, format!("lookup failed: {err}")).fix(fix),
        Ok(m) if m.is_empty() => {
            Check::new("mx", Status::Fail, format!("no MX record at {d}")).fix(fix)
        }
        Ok(m) => {
            let list = m
                .iter()
                .map(|m| format!("{} {}", m.preference, m.exchange))
                .collect::<Vec<_>>()
                .join(", ");
            let ours = m.iter().any(|m| m.exchange.eq_ignore_ascii_case(h));
            Check::pass_if("mx", ours, format!("MX {list}")).fix(format!(
                "{fix}  (and remove MX records of hosts that are not yours)"
            ))
        }
    }
}

async fn host_addresses(r: &Resolver, e: &Expected) -> Check {
    let h = &e.hostname;
    match r.ips(h).await {
        Ok(ips) if !ips.is_empty() => {
            let missing: Vec<String> = e
                .sending_ips
                .iter()
                .filter(|ip| !ips.contains(ip))
                .map(IpAddr::to_string)
                .collect();
            let found = format!(
                "{h} has {}",
                ips.iter()
                    .map(IpAddr::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let status = if missing.is_empty() {
                Status::Pass
            } else {
                Status::Warn
            };
            Check::new("host_address", status, found).fix(format!(
                "Mail leaves from {} too: publish {h}. 3600 IN A/AAAA for it, or send only from {h}'s addresses",
                missing.join(", ")
            ))
        }
        Ok(_) => Check::new(
            "host_address",
            Status::Fail,
            format!("{h} has no A or AAAA record"),
        )
        .fix(format!(
            "{h}. 3600 IN A <this server's public IPv4 address>"
        )),
        Err(err) => Check::new(
            "host_address",
            Status::Fail,
            format!("lookup of {h} failed: {err}"),
        )
        .fix(format!(
            "{h}. 3600 IN A <this server's public IPv4 address>"
        )),
    }
}

/// The TXT records at `name` that start with `prefix` (case-insensitive).
async fn records(r: &Resolver, name: &str, prefix: &str) -> Result<Vec<String>, String> {
    let txt = r.txt(name).await.map_err(|e| e.to_string())?;
    Ok(txt
        .into_iter()
        .filter(|t| {
            t.get(..prefix.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
        })
        .collect())
}

/// SPF: one record (`spf`), and its lookups (`spf_lookups`).
pub async fn spf(r: &Resolver, e: &Expected) -> Vec<Check> {
    let d = &e.domain;
    let fix = format!("{d}. 3600 IN TXT {}", txt_strings("v=spf1 mx -all"));
    let found = match records(r, d, "v=spf1").await {
        Err(err) => {
            return vec![Check::new("spf", Status::Fail, format!("lookup failed: {err}")).fix(fix)];
        }
        Ok(f) => f,
    };
    let one = match found.as_slice() {
        [] => {
            return vec![Check::new("spf", Status::Fail, format!("no SPF record at {d}")).fix(fix)];
        }
        [one] => one.clone(),
        many => {
            return vec![
                Check::new(
                    "spf",
                    Status::Fail,
                    format!(
                        "{} SPF records at {d} (RFC 7208 §4.5: a permerror)",
                        many.len()
                    ),
                )
                .fix(format!("Keep one: {fix}")),
            ];
        }
    };
    let mut out = vec![Check::new("spf", Status::Pass, format!("\"{one}\""))];
    let mut seen = Vec::new();
    let n = lookups(r, &one, 0, &mut seen).await;
    out.push(
        Check::pass_if(
            "spf_lookups",
            n <= 10,
            format!("{n} DNS-querying terms (include, a, mx, ptr, exists, redirect); the limit is 10"),
        )
        .fix(format!(
            "Replace include: terms with the ip4:/ip6: ranges they stand for, or drop senders you no longer use; {fix} is enough for mail sent only by Tern"
        )),
    );
    out
}

/// DNS-querying terms of an SPF record, its includes and redirects
/// counted too (RFC 7208 §4.6.4). Loops and depth are cut off.
fn lookups<'a>(
    r: &'a Resolver,
    record: &'a str,
    depth: usize,
    seen: &'a mut Vec<String>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = usize> + Send + 'a>> {
    Box::pin(async move {
        let mut n = 0;
        for term in record.split_whitespace().skip(1) {
            let t = term
                .trim_start_matches(['+', '-', '~', '?'])
                .to_ascii_lowercase();
            let (name, target) = match t.split_once([':', '=']) {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (t.clone(), None),
            };
            match name.as_str() {
                "a" | "mx" | "ptr" | "exists" => n += 1,
                "include" | "redirect" => {
                    n += 1;
                    if let Some(target) = target
                        && depth < 10
                        && !seen.contains(&target)
                    {
                        seen.push(target.clone());
                        if let Ok(found) = records(r, &target, "v=spf1").await
                            && let [inner] = found.as_slice()
                        {
                            n += lookups(r, inner, depth + 1, seen).await;
                        }
                    }
                }
                _ => {}
            }
        }
        n
    })
}

/// The `p=` of a DKIM record, whitespace removed.
fn dkim_p(txt: &str) -> Option<String> {
    txt.split(';').find_map(|tag| {
        let (k, v) = tag.split_once('=')?;
        (k.trim() == "p").then(|| v.chars().filter(|c| !c.is_whitespace()).collect())
    })
}

/// One DKIM key published as held (`dkim:SELECTOR`): `record` is the
/// TXT value that should be there.
pub async fn dkim(r: &Resolver, d: &str, selector: &str, record: &str) -> Check {
    let name = format!("{selector}._domainkey.{d}");
    let public = dkim_p(record).unwrap_or_default();
    let public = public.as_str();
    let fix = format!("{name}. 3600 IN TXT {}", txt_strings(record));
    let check = format!("dkim:{selector}");
    match r.txt(&name).await {
        Err(err) => Check::new(check, Status::Fail, format!("lookup failed: {err}")).fix(fix),
        Ok(txt) => {
            let ps: Vec<String> = txt.iter().filter_map(|t| dkim_p(t)).collect();
            if ps.is_empty() {
                Check::new(check, Status::Fail, format!("no DKIM key at {name}")).fix(fix)
            } else if ps.iter().any(|p| p == public) {
                Check::new(
                    check,
                    Status::Pass,
                    format!("{name} publishes the active key"),
                )
            } else if ps.iter().any(String::is_empty) {
                Check::new(check, Status::Fail, format!("{name} is revoked (empty p=)")).fix(fix)
            } else {
                Check::new(
                    check,
                    Status::Fail,
                    format!("{name} publishes a different key than the one Tern signs with"),
                )
                .fix(fix)
            }
        }
    }
}

/// DMARC (`dmarc`): a pass with quarantine or reject, a warning with none.
pub async fn dmarc(r: &Resolver, d: &str) -> Check {
    let name = format!("_dmarc.{d}");
    let fix = format!(
        "{name}. 3600 IN TXT {}",
        txt_strings(&format!("v=DMARC1; p=none; rua=mailto:dmarc-reports@{d}"))
    );
    match records(r, &name, "v=DMARC1").await {
        Err(err) => Check::new("dmarc", Status::Fail, format!("lookup failed: {err}")).fix(fix),
        Ok(f) => match f.as_slice() {
            [] => Check::new("dmarc", Status::Fail, format!("no DMARC record at {name}")).fix(fix),
            [one] => {
                let p = one
                    .split(';')
                    .find_map(|t| {
                        let (k, v) = t.split_once('=')?;
                        (k.trim().eq_ignore_ascii_case("p")).then(|| v.trim().to_ascii_lowercase())
                    })
                    .unwrap_or_default();
                match p.as_str() {
                    "quarantine" | "reject" => {
                        Check::new("dmarc", Status::Pass, format!("policy {p}: \"{one}\""))
                    }
                    "none" => Check::new(
                        "dmarc",
                        Status::Warn,
                        format!("policy none (monitoring only): \"{one}\""),
                    )
                    .fix(format!(
                        "Once the aggregate reports show only your own mail failing nothing, publish p=quarantine, then p=reject at {name}"
                    )),
                    _ => Check::new(
                        "dmarc",
                        Status::Fail,
                        format!("no valid p= tag (RFC 7489 §6.3): \"{one}\""),
                    )
                    .fix(fix),
                }
            }
            many => Check::new(
                "dmarc",
                Status::Fail,
                format!(
                    "{} DMARC records at {name}: none applies (RFC 7489 §6.6.3)",
                    many.len()
                ),
            )
            .fix(format!("Keep one: {fix}")),
        },
    }
}

async fn mta_sts_record(r: &Resolver, d: &str) -> Check {
    let name = format!("_mta-sts.{d}");
    let fix = format!(
        "{name}. 3600 IN TXT \"v=STSv1; id=<a new id whenever the policy changes>\"  (see `tern dns records {d}`)"
    );
    match records(r, &name, "v=STSv1").await {
        Err(err) => Check::new("mta_sts", Status::Fail, format!("lookup failed: {err}")).fix(fix),
        Ok(f) => match f.as_slice() {
            [one] if one.contains("id=") => {
                Check::new("mta_sts", Status::Pass, format!("\"{one}\""))
            }
            [] => Check::new(
                "mta_sts",
                Status::Fail,
                format!("no MTA-STS record at {name}"),
            )
            .fix(fix),
            other => Check::new(
                "mta_sts",
                Status::Fail,
                format!("not one valid record (RFC 8461 §3.1): {other:?}"),
            )
            .fix(fix),
        },
    }
}

async fn tls_rpt(r: &Resolver, d: &str) -> Check {
    let name = format!("_smtp._tls.{d}");
    let fix = format!(
        "{name}. 3600 IN TXT {}",
        txt_strings(&format!("v=TLSRPTv1; rua=mailto:tls-reports@{d}"))
    );
    match records(r, &name, "v=TLSRPTv1").await {
        Err(err) => Check::new("tls_rpt", Status::Fail, format!("lookup failed: {err}")).fix(fix),
        Ok(f) => match f.as_slice() {
            [one] if one.contains("rua=") => {
                Check::new("tls_rpt", Status::Pass, format!("\"{one}\""))
            }
            [] => Check::new(
                "tls_rpt",
                Status::Fail,
                format!("no TLS-RPT record at {name}"),
            )
            .fix(fix),
            other => Check::new(
                "tls_rpt",
                Status::Fail,
                format!("not one record with rua= (RFC 8460 §3): {other:?}"),
            )
            .fix(fix),
        },
    }
}

async fn fcrdns(r: &Resolver, ip: IpAddr, hostname: &str) -> Check {
    let name = format!("fcrdns:{ip}");
    let fix = format!(
        "Have the owner of {ip} (your hosting provider) set its PTR record to {hostname}., and keep {hostname}. A/AAAA {ip}"
    );
    let ptrs = match r.ptr(ip).await {
        Ok(p) => p,
        Err(err) => {
            return Check::new(name, Status::Fail, format!("PTR lookup failed: {err}")).fix(fix);
        }
    };
    if ptrs.is_empty() {
        return Check::new(name, Status::Fail, format!("{ip} has no PTR record")).fix(fix);
    }
    let mut confirmed = Vec::new();
    for p in &ptrs {
        if r.ips(p).await.is_ok_and(|ips| ips.contains(&ip)) {
            confirmed.push(p.clone());
        }
    }
    let names = ptrs.join(", ");
    if confirmed.iter().any(|p| p.eq_ignore_ascii_case(hostname)) {
        Check::new(name, Status::Pass, format!("{ip} → {hostname} → {ip}"))
    } else if confirmed.is_empty() {
        Check::new(
            name,
            Status::Fail,
            format!("{ip} → {names}, which does not resolve back to {ip}"),
        )
        .fix(fix)
    } else {
        Check::new(
            name,
            Status::Warn,
            format!(
                "{ip} → {} (confirmed), but the EHLO name is {hostname}",
                confirmed.join(", ")
            ),
        )
        .fix(fix)
    }
}

/// The query name of `ip` in a DNS blocklist (RFC 5782 §2.1, §2.4).
pub fn blocklist_name(ip: IpAddr, zone: &str) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.{zone}", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::new();
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0x0f, b >> 4));
            }
            format!("{s}{zone}")
        }
    }
}

/// Whether the name is listed: an answer in 127.0.0.0/8 (RFC 5782 §2.1),
/// `Err` with why when the list refused to answer (Spamhaus answers
/// 127.255.255.x to queries through public resolvers).
async fn listed(r: &Resolver, name: &str) -> Result<Option<IpAddr>, String> {
    match r.ips(name).await {
        Ok(ips) => {
            if let Some(IpAddr::V4(v4)) = ips.first()
                && v4.octets()[..3] == [127, 255, 255]
            {
                return Err(format!(
                    "the list refused the query ({v4}): ask through your own resolver"
                ));
            }
            Ok(ips.into_iter().find(|ip| match ip {
                IpAddr::V4(v4) => v4.octets()[0] == 127,
                IpAddr::V6(_) => false,
            }))
        }
        Err(e) => Err(e.to_string()),
    }
}

async fn blocklists(r: &Resolver, e: &Expected) -> Vec<Check> {
    let mut out = Vec::new();
    let mut queries: Vec<(String, String, String)> = Vec::new();
    for ip in &e.sending_ips {
        for z in &e.ip_blocklists {
            queries.push((ip.to_string(), z.clone(), blocklist_name(*ip, z)));
        }
    }
    for z in &e.domain_blocklists {
        queries.push((e.domain.clone(), z.clone(), format!("{}.{z}", e.domain)));
    }
    for (what, zone, q) in queries {
        let name = format!("blocklist:{zone}:{what}");
        out.push(match listed(r, &q).await {
            Ok(None) => Check::new(name, Status::Pass, format!("{what} is not on {zone}")),
            Ok(Some(code)) => Check::new(name, Status::Fail, format!("{what} is on {zone} ({code})"))
                .fix(format!(
                    "Find and stop what sent the spam, then ask {zone} to delist {what} (its lookup page says why it is listed)"
                )),
            Err(why) => Check::new(name, Status::Warn, format!("{zone} did not answer for {what}: {why}"))
                .fix(format!("Check {what} on {zone}'s web lookup")),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocklist_names_reverse_the_address() {
        assert_eq!(
            blocklist_name("192.0.2.99".parse().unwrap(), "zen.example"),
            "99.2.0.192.zen.example"
        );
        let v6 = blocklist_name("2001:db8::1".parse().unwrap(), "bl.example");
        assert!(v6.starts_with("1.0.0.0.0.0.0.0."), "{v6}");
        assert!(v6.ends_with("8.b.d.0.1.0.0.2.bl.example"), "{v6}");
    }

    #[test]
    fn dkim_p_tag() {
        assert_eq!(dkim_p("v=DKIM1; k=rsa; p=AB CD").as_deref(), Some("ABCD"));
        assert_eq!(dkim_p("v=DKIM1; p=").as_deref(), Some(""));
        assert_eq!(dkim_p("v=DKIM1; k=rsa"), None);
    }
}
