use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::env_type::EnvType;
use crate::protocol::HostRecord;

/// The claims of an envid identity: the registered JWT claims (RFC 7519)
/// and the environment the service checked.
///
/// `sub` is `envid://<app>/<env>`; `iat`, `nbf` and `exp` are unix seconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The issuer: the service's name (`envid serve --issuer`).
    pub iss: String,
    /// `envid://<app>/<env>`.
    pub sub: String,
    /// The audience (`envid serve --audience`, default `envid`): one, or
    /// several, as the token says.
    pub aud: Audience,
    /// Issued at.
    pub iat: u64,
    /// Not before.
    pub nbf: u64,
    /// Expires at.
    pub exp: u64,
    /// A unique id of this token.
    pub jti: String,
    /// The application code.
    pub app: String,
    /// The environment name.
    pub env: String,
    /// The environment class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_type: Option<EnvType>,
    /// The data center.
    pub idc: String,
    /// The address the identity was issued to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// The sub environment, only when the service checked it (the app's
    /// credential lists the sub envs it may claim, or an operator
    /// registered it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_env: Option<String>,
    /// The registration this identity was signed from: the id the service
    /// gave it at its `PUT` ([`HostRecord::registration`]), kept by its
    /// renewals. A verifier may compare it with the registry's record for
    /// `ip` (a lookup, a replica) to accept only an identity of the
    /// registration that holds the IP now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
}

impl Claims {
    /// The claims of an identity for `record`, registered from `ip`, valid
    /// from `now` (unix seconds) for `lifetime_secs`, with a random `jti`
    /// and the record's registration id as `rid`. `None` when the record
    /// has no `app` (an identity names one).
    pub fn for_record(
        record: &HostRecord,
        ip: IpAddr,
        issuer: &str,
        audience: &str,
        now: u64,
        lifetime_secs: u64,
    ) -> Option<Claims> {
        let app = record.app.clone()?;
        let env_type = record
            .env_type
            .clone()
            .unwrap_or_else(|| EnvType::of_env(&record.env));
        Some(Claims {
            iss: issuer.to_string(),
            sub: subject(&app, &record.env),
            aud: Audience::One(audience.to_string()),
            iat: now,
            nbf: now,
            exp: now.saturating_add(lifetime_secs),
            jti: super::random_id(),
            app,
            env: record.env.clone(),
            env_type: Some(env_type),
            idc: record.idc.clone(),
            ip: Some(ip),
            sub_env: record.sub_env.clone(),
            rid: record.registration.clone(),
        })
    }

    /// The seconds from `iat` to `exp`.
    pub fn lifetime(&self) -> u64 {
        self.exp.saturating_sub(self.iat)
    }
}

/// `envid://<app>/<env>`.
pub fn subject(app: &str, env: &str) -> String {
    format!("envid://{app}/{env}")
}

/// The `aud` claim: a string or a list of strings (RFC 7519, 4.1.3), kept
/// as the token has it. Each audience is compared whole: `"other,envid"`
/// is one audience that is not `envid`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// `"aud": "envid"`.
    One(String),
    /// `"aud": ["envid", "other"]`.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `audience` is one of the audiences, compared exactly.
    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(a) => a == audience,
            Audience::Many(list) => list.iter().any(|a| a == audience),
        }
    }
}

impl std::fmt::Display for Audience {
    /// The audience, or the list as JSON (`["a","b"]`): never joined in a
    /// way that reads as another audience.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Audience::One(a) => f.write_str(a),
            Audience::Many(list) => {
                let json = serde_json::to_string(list).map_err(|_| std::fmt::Error)?;
                f.write_str(&json)
            }
        }
    }
}

impl PartialEq<str> for Audience {
    fn eq(&self, other: &str) -> bool {
        matches!(self, Audience::One(a) if a == other)
    }
}
