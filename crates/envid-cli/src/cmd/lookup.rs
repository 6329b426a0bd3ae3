//! `envid lookup IP...`: asks the environment service about IP addresses.

use std::net::IpAddr;
use std::process::ExitCode;

use envid::client::ClientError;
use envid::lookup::{LookupClient, LookupResult};
use envid::replica::Replica;
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
            let s = replica.stats();
            if s.from_cache {
                eprintln!(
                    "envid: the service is unreachable; answering from the cache file ({} old)",
                    age_text(s.cache_age)
                );
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

/// `125s`, or `unknown`.
fn age_text(age: Option<std::time::Duration>) -> String {
    age.map_or_else(|| "unknown".into(), |a| format!("{}s", a.as_secs()))
}

impl Source {
    /// What an answer from the cache file says of it: `None` when the
    /// answers come from the service (directly or through a fresh snapshot).
    fn cache_note(&self) -> Option<String> {
        match self {
            Source::Replica(r) if r.stats().from_cache => Some(format!(
                "from the cache file, {} old",
                age_text(r.stats().cache_age)
            )),
            _ => None,
        }
    }

    /// The replica's state, for JSON answers.
    fn replica_json(&self) -> Option<serde_json::Value> {
        let Source::Replica(r) = self else {
            return None;
        };
        let s = r.stats();
        Some(json!({
            "version": s.version,
            "records": s.records,
            "from_cache": s.from_cache,
            "cache": s.cache.as_str(),
            "cache_age_seconds": s.cache_age.map(|a| a.as_secs()),
            "protected": s.protected,
            "held_deletes": s.held_deletes,
        }))
    }
}

/// The error, and for a missing token where to give it.
fn explained(e: &ClientError) -> String {
    match e {
        ClientError::Unauthorized {
            token_sent: false, ..
        } => format!("{e}: pass --token or set ENVID_LOOKUP_TOKEN"),
        _ => e.to_string(),
    }
}

pub fn run(a: LookupArgs) -> Result<ExitCode, String> {
    let (ips, format) = (&a.ips, a.format);

    // Parse first; bad input is reported per IP, next to the real answers.
    let parsed: Vec<Result<IpAddr, ClientError>> = ips
        .iter()
        .map(|s| {
            s.trim()
                .parse::<IpAddr>()
                .map_err(|_| ClientError::InvalidIp { input: s.clone() })
        })
        .collect();
    let valid: Vec<IpAddr> = parsed
        .iter()
        .filter_map(|p| p.as_ref().ok().copied())
        .collect();
    // Only arguments that are not IPs: a usage error, no service needed.
    let client = if valid.is_empty() {
        None
    } else {
        Some(Source::open(&a)?)
    };
    let answers = match &client {
        Some(c) => c.lookup_many(&valid),
        None => Vec::new(),
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
                        if let Some(note) = client.as_ref().and_then(Source::cache_note) {
                            line.push_str(&format!(" [{note}]"));
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
            let mut body = json!({ "results": rows });
            if let Some(r) = client.as_ref().and_then(Source::replica_json) {
                body["replica"] = r;
            }
            print!("{}", output::structured(&body, Format::Json)?);
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
