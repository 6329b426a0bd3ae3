//! Where process environment variables are read from.
//!
//! Loading reads variables through [`Vars`] rather than `std::env` directly,
//! so tests (and embedders) can hand in a fixed set without touching the
//! process environment, which is racy to change in a running program.

use std::collections::BTreeMap;

/// A source of environment variables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Vars {
    /// The real process environment.
    #[default]
    Process,
    /// A fixed map (tests, embedders); nothing is read from the process.
    Map(BTreeMap<String, String>),
}

impl Vars {
    /// A fixed set of variables from `(name, value)` pairs.
    pub fn from_pairs<I, K, V>(pairs: I) -> Vars
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Vars::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// The value of `name`, trimmed; unset, empty and non-UTF-8 values are `None`.
    pub fn get(&self, name: &str) -> Option<String> {
        let raw = match self {
            Vars::Process => std::env::var(name).ok()?,
            Vars::Map(m) => m.get(name)?.clone(),
        };
        let t = raw.trim();
        if t.is_empty() {
            None
        } else {
            Some(t.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_vars_trim_and_drop_empty() {
        let v = Vars::from_pairs([("A", " x "), ("B", "  ")]);
        assert_eq!(v.get("A").as_deref(), Some("x"));
        assert_eq!(v.get("B"), None);
        assert_eq!(v.get("C"), None);
    }
}
