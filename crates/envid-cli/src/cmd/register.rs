//! `envid register` and `envid deregister`: tell the environment service
//! about this instance (an init container or a start script), keep its
//! lease alive (a sidecar, `--keep-alive`), and remove it (a pre-stop hook).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use envid::lookup::LookupError;
use envid::registrar::{reregister_jitter, Registrar, Registration};
use envid::Environment;

use crate::cli::{DeregisterArgs, RegisterArgs, RegisterToken, ServiceArgs};

/// Registration attempts refused with `429` before giving up (without --keep-alive).
const RATE_LIMITED_ATTEMPTS: u32 = 5;
/// Longest pause between attempts after errors.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

fn environment(descriptor: &Option<PathBuf>) -> Result<Environment, String> {
    let mut b = Environment::builder();
    if let Some(p) = descriptor {
        b = b.descriptor(p.clone());
    }
    b.load()
        .map_err(|e| format!("cannot identify this host's environment: {e}"))
}

fn registrar(service: &ServiceArgs, token: &RegisterToken) -> Result<Registrar, String> {
    Ok(Registrar::new(service.config(token.token.as_deref())?))
}

fn ip_of(ip: Option<IpAddr>, env: Option<&Environment>) -> Result<IpAddr, String> {
    ip.or_else(|| env.and_then(Environment::ip)).ok_or_else(|| {
        "this host's IP is unknown (set ENVID_IP or the descriptor's `ip`, or pass --ip)".into()
    })
}

/// Sleeps up to `d` in small steps; `true` when a stop signal arrived.
fn pause(stop: &AtomicBool, d: Duration) -> bool {
    let deadline = Instant::now() + d;
    while Instant::now() < deadline {
        if stop.load(Ordering::Relaxed) {
            return true;
        }
        std::thread::sleep(
            deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50)),
        );
    }
    stop.load(Ordering::Relaxed)
}

/// Registers, honouring `429` + `Retry-After`. Without `persist`, gives up
/// on other errors at once and on `429` after a few attempts; with it,
/// retries transient errors (connect, timeout, 5xx) with a capped backoff
/// until a stop signal (`Ok(false)`); refusals (4xx) are errors either way.
fn register_until_done(
    r: &Registrar,
    ip: IpAddr,
    reg: &Registration,
    stop: &AtomicBool,
    persist: bool,
) -> Result<bool, String> {
    let mut limited = 0;
    let mut backoff = Duration::from_secs(1);
    loop {
        match r.register(ip, reg) {
            Ok(()) => return Ok(true),
            Err(LookupError::RateLimited { retry_after, .. }) => {
                limited += 1;
                if !persist && limited >= RATE_LIMITED_ATTEMPTS {
                    return Err(format!(
                        "{} refused the registration of {ip} {limited} times (HTTP 429); giving up",
                        r.endpoint()
                    ));
                }
                let wait = retry_after.unwrap_or(Duration::from_secs(1));
                eprintln!(
                    "envid: {} is rate-limiting registrations; retrying in {}s",
                    r.endpoint(),
                    wait.as_secs_f64()
                );
                if pause(stop, wait) {
                    return Ok(false);
                }
            }
            Err(e) if persist && e.is_retryable() => {
                eprintln!(
                    "envid: cannot register {ip}: {e}; retrying in {}s",
                    backoff.as_secs()
                );
                if pause(stop, backoff) {
                    return Ok(false);
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => return Err(format!("cannot register {ip}: {}", explained(&e))),
        }
    }
}

pub fn register(a: RegisterArgs) -> Result<ExitCode, String> {
    let registrar = registrar(&a.service, &a.token)?;
    let env = environment(&a.descriptor)?;
    let ip = ip_of(a.ip, Some(&env))?;
    let lease = Duration::from_secs(a.lease);
    let reg = Registration::from_environment(&env, lease);

    let stop = Arc::new(AtomicBool::new(false));
    if a.keep_alive {
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::flag::register(sig, stop.clone())
                .map_err(|e| format!("cannot install the signal handler: {e}"))?;
        }
    }
    if !register_until_done(&registrar, ip, &reg, &stop, a.keep_alive)? {
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "registered {ip} at {} (app={} env={} idc={}, lease {}s)",
        registrar.endpoint(),
        env.app().unwrap_or("-"),
        env.env(),
        env.idc(),
        a.lease
    );
    if !a.keep_alive {
        return Ok(ExitCode::SUCCESS);
    }

    let period = (lease / 3).max(Duration::from_secs(1));
    let mut wait = period;
    let mut backoff = Duration::from_secs(1);
    while !pause(&stop, wait) {
        wait = period;
        match registrar.renew(ip) {
            Ok(true) => backoff = Duration::from_secs(1),
            Ok(false) => {
                // Jittered: when the service lost its state, the whole fleet
                // gets 404 within one renewal period; spread them over it.
                let jitter = reregister_jitter(lease);
                eprintln!(
                    "envid: the service no longer knows {ip} (lease expired, or the service lost its state); registering again in {:.1}s",
                    jitter.as_secs_f64()
                );
                if pause(&stop, jitter) || !register_until_done(&registrar, ip, &reg, &stop, true)?
                {
                    break;
                }
                println!("registered {ip} again at {}", registrar.endpoint());
            }
            Err(LookupError::RateLimited { retry_after, .. }) => {
                wait = retry_after.unwrap_or(Duration::from_secs(1)).min(period);
            }
            Err(e) => {
                // Retry well within the lease, so one failure does not lose it.
                eprintln!("envid: cannot renew the lease of {ip}: {e}");
                wait = backoff.min(period);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    eprintln!("envid: stopping; the lease of {ip} expires unless renewed (envid deregister removes it now)");
    Ok(ExitCode::SUCCESS)
}

pub fn deregister(a: DeregisterArgs) -> Result<ExitCode, String> {
    let registrar = registrar(&a.service, &a.token)?;
    // Only the IP is needed: --ip needs no environment at all, and without
    // it a host that cannot be fully identified still knows its IP.
    let ip = match a.ip {
        Some(ip) => ip,
        None => this_ip(&a.descriptor)?,
    };
    match registrar.deregister(ip) {
        Ok(()) => {
            println!("deregistered {ip} at {}", registrar.endpoint());
            Ok(ExitCode::SUCCESS)
        }
        // The service refuses to delete what the registry file says.
        Err(LookupError::Status { status: 409, .. }) => {
            eprintln!(
                "envid: {ip} is a static record from the registry file of {}; edit the registry file instead",
                registrar.endpoint()
            );
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(format!("cannot deregister {ip}: {}", explained(&e))),
    }
}

/// This host's IP by the usual sources (`ENVID_IP`, the descriptor, the
/// interface probe), whether or not the rest of its environment is known.
fn this_ip(descriptor: &Option<PathBuf>) -> Result<IpAddr, String> {
    let mut b = Environment::builder();
    if let Some(p) = descriptor {
        b = b.descriptor(p.clone());
    }
    match b.load() {
        Ok(env) => ip_of(None, Some(&env)),
        Err(envid::Error::Unidentified(u)) => u
            .found
            .iter()
            .find(|f| f.field == envid::Field::Ip)
            .and_then(|f| f.value.parse().ok())
            .map_or_else(|| ip_of(None, None), Ok),
        Err(e) => Err(format!("cannot read this host's IP: {e}")),
    }
}

/// The error, and for a missing token where to give it.
fn explained(e: &LookupError) -> String {
    match e {
        LookupError::Unauthorized {
            token_sent: false, ..
        } => format!("{e}: set ENVID_REGISTER_TOKEN (or pass --token)"),
        _ => e.to_string(),
    }
}
