use std::path::Path;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivatePkcs8KeyDer;

use super::claims::Claims;
use super::error::IdentityError;
use super::keys::Jwk;

/// Signs identities with one Ed25519 key (the service holds it).
///
/// ```
/// use envid::identity::Signer;
/// let signer = Signer::from_pem(&Signer::generate_pem())?;
/// println!("kid {}", signer.kid());
/// # Ok::<(), envid::identity::IdentityError>(())
/// ```
pub struct Signer {
    key: Ed25519KeyPair,
    jwk: Jwk,
    /// `base64url({"alg":"EdDSA","typ":"JWT","kid":...})`, the same for
    /// every token.
    header: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.jwk.kid)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer from an Ed25519 private key in PKCS#8 PEM (`-----BEGIN
    /// PRIVATE KEY-----`, as `envid keygen` and `openssl genpkey -algorithm
    /// ed25519` write it).
    pub fn from_pem(pem: &str) -> Result<Signer, IdentityError> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| {
            IdentityError::invalid_key(format!("no PKCS#8 private key in the PEM: {e}"))
        })?;
        Self::from_pkcs8_der(der.secret_pkcs8_der())
    }

    /// [`Signer::from_pem`] on a file's content.
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Signer, IdentityError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            IdentityError::invalid_key(format!("cannot read {}: {e}", path.display()))
        })?;
        Self::from_pem(&text).map_err(|e| match e {
            IdentityError::InvalidKey { reason } => {
                IdentityError::invalid_key(format!("{}: {reason}", path.display()))
            }
            other => other,
        })
    }

    /// A signer from a PKCS#8 (v1 or v2) DER Ed25519 private key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Signer, IdentityError> {
        // "maybe_unchecked" accepts PKCS#8 v1 (OpenSSL's form, without the
        // public key) as well as v2; it still derives and checks the pair.
        let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| IdentityError::invalid_key(format!("not an Ed25519 key: {e}")))?;
        let public: [u8; 32] = key
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| IdentityError::invalid_key("public key is not 32 bytes"))?;
        let jwk = Jwk::ed25519(&public);
        let header = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&serde_json::json!({
                "alg": "EdDSA",
                "typ": "JWT",
                "kid": jwk.kid,
            }))
            .expect("a header always encodes"),
        );
        Ok(Signer { key, jwk, header })
    }

    /// A new random Ed25519 key as PKCS#8 PEM (what `envid keygen` writes).
    pub fn generate_pem() -> String {
        let doc = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .expect("the system random source works");
        let b64 = STANDARD.encode(doc.as_ref());
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        pem
    }

    /// The key id (the RFC 7638 thumbprint of the public key).
    pub fn kid(&self) -> &str {
        &self.jwk.kid
    }

    /// The public key as a JWK, for the key set.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// The compact JWS (`header.claims.signature`) of `claims`, `alg:
    /// EdDSA`, with this key's `kid`.
    pub fn sign(&self, claims: &Claims) -> String {
        let payload = serde_json::to_vec(claims).expect("claims always encode");
        let mut token = String::with_capacity(self.header.len() + payload.len() * 4 / 3 + 90);
        token.push_str(&self.header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let signature = self.key.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
        token
    }
}
