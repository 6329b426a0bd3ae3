use thiserror::Error;

/// Why an identity was refused, or a verifier or signer could not be made.
///
/// No variant carries the token: a verification error can be logged or
/// returned to the caller without leaking a credential. Values read from a
/// token (a key id, an issuer) are cut to 64 printable characters.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// No token was given (no `Envid-Identity` header, or an empty one).
    #[error("no identity was presented")]
    Missing,
    /// Not a compact JWS of three base64url parts with JSON header and
    /// claims, not `alg: EdDSA`, or a claim missing or of the wrong type.
    #[error("malformed identity: {reason}")]
    Malformed {
        /// What is wrong, in general terms.
        reason: String,
    },
    /// The signature does not match the key named by `kid`.
    #[error("the identity's signature is not valid")]
    BadSignature,
    /// The token names a key the key set does not hold (never held, or
    /// removed by a rotation).
    #[error("the identity is signed with an unknown key {kid:?}")]
    UnknownKey {
        /// The token's `kid`.
        kid: String,
    },
    /// `exp` (plus the leeway) is past.
    #[error("the identity expired at {exp} (now {now}, unix seconds)")]
    Expired {
        /// The token's `exp`.
        exp: u64,
        /// The verifier's clock.
        now: u64,
    },
    /// `nbf` (minus the leeway) is still ahead.
    #[error("the identity is not valid before {nbf} (now {now}, unix seconds)")]
    NotYetValid {
        /// The token's `nbf`.
        nbf: u64,
        /// The verifier's clock.
        now: u64,
    },
    /// `iss` is not the expected issuer.
    #[error("the identity was issued by {found:?}, not {expected:?}")]
    WrongIssuer {
        /// The issuer required.
        expected: String,
        /// The token's `iss`.
        found: String,
    },
    /// `aud` does not name the expected audience.
    #[error("the identity is for audience {found:?}, not {expected:?}")]
    WrongAudience {
        /// The audience required.
        expected: String,
        /// The token's `aud` (a list as JSON).
        found: String,
    },
    /// The verifier has no key set: the service could not be reached and no
    /// cache file was fresh enough, or the service serves no keys.
    #[error("no identity keys: {reason}")]
    NoKeys {
        /// Why (the last endpoint's error, the cache file's state).
        reason: String,
    },
    /// A signing or verification key, or a key set, could not be read.
    #[error("invalid key: {reason}")]
    InvalidKey {
        /// What is wrong with it.
        reason: String,
    },
}

impl IdentityError {
    /// A stable, lower-case name for the kind of error (`expired`,
    /// `bad_signature`, ...), the same in the CLI's JSON, C and Java.
    pub fn kind(&self) -> &'static str {
        match self {
            IdentityError::Missing => "missing",
            IdentityError::Malformed { .. } => "malformed",
            IdentityError::BadSignature => "bad_signature",
            IdentityError::UnknownKey { .. } => "unknown_key",
            IdentityError::Expired { .. } => "expired",
            IdentityError::NotYetValid { .. } => "not_yet_valid",
            IdentityError::WrongIssuer { .. } => "wrong_issuer",
            IdentityError::WrongAudience { .. } => "wrong_audience",
            IdentityError::NoKeys { .. } => "no_keys",
            IdentityError::InvalidKey { .. } => "invalid_key",
        }
    }

    pub(crate) fn malformed(reason: impl Into<String>) -> IdentityError {
        IdentityError::Malformed {
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid_key(reason: impl Into<String>) -> IdentityError {
        IdentityError::InvalidKey {
            reason: reason.into(),
        }
    }
}

/// A value read from a token, safe to put in an error message: at most 64
/// characters, anything but printable ASCII replaced.
pub(crate) fn shown(value: &str) -> String {
    value
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}
