//! `GET /v1/keys`: the public keys of signed identities as a JWK set
//! (RFC 7517), open to anyone (they are public), with `ETag` and
//! `Cache-Control` so verifiers revalidate with a `304`.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::state::AppState;
use crate::error::{ApiError, ErrorCode};

/// How long a verifier may use the key set without revalidating it.
const MAX_AGE_SECS: u64 = 300;

pub(crate) async fn keys(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some((body, etag)) = state.identity.keys_document() else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "this service signs no identities (no --signing-key)",
        ));
    };
    let cache_control = format!("public, max-age={MAX_AGE_SECS}");
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag.to_string()),
                (header::CACHE_CONTROL, cache_control),
            ],
        )
            .into_response());
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/jwk-set+json".to_string()),
            (header::ETAG, etag.to_string()),
            (header::CACHE_CONTROL, cache_control),
        ],
        body.clone(),
    )
        .into_response())
}
