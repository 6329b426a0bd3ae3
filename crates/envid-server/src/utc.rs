//! Times as operators read them: RFC 3339 in UTC, to the second.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// `2026-01-31T12:00:00Z` for `secs` since the Unix epoch; a time RFC 3339
/// cannot write (before year 0 or after 9999) is named in seconds.
pub(crate) fn rfc3339(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{secs} s after the Unix epoch"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn far_times_are_named_in_seconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(i64::MAX),
            format!("{} s after the Unix epoch", i64::MAX)
        );
    }
}
