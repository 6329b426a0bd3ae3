//! Printing helpers shared by the commands.

use crate::cli::Format;

/// Serializes `value` as pretty JSON or TOML.
pub fn structured<T: serde::Serialize>(value: &T, format: Format) -> Result<String, String> {
    match format {
        Format::Json => serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .map_err(|e| format!("cannot encode JSON: {e}")),
        Format::Toml => {
            toml::to_string_pretty(value).map_err(|e| format!("cannot encode TOML: {e}"))
        }
        Format::Text => unreachable!("text output is written by each command"),
    }
}

/// Left-aligned `name  value  (source)` rows.
pub fn table(rows: &[(String, String, Option<String>)]) -> String {
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v, src) in rows {
        match src {
            Some(s) => {
                let pad = w1 - v.chars().count();
                out.push_str(&format!("{k:<w0$}  {v}{:pad$}  ({s})\n", ""));
            }
            None => out.push_str(&format!("{k:<w0$}  {v}\n")),
        }
    }
    out
}
