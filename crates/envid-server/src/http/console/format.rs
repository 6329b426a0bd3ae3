//! Small formatting helpers of the console: times and query strings.

/// `2026-05-01 12:34:56Z` for a time in ms since the Unix epoch (UTC;
/// the console's script adds the browser's local time and "ago").
pub(super) fn time(unix_ms: u64) -> String {
    rfc3339(unix_ms).replacen('T', " ", 1)
}

/// RFC 3339 for `<time datetime>`.
pub(super) fn rfc3339(unix_ms: u64) -> String {
    crate::utc::rfc3339(i64::try_from(unix_ms / 1000).unwrap_or(i64::MAX))
}

/// A duration in words: `42 s`, `5 min`, `3 h 4 min`, `2 d 3 h`.
pub(super) fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=99 => format!("{s} s"),
        100..=5_999 => format!("{} min", s / 60),
        6_000..=172_799 => format!("{} h {} min", s / 3600, s / 60 % 60),
        _ => format!("{} d {} h", s / 86_400, s / 3600 % 24),
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
pub(super) fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Decodes a query value (`+` is a space).
pub(super) fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `key=value` pairs of a query string, decoded.
pub(super) fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations() {
        assert_eq!(time(0), "1970-01-01 00:00:00Z");
        assert_eq!(time(1_709_210_096_000), "2024-02-29 12:34:56Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(duration(42_000), "42 s");
        assert_eq!(duration(300_000), "5 min");
        assert_eq!(duration(3 * 3_600_000 + 240_000), "3 h 4 min");
        assert_eq!(duration(2 * 86_400_000 + 3 * 3_600_000), "2 d 3 h");
    }

    #[test]
    fn queries_round_trip() {
        let v = "team=pay <b>&\"x\" é";
        assert_eq!(decode(&encode(v)), v);
        assert_eq!(
            query_pairs("app=pay&label=team%3Dpay&q=10.0.0.0%2F8&x"),
            vec![
                ("app".into(), "pay".into()),
                ("label".into(), "team=pay".into()),
                ("q".into(), "10.0.0.0/8".into()),
                ("x".into(), String::new()),
            ]
        );
        assert_eq!(decode("a+b%2"), "a b%2");
        assert_eq!(decode("%é%zz"), "%é%zz");
    }
}
