//! Signed identities (see `envid::identity`): the service's signing key,
//! the keys it still verifies with, the key set it serves at `GET /v1/keys`,
//! and [`Identity::issue_identity`], which the registration handlers call
//! for a registration they have checked.
//!
//! Rotation: start with `--signing-key NEW --verify-key OLD`; identities
//! signed by OLD keep verifying until they expire, then drop OLD.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Bytes;
use envid::identity::{Claims, IdentityError, KeySet, Signer};
use envid::protocol::HostRecord;

/// How the service signs identities: [`crate::Config`]'s part.
#[derive(Clone, Debug)]
pub struct IdentityConfig {
    /// The Ed25519 PKCS#8 PEM key that signs identities; `None`: the
    /// service issues none and `/v1/keys` is `404`.
    pub signing_key: Option<PathBuf>,
    /// Older keys (PKCS#8 PEM) still served in the key set, so identities
    /// they signed verify until they expire.
    pub verify_keys: Vec<PathBuf>,
    /// How long an identity is valid (default 1 hour).
    pub lifetime: Duration,
    /// The `iss` claim (default `envid`).
    pub issuer: String,
    /// The `aud` claim (default `envid`).
    pub audience: String,
}

impl Default for IdentityConfig {
    fn default() -> IdentityConfig {
        IdentityConfig {
            signing_key: None,
            verify_keys: Vec::new(),
            lifetime: Duration::from_secs(3600),
            issuer: "envid".into(),
            audience: "envid".into(),
        }
    }
}

/// The loaded keys and the encoded key set.
#[derive(Debug)]
pub struct Identity {
    signer: Option<Signer>,
    keys: KeySet,
    keys_body: Bytes,
    etag: String,
    lifetime: u64,
    issuer: String,
    audience: String,
}

impl Identity {
    /// Reads the keys named by `config`. An error names the file.
    pub fn load(config: &IdentityConfig) -> Result<Identity, String> {
        let signer = config
            .signing_key
            .as_deref()
            .map(read_key)
            .transpose()
            .map_err(|e| format!("signing key: {e}"))?;
        let mut keys = KeySet::default();
        keys.keys.extend(signer.iter().map(|s| s.jwk().clone()));
        for path in &config.verify_keys {
            let old = read_key(path).map_err(|e| format!("verify key: {e}"))?;
            if keys.get(old.kid()).is_none() {
                keys.keys.push(old.jwk().clone());
            }
        }
        if config.lifetime.as_secs() == 0 {
            return Err("the identity lifetime must be at least 1 second".into());
        }
        let keys_body = Bytes::from(serde_json::to_vec(&keys).expect("a key set encodes"));
        // Key ids are thumbprints of the keys: the ETag changes exactly when the set does.
        let kids: Vec<&str> = keys.keys.iter().map(|k| k.kid.as_str()).collect();
        let etag = format!("\"{}\"", kids.join("."));
        Ok(Identity {
            signer,
            keys,
            keys_body,
            etag,
            lifetime: config.lifetime.as_secs(),
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
        })
    }

    /// The identity of a checked registration of `record` from `ip`: a JWT
    /// valid for the configured lifetime. `None` when the service has no
    /// signing key or the record has no `app`.
    pub fn issue_identity(&self, record: &HostRecord, ip: IpAddr) -> Option<String> {
        let signer = self.signer.as_ref()?;
        let claims = Claims::for_record(
            record,
            ip,
            &self.issuer,
            &self.audience,
            envid_now(),
            self.lifetime,
        )?;
        Some(signer.sign(&claims))
    }

    /// The key id of the key that signs new identities, if any.
    pub fn signing_kid(&self) -> Option<&str> {
        self.signer.as_ref().map(Signer::kid)
    }

    /// The identity lifetime, in seconds.
    pub fn lifetime_secs(&self) -> u64 {
        self.lifetime
    }

    /// The key set served at `/v1/keys`.
    pub fn key_set(&self) -> &KeySet {
        &self.keys
    }

    /// The key set's JSON and its `ETag`; `None` when there are no keys.
    pub(crate) fn keys_document(&self) -> Option<(&Bytes, &str)> {
        (!self.keys.keys.is_empty()).then_some((&self.keys_body, self.etag.as_str()))
    }
}

/// The largest key file read: an Ed25519 PKCS#8 PEM is about 120 bytes,
/// so this leaves room for comments and refuses a wrong path (a log, a
/// device) at once.
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// The key in the PKCS#8 PEM file at `path`, read with the bounded reader
/// ([`envid::read`]); an error names the file.
fn read_key(path: &Path) -> Result<Signer, IdentityError> {
    let pem =
        envid::read::text(path, MAX_KEY_FILE_BYTES).map_err(|e| IdentityError::InvalidKey {
            reason: e.to_string(),
        })?;
    Signer::from_pem(&pem).map_err(|e| match e {
        IdentityError::InvalidKey { reason } => IdentityError::InvalidKey {
            reason: format!("{}: {reason}", path.display()),
        },
        other => other,
    })
}

fn envid_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(dir: &std::path::Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, Signer::generate_pem()).unwrap();
        p
    }

    #[test]
    fn a_key_path_that_is_no_file_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let e = Identity::load(&IdentityConfig {
            verify_keys: vec![dir.path().to_path_buf()],
            ..IdentityConfig::default()
        })
        .unwrap_err();
        assert!(e.starts_with("verify key: invalid key: "), "{e}");
        assert!(e.ends_with("not a regular file: it is a directory"), "{e}");
        let big = dir.path().join("big.pem");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_KEY_FILE_BYTES + 1)
            .unwrap();
        let e = Identity::load(&IdentityConfig {
            signing_key: Some(big),
            ..IdentityConfig::default()
        })
        .unwrap_err();
        assert!(
            e.ends_with(&format!("larger than {MAX_KEY_FILE_BYTES} bytes")),
            "{e}"
        );
    }

    #[test]
    fn keys_rotation_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let (new, old) = (key(dir.path(), "new.pem"), key(dir.path(), "old.pem"));
        let none = Identity::load(&IdentityConfig::default()).unwrap();
        assert!(none.keys_document().is_none());
        let record: HostRecord =
            serde_json::from_value(serde_json::json!({"app": "pay", "env": "prod", "idc": "cn0"}))
                .unwrap();
        assert_eq!(
            none.issue_identity(&record, "10.0.0.1".parse().unwrap()),
            None
        );

        let config = IdentityConfig {
            signing_key: Some(new.clone()),
            verify_keys: vec![old.clone(), new.clone()],
            ..IdentityConfig::default()
        };
        let both = Identity::load(&config).unwrap();
        let kids: Vec<_> = both.key_set().keys.iter().map(|k| k.kid.clone()).collect();
        assert_eq!(kids.len(), 2, "the signing key is listed once, first");
        assert_eq!(kids[0], Signer::from_pem_file(&new).unwrap().kid());
        let (_, etag) = both.keys_document().unwrap();
        let (_, etag_new_only) = Identity::load(&IdentityConfig {
            verify_keys: vec![],
            ..config.clone()
        })
        .unwrap()
        .keys_document()
        .map(|(b, e)| (b.clone(), e.to_string()))
        .unwrap();
        assert_ne!(etag, etag_new_only);
        // No app, no identity.
        let anonymous: HostRecord =
            serde_json::from_value(serde_json::json!({"env": "prod", "idc": "cn0"})).unwrap();
        assert_eq!(
            both.issue_identity(&anonymous, "10.0.0.1".parse().unwrap()),
            None
        );
        assert!(both
            .issue_identity(&record, "10.0.0.1".parse().unwrap())
            .is_some());

        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "not a key").unwrap();
        let e = Identity::load(&IdentityConfig {
            signing_key: Some(bad),
            ..IdentityConfig::default()
        })
        .unwrap_err();
        assert!(e.contains("bad.pem"), "{e}");
        let e = Identity::load(&IdentityConfig {
            lifetime: Duration::ZERO,
            ..config
        })
        .unwrap_err();
        assert!(e.contains("lifetime"), "{e}");
    }
}
