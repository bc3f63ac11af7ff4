//! What was learnt about a domain, kept for a while: its route (MX hosts,
//! or that it takes no mail) and whether it accepts every address. A bulk
//! job that meets a domain again — in the next chunk of a list, or the
//! next API request — asks its DNS once and tests it for a catch-all once.
//! Failures are never cached: the next try asks again.

use crate::Route;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Past this many domains, expired entries are dropped on insert.
const SWEEP_AT: usize = 50_000;

#[derive(Default)]
struct Facts {
    route: Option<(Instant, Route)>,
    catch_all: Option<(Instant, bool)>,
}

/// Per-domain facts with a time to live.
pub(crate) struct DomainCache {
    ttl: Duration,
    map: Mutex<HashMap<String, Facts>>,
}

impl DomainCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn fresh(&self, at: Instant) -> bool {
        at.elapsed() < self.ttl
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Facts>) -> T) -> T {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut map)
    }

    pub(crate) fn route(&self, domain: &str) -> Option<Route> {
        self.with(|m| {
            m.get(domain)
                .and_then(|f| f.route.as_ref())
                .filter(|(at, _)| self.fresh(*at))
                .map(|(_, r)| r.clone())
        })
    }

    pub(crate) fn catch_all(&self, domain: &str) -> Option<bool> {
        self.with(|m| {
            m.get(domain)
                .and_then(|f| f.catch_all)
                .filter(|(at, _)| self.fresh(*at))
                .map(|(_, c)| c)
        })
    }

    fn entry(&self, domain: &str, f: impl FnOnce(&mut Facts)) {
        if self.ttl.is_zero() {
            return;
        }
        self.with(|m| {
            if m.len() >= SWEEP_AT {
                m.retain(|_, v| {
                    v.route.as_ref().is_some_and(|(at, _)| self.fresh(*at))
                        || v.catch_all.is_some_and(|(at, _)| self.fresh(at))
                });
            }
            f(m.entry(domain.to_string()).or_default());
        })
    }

    pub(crate) fn set_route(&self, domain: &str, route: Route) {
        self.entry(domain, |f| f.route = Some((Instant::now(), route)));
    }

    pub(crate) fn set_catch_all(&self, domain: &str, catch_all: bool) {
        self.entry(domain, |f| f.catch_all = Some((Instant::now(), catch_all)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_expire_and_a_zero_ttl_keeps_nothing() {
        let c = DomainCache::new(Duration::from_secs(60));
        c.set_catch_all("a.example", true);
        c.set_route("a.example", Route::Hosts(vec!["mx.a.example".into()]));
        assert_eq!(c.catch_all("a.example"), Some(true));
        assert!(matches!(c.route("a.example"), Some(Route::Hosts(h)) if h == ["mx.a.example"]));
        assert_eq!(c.catch_all("b.example"), None);
        let none = DomainCache::new(Duration::ZERO);
        none.set_catch_all("a.example", true);
        assert_eq!(none.catch_all("a.example"), None);
    }
}
