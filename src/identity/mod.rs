//! Signed identity: a caller proves its application and environment, and a
//! server checks it locally, without asking anyone.
//!
//! The environment service signs what it has checked: a successful
//! registration gets an *identity*, a JWT (RFC 7519) signed with Ed25519
//! (`alg: EdDSA`, RFC 8037) whose [`Claims`] carry `iss`, `sub`
//! (`envid://<app>/<env>`), `aud`, `iat`, `nbf`, `exp`, `jti` and the
//! environment (`app`, `env`, `env_type`, `idc`, `ip`, `sub_env`). The
//! service publishes its public keys as a JWK set at `GET /v1/keys`.
//!
//! * [`Signer`]: the service's side, one Ed25519 PKCS#8 key; `kid` is the
//!   key's RFC 7638 thumbprint.
//! * [`Verifier`]: any server's side. It fetches the key set once, keeps it
//!   fresh from a background thread (a conditional request per interval,
//!   failover across the endpoints, a capped jittered backoff, an optional
//!   cache file it can start from when the service is down), and verifies
//!   tokens locally: signature, `exp`/`nbf` with a leeway, `iss`, `aud`, a
//!   known `kid`. A verified token is remembered until it expires (or the
//!   key set changes), so a caller presenting the same identity again costs
//!   a hash and a map lookup. The cache is keyed by the token itself (a fast
//!   hash, then an exact comparison), not by a SHA-256 digest: hashing a
//!   500-byte token with SHA-256 alone takes longer than the whole cached
//!   path should.
//! * The header convention: `Envid-Identity: <token>`, with
//!   [`set_identity`] for an outgoing request and
//!   [`Verifier::verify_headers`] for an incoming one (`http` crate types;
//!   no web framework here).
//!
//! The tokens are plain JWTs: any JWT library given `/v1/keys` verifies
//! them. Errors ([`IdentityError`]) never contain the token.
//!
//! Part of the `lookup` feature (on by default): it reaches the service
//! through the same [`Transport`](crate::client::Transport) as the other
//! clients and adds no crate to it (ring is already rustls' crypto).
//!
//! ```no_run
//! use envid::identity::{set_identity, Verifier};
//! let config = envid::ServiceConfig::builder()
//!     .endpoint("http://envsvc.cn0.example:7070")
//!     .build()?;
//! let verifier = Verifier::builder(config)
//!     .cache_file("/var/cache/app/envid-keys.json")
//!     .build()?;
//!
//! // A server, for each request:
//! # let request = http::Request::new(());
//! match verifier.verify_headers(request.headers()) {
//!     Ok(claims) => println!("caller is {} in {}", claims.app, claims.env),
//!     Err(e) => println!("refused: {e}"),
//! }
//!
//! // A client, on each outgoing request:
//! let mut headers = http::HeaderMap::new();
//! set_identity(&mut headers, "eyJhbGciOi...")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod claims;
mod error;
mod keys;
mod signer;
mod verifier;

pub use claims::{subject, Audience, Claims};
pub use error::IdentityError;
pub use keys::{thumbprint, Jwk, KeySet};
pub use signer::Signer;
pub use verifier::{Verifier, VerifierBuilder};

/// The request header that carries an identity: `Envid-Identity: <token>`.
pub const HEADER: &str = "envid-identity";

/// The path of the service's key set.
#[deprecated(note = "use envid::protocol::KEYS_PATH")]
pub const KEYS_PATH: &str = crate::protocol::KEYS_PATH;

/// Puts `token` in `headers` as `Envid-Identity`, replacing any there, and
/// marks it sensitive (HTTP/2 and HTTP/3 encoders then never index it).
/// `Malformed` when it cannot be a header value (a JWT always can).
pub fn set_identity(headers: &mut http::HeaderMap, token: &str) -> Result<(), IdentityError> {
    let mut value = http::HeaderValue::from_str(token)
        .map_err(|_| IdentityError::malformed("not a valid header value"))?;
    value.set_sensitive(true);
    headers.insert(http::HeaderName::from_static(HEADER), value);
    Ok(())
}

/// The token of the one `Envid-Identity` header: `Missing` without one (or
/// with an empty one), `Malformed` with several or one that is not text.
pub fn identity_from_headers(headers: &http::HeaderMap) -> Result<&str, IdentityError> {
    let mut values = headers.get_all(HEADER).iter();
    let value = values.next().ok_or(IdentityError::Missing)?;
    if values.next().is_some() {
        return Err(IdentityError::malformed(
            "more than one Envid-Identity header",
        ));
    }
    let token = value
        .to_str()
        .map_err(|_| IdentityError::malformed("the header is not ASCII"))?
        .trim();
    if token.is_empty() {
        return Err(IdentityError::Missing);
    }
    Ok(token)
}

/// 128 random bits, base64url: a token's `jti`.
pub(crate) fn random_id() -> String {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random source works");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Now, in unix seconds.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
