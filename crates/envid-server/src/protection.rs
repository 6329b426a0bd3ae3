//! Protection of the static records against a mass deletion by a reload
//! (see README.md, "Protection against mass deletion"): a registry file
//! reload that would delete more than half of the static records (an empty
//! or truncated file) is refused unless
//! [`Config::allow_mass_delete`](crate::config::Config::allow_mass_delete)
//! is set, and the old registry keeps serving. The reloader applies the
//! rule and writes the [`ReloadRefusal`]; `/healthz` only reads it.
//!
//! The service's other protection, lease self-preservation, lives with the
//! lease sweep it holds back ([`crate::leases`]); its state is an
//! [`InForce`] too.

use std::sync::Mutex;

use serde::Serialize;

/// A refused reload, as `/healthz` shows it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct RefusedReload {
    /// Why, in a sentence.
    pub(crate) message: String,
    /// Static records being served.
    pub(crate) static_records: usize,
    /// How many of them the file would delete.
    pub(crate) would_delete: usize,
    /// When it was first refused.
    pub(crate) since_unix_ms: u64,
}

/// A protection in force, as `/healthz` shows it: written only by the task
/// that applies it (the reloader, the lease sweep), read by `/healthz`.
#[derive(Debug)]
pub(crate) struct InForce<T>(Mutex<Option<T>>);

impl<T> Default for InForce<T> {
    fn default() -> InForce<T> {
        InForce(Mutex::new(None))
    }
}

impl<T: Clone> InForce<T> {
    /// What `/healthz` shows: `None` when the protection is not in force.
    pub(crate) fn get(&self) -> Option<T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Says whether (and how) the protection is in force.
    pub(crate) fn set(&self, state: Option<T>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }
}

/// The reload refused now, if any.
pub(crate) type ReloadRefusal = InForce<RefusedReload>;

/// Whether a reload that deletes `would_delete` of `static_records` is a
/// mass deletion (more than half; an empty file deletes them all).
pub(crate) fn is_mass_delete(static_records: usize, would_delete: usize) -> bool {
    would_delete > 0 && would_delete * 2 > static_records
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mass_delete_is_more_than_half() {
        assert!(is_mass_delete(10, 10));
        assert!(is_mass_delete(10, 6));
        assert!(!is_mass_delete(10, 5));
        assert!(is_mass_delete(1, 1));
        assert!(!is_mass_delete(0, 0));
    }
}
