//! The overview: what happened to mail over the last day, week or month,
//! for every domain or one, read from the hourly counters written with
//! the events (a month of ten million events is a few thousand rows).
//! The week is the same seven UTC days as `GET /v1/domains/{d}/health`,
//! so the figures are the API's.

use crate::chart::{self, Series};
use crate::session::{User, frame};
use crate::{Web, layout};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use tern_store::EventCount;

#[derive(Deserialize, Default)]
pub struct Params {
    range: Option<String>,
    domain: Option<String>,
    stream: Option<String>,
    tag: Option<String>,
    ip: Option<String>,
}

/// The periods a range is drawn in.
#[derive(Clone, Copy, PartialEq)]
enum Range {
    Day,
    Week,
    Month,
}

impl Range {
    fn parse(s: Option<&str>) -> Self {
        match s {
            Some("day") => Self::Day,
            Some("month") => Self::Month,
            _ => Self::Week,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }
    /// `[first hour, end hour)`, and the bucket size in hours.
    fn hours(self, now: i64) -> (i64, i64, i64) {
        let hour = now.div_euclid(3600);
        let today = now.div_euclid(86_400);
        match self {
            Self::Day => (hour - 23, hour + 1, 1),
            Self::Week => ((today - 6) * 24, (today + 1) * 24, 24),
            Self::Month => ((today - 29) * 24, (today + 1) * 24, 24),
        }
    }
}

/// Counts by type (and bounce category), over a period and per bucket.
#[derive(Default)]
struct Totals {
    by_type: BTreeMap<String, i64>,
    bounce_categories: BTreeMap<String, i64>,
    machine: i64,
    junk: i64,
}

impl Totals {
    fn add(&mut self, c: &EventCount) {
        if matches!(c.event_type.as_str(), "opened" | "clicked") && c.detail == "machine" {
            self.machine += c.n;
            return;
        }
        *self.by_type.entry(c.event_type.clone()).or_default() += c.n;
        if c.event_type == "received" && c.detail == "junk" {
            self.junk += c.n;
        }
        if c.event_type == "bounced" {
            let cat = if c.detail.is_empty() {
                "other"
            } else {
                &c.detail
            };
            *self.bounce_categories.entry(cat.to_string()).or_default() += c.n;
        }
    }
    fn get(&self, t: &str) -> i64 {
        self.by_type.get(t).copied().unwrap_or(0)
    }
}

fn pct(a: i64, b: i64) -> String {
    if b > 0 {
        format!("{:.1}%", 100.0 * a as f64 / b as f64)
    } else {
        "–".into()
    }
}

/// `GET /`.
pub async fn page(State(web): State<Arc<Web>>, user: User, Query(p): Query<Params>) -> Response {
    let range = Range::parse(p.range.as_deref());
    let now = tern_core::now_unix();
    let (first, end, step) = range.hours(now);
    let domains: Vec<String> = match web.store.list_domains().await {
        Ok(d) => d
            .into_iter()
            .map(|d| d.name)
            .filter(|d| user.may_see(d))
            .collect(),
        Err(e) => return layout::store_error(e),
    };
    let domain = p
        .domain
        .as_deref()
        .map(|d| d.trim().to_ascii_lowercase())
        .filter(|d| !d.is_empty());
    if let Some(d) = &domain
        && !user.may_see(d)
    {
        return crate::session::forbidden("You may not see this domain.");
    }
    let stream = p
        .stream
        .as_deref()
        .filter(|s| matches!(*s, "transactional" | "broadcast"));
    let tag = p
        .tag
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 100);
    let ip =
        p.ip.as_deref()
            .and_then(|ip| ip.trim().parse::<std::net::IpAddr>().ok());
    // One dimension at a time: a tag, else a stream, else a sending
    // address, else the totals.
    let dim = match (tag, stream, ip) {
        (Some(t), _, _) => format!("tag:{t}"),
        (None, Some(s), _) => format!("stream:{s}"),
        (None, None, Some(ip)) => format!("ip:{ip}"),
        (None, None, None) => String::new(),
    };
    let scope: Vec<String> = match (&domain, user.is_admin()) {
        (Some(d), _) => vec![d.clone()],
        (None, true) => vec!["*".into()],
        (None, false) => user.domains.clone(),
    };
    let mut counts: Vec<EventCount> = Vec::new();
    for d in &scope {
        match web.store.event_counts(d, &dim, first, end).await {
            Ok(c) => counts.extend(c),
            Err(e) => return layout::store_error(e),
        }
    }
    let sending_ips = web.sending_ips();
    let buckets = ((end - first) / step) as usize;
    let mut total = Totals::default();
    let mut per: Vec<Totals> = (0..buckets).map(|_| Totals::default()).collect();
    for c in &counts {
        total.add(c);
        if let Some(b) = per.get_mut(((c.hour - first) / step) as usize) {
            b.add(c);
        }
    }
    let labels: Vec<String> = (0..buckets)
        .map(|i| {
            let t = (first + i as i64 * step) * 3600;
            let fmt = if step == 1 { "%H:00" } else { "%b %d" };
            chrono::DateTime::from_timestamp(t, 0)
                .map(|t| t.format(fmt).to_string())
                .unwrap_or_default()
        })
        .collect();
    let series = |t: &str| per.iter().map(|b| b.get(t)).collect::<Vec<_>>();
    let body = html! {
        h1 { "Overview" }
        form.filters method="get" action="/" {
            div {
                label for="range" { "Period" }
                select #range name="range" {
                    @for (v, l) in [("day", "Last 24 hours"), ("week", "Last 7 days"), ("month", "Last 30 days")] {
                        option value=(v) selected[range.name() == v] { (l) }
                    }
                }
            }
            div {
                label for="domain" { "Domain" }
                select #domain name="domain" {
                    @if user.is_admin() { option value="" { "All domains" } }
                    @else { option value="" { "All my domains" } }
                    @for d in &domains {
                        option value=(d) selected[domain.as_deref() == Some(d.as_str())] { (d) }
                    }
                }
            }
            div {
                label for="stream" { "Stream" }
                select #stream name="stream" {
                    option value="" { "Both" }
                    @for v in ["transactional", "broadcast"] {
                        option value=(v) selected[stream == Some(v)] { (v) }
                    }
                }
            }
            @if !sending_ips.is_empty() {
                div {
                    label for="ip" { "Sending address" }
                    select #ip name="ip" {
                        option value="" { "All" }
                        @for a in &sending_ips {
                            option value=(a) selected[ip == Some(*a)] { (a) }
                        }
                    }
                }
            }
            div {
                label for="tag" { "Tag" }
                input #tag type="text" name="tag" value=(tag.unwrap_or("")) size="12";
            }
            button type="submit" { "Show" }
        }
        @if [tag.is_some(), stream.is_some(), ip.is_some()].iter().filter(|x| **x).count() > 1 {
            p.muted { "One filter at a time: the tag, else the stream, else the sending address is shown." }
        }
        h2 { "Totals" }
        (cards(&total))
        section.panel aria-labelledby="outbound-h" {
            h2 #outbound-h { "Outbound, per " (if step == 1 { "hour" } else { "day" }) }
            (chart::stacked("Outbound", &labels, &[
                Series { name: "delivered", color: "--c5", values: series("delivered") },
                Series { name: "bounced", color: "--c2", values: series("bounced") },
                Series { name: "deferred", color: "--c3", values: series("deferred") },
            ]))
        }
        div.cards style="margin-top:16px" {
            section.panel style="margin:0" aria-labelledby="inbound-h" {
                h2 #inbound-h { "Inbound" }
                (chart::stacked("Inbound", &labels, &[
                    Series { name: "received", color: "--c1", values: series("received") },
                    Series { name: "rejected", color: "--c2", values: series("rejected") },
                ]))
            }
            section.panel style="margin:0" aria-labelledby="engagement-h" {
                h2 #engagement-h { "Engagement (people)" }
                (chart::stacked("Engagement", &labels, &[
                    Series { name: "opened", color: "--c1", values: series("opened") },
                    Series { name: "clicked", color: "--c4", values: series("clicked") },
                ]))
            }
        }
        @if !total.bounce_categories.is_empty() {
            section.panel aria-labelledby="bounces-h" {
                h2 #bounces-h { "Bounces by cause" }
                table {
                    thead { tr { th { "Cause" } th.num { "Bounces" } th.num { "Share" } } }
                    tbody {
                        @for (cat, n) in &total.bounce_categories {
                            tr { td { (cat) } td.num { (n) } td.num { (pct(*n, total.get("bounced"))) } }
                        }
                    }
                }
            }
        }
    };
    frame(&user, "Overview", "/").render(body).into_response()
}

fn card(label: &str, id: &str, n: i64, rate: Option<String>) -> Markup {
    html! {
        div.card {
            div.n data-figure=(id) { (n) }
            div.l { (label) }
            @if let Some(r) = rate { div.r.muted { (r) } }
        }
    }
}

fn cards(t: &Totals) -> Markup {
    let delivered = t.get("delivered");
    let bounced = t.get("bounced");
    html! {
        div.cards {
            (card("Accepted to send", "accepted", t.get("accepted"), None))
            (card("Delivered", "delivered", delivered, Some(format!("{} of attempts ended", pct(delivered, delivered + bounced)))))
            (card("Deferred attempts", "deferred", t.get("deferred"), None))
            (card("Bounced", "bounced", bounced, Some(format!("{} bounce rate", pct(bounced, delivered + bounced)))))
            (card("Complaints", "complained", t.get("complained"), Some(format!("{} of delivered", pct(t.get("complained"), delivered)))))
            (card("Unsubscribed", "unsubscribed", t.get("unsubscribed"), Some(format!("{} of delivered", pct(t.get("unsubscribed"), delivered)))))
            (card("Opened", "opened", t.get("opened"), Some(format!("{} machine opens and clicks left out", t.machine))))
            (card("Clicked", "clicked", t.get("clicked"), None))
            (card("Received", "received", t.get("received"), Some(format!("{} filed as junk", t.junk))))
            (card("Rejected inbound", "rejected", t.get("rejected"), None))
        }
    }
}
