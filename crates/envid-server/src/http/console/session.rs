//! The console's session cookie: after `POST /ui/login` with the read
//! token, the browser holds `envid_console=v1.<expiry>.<tag>`, where the
//! tag is HMAC-SHA-256 of the version and expiry under a key drawn at
//! random when the service starts. The cookie never holds the token, so
//! a stolen cookie ends at its expiry or at the next restart, and proves
//! nothing about the token; it is `HttpOnly` (no script reads it),
//! `SameSite=Strict` (no other site's page sends it: the console's `GET`s
//! cannot be ridden), `Path=/ui` (the API never sees it) and `Secure`
//! under TLS.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The cookie's name.
pub(super) const COOKIE: &str = "envid_console";
/// How long a session lasts.
pub(super) const SESSION_SECONDS: u64 = 12 * 3600;

/// The per-process key that signs sessions. Its `Debug` shows nothing.
pub(crate) struct SessionKey([u8; 32]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

impl SessionKey {
    /// A key from the operating system's randomness; `None` when it has
    /// none to give (then nobody can log in, and the console says so).
    pub(super) fn random() -> Option<SessionKey> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).ok()?;
        Some(SessionKey(key))
    }

    fn tag(&self, expiry: u64) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(format!("v1.{expiry}").as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The cookie value of a session ending at `expiry` (Unix seconds).
    pub(super) fn issue(&self, expiry: u64) -> String {
        let tag: String = self
            .tag(expiry)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("v1.{expiry}.{tag}")
    }

    /// Whether `value` is a session this key issued that has not ended at
    /// `now` (Unix seconds). The tag is compared in constant time.
    pub(super) fn verify(&self, value: &str, now: u64) -> bool {
        let mut parts = value.split('.');
        let (Some("v1"), Some(expiry), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let Ok(expiry) = expiry.parse::<u64>() else {
            return false;
        };
        let Some(given) = unhex(tag) else {
            return false;
        };
        let valid = bool::from(given.as_slice().ct_eq(&self.tag(expiry)));
        valid && now < expiry
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The value of cookie `name` in a `Cookie` header.
pub(super) fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_verify_until_they_end_and_only_with_their_key() {
        let key = SessionKey::random().unwrap();
        let other = SessionKey::random().unwrap();
        let value = key.issue(1_000);
        assert!(key.verify(&value, 999));
        assert!(!key.verify(&value, 1_000), "ended");
        assert!(!other.verify(&value, 999), "another process's key");
        // A later expiry with the old tag is not a session.
        let forged = value.replacen("1000", "9000", 1);
        assert!(!key.verify(&forged, 999));
        assert!(!key.verify("v1.1000.zz", 0));
        assert!(!key.verify("", 0));
        assert!(!key.verify(&format!("{value}.x"), 0));
        assert!(!format!("{key:?}").contains(&format!("{:?}", key.0)));
    }

    #[test]
    fn cookies_are_found_by_name() {
        let h = "a=1; envid_console=v1.2.ab; b=3";
        assert_eq!(cookie(h, COOKIE), Some("v1.2.ab"));
        assert_eq!(cookie(h, "c"), None);
    }
}
