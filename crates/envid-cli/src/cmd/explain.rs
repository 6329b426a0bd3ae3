//! `envid explain HOSTNAME`: which hostname rule matches and what it reads;
//! when none does, each rule tried and why it did not read the hostname.

use std::path::Path;
use std::process::ExitCode;

use envid::rules::Rules;

use crate::cli::{Format, ReportFormat};
use crate::output;

pub fn run(hostname: &str, rules: Option<&Path>, format: ReportFormat) -> Result<ExitCode, String> {
    let rules = match rules {
        Some(p) => Rules::load(p).map_err(|e| e.to_string())?,
        None => Rules::builtin(),
    };
    let trace = rules.trace(hostname);
    if format == ReportFormat::Json {
        // The match's fields at the top level, as before; `matched` and the
        // rules tried beside them, so a program reads the same object
        // whether a rule matched or not.
        let mut v = match &trace.matched {
            Some(m) => serde_json::to_value(m).map_err(|e| e.to_string())?,
            None => serde_json::json!({ "hostname": trace.hostname }),
        };
        v["matched"] = trace.matched.is_some().into();
        v["attempts"] = serde_json::to_value(&trace.attempts).map_err(|e| e.to_string())?;
        if let Some(why) = &trace.refused {
            v["refused"] = why.clone().into();
        }
        print!("{}", output::structured(&v, Format::Json)?);
        return Ok(if trace.matched.is_some() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let Some(m) = trace.matched else {
        eprintln!("envid: no hostname rule matches {:?}", trace.hostname);
        if let Some(why) = &trace.refused {
            eprintln!("  {why}");
        }
        if rules.rules().is_empty() {
            eprintln!("  the rules file leaves no hostname rule");
        }
        for a in &trace.attempts {
            eprintln!("  rule {:?}: {}", a.rule, a.reason);
        }
        return Ok(ExitCode::from(1));
    };
    let env = if m.env_defaulted {
        format!("{} (rule default: no env segment)", m.env)
    } else {
        m.env.clone()
    };
    let rows: Vec<(String, String, Option<String>)> = [
        ("hostname", Some(m.hostname.clone())),
        ("rule", Some(m.rule.clone())),
        ("env", Some(env)),
        ("env_type", Some(m.env_type.to_string())),
        ("idc", m.idc.clone()),
        ("app", m.app.clone()),
        ("biz", m.biz.clone()),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k.to_string(), v, None)))
    .collect();
    print!("{}", output::table(&rows));
    Ok(ExitCode::SUCCESS)
}
