//! Registration: `PUT`/`DELETE /v1/hosts/{ip}`, `POST /v1/hosts/{ip}/renew`,
//! who may do them (README.md, "Security model"), and the per-(caller, IP)
//! registration rate limit.
//!
//! Closed unless the service has an apps file (or runs with
//! `--insecure-open-registration`). With one, a bearer token names an app
//! or an operator; an app registers only the IP it connects from, under its
//! own name, in the envs (and idcs) the file lets it claim, and renews or
//! removes only its own registrations; an operator may do all of it for any
//! IP and app. No registration replaces or removes a record of the registry
//! file (`409`), or claims an unspecified, loopback, link-local, multicast
//! or broadcast address (`400`). Every refusal is logged with the peer, the
//! app the token named (never the token) and the reason, and counted in
//! `envid_registration_refusals_total{reason}`.

use std::net::IpAddr;

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use envid::protocol::HostRecord;

use super::auth::{bearer, client_of, special_class, RegistrationMode};
use super::state::{path_ip, read_body, AppState};
use crate::apps::{Principal, Role};
use crate::error::{ApiError, ErrorCode};
use crate::registration_body::{parse_registration_body, parse_renewal_body};
use crate::store::{Registration, StoreError};

/// Who is calling, once authenticated.
enum Caller {
    /// Registration is open: nobody is authenticated.
    Anonymous,
    /// The app or operator the token names.
    Principal(Principal),
}

/// One registration request as the refusal log sees it.
struct Attempt<'a> {
    state: &'a AppState,
    op: &'static str,
    peer: SocketAddr,
    client: Option<IpAddr>,
    app: Option<String>,
    ip: Option<IpAddr>,
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
            ip: None,
        }
    }

    /// Logs and counts a refusal, and returns its answer.
    fn refuse(&self, reason: &'static str, error: ApiError) -> ApiError {
        self.state.metrics.refused(reason);
        tracing::warn!(
            op = self.op,
            peer = %self.peer,
            client = ?self.client,
            app = self.app.as_deref().unwrap_or("-"),
            ip = ?self.ip,
            reason,
            message = error.message(),
            "registration refused"
        );
        error
    }

    /// Resolves the client address and authenticates the caller: `403` when
    /// registration is closed, `401` without a known token, `429` after too
    /// many failures from this address.
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
        match apps.authenticate(token) {
            Some(p) => {
                self.app = Some(p.name.clone());
                Ok(Caller::Principal(p.clone()))
            }
            None => {
                failures.failed(client);
                Err(self.refuse(
                    "bad_token",
                    ApiError::new(
                        ErrorCode::Unauthorized,
                        "the token is not one of an app or operator of the apps file",
                    ),
                ))
            }
        }
    }

    /// The path's IP (IPv4-mapped IPv6 as IPv4: one registration per host
    /// however its address is written), or the `400`.
    fn path_ip(&mut self, path: Result<Path<String>, PathRejection>) -> Result<IpAddr, ApiError> {
        let ip = path_ip(path)
            .map_err(|e| self.refuse("invalid_ip", e))?
            .to_canonical();
        self.ip = Some(ip);
        Ok(ip)
    }
}

fn forbidden(message: String) -> ApiError {
    ApiError::new(ErrorCode::Forbidden, message)
}

/// May `caller`, connecting from `client`, say that `record` runs at `ip`?
fn authorize(
    caller: &Caller,
    client: IpAddr,
    ip: IpAddr,
    record: &HostRecord,
) -> Result<(), (&'static str, ApiError)> {
    let Caller::Principal(p) = caller else {
        return Ok(());
    };
    let Role::App { envs, idcs } = &p.role else {
        return Ok(());
    };
    let name = &p.name;
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
    if !envs.contains(&record.env) {
        return Err((
            "env_not_allowed",
            forbidden(format!(
                "app {name:?} may not claim env {:?} (allowed: {})",
                record.env,
                envs.join(", ")
            )),
        ));
    }
    if let Some(idcs) = idcs {
        if !idcs.contains(&record.idc) {
            return Err((
                "idc_not_allowed",
                forbidden(format!(
                    "app {name:?} may not claim idc {:?} (allowed: {})",
                    record.idc,
                    idcs.join(", ")
                )),
            ));
        }
    }
    Ok(())
}

/// The `409` naming the registry file's record for `ip`.
fn static_conflict(ip: IpAddr, record: &HostRecord, what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::StaticRecord,
        format!(
            "{ip} is a static record of the registry file (app {}, env {}, idc {}); {what}",
            record.app.as_deref().unwrap_or("-"),
            record.env,
            record.idc
        ),
    )
}

/// The app whose registrations `caller` may renew or remove (`None`: any).
fn owner(caller: &Caller) -> Option<&str> {
    match caller {
        Caller::Principal(Principal {
            name,
            role: Role::App { .. },
        }) => Some(name),
        _ => None,
    }
}

/// What the limit counts this caller as.
fn limit_key(caller: &Caller, client: IpAddr) -> String {
    match caller {
        Caller::Anonymous => format!("peer:{client}"),
        Caller::Principal(p) if p.is_operator() => format!("operator:{}", p.name),
        Caller::Principal(p) => format!("app:{}", p.name),
    }
}

fn not_owner(ip: IpAddr, record: &HostRecord, what: &str) -> ApiError {
    forbidden(format!(
        "{ip} is registered by app {}; only its token (or an operator's) may {what} it",
        record.app.as_deref().unwrap_or("-")
    ))
}

pub(crate) async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
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
    let body = read_body(&state, body).map_err(|e| at.refuse("invalid_body", e))?;
    let (mut record, lease) =
        parse_registration_body(ip, &body).map_err(|e| at.refuse("invalid_body", e.into()))?;
    authorize(&caller, client, ip, &record).map_err(|(reason, e)| at.refuse(reason, e))?;
    if let Some(fixed) = state.store.static_record(ip) {
        return Err(at.refuse(
            "static_record",
            static_conflict(ip, &fixed, "a registration never replaces it"),
        ));
    }
    let limit = &state.limits.registration;
    let key = limit_key(&caller, client);
    if let Err(retry_after) = limit.admit(&key, ip) {
        state.metrics.limited("registration");
        return Err(at.refuse(
            "rate_limited",
            ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "more than {} registrations of {ip} by {key} within {:?}; renew instead of re-registering",
                    limit.limit, limit.window
                ),
            )
            .retry_after(retry_after),
        ));
    }
    // A registration of its own, even for an IP registered before: a late
    // leave of the previous owner is never taken for this one's.
    let registration = registration_id()?;
    record.registration = Some(registration.clone());
    // Signed only what was checked: an app's own IP or an operator's word,
    // never an anonymous registration of an open service.
    let identity = identity_for(&state, &caller, &record, ip);
    let owner = record.app.clone();
    // Answered only once the store made the registration durable.
    let ack = state
        .store
        .register(Registration {
            ip,
            record,
            lease_seconds: lease,
            owner,
        })
        .await?;
    state.metrics.registrations.inc();
    tracing::info!(ip = %ip, app = at.app.as_deref().unwrap_or("-"), client = %client, lease, "registered");
    let mut answer = serde_json::json!({
        "ip": ip,
        "lease_seconds": ack.lease_seconds,
        "version": ack.version,
        // Named by the registrant's renewals and removal (`?registration=`).
        "registration": registration,
    });
    if let Some(token) = identity {
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

/// The signed identity of a checked registration: `None` without a
/// signing key, without an app, or when nobody was authenticated.
fn identity_for(
    state: &AppState,
    caller: &Caller,
    record: &HostRecord,
    ip: IpAddr,
) -> Option<String> {
    match caller {
        Caller::Anonymous => None,
        Caller::Principal(_) => state.identity.issue_identity(record, ip),
    }
}

pub(crate) async fn renew(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<IfRegistration>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mut at = Attempt::new(&state, "renew", peer);
    let caller = at.authenticate(&headers)?;
    let ip = at.path_ip(path)?;
    let named = IfRegistration::read(query).map_err(|e| at.refuse("invalid_query", e))?;
    let body = read_body(&state, body).map_err(|e| at.refuse("invalid_body", e))?;
    parse_renewal_body(&body).map_err(|e| at.refuse("invalid_body", e.into()))?;
    match state
        .store
        .renew(ip, owner(&caller), named.as_deref())
        .await
    {
        Err(StoreError::NotOwner(theirs)) => {
            Err(at.refuse("not_owner", not_owner(ip, &theirs, "renew")))
        }
        Err(StoreError::RegistrationChanged(_)) => Err(at.refuse(
            "registration_changed",
            registration_changed(ip, named.as_deref(), "renewed"),
        )),
        Err(e) => Err(e.into()),
        Ok(Some(lease)) => {
            state.metrics.renewals.inc();
            let mut answer = serde_json::json!({"ip": ip, "lease_seconds": lease});
            // A fresh identity with every renewal, for the record as it is
            // registered (looked up after the renewal; it is this IP's).
            let snapshot = state.store.snapshot();
            let record = snapshot.lookup(ip).filter(|r| r.ip.is_some());
            if let Some(token) = record.and_then(|r| identity_for(&state, &caller, r, ip)) {
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
    let ip = at.path_ip(path)?;
    let named = IfRegistration::read(query).map_err(|e| at.refuse("invalid_query", e))?;
    match state
        .store
        .deregister(ip, owner(&caller), named.as_deref())
        .await
    {
        Err(StoreError::NotOwner(theirs)) => {
            Err(at.refuse("not_owner", not_owner(ip, &theirs, "remove")))
        }
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
            tracing::info!(ip = %ip, app = at.app.as_deref().unwrap_or("-"), "deregistered");
            Ok(StatusCode::NO_CONTENT)
        }
        Ok(false) => match state.store.static_record(ip) {
            Some(fixed) => Err(at.refuse(
                "static_record",
                static_conflict(ip, &fixed, "edit the registry file to remove it"),
            )),
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
