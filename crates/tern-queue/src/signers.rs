//! Loading a domain's DKIM keys into a signer (for DKIM signatures on
//! submitted mail and ARC seals on forwarded mail), cached.

use std::sync::Arc;
use tern_auth::{DkimAlgorithm, DkimKey, DomainSigner, SignerCache};
use tern_store::SharedStore;

/// The signer for `domain`'s active keys, from `cache` or loaded from the
/// store. `None` if the domain has no active key.
pub async fn load(
    cache: &SignerCache,
    store: &SharedStore,
    domain: &str,
) -> Option<Arc<DomainSigner>> {
    let domain = domain.to_ascii_lowercase();
    if let Some(s) = cache.get(&domain) {
        return s;
    }
    let rows = match store.dkim_keys(&domain).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, domain, "dkim: cannot load the keys");
            return None;
        }
    };
    let keys: Vec<DkimKey> = rows
        .into_iter()
        .filter(|r| r.status == "active")
        .filter_map(|r| {
            Some(DkimKey {
                algorithm: DkimAlgorithm::from_name(&r.algorithm).ok()?,
                selector: r.selector,
                private_pem: r.private_key,
            })
        })
        .collect();
    let signer = if keys.is_empty() {
        None
    } else {
        match DomainSigner::new(&domain, &keys) {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                tracing::error!(error = %e, domain, "dkim: bad key; not signing");
                None
            }
        }
    };
    cache.put(&domain, signer.clone());
    signer
}
