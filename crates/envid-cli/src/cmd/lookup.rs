//! `envid lookup IP...`: asks the environment service about IP addresses.

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use envid::lookup::{LookupClient, LookupError, LookupResult};
use envid::Secret;
use serde_json::json;

use crate::cli::Format;
use crate::output;

pub fn run(
    ips: &[String],
    endpoints: Vec<String>,
    token: Option<String>,
    timeout_ms: u64,
    format: Format,
) -> Result<ExitCode, String> {
    let mut b = LookupClient::builder()
        .request_timeout(Duration::from_millis(timeout_ms))
        .max_retries(1);
    for e in endpoints {
        b = b.endpoint(e);
    }
    if let Some(t) = token {
        b = b.token(Secret::new(t));
    }
    let client = b.build().map_err(|e| e.to_string())?;

    // Parse first; bad input is reported per IP, next to the real answers.
    let parsed: Vec<Result<IpAddr, LookupError>> = ips
        .iter()
        .map(|s| {
            s.trim()
                .parse::<IpAddr>()
                .map_err(|_| LookupError::InvalidIp { input: s.clone() })
        })
        .collect();
    let valid: Vec<IpAddr> = parsed
        .iter()
        .filter_map(|p| p.as_ref().ok().copied())
        .collect();
    let mut answers = client.lookup_many(&valid).into_iter();
    let results: Vec<(&String, LookupResult)> = ips
        .iter()
        .zip(parsed)
        .map(|(text, p)| match p {
            Ok(_) => (text, answers.next().expect("one answer per valid IP")),
            Err(e) => (text, Err(e)),
        })
        .collect();

    let mut ok = true;
    match format {
        Format::Text => {
            for (text, r) in &results {
                match r {
                    Ok(Some(rec)) => {
                        let mut line = format!("{text}  env={} idc={}", rec.env, rec.idc);
                        if let Some(a) = &rec.app {
                            line.push_str(&format!(" app={a}"));
                        }
                        if let Some(s) = &rec.sub_env {
                            line.push_str(&format!(" sub_env={s}"));
                        }
                        if let Some(p) = &rec.platform {
                            line.push_str(&format!(" platform={p}"));
                        }
                        if let Some(c) = &rec.cidr {
                            line.push_str(&format!(" (range {c})"));
                        }
                        println!("{line}");
                    }
                    Ok(None) => {
                        ok = false;
                        eprintln!("envid: {text}: unknown to the environment service");
                    }
                    Err(e) => {
                        ok = false;
                        eprintln!("envid: {text}: {e}");
                    }
                }
            }
        }
        _ => {
            let rows: Vec<serde_json::Value> = results
                .iter()
                .map(|(text, r)| match r {
                    Ok(rec) => {
                        ok &= rec.is_some();
                        json!({"ip": text, "record": rec.as_deref()})
                    }
                    Err(e) => {
                        ok = false;
                        json!({"ip": text, "record": null, "error": e.to_string()})
                    }
                })
                .collect();
            print!(
                "{}",
                output::structured(&json!({ "results": rows }), Format::Json)?
            );
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
