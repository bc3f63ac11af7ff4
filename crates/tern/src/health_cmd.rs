//! `tern domain health`: sender health as a person reads it.

use std::fmt::Write;
use tern_api::health::{Health, Stats};

fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

fn line(out: &mut String, label: &str, s: &Stats) {
    let _ = writeln!(
        out,
        "{label:<12} {:>9} {:>9} {:>8} {:>7} {:>9} {:>8} {:>7} {:>7} {:>8} {:>8}",
        s.accepted,
        s.delivered,
        s.bounced,
        s.complained,
        s.unsubscribed,
        s.opened,
        s.clicked,
        pct(s.bounce_rate),
        pct(s.complaint_rate),
        pct(s.unsubscribe_rate),
    );
}

/// The report: a table per day, the week, bounces by category, the
/// requirements with their fixes.
pub fn render(h: &Health) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Sender health of {} (UTC days)\n", h.domain);
    let _ = writeln!(
        out,
        "{:<12} {:>9} {:>9} {:>8} {:>7} {:>9} {:>8} {:>7} {:>7} {:>8} {:>8}",
        "day",
        "accepted",
        "delivered",
        "bounced",
        "compl.",
        "unsubscr.",
        "opened",
        "clicked",
        "bounce%",
        "compl.%",
        "unsub.%"
    );
    for d in &h.days {
        line(&mut out, &d.date, &d.stats);
    }
    line(&mut out, "7 days", &h.last_7_days);
    if !h.last_7_days.bounced_by_category.is_empty() {
        let cats: Vec<String> = h
            .last_7_days
            .bounced_by_category
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        let _ = writeln!(out, "\nBounces by category: {}", cats.join(", "));
    }
    if h.last_7_days.machine_activity > 0 {
        let _ = writeln!(
            out,
            "Opens and clicks by machines, left out above: {}",
            h.last_7_days.machine_activity
        );
    }
    let _ = writeln!(out, "\nBulk-sender requirements (Gmail, Yahoo):");
    for r in &h.requirements {
        let _ = writeln!(
            out,
            "  [{}] {:<22} {}",
            if r.ok { "ok" } else { "!!" },
            r.name,
            r.detail
        );
        if let Some(f) = &r.fix {
            let _ = writeln!(out, "       fix: {f}");
        }
    }
    let _ = writeln!(
        out,
        "\n{}",
        if h.meets_bulk_sender_requirements {
            "Meets the bulk-sender requirements."
        } else {
            "Does not meet the bulk-sender requirements yet."
        }
    );
    out
}
