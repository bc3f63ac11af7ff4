//! Sender health: how a sending domain's mail fares (per day and over the
//! last 7 days: delivered, bounced by category, complaints, unsubscribes,
//! human opens and clicks, with rates), read from the hourly event
//! counters, and whether it meets the bulk-sender requirements Gmail and
//! Yahoo enforce since 2024 (SPF, DKIM, DMARC published and aligned,
//! one-click unsubscribe, a complaint rate under 0.3%), each with the fix
//! when it does not. `GET /v1/domains/{domain}/health` and `tern domain
//! health DOMAIN` show the same.

use serde::Serialize;
use std::collections::BTreeMap;
use tern_dns::Resolver;
use tern_store::{EventCount, SharedStore, StoreError};
use utoipa::ToSchema;

/// Gmail's and Yahoo's ceiling for the complaint rate.
pub const MAX_COMPLAINT_RATE: f64 = 0.003;

/// Counts and rates over a period.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Stats {
    /// Recipients queued (`accepted`).
    pub accepted: i64,
    /// Delivered.
    pub delivered: i64,
    /// Bounced (during delivery and later).
    pub bounced: i64,
    /// Bounces by category.
    pub bounced_by_category: BTreeMap<String, i64>,
    /// Deferred attempts.
    pub deferred: i64,
    /// Complaints from feedback loops.
    pub complained: i64,
    /// Unsubscribes.
    pub unsubscribed: i64,
    /// Opens by people (machines left out).
    pub opened: i64,
    /// Clicks by people (machines left out).
    pub clicked: i64,
    /// Opens and clicks by machines (Apple Mail Privacy Protection, scanners).
    pub machine_activity: i64,
    /// bounced / (delivered + bounced).
    pub bounce_rate: f64,
    /// complained / delivered.
    pub complaint_rate: f64,
    /// unsubscribed / delivered.
    pub unsubscribe_rate: f64,
}

impl Stats {
    fn add(&mut self, c: &EventCount) {
        match c.event_type.as_str() {
            "accepted" => self.accepted += c.n,
            "delivered" => self.delivered += c.n,
            "bounced" => {
                self.bounced += c.n;
                let cat = if c.detail.is_empty() {
                    "other"
                } else {
                    c.detail.as_str()
                };
                *self.bounced_by_category.entry(cat.into()).or_default() += c.n;
            }
            "deferred" => self.deferred += c.n,
            "complained" => self.complained += c.n,
            "unsubscribed" => self.unsubscribed += c.n,
            "opened" | "clicked" if c.detail == "machine" => self.machine_activity += c.n,
            "opened" => self.opened += c.n,
            "clicked" => self.clicked += c.n,
            _ => {}
        }
    }

    fn rates(&mut self) {
        let ratio = |a: i64, b: i64| if b > 0 { a as f64 / b as f64 } else { 0.0 };
        self.bounce_rate = ratio(self.bounced, self.delivered + self.bounced);
        self.complaint_rate = ratio(self.complained, self.delivered);
        self.unsubscribe_rate = ratio(self.unsubscribed, self.delivered);
    }
}

/// One day (UTC).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Day {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Its counts and rates.
    #[serde(flatten)]
    pub stats: Stats,
}

/// One bulk-sender requirement.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Requirement {
    /// `spf`, `dkim`, `dmarc`, `alignment`, `one_click_unsubscribe`,
    /// `complaint_rate`.
    pub name: String,
    /// Met.
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// What to do when it is not met.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// A sending domain's health.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// The domain.
    pub domain: String,
    /// The last 7 days, oldest first (today last).
    pub days: Vec<Day>,
    /// The 7 days together.
    pub last_7_days: Stats,
    /// Gmail's and Yahoo's bulk-sender requirements.
    pub requirements: Vec<Requirement>,
    /// Whether every requirement is met.
    pub meets_bulk_sender_requirements: bool,
}

fn date_of_day(day: i64) -> String {
    chrono::DateTime::from_timestamp(day * 86_400, 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// The health of `domain` at `now` (Unix seconds). DNS is asked through
/// `resolver` when there is one (the requirements are then checked live).
pub async fn domain_health(
    store: &SharedStore,
    resolver: Option<&Resolver>,
    domain: &str,
    now: i64,
) -> Result<Health, StoreError> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let today = now.div_euclid(86_400);
    let first = today - 6;
    let counts = store
        .event_counts(&domain, "", first * 24, (today + 1) * 24)
        .await?;
    let mut days: Vec<Day> = (first..=today)
        .map(|d| Day {
            date: date_of_day(d),
            stats: Stats::default(),
        })
        .collect();
    let mut total = Stats::default();
    for c in &counts {
        let i = (c.hour.div_euclid(24) - first) as usize;
        if let Some(d) = days.get_mut(i) {
            d.stats.add(c);
        }
        total.add(c);
    }
    for d in &mut days {
        d.stats.rates();
    }
    total.rates();
    let mut requirements = match resolver {
        Some(r) => dns_requirements(store, r, &domain).await?,
        None => Vec::new(),
    };
    requirements.push(Requirement {
        name: "one_click_unsubscribe".into(),
        ok: true,
        detail: "Tern adds List-Unsubscribe (https and mailto) and List-Unsubscribe-Post \
                 (RFC 8058), covered by the DKIM signature, to every broadcast message"
            .into(),
        fix: None,
    });
    let ok = total.complaint_rate < MAX_COMPLAINT_RATE;
    requirements.push(Requirement {
        name: "complaint_rate".into(),
        ok,
        detail: format!(
            "{:.3}% over the last 7 days ({} complaints, {} delivered); the limit is 0.3%, \
             aim for under 0.1%",
            total.complaint_rate * 100.0,
            total.complained,
            total.delivered
        ),
        fix: (!ok).then(|| {
            "Send only to people who asked for the mail, honour unsubscribes at once, and \
             send broadcasts in the broadcast stream; remove long-inactive recipients"
                .into()
        }),
    });
    let meets = requirements.iter().all(|r| r.ok);
    Ok(Health {
        domain,
        days,
        last_7_days: total,
        requirements,
        meets_bulk_sender_requirements: meets,
    })
}

/// SPF, DKIM, DMARC and alignment, asked of the DNS as the world sees it
/// (the same checks as `tern dns check`).
async fn dns_requirements(
    store: &SharedStore,
    r: &Resolver,
    domain: &str,
) -> Result<Vec<Requirement>, StoreError> {
    use tern_dns::check::{self, Status};
    let of = |name: &str, c: &check::Check, ok: bool| Requirement {
        name: name.into(),
        ok,
        detail: c.found.clone(),
        fix: if ok { None } else { c.fix.clone() },
    };
    let mut out = Vec::new();
    let expected = check::Expected {
        domain: domain.to_string(),
        ..Default::default()
    };
    let spf = check::spf(r, &expected).await;
    let spf_ok = spf.iter().all(|c| c.status == Status::Pass);
    let spf_first = &spf[0];
    out.push(of("spf", spf_first, spf_ok));
    if let Some(lookups) = spf.get(1).filter(|c| c.status != Status::Pass) {
        out.last_mut()
            .expect("just pushed")
            .detail
            .push_str(&format!("; {}", lookups.found));
        out.last_mut().expect("just pushed").fix = lookups.fix.clone();
    }
    let keys: Vec<_> = store
        .dkim_keys(domain)
        .await?
        .into_iter()
        .filter(|k| k.status == "active")
        .collect();
    let mut dkim = Vec::new();
    for k in &keys {
        let record = tern_auth::DkimAlgorithm::from_name(&k.algorithm)
            .ok()
            .and_then(|algorithm| {
                tern_auth::DkimKey {
                    selector: k.selector.clone(),
                    algorithm,
                    private_pem: k.private_key.clone(),
                }
                .txt()
                .ok()
            })
            .unwrap_or_default();
        dkim.push(check::dkim(r, domain, &k.selector, &record).await);
    }
    let dkim_ok = !dkim.is_empty() && dkim.iter().all(|c| c.status == Status::Pass);
    out.push(Requirement {
        name: "dkim".into(),
        ok: dkim_ok,
        detail: if keys.is_empty() {
            format!("{domain} has no active DKIM key here")
        } else {
            dkim.iter().map(|c| c.found.clone()).collect::<Vec<_>>().join("; ")
        },
        fix: (!dkim_ok).then(|| {
            if keys.is_empty() {
                format!("Create keys with `tern dkim rotate {domain}`, publish them, then `tern dkim activate`")
            } else {
                dkim.iter()
                    .filter_map(|c| c.fix.clone())
                    .collect::<Vec<_>>()
                    .join("; ")
            }
        }),
    });
    // Gmail and Yahoo ask for a DMARC record; p=none is enough for them.
    let dmarc = check::dmarc(r, domain).await;
    out.push(of("dmarc", &dmarc, dmarc.status != Status::Fail));
    // Tern signs with the From: domain's key and sends from a return path
    // in that domain: DKIM and SPF align when the records exist.
    let aligned = dkim_ok && spf_first.status == Status::Pass;
    out.push(Requirement {
        name: "alignment".into(),
        ok: aligned,
        detail: if aligned {
            format!("DKIM d={domain} and the return path @{domain} align with From: {domain}")
        } else {
            "needs the SPF and DKIM records above".into()
        },
        fix: (!aligned).then(|| "Publish the SPF and DKIM records above".into()),
    });
    Ok(out)
}

/// `GET /v1/domains/{domain}/health`.
#[utoipa::path(get, path = "/v1/domains/{domain}/health", tag = "domains",
    params(("domain" = String, Path, description = "A sending domain")),
    responses((status = 200, body = Health), (status = 403, body = crate::Problem)))]
pub async fn get_health(
    axum::extract::State(api): axum::extract::State<std::sync::Arc<crate::Api>>,
    caller: crate::auth::Caller,
    axum::extract::Path(domain): axum::extract::Path<String>,
) -> Result<axum::Json<Health>, crate::Problem> {
    caller.require_read()?;
    if !caller.may_send_as(&domain) {
        return Err(crate::Problem::forbidden(format!(
            "This API key is limited to {}; not {domain}.",
            caller.key.domains.join(", ")
        )));
    }
    let h = domain_health(
        &api.store,
        api.resolver.as_ref(),
        &domain,
        tern_core::now_unix(),
    )
    .await?;
    Ok(axum::Json(h))
}
