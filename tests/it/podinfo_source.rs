//! The downward-API volume as a source of the loader: its rank between the
//! descriptor and the `POD_*` variables, its provenance, the mapping from
//! the rules file, `k8s.pod_uid`, and the `Unidentified` report.

use std::path::{Path, PathBuf};

use envid::podinfo::{PodInfoErrorKind, PodInfoKey, PodInfoMapping};
use envid::rules::Rules;
use envid::vars::Vars;
use envid::{Environment, EnvironmentBuilder, Field, LoadError, Source};

fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(rel)
}

fn host(name: &str) -> EnvironmentBuilder {
    Environment::builder()
        .root(testdata(&format!("hosts/{name}")))
        .vars(Vars::from_pairs(Vec::<(String, String)>::new()))
}

fn pod(file: &str, key: &str) -> Source {
    Source::PodInfo {
        file: testdata(&format!("hosts/k8s-podinfo/etc/podinfo/{file}")),
        key: key.into(),
    }
}

#[test]
fn a_pod_identifies_itself_from_its_annotations_and_labels() {
    let env = host("k8s-podinfo").load().unwrap();
    assert_eq!(env.env(), "beta");
    assert_eq!(env.idc(), "cn0");
    assert_eq!(env.sub_env(), Some("noahauto-2"));
    // envid.io/app is absent: app.kubernetes.io/name, a label.
    assert_eq!(env.app(), Some("flight-order"));
    assert_eq!(
        env.source(Field::Env),
        Some(pod("annotations", "envid.io/env"))
    );
    assert_eq!(env.source(Field::Idc), Some(pod("labels", "envid.io/idc")));
    assert_eq!(
        env.source(Field::App),
        Some(pod("labels", "app.kubernetes.io/name"))
    );
    let shown = env.source(Field::Env).unwrap().to_string();
    assert!(
        shown.starts_with("podinfo ") && shown.ends_with("/etc/podinfo/annotations envid.io/env"),
        "{shown}"
    );
    let k8s = env.k8s().expect("k8s facts");
    assert_eq!(
        k8s.pod_uid.as_deref(),
        Some("6f1c2a9e-0d7b-4a43-9d2e-3f1b5c7a8e90")
    );
    assert_eq!(env.sources()["k8s.pod_uid"], pod("uid", ""));
    // Labels are offered only when the mapping asks.
    assert!(env.labels().is_empty());
}

#[test]
fn it_ranks_below_the_descriptor_and_variables_above_pod_vars() {
    let env = host("k8s-podinfo")
        .vars(Vars::from_pairs([
            ("ENVID_ENV", "prod"),
            ("POD_UID", "from-the-variable"),
            ("POD_NAME", "p-1"),
        ]))
        .load()
        .unwrap();
    assert_eq!(env.env(), "prod");
    assert_eq!(
        env.source(Field::Env),
        Some(Source::EnvVar("ENVID_ENV".into()))
    );
    assert_eq!(env.idc(), "cn0");
    let k8s = env.k8s().unwrap();
    assert_eq!(
        k8s.pod_uid.as_deref(),
        Some("6f1c2a9e-0d7b-4a43-9d2e-3f1b5c7a8e90")
    );
    assert_eq!(k8s.pod.as_deref(), Some("p-1"));

    let desc = testdata("example.toml");
    let env = host("k8s-podinfo").descriptor(&desc).load().unwrap();
    assert_eq!(env.app(), Some("flight_order"));
    assert_eq!(env.source(Field::Env), Some(Source::Descriptor(desc)));

    let rank = |s: Source| s.precedence();
    assert!(rank(Source::Descriptor("d".into())) < rank(pod("labels", "k")));
    assert!(rank(pod("labels", "k")) < rank(Source::K8sVar("POD_UID".into())));

    // Without the volume, POD_UID gives the UID.
    let env = host("kvm")
        .vars(Vars::from_pairs([("POD_UID", "u-1")]))
        .load()
        .unwrap();
    assert_eq!(env.k8s().unwrap().pod_uid.as_deref(), Some("u-1"));
    assert_eq!(
        env.sources()["k8s.pod_uid"],
        Source::K8sVar("POD_UID".into())
    );
}

#[test]
fn the_directory_is_settable_and_a_named_one_must_exist() {
    let volume = testdata("hosts/k8s-podinfo-plain/etc/podinfo");
    let env = host("kvm").podinfo_dir(&volume).load().unwrap();
    assert_eq!((env.env(), env.idc()), ("prod", "cn2"));
    assert_eq!(env.app(), Some("flight_order"));
    let env = host("kvm")
        .vars(Vars::from_pairs([(
            "ENVID_PODINFO",
            volume.to_str().unwrap(),
        )]))
        .load()
        .unwrap();
    assert_eq!(env.idc(), "cn2");

    for b in [
        host("kvm").podinfo_dir("/nonexistent/podinfo"),
        host("kvm").vars(Vars::from_pairs([(
            "ENVID_PODINFO",
            "/nonexistent/podinfo",
        )])),
    ] {
        match b.load() {
            Err(LoadError::PodInfo(e)) => {
                assert_eq!(e.kind, PodInfoErrorKind::Io);
                assert!(e.to_string().contains("/nonexistent/podinfo"), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn the_rules_file_overrides_the_mapping_and_offers_labels() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[podinfo]\napp = [\"label:team\"]\nsub_env = []\nlabels = true\n",
    )
    .unwrap();
    let env = host("k8s-podinfo").rules_file(&rules).load().unwrap();
    assert_eq!(env.app(), Some("flight"));
    assert_eq!(env.sub_env(), None);
    assert_eq!(env.label("pod-template-hash"), Some("7d9c4"));
    assert_eq!(env.label("app.kubernetes.io/name"), Some("flight-order"));
    // Keys the mapping names are facts, not labels.
    assert_eq!(env.label("team"), None);
    assert_eq!(env.label("envid.io/idc"), None);
    assert_eq!(env.source(Field::Labels), Some(pod("labels", "")));

    let parsed = Rules::parse("[podinfo]\nenv = [\"label:environment\"]\n", None).unwrap();
    assert_eq!(
        parsed.podinfo().env,
        vec!["label:environment".parse::<PodInfoKey>().unwrap()]
    );
    assert_eq!(parsed.podinfo().idc, PodInfoMapping::default().idc);
    let bad = Rules::parse("[podinfo]\nenv = [\"file:x\"]\n", None).unwrap_err();
    assert!(bad.to_string().contains("file:x"), "{bad}");

    // The same from code.
    let mapping = PodInfoMapping {
        env: vec![PodInfoKey::any("envid.io/sub-env")],
        ..PodInfoMapping::default()
    };
    let env = host("k8s-podinfo")
        .rules(Rules::builtin().with_podinfo(mapping))
        .load()
        .unwrap();
    assert_eq!(env.env(), "noahauto-2");
}

#[test]
fn the_unidentified_report_names_the_volume_and_the_keys_it_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    let volume = dir.path().join("podinfo");
    std::fs::create_dir(&volume).unwrap();
    std::fs::write(volume.join("labels"), "envid.io/idc=\"cn1\"\n").unwrap();
    let err = host("docker").podinfo_dir(&volume).load().unwrap_err();
    let LoadError::Unidentified(u) = err else {
        panic!("{err:?}")
    };
    assert_eq!(u.missing, vec![Field::Env]);
    let attempt = u
        .attempts
        .iter()
        .find(|a| a.source.kind() == "podinfo")
        .expect("a podinfo attempt");
    assert!(
        attempt.outcome.contains("no env") && attempt.outcome.contains("envid.io/env"),
        "{}",
        attempt.outcome
    );
    let ranks: Vec<u8> = u.attempts.iter().map(|a| a.source.precedence()).collect();
    assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{ranks:?}");

    // No volume at all: the report says the directory is absent.
    let Err(LoadError::Unidentified(u)) = host("docker").load() else {
        panic!("identified")
    };
    let attempt = u
        .attempts
        .iter()
        .find(|a| a.source.kind() == "podinfo")
        .expect("a podinfo attempt");
    assert!(attempt.outcome.contains("not found"), "{}", attempt.outcome);
}

#[test]
fn a_bad_value_for_a_needed_field_is_an_error_naming_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let volume = dir.path().join("podinfo");
    std::fs::create_dir(&volume).unwrap();
    std::fs::write(
        volume.join("annotations"),
        "envid.io/env=\"be\\nta\"\nenvid.io/idc=\"cn0\"\n",
    )
    .unwrap();
    match host("kvm").podinfo_dir(&volume).load() {
        Err(LoadError::PodInfo(e)) => {
            assert_eq!(e.kind, PodInfoErrorKind::InvalidValue);
            assert!(e.to_string().contains("annotations:1:"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    // A higher source gives env: the pod's bad value is not read.
    let env = host("kvm").podinfo_dir(&volume).env("beta").load().unwrap();
    assert_eq!(env.idc(), "cn0");
}
