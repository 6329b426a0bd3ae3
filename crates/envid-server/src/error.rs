//! The service's error answers: one [`ErrorCode`] per kind of refusal, each
//! with its HTTP status, and the [`ApiError`] every handler and middleware
//! returns, rendered as `{"error": {"code": "...", "message": "..."}}`.

use std::fmt;
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// What kind of refusal an error answer is: its `error.code` on the wire
/// ([`ErrorCode::as_str`]) and its HTTP status ([`ErrorCode::status`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `400 invalid_ip`: an IP address that does not parse (named in the message).
    InvalidIp,
    /// `400 invalid_json`: a body that is not the JSON the endpoint takes.
    InvalidJson,
    /// `400 invalid_lease`: `lease_seconds` missing or outside 1..=86400.
    InvalidLease,
    /// `400 invalid_record`: a registration's record fields are refused.
    InvalidRecord,
    /// `400 invalid_query`: `GET /v1/registry` query parameters that do not parse.
    InvalidQuery,
    /// `400 too_many_ips`: a batch lookup past `max_batch`.
    TooManyIps,
    /// `400 bad_body`: the request body could not be read.
    BadBody,
    /// `400 special_address`: registering an unspecified, loopback,
    /// link-local, multicast or broadcast address (the class is named).
    SpecialAddress,
    /// `400 invalid_forwarded_for`: a trusted proxy sent an
    /// `X-Forwarded-For` entry that is not an address.
    InvalidForwardedFor,
    /// `401 unauthorized`: a missing or wrong bearer token.
    Unauthorized,
    /// `403 registration_closed`: the service takes no registrations (no
    /// apps file); the message says how to enable them.
    RegistrationClosed,
    /// `403 forbidden`: the token may not say this (another IP, another
    /// app, an env or idc it may not claim, another app's registration).
    Forbidden,
    /// `409 static_record`: the IP has a record in the registry file, which
    /// registrations never replace or remove (the record is named).
    StaticRecord,
    /// `409 registration_changed`: a renewal or removal named a registration
    /// (`?registration=ID`) and the IP holds another one now (it was
    /// registered again since); nothing was renewed or removed.
    RegistrationChanged,
    /// `404 not_found`: no record for the IP, or no such endpoint.
    NotFound,
    /// `404 not_registered`: renewing an IP that has no registration.
    NotRegistered,
    /// `405 method_not_allowed`.
    MethodNotAllowed,
    /// `408 request_timeout`: the request was not complete in time.
    Timeout,
    /// `410 gone`: a replication delta from a version no longer in the history.
    Gone,
    /// `413 body_too_large`: a body past `max_body_bytes`.
    TooLarge,
    /// `429 rate_limited`: too many registrations of one (app, IP).
    RateLimited,
    /// `429 too_many_auth_failures`: too many failed authentications from
    /// one client address.
    TooManyAuthFailures,
    /// `429 overloaded`: too many requests in flight.
    Overloaded,
    /// `429 too_many_long_polls`: too many replication long polls waiting.
    TooManyLongPolls,
    /// `500 internal`.
    Internal,
    /// `503 unavailable`: the store cannot commit a write now (etcd has no
    /// quorum, or is not reached yet); retry after `Retry-After`. Reads are
    /// still answered from the instance's view.
    Unavailable,
}

impl ErrorCode {
    /// The `error.code` string clients match on.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidIp => "invalid_ip",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidLease => "invalid_lease",
            ErrorCode::InvalidRecord => "invalid_record",
            ErrorCode::InvalidQuery => "invalid_query",
            ErrorCode::TooManyIps => "too_many_ips",
            ErrorCode::BadBody => "bad_body",
            ErrorCode::SpecialAddress => "special_address",
            ErrorCode::InvalidForwardedFor => "invalid_forwarded_for",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::RegistrationClosed => "registration_closed",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::StaticRecord => "static_record",
            ErrorCode::RegistrationChanged => "registration_changed",
            ErrorCode::TooManyAuthFailures => "too_many_auth_failures",
            ErrorCode::NotFound => "not_found",
            ErrorCode::NotRegistered => "not_registered",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Timeout => "request_timeout",
            ErrorCode::Gone => "gone",
            ErrorCode::TooLarge => "body_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::TooManyLongPolls => "too_many_long_polls",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
        }
    }

    /// The HTTP status the service answers with.
    pub const fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidIp
            | ErrorCode::InvalidJson
            | ErrorCode::InvalidLease
            | ErrorCode::InvalidRecord
            | ErrorCode::InvalidQuery
            | ErrorCode::TooManyIps
            | ErrorCode::BadBody
            | ErrorCode::SpecialAddress
            | ErrorCode::InvalidForwardedFor => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::RegistrationClosed | ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::StaticRecord | ErrorCode::RegistrationChanged => StatusCode::CONFLICT,
            ErrorCode::NotFound | ErrorCode::NotRegistered => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Timeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::Gone => StatusCode::GONE,
            // 413 rather than 400: it tells a client to shrink the request,
            // not to fix it.
            ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RateLimited
            | ErrorCode::Overloaded
            | ErrorCode::TooManyLongPolls
            | ErrorCode::TooManyAuthFailures => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error answer: a code, a message for the human reading it, and the
/// headers some answers need.
#[derive(Debug)]
pub(crate) struct ApiError {
    code: ErrorCode,
    message: String,
    retry_after: Option<Duration>,
    close: bool,
}

impl ApiError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
            close: false,
        }
    }

    /// `400 invalid_ip` naming the text that did not parse.
    pub(crate) fn invalid_ip(raw: &str) -> ApiError {
        ApiError::new(ErrorCode::InvalidIp, format!("invalid IP address {raw:?}"))
    }

    /// The message for the human reading the answer.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// Adds `Retry-After` (whole seconds, rounded up, at least 1).
    pub(crate) fn retry_after(mut self, after: Duration) -> ApiError {
        self.retry_after = Some(after);
        self
    }

    /// Ends the connection after this answer: the rest of the request body
    /// was never read, so the connection cannot carry another request.
    pub(crate) fn closing(mut self) -> ApiError {
        self.close = true;
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            error: Inner<'a>,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            code: &'static str,
            message: &'a str,
        }
        let body = Body {
            error: Inner {
                code: self.code.as_str(),
                message: &self.message,
            },
        };
        let mut response = (self.code.status(), Json(body)).into_response();
        let headers = response.headers_mut();
        if self.code == ErrorCode::Unauthorized {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(after) = self.retry_after {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        if self.close {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire contract: clients match on these strings and statuses.
    #[test]
    fn codes_keep_their_wire_strings_and_statuses() {
        let table = [
            (ErrorCode::InvalidIp, "invalid_ip", 400),
            (ErrorCode::InvalidJson, "invalid_json", 400),
            (ErrorCode::InvalidLease, "invalid_lease", 400),
            (ErrorCode::InvalidRecord, "invalid_record", 400),
            (ErrorCode::InvalidQuery, "invalid_query", 400),
            (ErrorCode::TooManyIps, "too_many_ips", 400),
            (ErrorCode::BadBody, "bad_body", 400),
            (ErrorCode::SpecialAddress, "special_address", 400),
            (ErrorCode::InvalidForwardedFor, "invalid_forwarded_for", 400),
            (ErrorCode::Unauthorized, "unauthorized", 401),
            (ErrorCode::RegistrationClosed, "registration_closed", 403),
            (ErrorCode::Forbidden, "forbidden", 403),
            (ErrorCode::StaticRecord, "static_record", 409),
            (ErrorCode::RegistrationChanged, "registration_changed", 409),
            (
                ErrorCode::TooManyAuthFailures,
                "too_many_auth_failures",
                429,
            ),
            (ErrorCode::NotFound, "not_found", 404),
            (ErrorCode::NotRegistered, "not_registered", 404),
            (ErrorCode::MethodNotAllowed, "method_not_allowed", 405),
            (ErrorCode::Timeout, "request_timeout", 408),
            (ErrorCode::Gone, "gone", 410),
            (ErrorCode::TooLarge, "body_too_large", 413),
            (ErrorCode::RateLimited, "rate_limited", 429),
            (ErrorCode::Overloaded, "overloaded", 429),
            (ErrorCode::TooManyLongPolls, "too_many_long_polls", 429),
            (ErrorCode::Internal, "internal", 500),
            (ErrorCode::Unavailable, "unavailable", 503),
        ];
        for (code, wire, status) in table {
            assert_eq!((code.as_str(), code.status().as_u16()), (wire, status));
            assert_eq!(code.to_string(), wire);
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let r = ApiError::new(ErrorCode::RateLimited, "slow down")
            .retry_after(Duration::from_millis(1500))
            .into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        let r = ApiError::new(ErrorCode::Overloaded, "busy")
            .retry_after(Duration::ZERO)
            .into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
    }
}
