//! `envid events`: the library's join and leave events (`envid::events`)
//! as NDJSON lines, or a hook run once per event (`--exec`), checkpointed
//! only after it succeeded; until SIGTERM or Ctrl-C, which lets the hook
//! running finish.
//!
//! A hook that keeps failing blocks the events after it (they are ordered:
//! a leave must not overtake the join it undoes), so it is made visible:
//! each failure is logged with its attempt count and the event id, and the
//! status line and `--status-file` say how long the oldest unacknowledged
//! event has waited.

use std::io::Write;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use envid::events::{Event, Events, EventsStats, Filter};
use serde_json::json;

use crate::cli::{EventsArgs, ReportFormat};

/// How long one wait for an event lasts: bounds how late SIGTERM is seen.
const NEXT_TIMEOUT: Duration = Duration::from_secs(1);
/// First pause after a failed hook (doubled up to --exec-max-backoff).
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".into(), |d| format!("{:.1}s", d.as_secs_f64()))
}

/// A failing hook, for the status.
struct Failing {
    id: String,
    attempts: u32,
    error: String,
}

struct Status<'a> {
    args: &'a EventsArgs,
    last: Instant,
}

impl Status<'_> {
    /// The status line on stderr and the status file, now.
    fn write(&mut self, s: &EventsStats, failing: Option<&Failing>) {
        self.last = Instant::now();
        let mut line = format!(
            "status joined={} pending={} oldest_pending={} held_leaves={} protected={} version={} sync_errors={}",
            s.joined,
            s.pending,
            secs(s.oldest_pending_age),
            s.held_leaves,
            if s.protected { "yes" } else { "no" },
            s.version,
            s.sync_errors,
        );
        if let Some(f) = failing {
            line.push_str(&format!(" failing={} attempts={}", f.id, f.attempts));
        }
        eprintln!("envid: {line}");
        let Some(path) = &self.args.status_file else {
            return;
        };
        let status = json!({
            "updated_unix_ms": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
            "joined": s.joined,
            "pending": s.pending,
            "oldest_pending_seconds": s.oldest_pending_age.map(|d| d.as_secs_f64()),
            "held_leaves": s.held_leaves,
            "protected": s.protected,
            "version": s.version,
            "history": s.history,
            "sync_errors": s.sync_errors,
            "joins": s.joins,
            "leaves": s.leaves,
            "changes": s.changes,
            "failing": failing.map(|f| json!({"id": f.id, "attempts": f.attempts, "error": f.error})),
        });
        if let Err(e) = envid::atomic_file::write(path, |w| {
            serde_json::to_writer(&mut *w, &status).map_err(std::io::Error::other)?;
            w.write_all(b"\n")
        }) {
            eprintln!(
                "envid: cannot write the status file {}: {e}",
                path.display()
            );
        }
    }

    fn due(&self) -> bool {
        self.last.elapsed() >= Duration::from_secs(self.args.status_interval)
    }
}

/// The event as a text line.
fn text(e: &Event) -> String {
    let r = &e.record;
    let mut l = format!(
        "{:<6} {} app={} env={} idc={} registration={}",
        e.kind,
        e.ip,
        r.app.as_deref().unwrap_or("-"),
        r.env,
        r.idc,
        e.registration.as_deref().unwrap_or("-"),
    );
    if let Some(p) = &e.previous {
        l.push_str(&format!(
            " previous_app={} previous_env={} previous_idc={} previous_registration={}",
            p.app.as_deref().unwrap_or("-"),
            p.env,
            p.idc,
            e.previous_registration.as_deref().unwrap_or("-"),
        ));
    }
    l.push_str(&format!(" id={}", e.id));
    l
}

/// Runs the hook once for `e`: `Ok` when it exited 0.
fn hook(cmd: &str, e: &Event, json: &str) -> Result<(), String> {
    let r = &e.record;
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(cmd)
        .env("ENVID_EVENT", e.kind.as_str())
        .env("ENVID_IP", e.ip.to_string())
        .env("ENVID_APP", r.app.as_deref().unwrap_or(""))
        .env("ENVID_ENV", &r.env)
        .env("ENVID_IDC", &r.idc)
        .env("ENVID_EVENT_ID", &e.id)
        .env(
            "ENVID_REGISTRATION",
            e.registration.as_deref().unwrap_or(""),
        )
        .env(
            "ENVID_PREVIOUS_REGISTRATION",
            e.previous_registration.as_deref().unwrap_or(""),
        )
        .stdin(Stdio::piped());
    // The hook's output goes to stderr: stdout is the event stream.
    if let Ok(fd) = std::os::fd::AsFd::as_fd(&std::io::stderr()).try_clone_to_owned() {
        c.stdout(Stdio::from(fd));
    }
    let mut child = c.spawn().map_err(|e| format!("cannot run sh: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its input is no failure.
        let _ = stdin.write_all(json.as_bytes());
        let _ = stdin.write_all(b"\n");
    }
    let status = child
        .wait()
        .map_err(|e| format!("cannot wait for the hook: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(status.to_string())
    }
}

/// Sleeps up to `d`; `true` when a stop signal came meanwhile.
fn pause(stop: &AtomicBool, d: Duration) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if stop.load(Ordering::Relaxed) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
    }
    stop.load(Ordering::Relaxed)
}

pub fn run(a: EventsArgs) -> Result<ExitCode, String> {
    let config = a.service.config(a.token.token.as_deref())?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| format!("cannot install the signal handler: {e}"))?;
    }
    let filter = Filter {
        apps: a.apps.clone(),
        envs: a.envs.clone(),
        env_types: a.env_types.clone(),
        idcs: a.idcs.clone(),
    };
    let protection = !a.no_protection;
    let mut events = Events::builder(config)
        .filter(filter)
        .checkpoint(a.checkpoint.clone())
        .ignore_corrupt_checkpoint(a.ignore_corrupt_checkpoint)
        .sync(|r| r.protection(protection))
        .build()
        .map_err(|e| e.to_string())?;
    let mut status = Status {
        args: &a,
        last: Instant::now(),
    };
    status.write(&events.stats(), None);
    let mut last_error: Option<String> = None;
    let stdout = std::io::stdout();
    while !stop.load(Ordering::Relaxed) {
        let error = events.last_error().map(String::from);
        if error != last_error {
            if let Some(e) = &error {
                eprintln!("envid: {e}");
            }
            last_error = error;
        }
        if status.due() {
            status.write(&events.stats(), None);
        }
        let Some(event) = events.next(NEXT_TIMEOUT).map_err(|e| e.to_string())? else {
            continue;
        };
        let line = event.to_json();
        if let Some(cmd) = &a.exec {
            let mut backoff = FIRST_BACKOFF;
            let mut attempts = 0;
            loop {
                attempts += 1;
                match hook(cmd, &event, &line) {
                    Ok(()) => break,
                    Err(why) => {
                        let failing = Failing {
                            id: event.id.clone(),
                            attempts,
                            error: why,
                        };
                        // The status file first: whoever reads the log line
                        // finds the file saying as much.
                        status.write(&events.stats(), Some(&failing));
                        eprintln!(
                            "envid: hook failed for event {} ({} {}), attempt {attempts}: {}; retrying in {:.1}s",
                            event.id,
                            event.kind,
                            event.ip,
                            failing.error,
                            backoff.as_secs_f64()
                        );
                        if pause(&stop, backoff) {
                            // Not acknowledged: delivered again at the next start.
                            return Ok(ExitCode::SUCCESS);
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(a.exec_max_backoff));
                    }
                }
            }
        }
        {
            let mut out = stdout.lock();
            let shown = match a.format {
                ReportFormat::Json => line,
                ReportFormat::Text => text(&event),
            };
            // A closed stdout (a pipe whose reader left) ends the command
            // before the event is acknowledged.
            writeln!(out, "{shown}")
                .and_then(|()| out.flush())
                .map_err(|e| format!("cannot write the event: {e}"))?;
        }
        // Written before the next event is printed or its hook runs.
        events.ack(&event).map_err(|e| e.to_string())?;
        events.flush().map_err(|e| e.to_string())?;
    }
    status.write(&events.stats(), None);
    Ok(ExitCode::SUCCESS)
}
