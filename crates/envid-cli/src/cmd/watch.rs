//! `envid watch`: runs a replica and prints what it sees, one line per
//! change and per interval, until SIGTERM or Ctrl-C: what an operator looks
//! at to see what the fleet's replicas see (protection, held deletes, the
//! cache file's age, sync errors).

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use envid::replica::{Replica, ReplicaStats};
use serde_json::json;

use crate::cli::{ReportFormat, WatchArgs};

/// How often the replica's state is looked at.
const TICK: Duration = Duration::from_millis(100);

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".into(), |d| format!("{:.1}s", d.as_secs_f64()))
}

/// One line: text or a JSON object.
fn line(s: &ReplicaStats, why: &str, format: ReportFormat, last_error: Option<&str>) -> String {
    match format {
        ReportFormat::Text => {
            let mut l = format!(
                "{why:<8} version={} records={} protected={} held_deletes={} age={} \
                 cache={} cache_age={} sync_errors={}",
                s.version,
                s.records,
                if s.protected { "yes" } else { "no" },
                s.held_deletes,
                secs(s.age),
                s.cache,
                secs(s.cache_age),
                s.sync_errors,
            );
            if s.from_cache {
                l.push_str(" from_cache=yes");
            }
            if s.protected {
                l.push_str(&format!(" normal_records={}", s.normal_records));
            }
            l
        }
        ReportFormat::Json => json!({
            "event": why,
            "version": s.version,
            "records": s.records,
            "protected": s.protected,
            "held_deletes": s.held_deletes,
            "protected_since_unix_ms": s.protected_since
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as u64),
            "normal_records": s.normal_records,
            "age_seconds": s.age.map(|a| a.as_secs_f64()),
            "from_cache": s.from_cache,
            "cache": s.cache.as_str(),
            "cache_age_seconds": s.cache_age.map(|a| a.as_secs_f64()),
            "syncs": s.syncs,
            "sync_errors": s.sync_errors,
            "last_error": last_error,
        })
        .to_string(),
    }
}

pub fn run(a: WatchArgs) -> Result<ExitCode, String> {
    let config = a.service.config(a.token.token.as_deref())?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| format!("cannot install the signal handler: {e}"))?;
    }
    // Started even when nothing answers: the lines then say so.
    let mut b = Replica::builder(config).require_initial_sync(false);
    if let Some(p) = &a.cache_file {
        b = b.cache_file(p.clone());
    }
    let replica = b.build().map_err(|e| e.to_string())?;
    let interval = Duration::from_secs(a.interval);
    let mut shown: Option<(u64, usize, bool, usize)> = None;
    let mut last_error: Option<String> = None;
    let mut last_line = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let s = replica.stats();
        let key = (s.version, s.records, s.protected, s.held_deletes);
        let why = match shown {
            None => Some("start"),
            Some(k) if k != key => Some("change"),
            _ if last_line.elapsed() >= interval => Some("interval"),
            _ => None,
        };
        let error = replica.last_error();
        if error != last_error {
            if let (Some(e), ReportFormat::Text) = (&error, a.format) {
                eprintln!("envid: {e}");
            }
            last_error = error;
        }
        if let Some(why) = why {
            println!("{}", line(&s, why, a.format, last_error.as_deref()));
            shown = Some(key);
            last_line = Instant::now();
        }
        std::thread::sleep(TICK);
    }
    Ok(ExitCode::SUCCESS)
}
