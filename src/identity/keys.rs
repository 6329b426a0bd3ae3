use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::error::IdentityError;

/// One public key of a JWKS (RFC 7517): an Ed25519 `OKP` key (RFC 8037).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type: `OKP`.
    pub kty: String,
    /// Curve: `Ed25519`.
    pub crv: String,
    /// The public key, base64url without padding.
    pub x: String,
    /// The key id: the key's RFC 7638 thumbprint.
    pub kid: String,
    /// `sig`.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// `EdDSA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
}

impl Jwk {
    /// The JWK of an Ed25519 public key, with its thumbprint as `kid`.
    pub fn ed25519(public_key: &[u8; 32]) -> Jwk {
        let x = URL_SAFE_NO_PAD.encode(public_key);
        Jwk {
            kid: thumbprint(&x),
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x,
            use_: Some("sig".into()),
            alg: Some("EdDSA".into()),
        }
    }

    /// The raw 32-byte public key, if this is a well-formed Ed25519 key.
    pub fn ed25519_public_key(&self) -> Result<[u8; 32], IdentityError> {
        if self.kty != "OKP" || self.crv != "Ed25519" {
            return Err(IdentityError::invalid_key(format!(
                "key {:?} is {}/{}, not OKP/Ed25519",
                self.kid, self.kty, self.crv
            )));
        }
        if self.alg.as_deref().is_some_and(|a| a != "EdDSA") {
            return Err(IdentityError::invalid_key(format!(
                "key {:?} is for {:?}, not EdDSA",
                self.kid, self.alg
            )));
        }
        URL_SAFE_NO_PAD
            .decode(&self.x)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
                IdentityError::invalid_key(format!(
                    "key {:?}: x is not 32 bytes of base64url",
                    self.kid
                ))
            })
    }
}

/// The RFC 7638 thumbprint of an Ed25519 key: base64url(SHA-256) of its
/// required members in lexicographic order, without whitespace.
pub fn thumbprint(x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        canonical.as_bytes(),
    ))
}

/// A JWK Set (RFC 7517, section 5): what `GET /v1/keys` serves.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySet {
    /// The keys; the first is the one that signs now.
    pub keys: Vec<Jwk>,
}

impl KeySet {
    /// Parses a JWKS document.
    pub fn from_json(bytes: &[u8]) -> Result<KeySet, IdentityError> {
        serde_json::from_slice(bytes)
            .map_err(|e| IdentityError::invalid_key(format!("not a JWK set: {e}")))
    }

    /// The key with this id.
    pub fn get(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// Decoded public keys by `kid`. Keys that are not Ed25519 are skipped
    /// (a JWKS may hold others); an Ed25519 key that is broken is an error.
    pub(crate) fn decode(&self) -> Result<HashMap<String, [u8; 32]>, IdentityError> {
        let mut out = HashMap::with_capacity(self.keys.len());
        for k in &self.keys {
            if k.kty != "OKP" || k.crv != "Ed25519" {
                continue;
            }
            out.insert(k.kid.clone(), k.ed25519_public_key()?);
        }
        Ok(out)
    }
}
