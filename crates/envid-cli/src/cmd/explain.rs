//! `envid explain HOSTNAME`: which hostname rule matches and what it reads.

use std::path::Path;
use std::process::ExitCode;

use envid::rules::Rules;

use crate::cli::Format;
use crate::output;

pub fn run(hostname: &str, rules: Option<&Path>, format: Format) -> Result<ExitCode, String> {
    let rules = match rules {
        Some(p) => Rules::load(p).map_err(|e| e.to_string())?,
        None => Rules::builtin(),
    };
    let Some(m) = rules.explain(hostname) else {
        eprintln!("envid: no hostname rule matches {hostname:?}");
        return Ok(ExitCode::from(1));
    };
    match format {
        Format::Text => {
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
        }
        _ => print!("{}", output::structured(&m, Format::Json)?),
    }
    Ok(ExitCode::SUCCESS)
}
