//! Hostname rules: the fixture cases of `testdata/hostnames.toml` against the
//! built-in rules, and the rules files of `testdata/rules/`.

use std::path::{Path, PathBuf};

use envid::rules::{HostnameMatch, Rule, Rules, RulesError, RulesErrorKind, BUILTIN_RULE_NAME};
use envid::EnvType;
use serde::Deserialize;

fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(rel)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixtures {
    case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    hostname: String,
    #[serde(default)]
    note: Option<String>,
    #[serde(default = "yes")]
    matches: bool,
    rule: Option<String>,
    env: Option<String>,
    env_type: Option<String>,
    #[serde(default)]
    env_defaulted: bool,
    idc: Option<String>,
    app: Option<String>,
    biz: Option<String>,
}

fn yes() -> bool {
    true
}

impl Case {
    fn expected(&self) -> Option<HostnameMatch> {
        if !self.matches {
            return None;
        }
        let hostname = self.hostname.to_ascii_lowercase();
        Some(HostnameMatch {
            rule: self.rule.clone().expect("rule"),
            hostname: hostname.strip_suffix('.').unwrap_or(&hostname).to_string(),
            env: self.env.clone().expect("env"),
            env_defaulted: self.env_defaulted,
            env_type: EnvType::from_class_name(self.env_type.as_deref().expect("env_type")),
            idc: self.idc.clone(),
            app: self.app.clone(),
            biz: self.biz.clone(),
        })
    }
}

#[test]
fn every_fixture_case() {
    let text = std::fs::read_to_string(testdata("hostnames.toml")).unwrap();
    let fixtures: Fixtures = toml::from_str(&text).unwrap();
    assert!(fixtures.case.len() >= 40, "{} cases", fixtures.case.len());
    let rules = Rules::builtin();
    let mut failures = Vec::new();
    for (i, case) in fixtures.case.iter().enumerate() {
        let got = rules.explain(&case.hostname);
        let want = case.expected();
        if got != want {
            failures.push(format!(
                "case #{} {:?} ({}):\n    want {want:?}\n    got  {got:?}",
                i + 1,
                case.hostname,
                case.note.as_deref().unwrap_or("-"),
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        fixtures.case.len(),
        failures.join("\n")
    );
}

#[test]
fn builtin_is_shared_and_named() {
    let a = Rules::builtin();
    let b = Rules::builtin();
    assert_eq!(a.rules().len(), 1);
    assert_eq!(a.rules()[0].name(), BUILTIN_RULE_NAME);
    assert_eq!(a.rules()[0].default_env(), Some("prod"));
    assert_eq!(b.aliases(), a.aliases());
    assert!(!a.replaces_builtin());
}

#[test]
fn builtin_alias_table() {
    let r = Rules::builtin();
    let cases = [
        ("prod", EnvType::Prod),
        ("Production", EnvType::Prod),
        ("PRD", EnvType::Prod),
        ("online", EnvType::Prod),
        ("beta", EnvType::Beta),
        ("betanoah", EnvType::Beta),
        ("staging", EnvType::Beta),
        ("stage", EnvType::Beta),
        ("pre", EnvType::Beta),
        ("preprod", EnvType::Beta),
        ("uat", EnvType::Beta),
        ("dev", EnvType::Dev),
        ("development", EnvType::Dev),
        ("test", EnvType::Test),
        ("testing", EnvType::Test),
        ("QA", EnvType::Test),
        ("fat", EnvType::Test),
        ("sit", EnvType::Test),
        ("local", EnvType::Local),
        ("Perf", EnvType::Other("perf".into())),
        (" beta ", EnvType::Beta),
    ];
    for (name, class) in cases {
        assert_eq!(r.env_type_of(name), class, "{name:?}");
    }
}

#[test]
fn serializes_as_json() {
    let m = Rules::builtin().explain("l-qmq1.h.cn5").unwrap();
    let json = serde_json::to_value(&m).unwrap();
    assert_eq!(json["env_type"], "prod");
    assert_eq!(json["env_defaulted"], true);
    assert_eq!(json["rule"], "kvm-default");
}

#[test]
fn added_rule_wins_over_builtin() {
    let r = Rules::load(&testdata("rules/good/added.toml")).unwrap();
    let names: Vec<&str> = r.rules().iter().map(|r| r.name()).collect();
    assert_eq!(names, ["web", "ops-dev", BUILTIN_RULE_NAME]);

    let m = r.explain("web-order-3.perf.cn2").unwrap();
    assert_eq!(m.rule, "web");
    assert_eq!(m.env, "perf");
    assert_eq!(m.env_type, EnvType::Test); // the file's alias
    assert_eq!(m.app.as_deref(), Some("order"));
    assert_eq!(m.biz, None);

    // The built-in rule would say prod; the file's rule comes first.
    let m = r.explain("l-k8sproxy12.ops.cn3").unwrap();
    assert_eq!(m.rule, "ops-dev");
    assert_eq!((m.env.as_str(), m.env_defaulted), ("dev", true));
    assert_eq!(m.app.as_deref(), Some("k8sproxy"));
    assert_eq!(m.biz.as_deref(), Some("ops"));

    // Unanchored pattern in the file: still a whole-name match, so this falls
    // through to the built-in rule.
    let m = r.explain("l-k8sproxy12.ops.beta.cn3").unwrap();
    assert_eq!(m.rule, BUILTIN_RULE_NAME);
    assert_eq!(m.env, "beta");

    // Still the built-in rule for the rest.
    let m = r.explain("l-qmq1.h.cn5").unwrap();
    assert_eq!(m.rule, BUILTIN_RULE_NAME);
}

#[test]
fn replace_builtin() {
    let r = Rules::load(&testdata("rules/good/replace.toml")).unwrap();
    assert!(r.replaces_builtin());
    assert_eq!(r.rules().len(), 1);
    assert_eq!(r.explain("l-qmq1.h.cn5"), None);
    let m = r.explain("VM-Cache7.CN4").unwrap();
    assert_eq!(m.rule, "kvm-default");
    assert_eq!(m.env, "production");
    assert!(m.env_defaulted);
    assert_eq!(m.env_type, EnvType::Prod);
    assert_eq!(m.idc.as_deref(), Some("cn4"));
    let m = r.explain("vm-cache7.beta.cn4").unwrap();
    assert_eq!((m.env.as_str(), m.env_type), ("beta", EnvType::Beta));
}

#[test]
fn custom_aliases() {
    let r = Rules::load(&testdata("rules/good/aliases.toml")).unwrap();
    assert_eq!(r.env_type_of("perf"), EnvType::Test);
    assert_eq!(r.env_type_of("GRAY"), EnvType::Beta);
    assert_eq!(r.env_type_of("pre"), EnvType::Test);
    assert_eq!(r.env_type_of("staging"), EnvType::Beta); // built-ins stay
    assert_eq!(r.aliases().get("gray"), Some(&EnvType::Beta));
    let m = r.explain("l-a1.h.gray.cn0").unwrap();
    assert_eq!(m.env_type, EnvType::Beta);
    // An alias after the idc makes the built-in rule refuse the name, as
    // `l-a1.h.cn0.beta` does; with the built-in table it reads as a domain.
    assert_eq!(r.explain("l-a1.h.cn0.perf"), None);
    assert!(Rules::builtin().explain("l-a1.h.cn0.perf").is_some());
}

#[test]
fn empty_file_switches_rules_off() {
    let r = Rules::load(&testdata("rules/good/empty.toml")).unwrap();
    assert!(r.rules().is_empty());
    assert_eq!(r.explain("l-qmq1.h.cn5"), None);
    assert_eq!(r.env_type_of("beta"), EnvType::Beta);
}

#[test]
fn parse_without_path() {
    let r = Rules::parse("[aliases]\nperf = \"test\"\n", None).unwrap();
    assert_eq!(r.env_type_of("perf"), EnvType::Test);
    let e = Rules::parse("[aliases]\nperf = \"nope\"\n", None).unwrap_err();
    assert_eq!(e.path, None);
    assert_eq!(e.kind, RulesErrorKind::InvalidAlias);
    assert_eq!(e.to_string().lines().next().unwrap().split(':').count(), 3);
}

fn bad(name: &str) -> RulesError {
    let path = testdata(&format!("rules/bad/{name}"));
    let err = Rules::load(&path).expect_err(name);
    assert_eq!(err.path.as_deref(), Some(path.as_path()), "{name}: {err}");
    assert!(
        err.to_string().starts_with(&path.display().to_string()),
        "{name}: {err}"
    );
    err
}

/// A bad file, the error kind, the rule named, the line and column (when given).
type BadCase = (
    &'static str,
    RulesErrorKind,
    Option<&'static str>,
    Option<(usize, Option<usize>)>,
);

/// Kind, rule name and line (and column when given) of each bad file.
#[test]
fn bad_files() {
    #[rustfmt::skip]
    let cases: &[BadCase] = &[
        ("syntax.toml", RulesErrorKind::Syntax, None, Some((3, None))),
        ("wrong_type.toml", RulesErrorKind::Syntax, None, Some((2, Some(19)))),
        ("unknown_key.toml", RulesErrorKind::Syntax, None, Some((4, Some(1)))),
        ("missing_pattern.toml", RulesErrorKind::Syntax, None, Some((1, None))),
        ("not_utf8.toml", RulesErrorKind::Syntax, None, Some((2, Some(6)))),
        ("regex.toml", RulesErrorKind::InvalidRegex, Some("broken"), Some((3, Some(11)))),
        ("no_idc.toml", RulesErrorKind::InvalidRule, Some("no-idc"), Some((3, Some(11)))),
        ("empty_name.toml", RulesErrorKind::InvalidRule, None, Some((2, Some(8)))),
        ("duplicate.toml", RulesErrorKind::InvalidRule, Some("web"), Some((7, Some(8)))),
        ("duplicate_builtin.toml", RulesErrorKind::InvalidRule, Some("kvm-default"), Some((3, Some(8)))),
        ("unknown_group.toml", RulesErrorKind::InvalidRule, Some("typo"), Some((3, Some(11)))),
        ("no_env.toml", RulesErrorKind::InvalidRule, Some("no-env"), Some((3, Some(11)))),
        ("default_env.toml", RulesErrorKind::InvalidRule, Some("blank-default"), Some((4, Some(15)))),
        ("alias_class.toml", RulesErrorKind::InvalidAlias, None, Some((2, Some(8)))),
        ("alias_remap_class.toml", RulesErrorKind::InvalidAlias, None, Some((3, Some(8)))),
        ("alias_name.toml", RulesErrorKind::InvalidAlias, None, Some((2, Some(14)))),
    ];
    let mut failures = Vec::new();
    for (name, kind, rule, at) in cases {
        let err = bad(name);
        let got_at = err.location.as_ref().map(|l| (l.line, l.column));
        let at_ok = match (at, got_at) {
            (None, None) => true,
            (Some((line, None)), Some((l, _))) => *line == l,
            (Some((line, Some(col))), Some((l, c))) => (*line, *col) == (l, c),
            _ => false,
        };
        if err.kind != *kind || err.rule.as_deref() != *rule || !at_ok {
            failures.push(format!(
                "{name}: want {kind:?} rule {rule:?} at {at:?}; got {:?} rule {:?} at {got_at:?}: {err}",
                err.kind, err.rule
            ));
        }
        assert!(!err.message.is_empty(), "{name}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn error_messages_say_what_is_wrong() {
    let e = bad("unknown_key.toml");
    assert!(e.message.contains("defualt_env"), "{e}");
    let e = bad("duplicate_builtin.toml");
    assert!(e.message.contains("replace_builtin"), "{e}");
    let e = bad("alias_class.toml");
    assert!(e.message.contains("performance"), "{e}");
    let e = bad("regex.toml");
    assert!(e.to_string().contains("rule \"broken\""), "{e}");
    let e = bad("unknown_group.toml");
    assert!(e.message.contains("evn"), "{e}");
}

#[test]
fn io_errors() {
    let missing = testdata("rules/does-not-exist.toml");
    let e = Rules::load(&missing).unwrap_err();
    assert_eq!(e.kind, RulesErrorKind::Io);
    assert_eq!(e.path.as_deref(), Some(missing.as_path()));
    assert!(e.to_string().contains("does-not-exist.toml"), "{e}");

    let dir = testdata("rules");
    let e = Rules::load(&dir).unwrap_err();
    assert_eq!(e.kind, RulesErrorKind::Io, "{e}");
}

#[test]
fn rule_new_checks() {
    let r = Rule::new("x", r"h\.(?P<idc>cn\d+)", Some("Beta")).unwrap();
    assert_eq!(r.default_env(), Some("beta"));
    assert_eq!(r.pattern(), r"h\.(?P<idc>cn\d+)");
    let e = Rule::new("x", "(", None).unwrap_err();
    assert_eq!(
        (e.kind, e.rule.as_deref()),
        (RulesErrorKind::InvalidRegex, Some("x"))
    );
    let e = Rule::new(" ", r"(?P<idc>cn\d+)", Some("prod")).unwrap_err();
    assert_eq!(e.kind, RulesErrorKind::InvalidRule);
    let e = Rule::new("x", r"(?P<env>[a-z]+)", Some("prod")).unwrap_err();
    assert_eq!(e.kind, RulesErrorKind::InvalidRule);
    let e = Rule::new("x", r"(?P<idc>cn\d+)", Some("pro d")).unwrap_err();
    assert_eq!(e.kind, RulesErrorKind::InvalidRule);
}

#[test]
fn trace_says_why_each_rule_did_not_read_a_hostname() {
    use envid::rules::RuleOutcome;
    let r = Rules::builtin();
    let t = r.trace("L-A1.H.CN0.BETA.");
    assert_eq!(t.hostname, "l-a1.h.cn0.beta");
    assert!(t.matched.is_none());
    assert_eq!(t.attempts.len(), 1);
    assert_eq!(t.attempts[0].outcome, RuleOutcome::EnvAfterIdc);
    assert!(
        t.attempts[0].reason.contains("refused on purpose")
            && t.attempts[0].reason.contains("l-<app>.<biz>.beta.cn0"),
        "{}",
        t.attempts[0].reason
    );
    for (host, hint) in [
        ("web-3", "does not start with \"l-\""),
        ("l-web1.f.example", "no idc label"),
        ("l-web1.cn0", "<biz> labels before the idc"),
        ("l-123.f.cn0", "must end in a letter"),
    ] {
        let t = r.trace(host);
        assert_eq!(t.attempts[0].outcome, RuleOutcome::NoMatch, "{host}");
        let reason = &t.attempts[0].reason;
        assert!(
            reason.contains(envid::rules::BUILTIN_CONVENTION),
            "{reason}"
        );
        assert!(reason.contains(hint), "{host}: {reason}");
    }
    // A match ends the trace; its attempt is the last.
    let t = r.trace("l-qmq1.h.cn5");
    assert_eq!(t.matched, r.explain("l-qmq1.h.cn5"));
    assert_eq!(t.attempts.last().unwrap().outcome, RuleOutcome::Matched);
    // User rules name their pattern; every rule tried is listed, in order.
    let file = Rules::parse(
        "[[rule]]\nname = \"web\"\npattern = '^web-(?P<idc>cn\\d+)$'\ndefault_env = \"prod\"\n",
        None,
    )
    .unwrap();
    let t = file.trace("web-3");
    let names: Vec<&str> = t.attempts.iter().map(|a| a.rule.as_str()).collect();
    assert_eq!(names, ["web", "kvm-default"]);
    assert!(
        t.attempts[0].reason.contains("web-(?P<idc>"),
        "{}",
        t.attempts[0].reason
    );
    let t = r.trace(&"a".repeat(300));
    assert!(t.attempts.is_empty() && t.refused.is_some());
}
