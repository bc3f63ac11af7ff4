//! DKIM signing keys: generation (with rcgen on aws-lc-rs) and the `p=`
//! value published under `SELECTOR._domainkey.DOMAIN`.

use base64::Engine;
use rcgen::{KeyPair, PublicKeyData};

/// Key generation or parsing failures.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// rcgen could not generate or parse the key.
    #[error("DKIM key: {0}")]
    Key(#[from] rcgen::Error),
    /// Unknown algorithm name.
    #[error("unknown DKIM algorithm {0:?}")]
    Algorithm(String),
}

/// DKIM signing algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DkimAlgorithm {
    /// rsa-sha256 with a 2048-bit key (RFC 6376, RFC 8301).
    Rsa2048,
    /// ed25519-sha256 (RFC 8463).
    Ed25519,
}

impl DkimAlgorithm {
    /// The name stored in the database: `rsa` or `ed25519` (the DNS `k=` tag).
    pub fn name(self) -> &'static str {
        match self {
            Self::Rsa2048 => "rsa",
            Self::Ed25519 => "ed25519",
        }
    }

    /// Parses [`DkimAlgorithm::name`].
    pub fn from_name(s: &str) -> Result<Self, KeyError> {
        match s {
            "rsa" => Ok(Self::Rsa2048),
            "ed25519" => Ok(Self::Ed25519),
            other => Err(KeyError::Algorithm(other.to_string())),
        }
    }
}

/// A DKIM private key with its selector.
#[derive(Debug, Clone)]
pub struct DkimKey {
    /// Selector: the DNS label before `._domainkey`.
    pub selector: String,
    /// Algorithm.
    pub algorithm: DkimAlgorithm,
    /// PKCS#8 private key, PEM.
    pub private_pem: String,
}

impl DkimKey {
    /// Generates a new key.
    pub fn generate(selector: &str, algorithm: DkimAlgorithm) -> Result<Self, KeyError> {
        let pair = match algorithm {
            DkimAlgorithm::Rsa2048 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)?
            }
            DkimAlgorithm::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519)?,
        };
        Ok(Self {
            selector: selector.to_string(),
            algorithm,
            private_pem: pair.serialize_pem(),
        })
    }

    /// The `p=` value: base64 of the SubjectPublicKeyInfo for RSA (RFC 6376
    /// §3.6.1), of the raw 32-byte public key for Ed25519 (RFC 8463 §4.2).
    pub fn public_p(&self) -> Result<String, KeyError> {
        let pair = KeyPair::from_pem(&self.private_pem)?;
        let der = match self.algorithm {
            DkimAlgorithm::Rsa2048 => pair.subject_public_key_info(),
            DkimAlgorithm::Ed25519 => pair.der_bytes().to_vec(),
        };
        Ok(base64::engine::general_purpose::STANDARD.encode(der))
    }

    /// The TXT record value: `v=DKIM1; k=rsa; p=...`.
    pub fn txt(&self) -> Result<String, KeyError> {
        Ok(format!(
            "v=DKIM1; k={}; p={}",
            self.algorithm.name(),
            self.public_p()?
        ))
    }
}

/// Why new keys could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// Generating a key failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Storing it failed.
    #[error(transparent)]
    Store(#[from] tern_store::StoreError),
}

/// Makes a new RSA-2048 and a new Ed25519 key for `domain` with `status`
/// (`active` for a new domain, `pending` for a rotation: published first,
/// activated later), their selectors named for the month (`t202611r`,
/// `t202611e`; `t202611r2`… when rotated again within the month).
/// Returns the selectors.
pub async fn generate_for_domain(
    store: &dyn tern_store::Directory,
    domain: &str,
    status: &str,
) -> Result<Vec<String>, RotateError> {
    let month = chrono::Utc::now().format("%Y%m").to_string();
    let domain = domain.to_lowercase();
    let taken: Vec<String> = store
        .dkim_keys(&domain)
        .await?
        .into_iter()
        .map(|k| k.selector)
        .collect();
    let mut made = Vec::new();
    for (alg, suffix) in [(DkimAlgorithm::Rsa2048, "r"), (DkimAlgorithm::Ed25519, "e")] {
        let mut selector = format!("t{month}{suffix}");
        let mut n = 2;
        while taken.contains(&selector) {
            selector = format!("t{month}{suffix}{n}");
            n += 1;
        }
        let key = DkimKey::generate(&selector, alg)?;
        store
            .add_dkim_key(tern_store::DkimKeyRow {
                domain: domain.clone(),
                selector: key.selector.clone(),
                algorithm: alg.name().into(),
                private_key: key.private_pem.clone(),
                status: status.into(),
            })
            .await?;
        made.push(selector);
    }
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_records() {
        let ed = DkimKey::generate("t1e", DkimAlgorithm::Ed25519).unwrap();
        let p = ed.public_p().unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&p)
            .unwrap();
        assert_eq!(raw.len(), 32, "Ed25519 p= is the raw key");
        assert!(ed.txt().unwrap().starts_with("v=DKIM1; k=ed25519; p="));
        let rsa = DkimKey::generate("t1r", DkimAlgorithm::Rsa2048).unwrap();
        let spki = base64::engine::general_purpose::STANDARD
            .decode(rsa.public_p().unwrap())
            .unwrap();
        assert!(
            spki.len() > 290 && spki[0] == 0x30,
            "DER SubjectPublicKeyInfo of RSA-2048"
        );
        assert!(rsa.private_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    }
}
