//! The OpenTelemetry resource detector on the example descriptor.
#![cfg(feature = "opentelemetry")]

use std::path::Path;

use envid::otel::EnvidResourceDetector;
use envid::vars::Vars;
use opentelemetry::{Key, Value};
use opentelemetry_sdk::Resource;

#[test]
fn resource_carries_envid_facts_under_semconv_names() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/example.toml");
    let env = envid::Environment::builder()
        .descriptor(example)
        .vars(Vars::from_pairs([
            ("POD_IP", "10.2.3.4"),
            ("POD_UID", "6f1c2a9e-0d7b-4a43-9d2e-3f1b5c7a8e90"),
        ]))
        .hostname("flight-order-7d9c4-x2k8p")
        .load()
        .unwrap();
    let r = Resource::builder_empty()
        .with_detectors(&[Box::new(EnvidResourceDetector::from_environment(env))])
        .build();
    let get = |k: &'static str| r.get(&Key::from_static_str(k)).map(|v| v.to_string());
    assert_eq!(get("deployment.environment.name").as_deref(), Some("beta"));
    assert_eq!(get("service.name").as_deref(), Some("flight_order"));
    assert_eq!(get("service.version").as_deref(), Some("2.14.0"));
    assert_eq!(
        get("host.name").as_deref(),
        Some("flight-order-7d9c4-x2k8p")
    );
    assert_eq!(
        get("k8s.pod.name").as_deref(),
        Some("flight-order-7d9c4-x2k8p")
    );
    assert_eq!(
        get("k8s.pod.uid").as_deref(),
        Some("6f1c2a9e-0d7b-4a43-9d2e-3f1b5c7a8e90")
    );
    assert_eq!(get("k8s.namespace.name").as_deref(), Some("flight"));
    assert_eq!(get("k8s.node.name").as_deref(), Some("node-cn0-117"));
    assert_eq!(get("k8s.cluster.name").as_deref(), Some("k8s-cn0-a"));
    assert_eq!(get("envid.idc").as_deref(), Some("cn0"));
    assert_eq!(get("envid.sub_env").as_deref(), Some("noahauto-2"));
    assert_eq!(get("envid.platform").as_deref(), Some("container"));
    assert_eq!(get("envid.env_type").as_deref(), Some("beta"));
    match r.get(&Key::from_static_str("host.ip")) {
        Some(Value::Array(a)) => assert_eq!(a.to_string(), "[\"10.2.3.4\"]"),
        other => panic!("host.ip: {other:?}"),
    }
    assert!(r.get(&Key::from_static_str("token")).is_none());
}

#[test]
fn pod_uid_comes_from_the_downward_api_volume() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/hosts/k8s-podinfo");
    let env = envid::Environment::builder()
        .root(root)
        .vars(Vars::from_pairs([("POD_UID", "not-this-one")]))
        .load()
        .unwrap();
    let kv = EnvidResourceDetector::attributes(&env);
    let uid = kv.iter().find(|kv| kv.key.as_str() == "k8s.pod.uid");
    assert_eq!(
        uid.map(|kv| kv.value.to_string()).as_deref(),
        Some("6f1c2a9e-0d7b-4a43-9d2e-3f1b5c7a8e90")
    );
}
