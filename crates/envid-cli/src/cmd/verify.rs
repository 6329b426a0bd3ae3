//! `envid verify [TOKEN | --file F]`: checks a signed identity against the
//! service's keys and prints its claims.

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use envid::identity::{Claims, IdentityError, Verifier};
use serde_json::json;

use crate::cli::{ReportFormat, VerifyArgs};

fn read_token(a: &VerifyArgs) -> Result<String, String> {
    let raw = match (&a.token, &a.file) {
        (_, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        (Some(t), None) if t == "-" => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| format!("cannot read standard input: {e}"))?;
            s
        }
        (Some(t), None) => t.clone(),
        (None, None) => unreachable!("clap requires TOKEN or --file"),
    };
    Ok(raw.trim().to_string())
}

fn verify(a: &VerifyArgs, token: &str) -> Result<std::sync::Arc<Claims>, IdentityError> {
    let config = a
        .service
        .config(None)
        .map_err(|reason| IdentityError::NoKeys { reason })?;
    let mut b = Verifier::builder(config)
        .audience(a.audience.clone())
        .leeway(Duration::from_secs(a.leeway))
        .refresh_interval(Duration::from_secs(a.keys_refresh))
        .max_cache_age(Duration::from_secs(a.keys_max_age))
        .insecure_http(a.insecure_http);
    if let Some(i) = &a.issuer {
        b = b.issuer(i.clone());
    }
    if let Some(p) = &a.keys_cache {
        b = b.cache_file(p.clone());
    }
    b.build()?.verify(token)
}

pub fn run(a: VerifyArgs) -> Result<ExitCode, String> {
    let token = read_token(&a)?;
    let result = verify(&a, &token);
    match (a.format, &result) {
        (ReportFormat::Json, Ok(c)) => {
            println!("{}", json!({"valid": true, "claims": &**c}));
        }
        (ReportFormat::Json, Err(e)) => {
            let out =
                json!({"valid": false, "error": {"kind": e.kind(), "message": e.to_string()}});
            println!("{out}");
        }
        (ReportFormat::Text, Ok(c)) => {
            println!("valid identity: {}", c.sub);
            let mut rows = vec![
                ("app", c.app.clone()),
                ("env", c.env.clone()),
                (
                    "env_type",
                    c.env_type
                        .as_ref()
                        .map(|t| t.to_string())
                        .unwrap_or_default(),
                ),
                ("sub_env", c.sub_env.clone().unwrap_or_default()),
                ("idc", c.idc.clone()),
                ("ip", c.ip.map(|i| i.to_string()).unwrap_or_default()),
                ("iss", c.iss.clone()),
                ("aud", c.aud.to_string()),
                ("iat", c.iat.to_string()),
                ("nbf", c.nbf.to_string()),
                ("exp", c.exp.to_string()),
                ("jti", c.jti.clone()),
            ];
            rows.retain(|(_, v)| !v.is_empty());
            for (k, v) in rows {
                println!("  {k:<9} {v}");
            }
        }
        (ReportFormat::Text, Err(e)) => eprintln!("envid: invalid identity ({}): {e}", e.kind()),
    }
    Ok(if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
