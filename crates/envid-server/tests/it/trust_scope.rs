//! Per-credential scope (issue 26): several credentials of one app, each
//! with its own envs, idcs, sub envs, label and expiry.
