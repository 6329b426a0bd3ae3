//! Registration: `PUT`/`DELETE /v1/hosts/{ip}`, `POST /v1/hosts/{ip}/renew`,
//! who may do them (README.md, "Security model"), and their limits.
//!
//! Closed unless the service has an apps file (or runs with
//! `--insecure-open-registration`). With one, a bearer token is one
//! credential of an app or an operator; an app's credential registers,
//! renews and removes only the IP it connects from, under its own name,
//! within its own scope (envs, idcs, sub envs), until its `not_after`; an
//! operator may do all of it for any IP and app. No registration replaces
//! or removes a record of the registry file (`409`), or claims an
//! unspecified, loopback, link-local, multicast or broadcast address
//! (`400`). An identity is signed only from the caller's own registration
//! as the store returned it with the write, never from what the registry
//! serves for the IP. With a read token configured, a refusal tells an
//! app's credential nothing of other apps' records. Every refusal is logged
//! with the peer, the app and credential the token named (never the token)
//! and the reason, and counted in
//! `envid_registration_refusals_total{reason}`.

use std::net::IpAddr;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use envid::protocol::{canonical_ip, HostRecord};

use super::auth::{bearer, client_of, special_class, RegistrationMode};
use super::state::{path_ip, read_body, AppState};
use crate::apps::{rfc3339, Credential, Role};
use crate::error::{ApiError, ErrorCode};
use crate::registration_body::{parse_registration_body, parse_renewal_body};
use crate::store::{Registration, StoreError};

/// Who is calling, once authenticated.
enum Caller {
    /// Registration is open: nobody is authenticated.
    Anonymous,
    /// The credential the token is.
    Principal(Credential),
}

impl Caller {
    /// The credential's scope when it is an app's (`None`: an operator or
    /// open registration, who may touch any registration).
    fn scope(&self) -> Option<(&str, &crate::apps::Scope)> {
        match self {
            Caller::Principal(c) => c.scope().map(|s| (c.name.as_str(), s)),
            Caller::Anonymous => None,
        }
    }

    /// Whether the caller's renewals and removals are tied to its own IP.
    fn is_app(&self) -> bool {
        self.scope().is_some()
    }

    /// Whether `record` is a registration this caller may renew or remove:
    /// its app's, within its credential's scope (any for an operator).
    fn owns(&self, record: &HostRecord) -> bool {
        match self.scope() {
            None => true,
            Some((app, scope)) => {
                record.app.as_deref() == Some(app) && scope.covers(&record.env, &record.idc)
            }
        }
    }
}

/// One registration request as the refusal log sees it.
struct Attempt<'a> {
    state: &'a AppState,
    op: &'static str,
    peer: SocketAddr,
    client: Option<IpAddr>,
    app: Option<String>,
    credential: Option<String>,
    ip: Option<IpAddr>,
    /// Whether refusals may name other apps' records: no read token
    /// protects them (anyone reads them anyway), or an operator asks.
    reveals: bool,
}

impl<'a> Attempt<'a> {
    /// A request of `op` from `peer`, before anything is known of it.
    fn new(state: &'a AppState, op: &'static str, peer: SocketAddr) -> Attempt<'a> {
        Attempt {
            state,
            op,
            peer,
            client: None,
            app: None,
            credential: None,
            ip: None,
            reveals: state.token_digest.is_none(),
        }
    }

    /// Logs and counts a refusal, and returns its answer.
    fn refuse(&self, reason: &'static str, error: ApiError) -> ApiError {
        self.state.metrics.refused(reason);
        self.state.recent.refused(crate::recent::Refusal::new(
            self.op,
            self.peer,
            self.client,
            self.app.as_deref(),
            self.ip,
            reason,
            error.message(),
        ));
        tracing::warn!(
            op = self.op,
            peer = %self.peer,
            client = ?self.client,
            app = self.app.as_deref().unwrap_or("-"),
            credential = self.credential.as_deref().unwrap_or("-"),
            ip = ?self.ip,
            reason,
            message = error.message(),
            "registration refused"
        );
        error
    }

    /// Resolves the client address and authenticates the caller: `403` when
    /// registration is closed, `401` without a known token or with an
    /// expired one, `429` after too many failures from this address.
    fn authenticate(&mut self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let state = self.state;
        let client = client_of(self.peer, headers, &state.trusted_proxies)
            .map_err(|e| self.refuse("bad_forwarded_for", e))?;
        self.client = Some(client);
        let apps = match &state.registration {
            RegistrationMode::Closed => {
                return Err(self.refuse(
                    "closed",
                    ApiError::new(
                        ErrorCode::RegistrationClosed,
                        "registration is closed: start the service with --apps FILE (app \
                         credentials: which token may register which app; see the README, \
                         \"Security model\"), or with --insecure-open-registration for local \
                         development only",
                    ),
                ))
            }
            RegistrationMode::Open => return Ok(Caller::Anonymous),
            RegistrationMode::Apps(apps) => apps.get(),
        };
        let failures = &state.limits.auth_failures;
        if let Some(wait) = failures.blocked(client) {
            state.metrics.limited("auth_failures");
            return Err(self.refuse("auth_throttled", failures.error(wait)));
        }
        let Some(token) = bearer(headers) else {
            failures.failed(client);
            return Err(self.refuse(
                "no_token",
                ApiError::new(
                    ErrorCode::Unauthorized,
                    "registration needs the app's token (Authorization: Bearer <token>)",
                ),
            ));
        };
        let Some(c) = apps.authenticate(token) else {
            failures.failed(client);
            return Err(self.refuse(
                "bad_token",
                ApiError::new(
                    ErrorCode::Unauthorized,
                    "the token is not one of an app or operator of the apps file",
                ),
            ));
        };
        self.app = Some(c.name.clone());
        self.credential = Some(c.label.clone());
        self.reveals |= c.is_operator();
        if let Some(t) = c.not_after.filter(|_| c.expired(unix_now())) {
            // Not counted as a failure: the holder knows a real token, and
            // the answer tells it nothing it could guess with.
            return Err(self.refuse(
                "token_expired",
                ApiError::new(
                    ErrorCode::Unauthorized,
                    format!(
                        "credential {:?} of {:?} expired at {} (its not_after in the apps file); \
                         ask the operator for a new token",
                        c.label,
                        c.name,
                        rfc3339(t)
                    ),
                ),
            ));
        }
        Ok(Caller::Principal(c.clone()))
    }

    /// The path's IP in its canonical form (IPv4-mapped IPv6 as IPv4: one
    /// registration per host however its address is written), or the `400`.
    fn path_ip(&mut self, path: Result<Path<String>, PathRejection>) -> Result<IpAddr, ApiError> {
        let ip = canonical_ip(path_ip(path).map_err(|e| self.refuse("invalid_ip", e))?);
        self.ip = Some(ip);
        Ok(ip)
    }

    /// An app's credential speaks only for the IP it connects from: `403`
    /// otherwise (operators and open registration may name any IP).
    fn own_ip(&self, caller: &Caller, ip: IpAddr, what: &str) -> Result<(), ApiError> {
        let client = self.client.expect("set by authenticate");
        if !caller.is_app() || client == ip {
            return Ok(());
        }
        Err(self.refuse(
            "not_own_ip",
            forbidden(format!(
                "an instance {what} only its own IP: this request comes from {client}, not {ip} \
                 (an operator's token may {what} any IP)"
            )),
        ))
    }

    /// The `409` for the registry file's record for `ip`, naming it only
    /// when this caller may read records.
    fn static_conflict(&self, ip: IpAddr, record: &HostRecord, what: &str) -> ApiError {
        let named = if self.reveals {
            format!(
                " (app {}, env {}, idc {})",
                record.app.as_deref().unwrap_or("-"),
                record.env,
                record.idc
            )
        } else {
            String::new()
        };
        self.refuse(
            "static_record",
            ApiError::new(
                ErrorCode::StaticRecord,
                format!("{ip} is a static record of the registry file{named}; {what}"),
            ),
        )
    }

    /// The `403` for a registration that is not the caller's, naming its
    /// owner only when this caller may read records.
    fn not_owner(&self, ip: IpAddr, record: &HostRecord, what: &str) -> ApiError {
        let message = if self.reveals {
            format!(
                "{ip} is registered by app {} (env {}); only a credential of that app whose scope \
                 covers it (or an operator's) may {what} it",
                record.app.as_deref().unwrap_or("-"),
                record.env
            )
        } else {
            format!(
                "{ip} is not a registration this credential may {what} (another app's, or \
                 outside its scope)"
            )
        };
        self.refuse("not_owner", forbidden(message))
    }

    /// The `429` of a limit, counted.
    fn limited(&self, what: String, retry_after: std::time::Duration) -> ApiError {
        self.state.metrics.limited("registration");
        self.refuse(
            "rate_limited",
            ApiError::new(ErrorCode::RateLimited, what).retry_after(retry_after),
        )
    }
}

fn forbidden(message: String) -> ApiError {
    ApiError::new(ErrorCode::Forbidden, message)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// May `caller`, connecting from `client`, say that `record` runs at `ip`?
/// A refusal names the caller's own scope, never its token.
fn authorize(
    caller: &Caller,
    client: IpAddr,
    ip: IpAddr,
    record: &HostRecord,
) -> Result<(), (&'static str, ApiError)> {
    let Caller::Principal(c) = caller else {
        return Ok(());
    };
    let Role::App(scope) = &c.role else {
        return Ok(());
    };
    let name = &c.name;
    let label = &c.label;
    if client != ip {
        return Err((
            "not_own_ip",
            forbidden(format!(
                "an instance registers only its own IP: this request comes from {client}, not {ip} (an operator's token may register any IP)"
            )),
        ));
    }
    if record.app.as_deref() != Some(name.as_str()) {
        let claimed = record
            .app
            .as_deref()
            .map_or("none".into(), |a| format!("{a:?}"));
        return Err((
            "wrong_app",
            forbidden(format!(
                "the token is app {name:?}'s; the body names app {claimed}"
            )),
        ));
    }
    let refuse = |reason, what: &str, value: &str| {
        Err((
            reason,
            forbidden(format!(
                "credential {label:?} of app {name:?} may not claim {what} {value:?} (its scope: {scope})"
            )),
        ))
    };
    if !scope.envs.contains(&record.env) {
        return refuse("env_not_allowed", "env", &record.env);
    }
    if !scope.covers(&record.env, &record.idc) {
        return refuse("idc_not_allowed", "idc", &record.idc);
    }
    if let Some(sub_env) = record.sub_env.as_deref() {
        if !scope.allows_sub_env(sub_env) {
            return refuse("sub_env_not_allowed", "sub_env", sub_env);
        }
    }
    Ok(())
}

/// What the limits count this caller as.
fn limit_key(caller: &Caller, client: IpAddr) -> String {
    match caller {
        Caller::Anonymous => format!("peer:{client}"),
        Caller::Principal(p) if p.is_operator() => format!("operator:{}", p.name),
        Caller::Principal(p) => format!("app:{}", p.name),
    }
}

pub(crate) async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let mut at = Attempt::new(&state, "register", peer);
    let caller = at.authenticate(&headers)?;
    let client = at.client.expect("set by authenticate");
    let ip = at.path_ip(path)?;
    if let Some(class) = special_class(ip, state.allow_loopback_registration) {
        return Err(at.refuse(
            "special_address",
            ApiError::new(
                ErrorCode::SpecialAddress,
                format!("{ip} is a {class} address; it cannot be registered"),
            ),
        ));
    }
    let body = read_body(&state, body)
        .await
        .map_err(|e| at.refuse("invalid_body", e))?;
    let (mut record, lease) =
        parse_registration_body(ip, &body).map_err(|e| at.refuse("invalid_body", e.into()))?;
    authorize(&caller, client, ip, &record).map_err(|(reason, e)| at.refuse(reason, e))?;
    if let Some(fixed) = state.store.static_record(ip) {
        return Err(at.static_conflict(ip, &fixed, "a registration never replaces it"));
    }
    let limit = &state.limits.registration;
    let key = limit_key(&caller, client);
    if let Err(retry_after) = limit.admit(&key, ip) {
        return Err(at.limited(
            format!(
                "more than {} registrations of {ip} by {key} within {:?}; renew instead of re-registering",
                limit.limit, limit.window
            ),
            retry_after,
        ));
    }
    // A registration of its own, even for an IP registered before: a late
    // leave of the previous owner is never taken for this one's.
    let registration = registration_id()?;
    record.registration = Some(registration.clone());
    let owner = record.app.clone();
    // Answered only once the store made the registration durable.
    let ack = state
        .store
        .register(Registration {
            ip,
            record: record.clone(),
            lease_seconds: lease,
            owner,
        })
        .await?;
    state.metrics.registrations.inc();
    if let Caller::Principal(c) = &caller {
        state.metrics.credential_used(&c.name, &c.label, true);
    }
    tracing::info!(ip = %ip, app = at.app.as_deref().unwrap_or("-"), credential = at.credential.as_deref().unwrap_or("-"), client = %client, lease, "registered");
    let mut answer = serde_json::json!({
        "ip": ip,
        "lease_seconds": ack.lease_seconds,
        "version": ack.version,
        // Named by the registrant's renewals and removal (`?registration=`).
        "registration": registration,
    });
    // Signed from what this request registered (and the store made
    // durable): the caller's own registration.
    record.ip = Some(ip);
    if let Some(token) = identity_for(&state, &caller, &record) {
        answer["identity"] = token.into();
        answer["identity_lifetime_seconds"] = state.identity.lifetime_secs().into();
    }
    Ok(Json(answer).into_response())
}

/// A new registration id: 128 random bits from the operating system, in
/// hex, so ids are unique across the instances sharing one etcd and across
/// restarts without any coordination.
fn registration_id() -> Result<String, ApiError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| {
        tracing::error!(error = %e, "no randomness for a registration id");
        ApiError::new(
            ErrorCode::Unavailable,
            "the service cannot make a registration id now; retry".to_string(),
        )
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The signed identity of the caller's own registration `record` (as the
/// store holds it): `None` without a signing key, without an app, when
/// nobody was authenticated, or when the record is not the caller's (the
/// store checked it already; checked again because a wrong identity is the
/// one failure here that cannot be taken back). The sub env is signed only
/// when the credential lists the sub envs it may claim, or an operator
/// registered it: an identity carries only what was checked.
fn identity_for(state: &AppState, caller: &Caller, record: &HostRecord) -> Option<String> {
    let Caller::Principal(c) = caller else {
        return None;
    };
    let ip = record.ip?;
    let mut signed = record.clone();
    if let Some(scope) = c.scope() {
        if !caller.owns(record) || !scope.allows(record) {
            tracing::error!(%ip, app = %c.name, credential = %c.label, "refused to sign an identity for a registration that is not the caller's");
            return None;
        }
        if scope.sub_envs.is_none() {
            signed.sub_env = None;
        }
    }
    state.identity.issue_identity(&signed, ip)
}

pub(crate) async fn renew(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<IfRegistration>, QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let mut at = Attempt::new(&state, "renew", peer);
    let caller = at.authenticate(&headers)?;
    let client = at.client.expect("set by authenticate");
    let ip = at.path_ip(path)?;
    at.own_ip(&caller, ip, "renews")?;
    let named = IfRegistration::read(query).map_err(|e| at.refuse("invalid_query", e))?;
    let body = read_body(&state, body)
        .await
        .map_err(|e| at.refuse("invalid_body", e))?;
    parse_renewal_body(&body).map_err(|e| at.refuse("invalid_body", e.into()))?;
    let key = limit_key(&caller, client);
    let limit = &state.write_limits.renewals;
    if let Err(retry_after) = limit.admit(&key, ip) {
        return Err(at.limited(
            format!(
                "too many renewals of {ip} by {key} within one lease; renew a few times a lease"
            ),
            retry_after,
        ));
    }
    let owns = |r: &HostRecord| caller.owns(r);
    match state.store.renew(ip, Some(&owns), named.as_deref()).await {
        Err(StoreError::NotOwner(theirs)) => Err(at.not_owner(ip, &theirs, "renew")),
        Err(StoreError::RegistrationChanged(_)) => Err(at.refuse(
            "registration_changed",
            registration_changed(ip, named.as_deref(), "renewed"),
        )),
        Err(e) => Err(e.into()),
        Ok(Some(renewed)) => {
            state.metrics.renewals.inc();
            limit.learn(&key, ip, renewed.lease_seconds);
            if let Caller::Principal(c) = &caller {
                state.metrics.credential_used(&c.name, &c.label, false);
            }
            let mut answer = serde_json::json!({"ip": ip, "lease_seconds": renewed.lease_seconds});
            // A fresh identity with every renewal, of the registration the
            // store renewed (returned by the same step as the renewal, so a
            // registration of this IP by another app meanwhile cannot be
            // signed for this caller).
            if let Some(token) = identity_for(&state, &caller, &renewed.record) {
                answer["identity"] = token.into();
                answer["identity_lifetime_seconds"] = state.identity.lifetime_secs().into();
            }
            Ok(Json(answer).into_response())
        }
        Ok(None) => Err(ApiError::new(
            ErrorCode::NotRegistered,
            format!("{ip} is not registered (its lease may have ended); register it again"),
        )),
    }
}

pub(crate) async fn deregister(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<IfRegistration>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let mut at = Attempt::new(&state, "deregister", peer);
    let caller = at.authenticate(&headers)?;
    let client = at.client.expect("set by authenticate");
    let ip = at.path_ip(path)?;
    at.own_ip(&caller, ip, "removes")?;
    let named = IfRegistration::read(query).map_err(|e| at.refuse("invalid_query", e))?;
    // Counted whatever the answer: each one tells whether the IP is static,
    // registered or someone else's.
    let limit = &state.write_limits.removals;
    let key = limit_key(&caller, client);
    if let Err(retry_after) = limit.admit(&key, ip) {
        return Err(at.limited(
            format!(
                "more than {} removals of {ip} by {key} within {:?}",
                limit.limit, limit.window
            ),
            retry_after,
        ));
    }
    let owns = |r: &HostRecord| caller.owns(r);
    match state
        .store
        .deregister(ip, Some(&owns), named.as_deref())
        .await
    {
        Err(StoreError::NotOwner(theirs)) => Err(at.not_owner(ip, &theirs, "remove")),
        Err(StoreError::RegistrationChanged(_)) => Err(at.refuse(
            "registration_changed",
            registration_changed(ip, named.as_deref(), "removed"),
        )),
        // The registration named is gone, which is what was asked, whatever
        // else the IP has (a static record included).
        Ok(false) if named.is_some() => Ok(StatusCode::NO_CONTENT),
        Err(e) => Err(e.into()),
        Ok(true) => {
            state.metrics.deregistrations.inc();
            tracing::info!(ip = %ip, app = at.app.as_deref().unwrap_or("-"), credential = at.credential.as_deref().unwrap_or("-"), "deregistered");
            Ok(StatusCode::NO_CONTENT)
        }
        Ok(false) => match state.store.static_record(ip) {
            Some(fixed) => {
                Err(at.static_conflict(ip, &fixed, "edit the registry file to remove it"))
            }
            None => Ok(StatusCode::NO_CONTENT),
        },
    }
}

/// `?registration=ID` on a renewal or removal: act only while the IP still
/// holds that registration (the id its `PUT` answered), else `409
/// registration_changed` and nothing is done. A host's late `DELETE` (a
/// pre-stop hook that runs after its IP went to a new host of the same
/// app) or renewal then never touches the new owner's registration.
/// Without it, whatever registration the IP holds (as before).
#[derive(serde::Deserialize)]
pub(crate) struct IfRegistration {
    registration: Option<String>,
}

impl IfRegistration {
    /// The registration named, or the `400 invalid_query`.
    fn read(
        query: Result<Query<IfRegistration>, QueryRejection>,
    ) -> Result<Option<String>, ApiError> {
        let Query(q) = query.map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidQuery,
                format!("{} (expected ?registration=ID)", e.body_text()),
            )
        })?;
        match q.registration {
            Some(r) if r.is_empty() => Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "registration= is empty (expected ?registration=ID, the id the PUT answered)",
            )),
            r => Ok(r),
        }
    }
}

/// The `409` for a registration the IP no longer holds. It never names the
/// one it holds now: whoever knows an id may renew or remove it.
fn registration_changed(ip: IpAddr, named: Option<&str>, what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::RegistrationChanged,
        format!(
            "{ip} holds another registration than {:?} now (it was registered again since); \
             nothing was {what}",
            named.unwrap_or_default()
        ),
    )
}
