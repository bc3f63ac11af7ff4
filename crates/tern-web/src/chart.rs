//! Stacked bar charts as SVG drawn on the server: no JavaScript, readable
//! by screen readers (a summary label, and a title on every bar segment).

use maud::{Markup, PreEscaped, html};

/// One series: its name, its colour (a CSS variable) and a value per bar.
pub(crate) struct Series<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub values: Vec<i64>,
}

const W: f64 = 720.0;
const H: f64 = 200.0;
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 22.0;

/// A stacked bar chart of `series` over `labels` (one bar per label).
pub(crate) fn stacked(caption: &str, labels: &[String], series: &[Series<'_>]) -> Markup {
    let n = labels.len().max(1);
    let totals: Vec<i64> = (0..n)
        .map(|i| {
            series
                .iter()
                .map(|s| s.values.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let max = totals.iter().copied().max().unwrap_or(0).max(1);
    // A round top for the axis: 1, 2 or 5 times a power of ten.
    let mut top = 1i64;
    while top < max {
        top = match top.to_string().as_bytes()[0] {
            b'1' => top * 2,
            b'2' => top / 2 * 5,
            _ => top * 2,
        };
    }
    let plot_w = W - LEFT - 4.0;
    let plot_h = H - BOTTOM - 8.0;
    let slot = plot_w / n as f64;
    let bar = (slot * 0.72).max(1.0);
    let y = |v: i64| 8.0 + plot_h - (v as f64 / top as f64) * plot_h;
    let every = (n / 8).max(1);
    let summary = format!(
        "{caption}: {} in all over {n} periods, at most {max} in one",
        totals.iter().sum::<i64>()
    );
    struct Seg {
        y: f64,
        h: f64,
        fill: String,
        title: String,
    }
    let bars: Vec<(f64, Vec<Seg>)> = (0..n)
        .map(|i| {
            let x = LEFT + slot * i as f64 + (slot - bar) / 2.0;
            let label = labels.get(i).map(String::as_str).unwrap_or("");
            let mut base = 0;
            let mut segs = Vec::new();
            for s in series {
                let v = s.values.get(i).copied().unwrap_or(0);
                if v > 0 {
                    segs.push(Seg {
                        y: y(base + v),
                        h: y(base) - y(base + v),
                        fill: format!("var({})", s.color),
                        title: format!("{label}: {v} {}", s.name),
                    });
                }
                base += v;
            }
            (x, segs)
        })
        .collect();
    html! {
        figure.chart {
            svg viewBox=(format!("0 0 {W} {H}")) role="img" aria-label=(summary) {
                @for frac in [0.0, 0.5, 1.0] {
                    @let v = (top as f64 * frac) as i64;
                    line.axis x1=(LEFT) x2=(W - 4.0) y1=(y(v)) y2=(y(v)) {}
                    text x=(LEFT - 6.0) y=(y(v) + 4.0) text-anchor="end" { (v) }
                }
                @for (i, (x, segs)) in bars.iter().enumerate() {
                    @for seg in segs {
                        rect x=(format!("{x:.1}")) y=(format!("{:.1}", seg.y))
                            width=(format!("{bar:.1}")) height=(format!("{:.1}", seg.h))
                            fill=(seg.fill) {
                            title { (seg.title) }
                        }
                    }
                    @if i % every == 0 {
                        text x=(format!("{:.1}", x + bar / 2.0)) y=(H - 6.0) text-anchor="middle" {
                            (labels.get(i).map(String::as_str).unwrap_or(""))
                        }
                    }
                }
            }
            figcaption.legend {
                @for s in series {
                    span { i style=(PreEscaped(format!("background:var({})", s.color))) {} (s.name) }
                }
            }
        }
    }
}
