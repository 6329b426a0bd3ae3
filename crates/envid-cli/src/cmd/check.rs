//! `envid check FILE`: validates a descriptor, listing every problem. The
//! release system runs it as its gate, so a descriptor that cannot identify
//! a host (no `app`, `env` or `idc`) fails unless `--partial` says other
//! sources complete it on purpose.

use std::path::Path;
use std::process::ExitCode;

use envid::descriptor::{self, Problem, ProblemKind};
use serde_json::json;

use crate::cli::{Format, ReportFormat};
use crate::output;

pub fn run(
    file: &Path,
    strict: bool,
    partial: bool,
    format: ReportFormat,
) -> Result<ExitCode, String> {
    let (mut errors, mut warnings) = match descriptor::read(file, strict) {
        Ok(p) => (Vec::new(), p.warnings),
        Err(e) => (e.problems, e.warnings),
    };
    if !partial {
        let (missing, rest): (Vec<_>, Vec<_>) = warnings
            .into_iter()
            .partition(|w| w.kind == ProblemKind::MissingField);
        warnings = rest;
        errors.extend(missing.into_iter().map(|mut p| {
            p.message
                .push_str(" (a release gate needs it; --partial allows its absence)");
            p
        }));
    }
    let valid = errors.is_empty();
    match format {
        ReportFormat::Text => {
            for p in &errors {
                println!("{}", line(file, "error", p));
            }
            for p in &warnings {
                println!("{}", line(file, "warning", p));
            }
            if valid {
                println!(
                    "{}: valid ({} warning{})",
                    file.display(),
                    warnings.len(),
                    if warnings.len() == 1 { "" } else { "s" }
                );
            } else {
                println!(
                    "{}: invalid ({} error{})",
                    file.display(),
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" }
                );
            }
        }
        ReportFormat::Json => {
            let v = json!({
                "file": file.display().to_string(),
                "valid": valid,
                "errors": errors.iter().map(to_json).collect::<Vec<_>>(),
                "warnings": warnings.iter().map(to_json).collect::<Vec<_>>(),
            });
            print!("{}", output::structured(&v, Format::Json)?);
        }
    }
    Ok(if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `file:line:col: error: field: message`, the form editors jump to.
fn line(file: &Path, severity: &str, p: &Problem) -> String {
    let loc = p
        .location
        .as_ref()
        .map(|l| format!(":{}:{}", l.line, l.column))
        .unwrap_or_default();
    let field = p
        .field
        .as_ref()
        .map(|f| format!("{f}: "))
        .unwrap_or_default();
    format!("{}{loc}: {severity}: {field}{}", file.display(), p.message)
}

fn to_json(p: &Problem) -> serde_json::Value {
    json!({
        "kind": format!("{:?}", p.kind),
        "field": p.field,
        "line": p.location.as_ref().map(|l| l.line),
        "column": p.location.as_ref().map(|l| l.column),
        "message": p.message,
    })
}
