//! [`Filter`]: which records a consumer of events is about.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::env_type::EnvType;
use crate::protocol::HostRecord;

/// Which hosts a consumer of events is about: a record is under the filter
/// when it is for a single IP (ranges are never joined) and each field
/// that has values matches one of them (values of one field are
/// alternatives; fields are all required). The empty filter takes every
/// single-IP record.
///
/// ```
/// use envid::events::Filter;
/// let f = Filter::new().app("payment").app("billing").env_type("prod");
/// assert_eq!(f.to_string(), "app=payment,billing env_type=prod");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Application codes (a record without an app matches none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apps: Vec<String>,
    /// Environment names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub envs: Vec<String>,
    /// Environment classes (`prod`, `beta`, …), the record's `env_type`,
    /// else the one derived from its `env`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_types: Vec<String>,
    /// Data centers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub idcs: Vec<String>,
}

impl Filter {
    /// The empty filter: every single-IP record.
    pub fn new() -> Filter {
        Filter::default()
    }

    /// Also this application.
    pub fn app(mut self, app: impl Into<String>) -> Filter {
        self.apps.push(app.into());
        self
    }

    /// Also this environment.
    pub fn env(mut self, env: impl Into<String>) -> Filter {
        self.envs.push(env.into());
        self
    }

    /// Also this environment class.
    pub fn env_type(mut self, env_type: impl Into<String>) -> Filter {
        self.env_types.push(env_type.into());
        self
    }

    /// Also this data center.
    pub fn idc(mut self, idc: impl Into<String>) -> Filter {
        self.idcs.push(idc.into());
        self
    }

    /// Whether `record` is under the filter.
    pub fn matches(&self, record: &HostRecord) -> bool {
        let any = |values: &[String], v: &str| values.is_empty() || values.iter().any(|x| x == v);
        record.ip.is_some()
            && (self.apps.is_empty() || record.app.as_deref().is_some_and(|a| any(&self.apps, a)))
            && any(&self.envs, &record.env)
            && any(&self.idcs, &record.idc)
            && (self.env_types.is_empty() || {
                let derived;
                let t = match &record.env_type {
                    Some(t) => t,
                    None => {
                        derived = EnvType::of_env(&record.env);
                        &derived
                    }
                };
                any(&self.env_types, t.as_str())
            })
    }

    /// The same filter with every field's values sorted and deduplicated,
    /// so two spellings of one filter compare equal.
    pub(crate) fn normalized(&self) -> Filter {
        let norm = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v.dedup();
            v
        };
        Filter {
            apps: norm(&self.apps),
            envs: norm(&self.envs),
            env_types: norm(&self.env_types),
            idcs: norm(&self.idcs),
        }
    }
}

/// `app=a,b env=prod` (`*` for the empty filter), as messages show it.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (name, values) in [
            ("app", &self.apps),
            ("env", &self.envs),
            ("env_type", &self.env_types),
            ("idc", &self.idcs),
        ] {
            if values.is_empty() {
                continue;
            }
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{name}={}", values.join(","))?;
        }
        if first {
            f.write_str("*")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(v: serde_json::Value) -> HostRecord {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn fields_are_and_values_are_or() {
        let r = rec(serde_json::json!({"ip": "10.0.0.1", "app": "a", "env": "uat", "idc": "cn0"}));
        assert!(Filter::new().matches(&r));
        assert!(Filter::new().app("b").app("a").matches(&r));
        assert!(!Filter::new().app("b").matches(&r));
        assert!(Filter::new().app("a").idc("cn0").matches(&r));
        assert!(!Filter::new().app("a").idc("cn5").matches(&r));
        // The class is derived from `env` when the record has none.
        assert!(Filter::new().env_type("beta").matches(&r));
        assert!(!Filter::new().env_type("prod").matches(&r));
        assert!(Filter::new().env("uat").env("prod").matches(&r));
        // No app matches no app filter; a range is never under any filter.
        let no_app = rec(serde_json::json!({"ip": "10.0.0.2", "env": "prod", "idc": "cn0"}));
        assert!(!Filter::new().app("a").matches(&no_app));
        assert!(Filter::new().env("prod").matches(&no_app));
        let range = rec(serde_json::json!({"cidr": "10.0.0.0/8", "env": "prod", "idc": "cn0"}));
        assert!(!Filter::new().matches(&range));
    }

    #[test]
    fn display_and_normalized() {
        assert_eq!(Filter::new().to_string(), "*");
        let f = Filter::new().idc("cn5").app("b").app("a").app("b");
        assert_eq!(f.to_string(), "app=b,a,b idc=cn5");
        assert_eq!(f.normalized(), Filter::new().app("a").app("b").idc("cn5"));
    }
}
