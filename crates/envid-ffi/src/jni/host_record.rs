//! The `String[]` layout `io.envid.HostRecord` reads, shared by the
//! `LookupClient` and `Replica` natives.

use std::sync::{Arc, OnceLock};

use envid::protocol::HostRecord;
use jni::objects::{JObjectArray, JString};
use jni::Env;

use super::{string_array, JResult};
use crate::error::{envid_result, Fail};

fn builtin_rules() -> &'static envid::rules::Rules {
    static RULES: OnceLock<envid::rules::Rules> = OnceLock::new();
    RULES.get_or_init(envid::rules::Rules::builtin)
}

/// A host record as the `String[]` layout of `io.envid.HostRecord`.
pub(super) fn record_array<'local>(
    env: &mut Env<'local>,
    r: &HostRecord,
) -> JResult<JObjectArray<'local, JString<'local>>> {
    let json = serde_json::to_string(r)
        .map_err(|e| Fail::new(envid_result::ENVID_INTERNAL, format!("JSON: {e}")))?;
    let ip = r.ip.map(|i| i.to_string());
    let cidr = r.cidr.map(|c| c.to_string());
    let env_type = r
        .env_type
        .clone()
        .unwrap_or_else(|| builtin_rules().env_type_of(&r.env));
    let platform = r.platform.map(|p| p.as_str());
    let c = r.container.as_ref();
    let rel = r.release.as_ref();
    let batch = rel.and_then(|r| r.batch).map(|b| b.to_string());
    let k = r.k8s.as_ref();
    let mut items: Vec<Option<&str>> = vec![
        Some(&json),
        ip.as_deref(),
        cidr.as_deref(),
        r.app.as_deref(),
        Some(&r.env),
        Some(env_type.as_str()),
        r.sub_env.as_deref(),
        Some(&r.idc),
        platform,
        r.hostname.as_deref(),
        c.and_then(|c| c.runtime.as_ref()).map(|r| r.as_str()),
        c.and_then(|c| c.id.as_deref()),
        rel.and_then(|r| r.id.as_deref()),
        rel.and_then(|r| r.version.as_deref()),
        batch.as_deref(),
        rel.and_then(|r| r.deployed_at.as_deref()),
        k.and_then(|k| k.cluster.as_deref()),
        k.and_then(|k| k.namespace.as_deref()),
        k.and_then(|k| k.pod.as_deref()),
        k.and_then(|k| k.node.as_deref()),
        k.and_then(|k| k.workload.as_deref()),
        k.and_then(|k| k.pod_uid.as_deref()),
    ];
    for (key, v) in &r.labels {
        items.push(Some(key));
        items.push(Some(v));
    }
    string_array(env, &items)
}

/// A lookup's answer for Java: the record's `String[]`, or null when the
/// IP is unknown.
pub(super) fn optional_record<'local>(
    env: &mut Env<'local>,
    record: Option<Arc<HostRecord>>,
) -> JResult<JObjectArray<'local, JString<'local>>> {
    match record {
        Some(r) => record_array(env, &r),
        None => Ok(JObjectArray::default()),
    }
}
