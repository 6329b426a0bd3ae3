//! How the etcd store reaches etcd: TLS (`--etcd-ca`, optionally a client
//! certificate with `--etcd-cert` and `--etcd-key`) and a user with a
//! password (`--etcd-user`, `--etcd-password-file` or
//! `ENVID_ETCD_PASSWORD`).
//!
//! [`EtcdAccess`] is what the operator gave (paths and a name); with the
//! `etcd` feature, `etcd_connect/settings.rs` turns it into `EtcdSettings`,
//! validated once, with every problem worded with the flag that fixes it,
//! and `etcd_connect/refusal.rs` words etcd's refusals the same way
//! (`Failure`): a refusal that a retry will not fix (TLS, credentials,
//! permissions) stops the service at start, and names the cause on
//! `/healthz` when it happens later.

use std::path::PathBuf;

use envid::Secret;

/// TLS and authentication towards etcd, as given (files are read and
/// checked at start, and the certificates and the password file again when
/// they change). The default is plaintext without a user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EtcdAccess {
    /// The PEM CA certificates that sign the etcd members' certificates
    /// (`--etcd-ca`); needed for `https://` URLs.
    pub ca: Option<PathBuf>,
    /// A PEM client certificate chain, leaf first (`--etcd-cert`), for
    /// members started with `--client-cert-auth`.
    pub cert: Option<PathBuf>,
    /// The PEM private key of `cert` (`--etcd-key`).
    pub key: Option<PathBuf>,
    /// The etcd user (`--etcd-user`).
    pub user: Option<String>,
    /// The user's password.
    pub password: Option<EtcdPassword>,
}

/// Where the etcd user's password comes from. Never from the command line:
/// it would show in `ps`.
#[derive(Clone, PartialEq, Eq)]
pub enum EtcdPassword {
    /// A file holding it (`--etcd-password-file`; a trailing newline is
    /// dropped; refused when group or others may read it). Re-read when it
    /// changes.
    File(PathBuf),
    /// The value itself (`ENVID_ETCD_PASSWORD`).
    Value(Secret),
}

impl std::fmt::Debug for EtcdPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EtcdPassword::File(p) => f.debug_tuple("File").field(p).finish(),
            // Secret's own Debug redacts; spelled out so a change of type
            // cannot bring the value back.
            EtcdPassword::Value(_) => f.write_str("Value(<redacted>)"),
        }
    }
}

impl EtcdAccess {
    /// Whether anything beyond plaintext without a user was asked for.
    pub fn is_set(&self) -> bool {
        self != &EtcdAccess::default()
    }
}

#[cfg(feature = "etcd")]
#[cfg(feature = "etcd")]
pub(crate) mod refusal;
#[cfg(feature = "etcd")]
pub(crate) mod settings;
