//! The merge: precedence of every source, provenance, strict mode, `ENVID_*`
//! switched off, descriptor location, and the unidentified error.
//!
//! Every test hands the builder a fixed variable map, so nothing here reads or
//! changes the process environment.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use envid::descriptor::ProblemKind;
use envid::vars::Vars;
use envid::{EnvType, Environment, Field, LoadError, Platform, Source};

fn testdata(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(p)
}

fn example() -> PathBuf {
    testdata("example.toml")
}

fn no_vars() -> Vars {
    Vars::from_pairs::<_, String, String>([])
}

/// A descriptor in a temp dir with the given body (schema line added).
fn descriptor(dir: &tempfile::TempDir, name: &str, body: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, format!("schema = 1\n{body}")).unwrap();
    p
}

#[test]
fn example_descriptor_gives_every_fact_with_its_source() {
    let env = Environment::builder()
        .descriptor(example())
        .vars(no_vars())
        .load()
        .unwrap();
    let d = Source::Descriptor(example());
    assert_eq!(env.app(), Some("flight_order"));
    assert_eq!(env.env(), "beta");
    assert_eq!(env.env_type(), &EnvType::Beta);
    assert_eq!(env.sub_env(), Some("noahauto-2"));
    assert_eq!(env.idc(), "cn0");
    assert_eq!(env.platform(), Platform::Container);
    assert_eq!(env.release().unwrap().version.as_deref(), Some("2.14.0"));
    assert_eq!(
        env.k8s().unwrap().pod.as_deref(),
        Some("flight-order-7d9c4-x2k8p")
    );
    assert_eq!(env.label("team"), Some("flight"));
    assert_eq!(env.token().unwrap().expose(), "tok-example-3f9a1c");
    for f in [
        Field::App,
        Field::Env,
        Field::SubEnv,
        Field::Idc,
        Field::Platform,
        Field::Token,
        Field::Release,
        Field::K8s,
        Field::Labels,
    ] {
        assert_eq!(env.source(f), Some(d.clone()), "source of {f}");
    }
    assert_eq!(
        env.source(Field::EnvType),
        Some(Source::Alias {
            from: Box::new(d.clone())
        })
    );
    assert_eq!(env.descriptor_path(), Some(example().as_path()));
}

#[test]
fn each_source_overrides_the_one_below_for_env() {
    let dir = tempfile::tempdir().unwrap();
    let bare = descriptor(&dir, "bare.toml", "app = \"from_file\"\n");
    let full = descriptor(&dir, "full.toml", "env = \"beta\"\nidc = \"cn1\"\n");
    let host = "l-flightqma9.f.dev.cn3.example.com";

    // 5. hostname rule (descriptor has no env)
    let e = Environment::builder()
        .descriptor(&bare)
        .hostname(host)
        .vars(no_vars())
        .load()
        .unwrap();
    assert_eq!((e.env(), e.idc()), ("dev", "cn3"));
    assert!(matches!(
        e.source(Field::Env),
        Some(Source::HostnameRule(_))
    ));
    assert_eq!(
        e.app(),
        Some("from_file"),
        "descriptor app beats the rule's app"
    );

    // 3. descriptor beats the hostname rule
    let e = Environment::builder()
        .descriptor(&full)
        .hostname(host)
        .vars(no_vars())
        .load()
        .unwrap();
    assert_eq!((e.env(), e.idc()), ("beta", "cn1"));
    assert_eq!(e.source(Field::Env), Some(Source::Descriptor(full.clone())));
    assert_eq!(
        e.app(),
        Some("flightqma"),
        "app still comes from the rule, field by field"
    );
    assert!(matches!(
        e.source(Field::App),
        Some(Source::HostnameRule(_))
    ));

    // 2. ENVID_ENV beats the descriptor
    let vars = Vars::from_pairs([("ENVID_ENV", "prod"), ("ENVID_IDC", "cn9")]);
    let e = Environment::builder()
        .descriptor(&full)
        .vars(vars.clone())
        .load()
        .unwrap();
    assert_eq!((e.env(), e.idc()), ("prod", "cn9"));
    assert_eq!(
        e.source(Field::Env),
        Some(Source::EnvVar("ENVID_ENV".into()))
    );
    assert_eq!(e.env_type(), &EnvType::Prod);

    // 1. the builder beats everything
    let e = Environment::builder()
        .descriptor(&full)
        .vars(vars)
        .env("local")
        .load()
        .unwrap();
    assert_eq!(e.env(), "local");
    assert_eq!(e.source(Field::Env), Some(Source::Builder));
    assert_eq!(e.env_type(), &EnvType::Local);
    assert_eq!(
        e.source(Field::Idc),
        Some(Source::EnvVar("ENVID_IDC".into()))
    );
}

#[test]
fn every_envid_variable_is_read_and_can_be_switched_off() {
    let vars = Vars::from_pairs([
        ("ENVID_APP", "a1"),
        ("ENVID_ENV", "test"),
        ("ENVID_SUB_ENV", "s1"),
        ("ENVID_IDC", "cn7"),
        ("ENVID_PLATFORM", "kvm"),
        ("ENVID_IP", "10.9.8.7"),
    ]);
    let e = Environment::builder()
        .descriptor(example())
        .vars(vars.clone())
        .load()
        .unwrap();
    assert_eq!(e.app(), Some("a1"));
    assert_eq!(e.env(), "test");
    assert_eq!(e.sub_env(), Some("s1"));
    assert_eq!(e.idc(), "cn7");
    assert_eq!(e.platform(), Platform::Kvm);
    assert_eq!(e.ip(), Some("10.9.8.7".parse::<IpAddr>().unwrap()));
    assert_eq!(e.source(Field::Ip), Some(Source::EnvVar("ENVID_IP".into())));

    let e = Environment::builder()
        .descriptor(example())
        .vars(vars)
        .env_vars(false)
        .load()
        .unwrap();
    assert_eq!(e.app(), Some("flight_order"));
    assert_eq!(e.env(), "beta");
    assert_eq!(e.platform(), Platform::Container);
}

#[test]
fn bad_envid_variable_is_a_typed_error_naming_it() {
    let vars = Vars::from_pairs([("ENVID_IP", "10.0.0.300")]);
    let err = Environment::builder()
        .descriptor(example())
        .vars(vars)
        .load()
        .unwrap_err();
    match &err {
        LoadError::InvalidValue {
            field,
            origin,
            value,
            ..
        } => {
            assert_eq!(*field, Field::Ip);
            assert_eq!(origin, &Source::EnvVar("ENVID_IP".into()));
            assert_eq!(value, "10.0.0.300");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("ENVID_IP"), "{err}");

    let vars = Vars::from_pairs([("ENVID_PLATFORM", "mainframe")]);
    let err = Environment::builder()
        .descriptor(example())
        .vars(vars)
        .load()
        .unwrap_err();
    assert!(err.to_string().contains("mainframe"), "{err}");
}

#[test]
fn explicit_env_type_is_kept_only_from_the_source_that_gave_env() {
    let dir = tempfile::tempdir().unwrap();
    let p = descriptor(
        &dir,
        "d.toml",
        "env = \"perf\"\nenv_type = \"test\"\nidc = \"cn0\"\n",
    );
    let e = Environment::builder()
        .descriptor(&p)
        .vars(no_vars())
        .load()
        .unwrap();
    assert_eq!(e.env_type(), &EnvType::Test);
    assert_eq!(
        e.source(Field::EnvType),
        Some(Source::Descriptor(p.clone()))
    );

    // env from a higher source: the descriptor's class no longer applies.
    let vars = Vars::from_pairs([("ENVID_ENV", "perf")]);
    let e = Environment::builder()
        .descriptor(&p)
        .vars(vars)
        .load()
        .unwrap();
    assert_eq!(e.env_type(), &EnvType::Other("perf".into()));
    assert!(matches!(
        e.source(Field::EnvType),
        Some(Source::Alias { .. })
    ));
}

#[test]
fn kubernetes_variables_fill_only_what_the_descriptor_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let p = descriptor(
        &dir,
        "d.toml",
        "env = \"beta\"\nidc = \"cn0\"\n[k8s]\ncluster = \"c1\"\npod = \"from-file\"\n",
    );
    let vars = Vars::from_pairs([
        ("POD_NAME", "from-var"),
        ("POD_NAMESPACE", "ns1"),
        ("NODE_NAME", "node7"),
        ("POD_IP", "10.1.2.3"),
    ]);
    let e = Environment::builder()
        .descriptor(&p)
        .vars(vars)
        .load()
        .unwrap();
    let k = e.k8s().unwrap();
    assert_eq!(k.pod.as_deref(), Some("from-file"));
    assert_eq!(k.namespace.as_deref(), Some("ns1"));
    assert_eq!(k.node.as_deref(), Some("node7"));
    assert_eq!(k.cluster.as_deref(), Some("c1"));
    let s = e.sources();
    assert_eq!(s["k8s.pod"], Source::Descriptor(p.clone()));
    assert_eq!(s["k8s.namespace"], Source::K8sVar("POD_NAMESPACE".into()));
    assert_eq!(e.ip(), Some("10.1.2.3".parse::<IpAddr>().unwrap()));
    assert_eq!(e.source(Field::Ip), Some(Source::K8sVar("POD_IP".into())));

    // The descriptor's ip beats POD_IP.
    let p2 = descriptor(
        &dir,
        "d2.toml",
        "env = \"beta\"\nidc = \"cn0\"\nip = \"192.0.2.1\"\n",
    );
    let e = Environment::builder()
        .descriptor(&p2)
        .vars(Vars::from_pairs([("POD_IP", "10.1.2.3")]))
        .load()
        .unwrap();
    assert_eq!(e.ip(), Some("192.0.2.1".parse::<IpAddr>().unwrap()));
}

#[test]
fn builder_labels_override_descriptor_labels_key_by_key() {
    let e = Environment::builder()
        .descriptor(example())
        .vars(no_vars())
        .label("team", "hotel")
        .label("canary", "yes")
        .load()
        .unwrap();
    assert_eq!(e.label("team"), Some("hotel"));
    assert_eq!(e.label("canary"), Some("yes"));
}

#[test]
fn envid_descriptor_variable_must_exist() {
    let vars = Vars::from_pairs([("ENVID_DESCRIPTOR", "/nonexistent/envid/env.toml")]);
    let err = Environment::builder().vars(vars).load().unwrap_err();
    match err {
        LoadError::Descriptor(d) => {
            assert_eq!(d.kind(), ProblemKind::NotFound);
            assert_eq!(d.path, PathBuf::from("/nonexistent/envid/env.toml"));
        }
        other => panic!("unexpected {other:?}"),
    }
    let vars = Vars::from_pairs([("ENVID_DESCRIPTOR", example().to_str().unwrap())]);
    let e = Environment::builder().vars(vars).load().unwrap();
    assert_eq!(e.app(), Some("flight_order"));
}

#[test]
fn default_paths_are_looked_up_below_the_root_toml_before_json() {
    let root = tempfile::tempdir().unwrap();
    let etc = root.path().join("etc/envid");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(
        etc.join("environment.json"),
        r#"{"schema": 1, "env": "dev", "idc": "cn2"}"#,
    )
    .unwrap();
    let e = Environment::builder()
        .root(root.path())
        .vars(no_vars())
        .load()
        .unwrap();
    assert_eq!(e.env(), "dev");
    assert_eq!(
        e.descriptor_path(),
        Some(etc.join("environment.json").as_path())
    );

    std::fs::write(
        etc.join("environment.toml"),
        "schema = 1\nenv = \"beta\"\nidc = \"cn3\"\n",
    )
    .unwrap();
    let e = Environment::builder()
        .root(root.path())
        .vars(no_vars())
        .load()
        .unwrap();
    assert_eq!(e.env(), "beta");
}

#[test]
fn broken_descriptor_is_an_error_not_a_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("broken.toml");
    std::fs::write(&p, "schema = 1\nenv = \n").unwrap();
    let err = Environment::builder()
        .descriptor_paths([&p])
        .hostname("l-qmq1.h.cn5")
        .vars(no_vars())
        .load()
        .unwrap_err();
    assert!(
        matches!(err, LoadError::Descriptor(ref d) if d.kind() == ProblemKind::Syntax),
        "{err:?}"
    );
    assert!(err.to_string().contains("broken.toml"), "{err}");
}

#[test]
fn strict_mode_turns_unknown_keys_into_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = descriptor(
        &dir,
        "d.toml",
        "app = \"a\"\nenv = \"beta\"\nidc = \"cn0\"\nflavour = \"vanilla\"\n",
    );
    let e = Environment::builder()
        .descriptor(&p)
        .vars(no_vars())
        .load()
        .unwrap();
    assert_eq!(e.warnings().len(), 1);
    assert_eq!(e.warnings()[0].kind, ProblemKind::UnknownKey);

    let err = Environment::builder()
        .descriptor(&p)
        .vars(no_vars())
        .strict(true)
        .load()
        .unwrap_err();
    match err {
        LoadError::Descriptor(d) => {
            assert_eq!(d.kind(), ProblemKind::UnknownKey);
            assert_eq!(d.problems[0].location.as_ref().map(|l| l.line), Some(5));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn unidentified_names_every_source_and_keeps_found_facts() {
    let root = tempfile::tempdir().unwrap();
    let err = Environment::builder()
        .root(root.path())
        .hostname("web-3")
        .vars(Vars::from_pairs([("POD_IP", "10.4.5.6")]))
        .load()
        .unwrap_err();
    let LoadError::Unidentified(u) = &err else {
        panic!("unexpected {err:?}")
    };
    assert_eq!(u.missing, vec![Field::Env, Field::Idc]);
    let text = err.to_string();
    for needle in [
        "builder",
        "ENVID_ENV",
        "environment.toml",
        "environment.json",
        "file not found",
        "kubernetes",
        "hostname rule \"kvm-default\": no match for hostname \"web-3\"",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    // Attempts are typed sources in precedence order.
    let ranks: Vec<u8> = u.attempts.iter().map(|a| a.source.precedence()).collect();
    assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{ranks:?}");
    assert_eq!(u.attempts[0].source, envid::Source::Builder);
    let found: Vec<_> = u
        .found
        .iter()
        .map(|f| (f.field, f.value.as_str()))
        .collect();
    assert!(found.contains(&(Field::Hostname, "web-3")), "{found:?}");
    assert!(found.contains(&(Field::Ip, "10.4.5.6")), "{found:?}");
    assert!(
        found.iter().any(|(f, _)| *f == Field::Platform),
        "{found:?}"
    );
}

#[test]
fn unidentified_when_only_idc_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let p = descriptor(&dir, "d.toml", "env = \"beta\"\n");
    let err = Environment::builder()
        .descriptor(&p)
        .hostname("localhost")
        .vars(no_vars())
        .load()
        .unwrap_err();
    let LoadError::Unidentified(u) = err else {
        panic!()
    };
    assert_eq!(u.missing, vec![Field::Idc]);
    assert!(u
        .found
        .iter()
        .any(|f| f.field == Field::Env && f.value == "beta"));
}

#[test]
fn json_output_has_the_model_keys_and_hides_the_token() {
    let e = Environment::builder()
        .descriptor(example())
        .vars(no_vars())
        .load()
        .unwrap();
    let v = serde_json::to_value(&e).unwrap();
    for k in [
        "app", "env", "env_type", "sub_env", "idc", "platform", "release", "k8s", "labels",
    ] {
        assert!(v.get(k).is_some(), "missing key {k} in {v}");
    }
    assert!(v.get("token").is_none());
    assert!(!v.to_string().contains("tok-example"));
    let v = serde_json::to_value(e.report(true, true)).unwrap();
    assert_eq!(v["token"], "tok-example-3f9a1c");
    assert_eq!(v["sources"]["env"]["kind"], "descriptor");
    assert_eq!(v["sources"]["env_type"]["kind"], "alias");
    assert!(
        !format!("{e:?}").contains("tok-example"),
        "Debug leaks the token"
    );
}

#[test]
fn builder_platform_and_ip_skip_probing() {
    let e = Environment::builder()
        .descriptor(example())
        .vars(no_vars())
        .platform(Platform::Physical)
        .ip("192.0.2.9".parse().unwrap())
        .load()
        .unwrap();
    assert_eq!(e.platform(), Platform::Physical);
    assert_eq!(e.source(Field::Platform), Some(Source::Builder));
    assert_eq!(e.ip(), Some("192.0.2.9".parse::<IpAddr>().unwrap()));
}

#[test]
fn system_properties_rank_between_code_and_variables() {
    let e = Environment::builder()
        .descriptor(example())
        .vars(Vars::from_pairs([
            ("ENVID_ENV", "dev"),
            ("ENVID_IDC", "cn9"),
            ("ENVID_IP", "10.0.0.9"),
        ]))
        .system_properties([
            ("envid.env", "uat"),
            ("envid.app", "from_prop"),
            ("envid.ip", "10.0.0.7"),
            ("envid.sub_env", " "),
        ])
        .idc("cn1")
        .load()
        .unwrap();
    assert_eq!(e.env(), "uat");
    assert_eq!(
        e.source(Field::Env),
        Some(Source::SystemProperty("envid.env".into()))
    );
    assert_eq!(
        e.source(Field::Env).unwrap().to_string(),
        "system property envid.env"
    );
    assert_eq!(e.env_type(), &EnvType::Beta);
    assert_eq!(e.app(), Some("from_prop"));
    assert_eq!(e.ip(), Some("10.0.0.7".parse::<IpAddr>().unwrap()));
    // Code still wins; a blank property is unset.
    assert_eq!(e.idc(), "cn1");
    assert_eq!(e.source(Field::SubEnv), Some(Source::Descriptor(example())));
    // envid.descriptor names a file that must exist.
    let err = Environment::builder()
        .vars(no_vars())
        .system_properties([("envid.descriptor", "/nonexistent/env.toml")])
        .load()
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/env.toml"), "{err}");
    let err = Environment::builder()
        .vars(no_vars())
        .system_properties([("envid.ip", "10.1.2.300")])
        .descriptor(example())
        .load()
        .unwrap_err();
    assert!(
        err.to_string().contains("system property envid.ip"),
        "{err}"
    );
}

fn apollo_root(body: &str) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("opt/settings");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("server.properties"), body).unwrap();
    root
}

#[test]
fn apollo_server_properties_identify_a_host_without_a_descriptor() {
    for (name, class) in [
        ("PRO", EnvType::Prod),
        ("FAT", EnvType::Test),
        ("UAT", EnvType::Beta),
        ("FWS", EnvType::Test),
        ("LPT", EnvType::Test),
        ("TOOLS", EnvType::Prod),
        ("DEV", EnvType::Dev),
        ("LOCAL", EnvType::Local),
        ("pro", EnvType::Prod),
    ] {
        let root = apollo_root(&format!("# written by ops\nenv={name}\nidc=cn5\n"));
        let e = Environment::builder()
            .root(root.path())
            .hostname("web-3")
            .vars(no_vars())
            .load()
            .unwrap();
        let path = root.path().join("opt/settings/server.properties");
        assert_eq!(e.env(), name);
        assert_eq!(e.env_type(), &class, "{name}");
        assert_eq!(e.idc(), "cn5");
        assert_eq!(e.source(Field::Env), Some(Source::Apollo(path.clone())));
        assert_eq!(e.source(Field::Idc), Some(Source::Apollo(path)));
    }
}

#[test]
fn apollo_ranks_below_an_envid_descriptor_and_its_path_can_be_moved() {
    let root = apollo_root("env=PRO\nidc=cn5\n");
    let toml = root.path().join("etc/envid/environment.toml");
    std::fs::create_dir_all(toml.parent().unwrap()).unwrap();
    std::fs::copy(example(), &toml).unwrap();
    let e = Environment::builder()
        .root(root.path())
        .vars(no_vars())
        .load()
        .unwrap();
    assert_eq!(e.env(), "beta");
    assert_eq!(e.source(Field::Env), Some(Source::Descriptor(toml)));

    // The variable and the JVM property move the file, as in Apollo.
    let other = tempfile::tempdir().unwrap();
    let moved = other.path().join("apollo.properties");
    std::fs::write(&moved, "env=FAT\nidc=cn7\n").unwrap();
    let by_var = Environment::builder()
        .root(other.path())
        .vars(Vars::from_pairs([(
            "APOLLO_PATH_SERVER_PROPERTIES",
            moved.to_str().unwrap(),
        )]))
        .load()
        .unwrap();
    assert_eq!((by_var.env(), by_var.idc()), ("FAT", "cn7"));
    let by_prop = Environment::builder()
        .root(other.path())
        .vars(no_vars())
        .system_properties([("apollo.path.server.properties", moved.to_str().unwrap())])
        .load()
        .unwrap();
    assert_eq!(by_prop.source(Field::Env), Some(Source::Apollo(moved)));

    // Without one, the unidentified report names the file it looked for.
    let err = Environment::builder()
        .root(other.path())
        .hostname("web-3")
        .vars(no_vars())
        .load()
        .unwrap_err();
    assert!(
        err.to_string().contains("apollo ") && err.to_string().contains("server.properties"),
        "{err}"
    );
}
