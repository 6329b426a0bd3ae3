//! `envid register` and `envid deregister`: tell the environment service
//! about this instance (an init container or a start script), keep its
//! lease alive (a sidecar, `--keep-alive`), and remove it (a pre-stop hook).
//!
//! The bearer token is the descriptor's `token` (the app's credential: the
//! service checks that it names the app being registered), unless `--token`
//! gives another (an operator's). It is never printed, and never sent over
//! plain `http://` to a host other than loopback without `--insecure-http`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use envid::client::ClientError;
use envid::registrar::{reregister_jitter, Registrar, Registration};
use envid::Environment;

use crate::cli::{DeregisterArgs, RegisterArgs, RegisterToken, ServiceArgs};

/// Registration attempts refused with `429` before giving up (without --keep-alive).
const RATE_LIMITED_ATTEMPTS: u32 = 5;
/// Longest pause between attempts after errors.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

fn environment(descriptor: &Option<PathBuf>) -> Result<Environment, String> {
    load(descriptor).map_err(|e| format!("cannot identify this host's environment: {e}"))
}

fn load(descriptor: &Option<PathBuf>) -> Result<Environment, envid::LoadError> {
    let mut b = Environment::builder();
    if let Some(p) = descriptor {
        b = b.descriptor(p.clone());
    }
    b.load()
}

/// Is `endpoint` an `http://` URL to a host other than loopback?
fn plain_http_off_host(endpoint: &str) -> bool {
    envid::client::is_plain_http_off_loopback(endpoint)
}

/// The registrar for `service` with `token` (the `--token` one, else the
/// descriptor's), refusing to send a token in clear off this host.
fn registrar(
    service: &ServiceArgs,
    args: &RegisterToken,
    descriptor_token: Option<&envid::Secret>,
) -> Result<Registrar, String> {
    let token = args
        .token
        .clone()
        .or_else(|| descriptor_token.map(|t| t.expose().to_string()));
    let config = service.config(token.as_deref())?;
    let endpoint = &config.endpoints()[0];
    if token.is_some() && !args.insecure_http && plain_http_off_host(endpoint) {
        return Err(format!(
            "refusing to send the registration token over plain HTTP to {endpoint}: anyone on the path could read it; use an https:// endpoint (with --ca FILE for a private CA), or pass --insecure-http"
        ));
    }
    Ok(Registrar::new(config))
}

/// The sentence for a registration the service refused.
fn refusal(ip: IpAddr, op: &str, e: &ClientError) -> String {
    match e {
        ClientError::Unauthorized {
            status: 401,
            token_sent: false,
            ..
        } => format!(
            "cannot {op} {ip}: the service needs a token (HTTP 401) and none was sent: give the descriptor a `token`, set ENVID_REGISTER_TOKEN or pass --token"
        ),
        ClientError::Unauthorized { status: 401, .. } => format!(
            "cannot {op} {ip}: the service does not accept this token (HTTP 401); registration uses the descriptor's `token` (or --token), whose SHA-256 must be in the service's apps file"
        ),
        ClientError::Unauthorized { status: 403, .. } => format!(
            "cannot {op} {ip}: the service refused (HTTP 403): an app's token registers, renews and removes only the IP it connects from, under its own app name, within its credential's scope (envs, idcs, sub envs) in the apps file (or the service takes no registrations: it needs --apps)"
        ),
        ClientError::Status { status: 409, .. } => format!(
            "cannot {op} {ip}: it is a static record of the service's registry file (HTTP 409); registrations never replace or remove it"
        ),
        ClientError::Status { status: 400, .. } if op == "register" => format!(
            "cannot {op} {ip}: the service refused the record or the address (HTTP 400): loopback, link-local, multicast, broadcast and unspecified addresses cannot be registered, and every field must be trimmed, printable and at most 256 bytes"
        ),
        e => format!("cannot {op} {ip}: {e}"),
    }
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
            Err(ClientError::RateLimited { retry_after, .. }) => {
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
            Err(e) => return Err(refusal(ip, "register", &e)),
        }
    }
}

pub fn register(a: RegisterArgs) -> Result<ExitCode, String> {
    // A bad setting is named before the environment is even read.
    a.service.config(None)?;
    let env = environment(&a.descriptor)?;
    let registrar = registrar(&a.service, &a.token, env.token())?;
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
        "registered {ip} at {} (app={} env={} idc={}, lease {}s, registration {})",
        registrar.endpoint(),
        env.app().unwrap_or("-"),
        env.env(),
        env.idc(),
        a.lease,
        registrar.registration(ip).as_deref().unwrap_or("-")
    );
    save_registration(&registrar, ip, a.registration_file.as_deref())?;
    let identity_period = save_identity(&registrar, a.identity_file.as_deref())?;
    if !a.keep_alive {
        return Ok(ExitCode::SUCCESS);
    }

    // Renewals keep the lease, and the identity fresh: at least every half
    // of its lifetime, so a service outage of up to half a lifetime never
    // leaves the process with an expired identity.
    let mut period = (lease / 3).max(Duration::from_secs(1));
    if let Some(p) = identity_period {
        period = period.min(p);
    }
    let mut wait = period;
    let mut backoff = Duration::from_secs(1);
    while !pause(&stop, wait) {
        wait = period;
        match registrar.renew(ip) {
            Ok(true) => {
                backoff = Duration::from_secs(1);
                if let Err(e) = save_identity(&registrar, a.identity_file.as_deref()) {
                    eprintln!("envid: {e}");
                }
            }
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
                println!(
                    "registered {ip} again at {} (registration {})",
                    registrar.endpoint(),
                    registrar.registration(ip).as_deref().unwrap_or("-")
                );
                if let Err(e) = save_registration(&registrar, ip, a.registration_file.as_deref()) {
                    eprintln!("envid: {e}");
                }
                if let Err(e) = save_identity(&registrar, a.identity_file.as_deref()) {
                    eprintln!("envid: {e}");
                }
            }
            Err(ClientError::RateLimited { retry_after, .. }) => {
                wait = retry_after.unwrap_or(Duration::from_secs(1)).min(period);
            }
            Err(e @ ClientError::Unauthorized { .. }) => {
                // Not ours any more (another app registered this IP) or the
                // token was revoked: renewing again cannot help.
                return Err(refusal(ip, "renew", &e));
            }
            Err(ClientError::Status { status: 409, .. }) => {
                // Another host registered this IP since (the renewal named
                // our registration): registering again would take it back
                // from a host that has it now, so stop and say so.
                return Err(format!(
                    "cannot renew {ip}: the service holds another registration for it now (HTTP 409 registration_changed): another host registered this IP since; this instance no longer holds it and does not take it back"
                ));
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

/// Writes the registration id `ip`'s `PUT` got to `path` (atomically; not
/// a secret: lookups serve it with the record). Without `path`, nothing.
fn save_registration(registrar: &Registrar, ip: IpAddr, path: Option<&Path>) -> Result<(), String> {
    let Some(path) = path else {
        return Ok(());
    };
    let Some(id) = registrar.registration(ip) else {
        return Err(format!(
            "the service answered no registration id for {}: it predates registration ids",
            path.display()
        ));
    };
    envid::atomic_file::write(path, |w| writeln!(w, "{id}")).map_err(|e| {
        format!(
            "cannot write the registration id to {}: {e}",
            path.display()
        )
    })
}

/// The registration `envid deregister` names: `--registration`, else the
/// file's; `Ok(None)` without either; `Err(None)` when the file does not
/// exist (nothing was registered: nothing to remove).
fn registration_to_remove(a: &DeregisterArgs) -> Result<Option<String>, Option<String>> {
    if let Some(id) = &a.registration {
        return Ok(Some(id.trim().to_string()));
    }
    let Some(path) = &a.registration_file else {
        return Ok(None);
    };
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => Ok(Some(text.trim().to_string())),
        Ok(_) => Err(Some(format!("{} is empty", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(None),
        Err(e) => Err(Some(format!("cannot read {}: {e}", path.display()))),
    }
}

/// Writes the registrar's newest identity to `path` (atomically, mode
/// 0600; never printed). Returns half its lifetime, the longest the
/// keep-alive may wait before the next renewal. Without `path`, nothing.
fn save_identity(registrar: &Registrar, path: Option<&Path>) -> Result<Option<Duration>, String> {
    let Some(path) = path else {
        return Ok(None);
    };
    let Some(identity) = registrar.identity() else {
        return Err(format!(
            "the service returned no signed identity for {}: it needs --signing-key, and an app's or operator's token (open registration gets none)",
            path.display()
        ));
    };
    envid::atomic_file::write(path, |w| {
        w.write_all(identity.token.expose().as_bytes())?;
        w.write_all(b"\n")
    })
    .map_err(|e| format!("cannot write the identity to {}: {e}", path.display()))?;
    Ok(identity
        .lifetime
        .map(|l| (l / 2).max(Duration::from_secs(1))))
}

pub fn deregister(a: DeregisterArgs) -> Result<ExitCode, String> {
    a.service.config(None)?;
    // Only the IP is needed: --ip with --token needs no environment at all;
    // otherwise the descriptor gives the token, and a host that cannot be
    // fully identified still knows its IP.
    // One load: an unidentified host still reports the IP it found.
    let (env, found_ip) = match (a.ip, &a.token.token) {
        (Some(_), Some(_)) => (None, None),
        _ => match load(&a.descriptor) {
            Ok(env) => (Some(env), None),
            Err(envid::LoadError::Unidentified(u)) => (
                None,
                u.found
                    .iter()
                    .find(|f| f.field == envid::Field::Ip)
                    .and_then(|f| f.value.parse().ok()),
            ),
            Err(e) if a.ip.is_none() => return Err(format!("cannot read this host's IP: {e}")),
            Err(_) => (None, None),
        },
    };
    let registrar = registrar(
        &a.service,
        &a.token,
        env.as_ref().and_then(Environment::token),
    )?;
    let ip = match (a.ip, found_ip) {
        (Some(ip), _) | (None, Some(ip)) => ip,
        (None, None) => ip_of(None, env.as_ref())?,
    };
    match registration_to_remove(&a) {
        Ok(id) => registrar.set_registration(ip, id),
        Err(Some(e)) => return Err(e),
        Err(None) => {
            // No file: this instance never registered, and removing the
            // IP's registration regardless could remove another host's.
            println!(
                "nothing to deregister for {ip}: {} does not exist (no registration was made)",
                a.registration_file
                    .as_deref()
                    .unwrap_or(Path::new("-"))
                    .display()
            );
            return Ok(ExitCode::SUCCESS);
        }
    }
    match registrar.deregister(ip) {
        Ok(()) => {
            println!("deregistered {ip} at {}", registrar.endpoint());
            Ok(ExitCode::SUCCESS)
        }
        // The service refuses to delete what the registry file says: a
        // negative answer (1), not a failure to run.
        Err(ClientError::Status { status: 409, .. }) => {
            eprintln!(
                "envid: {ip} is a static record from the registry file of {}; edit the registry file instead",
                registrar.endpoint()
            );
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(refusal(ip, "deregister", &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::plain_http_off_host;

    #[test]
    fn plain_http_is_refused_off_loopback_only() {
        for (url, off) in [
            ("http://127.0.0.1:7070", false),
            ("http://127.0.0.5:7070/x", false),
            ("http://localhost:7070", false),
            ("http://[::1]:7070", false),
            ("http://envsvc.example:7070", true),
            ("http://10.0.0.1", true),
            ("http://127.0.0.1@evil.example:7070", true),
            ("http://[2001:db8::1]:7070", true),
            ("https://envsvc.example:7443", false),
        ] {
            assert_eq!(plain_http_off_host(url), off, "{url}");
        }
    }
}
