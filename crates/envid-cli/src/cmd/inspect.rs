//! `envid inspect`: this host's environment, optionally with provenance.

use std::process::ExitCode;

use envid::error::Unidentified;
use envid::{Environment, Field, LoadError};
use serde_json::json;

use crate::cli::{Format, InspectArgs as Args};
use crate::output;

pub fn run(a: Args) -> Result<ExitCode, String> {
    let mut b = Environment::builder()
        .strict(a.strict)
        .env_vars(!a.no_env_vars);
    if let Some(d) = &a.descriptor {
        b = b.descriptor(d);
    }
    if let Some(r) = &a.root {
        b = b.root(r);
    }
    if let Some(r) = &a.rules {
        b = b.rules_file(r);
    }
    match b.load() {
        Ok(env) => {
            for w in env.warnings() {
                let path = env.descriptor_path().map(|p| p.display().to_string());
                eprintln!("envid: warning: {}:{w}", path.unwrap_or_default());
            }
            print!("{}", render(&env, &a)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(LoadError::Unidentified(u)) => {
            eprintln!("envid: {u}");
            print!("{}", render_unidentified(&u, a.format)?);
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.to_string()),
    }
}

fn render(env: &Environment, a: &Args) -> Result<String, String> {
    if a.format != Format::Text {
        // "identified" on success too, so a program reads one key either way.
        #[derive(serde::Serialize)]
        struct Identified<'a> {
            identified: bool,
            #[serde(flatten)]
            report: envid::environment::Report<'a>,
        }
        let v = Identified {
            identified: true,
            report: env.report(a.show_secrets, a.explain),
        };
        return output::structured(&v, a.format);
    }
    let mut rows: Vec<(String, String, Option<String>)> = Vec::new();
    let src = |f: Field| {
        a.explain
            .then(|| env.source(f).map(|s| s.to_string()))
            .flatten()
    };
    let mut row = |name: &str, value: Option<String>, f: Field| {
        if let Some(v) = value {
            rows.push((name.to_string(), v, src(f)));
        }
    };
    row("app", env.app().map(str::to_string), Field::App);
    row("env", Some(env.env().to_string()), Field::Env);
    row("env_type", Some(env.env_type().to_string()), Field::EnvType);
    row("sub_env", env.sub_env().map(str::to_string), Field::SubEnv);
    row("idc", Some(env.idc().to_string()), Field::Idc);
    row(
        "platform",
        Some(env.platform().to_string()),
        Field::Platform,
    );
    if let Some(c) = env.container() {
        row(
            "container.runtime",
            c.runtime.map(|r| r.to_string()),
            Field::Container,
        );
        row("container.id", c.id.clone(), Field::Container);
    }
    row(
        "virtualization",
        env.virtualization().map(str::to_string),
        Field::Virtualization,
    );
    row(
        "hostname",
        env.hostname().map(str::to_string),
        Field::Hostname,
    );
    row("ip", env.ip().map(|i| i.to_string()), Field::Ip);
    let token = env.token().map(|t| {
        if a.show_secrets {
            t.expose().to_string()
        } else {
            "<redacted> (--show-secrets to print)".to_string()
        }
    });
    row("token", token, Field::Token);
    if let Some(r) = env.release() {
        row("release.id", r.id.clone(), Field::Release);
        row("release.version", r.version.clone(), Field::Release);
        row(
            "release.batch",
            r.batch.map(|b| b.to_string()),
            Field::Release,
        );
        row("release.deployed_at", r.deployed_at.clone(), Field::Release);
    }
    if let Some(k) = env.k8s() {
        let sources = env.sources();
        for (name, v) in [
            ("cluster", &k.cluster),
            ("namespace", &k.namespace),
            ("pod", &k.pod),
            ("node", &k.node),
            ("workload", &k.workload),
            ("pod_uid", &k.pod_uid),
        ] {
            if let Some(v) = v {
                let s = a
                    .explain
                    .then(|| sources.get(&format!("k8s.{name}")).map(|s| s.to_string()))
                    .flatten();
                rows.push((format!("k8s.{name}"), v.clone(), s));
            }
        }
    }
    for (k, v) in env.labels() {
        rows.push((format!("labels.{k}"), v.clone(), src(Field::Labels)));
    }
    Ok(output::table(&rows))
}

fn render_unidentified(u: &Unidentified, format: Format) -> Result<String, String> {
    match format {
        Format::Text => {
            let rows: Vec<_> = u
                .found
                .iter()
                .map(|f| {
                    (
                        f.field.to_string(),
                        f.value.clone(),
                        Some(f.source.to_string()),
                    )
                })
                .collect();
            Ok(if rows.is_empty() {
                "no facts found\n".to_string()
            } else {
                format!("facts found:\n{}", output::table(&rows))
            })
        }
        _ => {
            let found: serde_json::Map<String, serde_json::Value> = u
                .found
                .iter()
                .map(|f| {
                    (
                        f.field.to_string(),
                        json!({"value": f.value, "source": f.source}),
                    )
                })
                .collect();
            let warnings: Vec<_> = u
                .warnings
                .iter()
                .map(|(path, w)| {
                    json!({
                        "file": path.display().to_string(),
                        "kind": format!("{:?}", w.kind),
                        "field": w.field,
                        "line": w.location.as_ref().map(|l| l.line),
                        "column": w.location.as_ref().map(|l| l.column),
                        "message": w.message,
                    })
                })
                .collect();
            let v = json!({
                "identified": false,
                "missing": u.missing,
                "attempts": u.attempts,
                "found": found,
                "warnings": warnings,
            });
            output::structured(&v, format)
        }
    }
}
