//! The bodies of `PUT /v1/hosts/{ip}` and `POST /v1/hosts/{ip}/renew`:
//! what a registering client may say, checked before anything is stored.
//! A registration parses into [`RegistrationBody`], the type the client
//! sends; the checks before it name each refusal in the service's words.

use std::net::IpAddr;

use envid::protocol::{canonical_ip, HostRecord, RegistrationBody, RECORD_KEYS};

use crate::error::{ApiError, ErrorCode};
use crate::validation::{check_record, parse_json_strict};

/// The longest lease a registration may ask for (a day).
pub const MAX_LEASE_SECONDS: u64 = 86_400;

/// Why a registration or renewal body was refused; the service answers `400`
/// with `code` and `message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RegistrationBodyError {
    /// [`ErrorCode::InvalidJson`], [`ErrorCode::InvalidLease`] or
    /// [`ErrorCode::InvalidRecord`].
    pub code: ErrorCode,
    /// What was wrong, naming the field or value.
    pub message: String,
}

fn body_error(code: ErrorCode, message: impl Into<String>) -> RegistrationBodyError {
    RegistrationBodyError {
        code,
        message: message.into(),
    }
}

/// Checks a `lease_seconds` value: a whole number from 1 to [`MAX_LEASE_SECONDS`].
pub fn parse_lease_seconds(value: &serde_json::Value) -> Result<u64, RegistrationBodyError> {
    value
        .as_u64()
        .filter(|s| (1..=MAX_LEASE_SECONDS).contains(s))
        .ok_or_else(|| {
            body_error(
                ErrorCode::InvalidLease,
                format!(
                    "lease_seconds must be a whole number from 1 to {MAX_LEASE_SECONDS}, got {value}"
                ),
            )
        })
}

/// Parses a `PUT /v1/hosts/{ip}` body, a [`RegistrationBody`]: a record's
/// fields plus the required `lease_seconds`. The record gets the path's
/// `ip` (a body `ip` must equal it); `cidr` and `token` are refused (ranges belong in the registry file,
/// and records are served to anyone), and so is `env_type` (the service
/// derives it from `env`, so a client cannot call `beta` `prod`). The
/// record then passes [`crate::validation::check_record`], the registry
/// file's rules: duplicate keys, unknown keys at any depth (named by their
/// path), empty, padded, over-long or control/bidi-laden strings, and a
/// record over 4 KiB are all refused.
pub fn parse_registration_body(
    ip: IpAddr,
    body: &[u8],
) -> Result<(HostRecord, u64), RegistrationBodyError> {
    let value = parse_json_strict(body).map_err(|e| {
        body_error(
            ErrorCode::InvalidJson,
            format!("invalid JSON body (expected {{\"app\": ..., \"env\": ..., \"idc\": ..., \"lease_seconds\": N}}): {e}"),
        )
    })?;
    let serde_json::Value::Object(fields) = value else {
        return Err(body_error(
            ErrorCode::InvalidJson,
            "the body must be a JSON object",
        ));
    };
    let lease = match fields.get("lease_seconds") {
        Some(v) => parse_lease_seconds(v)?,
        None => {
            return Err(body_error(
                ErrorCode::InvalidLease,
                "lease_seconds is required",
            ))
        }
    };
    for key in fields.keys() {
        match key.as_str() {
            "token" => {
                return Err(body_error(
                    ErrorCode::InvalidRecord,
                    "a record must not carry a token: records are served to anyone",
                ))
            }
            "cidr" => {
                return Err(body_error(
                    ErrorCode::InvalidRecord,
                    "only single IPs can be registered; ranges belong in the registry file",
                ))
            }
            "env_type" => {
                return Err(body_error(
                    ErrorCode::InvalidRecord,
                    "env_type is derived by the service from env; remove it from the body",
                ))
            }
            "lease_seconds" => {}
            k if !RECORD_KEYS.contains(&k) => {
                return Err(body_error(
                    ErrorCode::InvalidRecord,
                    format!("unknown key `{key}`"),
                ))
            }
            _ => {}
        }
    }
    if let Some(v) = fields.get("ip") {
        let given = v.as_str().and_then(|s| s.parse::<IpAddr>().ok());
        if given.map(canonical_ip) != Some(canonical_ip(ip)) {
            return Err(body_error(
                ErrorCode::InvalidRecord,
                format!("the body's ip {v} is not the path's {ip}"),
            ));
        }
    }
    let input = serde_json::Value::Object(fields);
    let parsed: RegistrationBody = serde_json::from_value(input.clone())
        .map_err(|e| body_error(ErrorCode::InvalidRecord, e.to_string()))?;
    // Checked with the body's own `ip`, as given, so that the size limit
    // counts what the client sent; the path's replaces it below.
    let mut record = parsed.into_record();
    // `ip` was checked above and `lease_seconds` is not a record field.
    let problems = check_record(&input, &record, &["ip", "lease_seconds"]);
    if !problems.is_empty() {
        let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(body_error(ErrorCode::InvalidRecord, all.join("; ")));
    }
    record.ip = Some(ip);
    Ok((record, lease))
}

/// Parses a `POST /v1/hosts/{ip}/renew` body: empty or `{}` (the lease is
/// extended by its registered length). Anything else is refused: a renewal
/// says only "still here".
pub fn parse_renewal_body(body: &[u8]) -> Result<(), RegistrationBodyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    match parse_json_strict(body) {
        Ok(serde_json::Value::Object(m)) if m.is_empty() => Ok(()),
        Ok(_) => Err(body_error(
            ErrorCode::InvalidJson,
            "a renewal body must be empty or {}",
        )),
        Err(e) => Err(body_error(
            ErrorCode::InvalidJson,
            format!("invalid JSON body (a renewal body must be empty or {{}}): {e}"),
        )),
    }
}

/// A refused body is answered with its code and message as they are (the
/// message names the field; it never echoes a token).
impl From<RegistrationBodyError> for ApiError {
    fn from(e: RegistrationBodyError) -> ApiError {
        ApiError::new(e.code, e.message)
    }
}
