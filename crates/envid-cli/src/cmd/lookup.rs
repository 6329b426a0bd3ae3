//! `envid lookup IP...`: asks the environment service about IP addresses.

use std::net::IpAddr;
use std::process::ExitCode;

use envid::lookup::{LookupClient, LookupError, LookupResult, Replica};
use serde_json::json;

use crate::cli::{Format, LookupArgs, ReportFormat};
use crate::output;

/// Answers per IP from the service, or from a replica (one snapshot).
enum Source {
    Service(LookupClient),
    Replica(Replica),
}

impl Source {
    fn open(a: &LookupArgs) -> Result<Source, String> {
        let config = a.service.config(a.token.token.as_deref())?;
        if a.replica {
            let mut b = Replica::builder(config).background_sync(false);
            if let Some(p) = &a.cache_file {
                b = b.cache_file(p.clone());
            }
            let replica = b.build().map_err(|e| explained(&e))?;
            if let Some(e) = replica.last_error() {
                eprintln!("envid: {e}");
            }
            if replica.stats().from_cache {
                eprintln!("envid: the service is unreachable; answering from the cache file");
            }
            return Ok(Source::Replica(replica));
        }
        LookupClient::builder(config)
            .max_retries(1)
            .build()
            .map(Source::Service)
            .map_err(|e| e.to_string())
    }

    fn lookup_many(&self, ips: &[IpAddr]) -> Vec<LookupResult> {
        match self {
            Source::Service(c) => c.lookup_many(ips),
            Source::Replica(r) => ips.iter().map(|ip| Ok(r.lookup(*ip))).collect(),
        }
    }
}

/// The error, and for a missing token where to give it.
fn explained(e: &LookupError) -> String {
    match e {
        LookupError::Unauthorized {
            token_sent: false, ..
        } => format!("{e}: pass --token or set ENVID_LOOKUP_TOKEN"),
        _ => e.to_string(),
    }
}

pub fn run(a: LookupArgs) -> Result<ExitCode, String> {
    let (ips, format) = (&a.ips, a.format);

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
    // Only arguments that are not IPs: a usage error, no service needed.
    let answers = if valid.is_empty() {
        Vec::new()
    } else {
        Source::open(&a)?.lookup_many(&valid)
    };
    let mut answers = answers.into_iter();
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
        ReportFormat::Text => {
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
                        eprintln!("envid: {text}: {}", explained(e));
                    }
                }
            }
        }
        ReportFormat::Json => {
            let rows: Vec<serde_json::Value> = results
                .iter()
                .map(|(text, r)| match r {
                    Ok(rec) => {
                        ok &= rec.is_some();
                        json!({"ip": text, "record": rec.as_deref()})
                    }
                    Err(e) => {
                        ok = false;
                        json!({"ip": text, "record": null, "error": explained(e)})
                    }
                })
                .collect();
            print!(
                "{}",
                output::structured(&json!({ "results": rows }), Format::Json)?
            );
        }
    }
    // An argument that is not an IP is the caller's mistake, a usage
    // error (2), even beside answers for the valid ones.
    Ok(if valid.len() < ips.len() {
        ExitCode::from(2)
    } else if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
