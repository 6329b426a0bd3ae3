//! OpenTelemetry interop (feature `opentelemetry`): a [`ResourceDetector`] for
//! `opentelemetry_sdk` that emits envid's facts under the semantic-convention
//! names, and envid's own facts under the `envid.` prefix.
//!
//! | attribute | from |
//! | --- | --- |
//! | `deployment.environment.name` | `env` |
//! | `service.name` | `app` |
//! | `service.version` | `release.version` |
//! | `host.name` | `hostname` |
//! | `host.ip` | `ip` (a one-element string array, as the convention says) |
//! | `container.id` | `container.id` |
//! | `k8s.pod.name`, `k8s.pod.uid`, `k8s.namespace.name`, `k8s.node.name`, `k8s.cluster.name` | `k8s.*` |
//! | `envid.idc`, `envid.sub_env`, `envid.platform`, `envid.env_type` | the same fields |
//!
//! ```no_run
//! # #[cfg(feature = "opentelemetry")] {
//! use opentelemetry_sdk::Resource;
//! let resource = Resource::builder()
//!     .with_detectors(&[Box::new(envid::otel::EnvidResourceDetector::current())])
//!     .build();
//! # }
//! ```

use opentelemetry::{Array, KeyValue, StringValue, Value};
use opentelemetry_sdk::resource::{Resource, ResourceDetector};

use crate::Environment;

/// Detects a resource from an envid [`Environment`].
#[derive(Debug)]
pub struct EnvidResourceDetector {
    env: Option<Environment>,
}

impl EnvidResourceDetector {
    /// Uses the process-wide [`crate::current`] environment at detection
    /// time; when it cannot be loaded the resource is empty, as the trait
    /// asks of a detector whose source is unavailable.
    pub fn current() -> EnvidResourceDetector {
        EnvidResourceDetector { env: None }
    }

    /// Uses this environment.
    pub fn from_environment(env: Environment) -> EnvidResourceDetector {
        EnvidResourceDetector { env: Some(env) }
    }

    /// The attributes for an environment.
    pub fn attributes(env: &Environment) -> Vec<KeyValue> {
        let mut kv = vec![
            KeyValue::new("deployment.environment.name", env.env().to_string()),
            KeyValue::new("envid.idc", env.idc().to_string()),
            KeyValue::new("envid.env_type", env.env_type().to_string()),
            KeyValue::new("envid.platform", env.platform().as_str()),
        ];
        let mut add = |key: &'static str, v: Option<&str>| {
            if let Some(v) = v {
                kv.push(KeyValue::new(key, v.to_string()));
            }
        };
        add("service.name", env.app());
        add("envid.sub_env", env.sub_env());
        add("host.name", env.hostname());
        add(
            "service.version",
            env.release().and_then(|r| r.version.as_deref()),
        );
        add(
            "container.id",
            env.container().and_then(|c| c.id.as_deref()),
        );
        if let Some(k) = env.k8s() {
            add("k8s.pod.name", k.pod.as_deref());
            add("k8s.pod.uid", k.pod_uid.as_deref());
            add("k8s.namespace.name", k.namespace.as_deref());
            add("k8s.node.name", k.node.as_deref());
            add("k8s.cluster.name", k.cluster.as_deref());
        }
        if let Some(ip) = env.ip() {
            kv.push(KeyValue::new(
                "host.ip",
                Value::Array(Array::String(vec![StringValue::from(ip.to_string())])),
            ));
        }
        kv
    }
}

impl ResourceDetector for EnvidResourceDetector {
    fn detect(&self) -> Resource {
        let env = match &self.env {
            Some(e) => e,
            None => match crate::current() {
                Ok(e) => e,
                Err(_) => return Resource::builder_empty().build(),
            },
        };
        Resource::builder_empty()
            .with_attributes(Self::attributes(env))
            .build()
    }
}
