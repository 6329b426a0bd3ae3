//! `envid inspect`, `check`, `explain` and usage errors: the "where am I"
//! commands, on the fixtures under testdata/.

use super::common::*;
use std::process::Command;

#[test]
fn inspect_example_text() {
    let ex = testdata("example.toml");
    let o = envid(&["inspect", "--descriptor", ex.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for needle in [
        "flight_order",
        "beta",
        "noahauto-2",
        "cn0",
        "container",
        "k8s.pod",
        "labels.team",
    ] {
        assert!(out.contains(needle), "missing {needle} in\n{out}");
    }
    assert!(!out.contains("tok-example"), "token leaked:\n{out}");
    assert!(out.contains("<redacted>"));
}

#[test]
fn inspect_json_has_model_keys_and_no_token() {
    let ex = testdata("example.toml");
    let o = envid(&[
        "inspect",
        "--descriptor",
        ex.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("valid JSON");
    for k in [
        "app", "env", "env_type", "sub_env", "idc", "platform", "hostname", "release", "k8s",
        "labels",
    ] {
        assert!(v.get(k).is_some(), "missing {k}: {v}");
    }
    assert_eq!(v["env_type"], "beta");
    assert_eq!(v["release"]["batch"], 2);
    assert!(v.get("token").is_none());
    assert!(v.get("sources").is_none());
}

#[test]
fn inspect_explain_and_show_secrets() {
    let ex = testdata("example.toml");
    let ex = ex.to_str().unwrap();
    let o = envid(&[
        "inspect",
        "--descriptor",
        ex,
        "--format",
        "json",
        "--explain",
        "--show-secrets",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["token"], "tok-example-3f9a1c");
    assert_eq!(v["sources"]["env"]["kind"], "descriptor");
    assert!(v["sources"]["env"]["detail"]
        .as_str()
        .unwrap()
        .ends_with("example.toml"));
    assert_eq!(v["sources"]["hostname"]["kind"], "probe");

    let o = envid(&["inspect", "--descriptor", ex, "--explain"]);
    let out = stdout(&o);
    assert!(out.contains("(descriptor "), "{out}");
    assert!(out.contains("(alias table"), "{out}");
}

#[test]
fn inspect_toml_output_parses() {
    let ex = testdata("example.toml");
    let o = envid(&[
        "inspect",
        "--descriptor",
        ex.to_str().unwrap(),
        "--format",
        "toml",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: toml::Table = toml::from_str(&stdout(&o)).expect("valid TOML");
    assert_eq!(v["idc"].as_str(), Some("cn0"));
}

#[test]
fn inspect_env_vars_apply_unless_switched_off() {
    let ex = testdata("example.toml");
    let ex = ex.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["inspect", "--descriptor", ex, "--format", "json"];
        args.extend_from_slice(extra);
        let mut c = Command::new(env!("CARGO_BIN_EXE_envid"));
        c.args(&args).env("ENVID_ENV", "prod");
        let o = c.output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["env"].as_str().unwrap().to_string()
    };
    assert_eq!(run(&[]), "prod");
    assert_eq!(run(&["--no-env-vars"]), "beta");
}

#[test]
fn inspect_unidentified_host_exits_1_naming_sources_and_facts() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::write(root.path().join("etc/hostname"), "web-3\n").unwrap();
    std::fs::write(root.path().join(".dockerenv"), "").unwrap();
    let o = envid(&["inspect", "--root", root.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let err = stderr(&o);
    for needle in [
        "not identified",
        "environment.toml",
        "environment.json",
        "file not found",
        "no match for hostname",
        "web-3",
    ] {
        assert!(err.contains(needle), "missing {needle} in stderr:\n{err}");
    }
    let out = stdout(&o);
    assert!(out.contains("facts found"), "{out}");
    assert!(out.contains("hostname") && out.contains("web-3"), "{out}");
    assert!(out.contains("platform"), "{out}");

    let o = envid(&[
        "inspect",
        "--root",
        root.path().to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["identified"], false);
    assert_eq!(v["missing"], serde_json::json!(["env", "idc"]));
    assert_eq!(v["found"]["hostname"]["value"], "web-3");
}

#[test]
fn inspect_missing_descriptor_exits_1() {
    let o = envid(&["inspect", "--descriptor", "/nonexistent/env.toml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/nonexistent/env.toml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(
        envid(&["inspect", "--format", "yaml"]).status.code(),
        Some(2)
    );
    assert_eq!(envid(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(envid(&["check"]).status.code(), Some(2));
}

#[test]
fn check_valid_descriptor_exits_0() {
    let ex = testdata("example.toml");
    let o = envid(&["check", ex.to_str().unwrap()]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("valid"));
}

#[test]
fn check_lists_every_problem_with_location() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(
        &p,
        "schema = 1\napp = \"\"\nenv = \"beta\"\nidc = \"cn0\"\nip = \"10.0.0.300\"\n",
    )
    .unwrap();
    let o = envid(&["check", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    let file = p.display().to_string();
    assert!(
        out.contains(&format!("{file}:2:")),
        "app problem located:\n{out}"
    );
    assert!(
        out.contains(&format!("{file}:5:")),
        "ip problem located:\n{out}"
    );
    assert!(out.contains("invalid (2 errors)"), "{out}");

    let o = envid(&["check", p.to_str().unwrap(), "--format", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"].as_array().unwrap().len(), 2);
    assert_eq!(v["errors"][1]["line"], 5);
}

#[test]
fn check_warns_on_unknown_keys_and_strict_refuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.toml");
    std::fs::write(
        &p,
        "schema = 1\napp = \"a\"\nenv = \"beta\"\nidc = \"cn0\"\ncolour = \"red\"\n",
    )
    .unwrap();
    let o = envid(&["check", p.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("warning"), "{}", stdout(&o));
    assert!(stdout(&o).contains("colour"), "{}", stdout(&o));
    let o = envid(&["check", "--strict", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains(":5:"), "{}", stdout(&o));
}

#[test]
fn explain_beta_hostname_json() {
    let o = envid(&[
        "explain",
        "l-flightqma9.f.beta.cn0.example.com",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["env"], "beta");
    assert_eq!(v["env_type"], "beta");
    assert_eq!(v["idc"], "cn0");
    assert_eq!(v["app"], "flightqma");
    assert_eq!(v["biz"], "f");
    assert!(v["rule"].as_str().is_some());
}

#[test]
fn explain_production_hostname_text() {
    let o = envid(&["explain", "L-QMQ1.H.CN5."]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("prod"), "{out}");
    assert!(out.contains("cn5"), "{out}");
    assert!(out.contains("qmq"), "{out}");
}

#[test]
fn explain_no_match_exits_1() {
    let o = envid(&["explain", "web-3"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("web-3"));
    assert!(stdout(&o).is_empty());
}

#[test]
fn inspect_unidentified_docker_container_still_shows_its_facts() {
    let root = testdata("hosts/docker");
    let o = envid(&[
        "inspect",
        "--root",
        root.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["found"]["platform"]["value"], "container");
    assert_eq!(
        v["found"]["container"]["value"],
        "docker 3f4e8c2a9b1d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f"
    );
    assert_eq!(v["found"]["hostname"]["value"], "3f4e8c2a9b1d");
    assert_eq!(v["found"]["platform"]["source"]["kind"], "probe");
    assert!(
        stderr(&o).contains("no match for hostname"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn inspect_kvm_vm_by_hostname_fallback() {
    let root = testdata("hosts/kvm");
    let o = envid(&[
        "inspect",
        "--root",
        root.to_str().unwrap(),
        "--format",
        "json",
        "--explain",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["env"], "beta");
    assert_eq!(v["idc"], "cn0");
    assert_eq!(v["app"], "flightqma");
    assert_eq!(v["platform"], "kvm");
    assert_eq!(v["virtualization"], "kvm");
    assert_eq!(v["sources"]["env"]["kind"], "hostname_rule");
    assert_eq!(v["sources"]["env"]["detail"], "kvm-default");
    assert_eq!(v["sources"]["hostname"]["detail"], "/etc/hostname");
}

// Issue 18, item 1: every problem shows, always, with "did you mean".
#[test]
fn check_and_inspect_show_a_typoed_key_with_did_you_mean() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.toml");
    std::fs::write(
        &p,
        "schema = 1\napp = \"a\"\nevn = \"beta\"\nidc = \"cn0\"\nip = \"10.1.2.300\"\n",
    )
    .unwrap();
    let p = p.to_str().unwrap();
    let o = envid(&["check", p]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains(":5:") && out.contains("10.1.2.300"), "{out}");
    assert!(out.contains("warning") && out.contains("evn"), "{out}");
    assert!(out.contains("did you mean `env`?"), "{out}");

    let o = envid(&["check", p, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let warnings = v["warnings"].as_array().unwrap();
    assert!(warnings.iter().any(|w| w["field"] == "evn"), "{v}");
    let errors = v["errors"].to_string();
    assert!(errors.contains("did you mean `env`?"), "{v}");

    // inspect names the typo too (here the IP stops the load first).
    std::fs::write(
        dir.path().join("e.toml"),
        "schema = 1\napp = \"a\"\nevn = \"beta\"\nidc = \"cn0\"\n",
    )
    .unwrap();
    let e = dir.path().join("e.toml");
    let o = envid(&[
        "inspect",
        "--descriptor",
        e.to_str().unwrap(),
        "--root",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("evn") && err.contains("did you mean `env`?"),
        "{err}"
    );
}

// Issue 18, item 2: check is a release gate.
#[test]
fn check_fails_without_app_env_or_idc_unless_partial() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.toml");
    std::fs::write(&p, "schema = 1\napp = \"a\"\nidc = \"cn0\"\n").unwrap();
    let p = p.to_str().unwrap();
    let o = envid(&["check", p]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("invalid (1 error)"), "{}", stdout(&o));
    assert!(stdout(&o).contains("env"), "{}", stdout(&o));
    let o = envid(&["check", "--partial", p]);
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).contains("valid (1 warning)"), "{}", stdout(&o));
}

// Issue 18, item 3: values are quoted, and the message says what is valid.
#[test]
fn value_messages_quote_the_value_and_show_a_valid_one() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.toml");
    std::fs::write(
        &p,
        "schema = 1\napp = \"a\"\nenv = \"beta\"\nidc = \"cn0\"\nplatform = \"contianer\"\n\
         ip = \"10.1.2.300\"\n[release]\ndeployed_at = \"yesterday\"\n",
    )
    .unwrap();
    let o = envid(&["check", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    for needle in [
        "\"contianer\"",
        "container, kvm, physical, unknown",
        "\"10.1.2.300\"",
        "like \"10.1.2.3\"",
        "\"yesterday\"",
        "like \"2026-11-22T10:00:00Z\"",
    ] {
        assert!(out.contains(needle), "missing {needle} in\n{out}");
    }
    assert!(!out.contains("character literal"), "{out}");
}

// Issue 18, item 4: explain says why each rule did not match.
#[test]
fn explain_no_match_names_each_rule_and_why_in_text_and_json() {
    let o = envid(&["explain", "l-a1.h.cn0.beta"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("kvm-default"), "{err}");
    assert!(err.contains("refused on purpose"), "{err}");
    assert!(err.contains("l-<app>.<biz>.beta.cn0"), "{err}");

    let o = envid(&["explain", "web-3"]);
    let err = stderr(&o);
    assert!(err.contains("l-<app><n>.<biz>[.<env>].<idc>"), "{err}");
    assert!(err.contains("does not start with \"l-\""), "{err}");

    let o = envid(&["explain", "l-a1.h.cn0.beta", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("a JSON object");
    assert_eq!(v["matched"], false);
    assert_eq!(v["hostname"], "l-a1.h.cn0.beta");
    assert_eq!(v["attempts"][0]["rule"], "kvm-default");
    assert_eq!(v["attempts"][0]["outcome"], "env_after_idc");
    assert!(v["attempts"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("refused on purpose"));

    // A rules file: its rules first, each with its pattern.
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nname = \"web\"\npattern = '^web-(?P<idc>cn\\d+)$'\ndefault_env = \"prod\"\n",
    )
    .unwrap();
    let o = envid(&[
        "explain",
        "web-3",
        "--rules",
        rules.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["attempts"][0]["rule"], "web");
    assert_eq!(v["attempts"][1]["rule"], "kvm-default");

    // A match: the same object, matched true.
    let o = envid(&["explain", "l-qmq1.h.cn5", "--format", "json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["matched"], true);
    assert_eq!(v["idc"], "cn5");
    assert_eq!(v["attempts"][0]["outcome"], "matched");
}

// Issue 18, item 5: usage errors exit 2; TOML only where it exists; JSON
// says "identified" either way.
#[test]
fn usage_errors_of_lookup_check_explain_exit_2() {
    let o = envid(&["lookup", "not-an-ip", "--endpoint", "http://127.0.0.1:9"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("not-an-ip"), "{}", stderr(&o));
    let ex = testdata("example.toml");
    let ex = ex.to_str().unwrap();
    for args in [
        &["lookup", "10.0.0.5", "--format", "toml"][..],
        &["check", ex, "--format", "toml"],
        &["explain", "l-qmq1.h.cn5", "--format", "toml"],
    ] {
        let o = envid(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stdout(&o).is_empty(), "{args:?}: {}", stdout(&o));
    }
    let o = envid(&["inspect", "--descriptor", ex, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["identified"], true);
}

// Issue 18, item 9: the headline names every command.
#[test]
fn help_headline_lists_every_command() {
    let o = envid(&["--help"]);
    assert!(o.status.success());
    let out = stdout(&o);
    let headline = out.lines().next().unwrap();
    for command in [
        "inspect",
        "check",
        "explain",
        "lookup",
        "register",
        "deregister",
        "events",
        "serve",
    ] {
        assert!(headline.contains(command), "{command} not in {headline:?}");
        assert!(
            out.lines().any(|l| l.trim_start().starts_with(command)),
            "{command} not listed:\n{out}"
        );
    }
    // Operator messages name the program, not library jargon.
    let root = testdata("hosts/docker");
    let o = envid(&["inspect", "--root", root.to_str().unwrap()]);
    let err = stderr(&o);
    assert!(
        err.contains("the program (builder): it set no env, idc"),
        "{err}"
    );
    assert!(!err.contains("set in code"), "{err}");
}

// Issue 18, Kubernetes: a pod describes itself through its downward-API volume.
#[test]
fn inspect_a_pod_from_its_downward_api_volume() {
    let root = testdata("hosts/k8s-podinfo");
    let root = root.to_str().unwrap();
    let o = envid(&["inspect", "--root", root, "--explain"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("/etc/podinfo/annotations envid.io/env)"),
        "{out}"
    );
    assert!(out.contains("(podinfo "), "{out}");
    assert!(
        out.contains("k8s.pod_uid") && out.contains("6f1c2a9e-0d7b-4a43-9d2e-3f1b5c7a8e90"),
        "{out}"
    );
    let o = envid(&["inspect", "--root", root, "--format", "json", "--explain"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["env"], "beta");
    assert_eq!(v["idc"], "cn0");
    assert_eq!(v["k8s"]["pod_uid"], "6f1c2a9e-0d7b-4a43-9d2e-3f1b5c7a8e90");
    assert_eq!(v["sources"]["env"]["kind"], "podinfo");
    assert_eq!(v["sources"]["k8s.pod_uid"]["kind"], "podinfo");

    // A volume named by ENVID_PODINFO; the rules file asks for the labels.
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, "[podinfo]\nlabels = true\n").unwrap();
    let volume = testdata("hosts/k8s-podinfo/etc/podinfo");
    let o = envid_with(
        &[
            "inspect",
            "--root",
            dir.path().to_str().unwrap(),
            "--rules",
            rules.to_str().unwrap(),
            "--format",
            "json",
        ],
        &[("ENVID_PODINFO", volume.to_str().unwrap())],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["labels"]["team"], "flight", "{v}");

    // No volume: the report lists the attempt.
    let o = envid(&["inspect", "--root", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("tried podinfo ") && stderr(&o).contains("directory not found"),
        "{}",
        stderr(&o)
    );
}
