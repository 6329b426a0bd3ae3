//! `EtcdSettings`: an [`EtcdAccess`] read and checked once (files exist and
//! parse, certificate and key match, the certificate is valid now, a user
//! has a password), and the etcd client's options made from it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use envid::Secret;
use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{EtcdAccess, EtcdPassword};

/// The longest a request to etcd may take before it counts as failed
/// (connecting and the TLS handshake included).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// How the store connects, validated (see [`EtcdSettings::load`]).
pub(crate) struct EtcdSettings {
    pub(super) endpoints: Vec<String>,
    pub(super) prefix: String,
    pub(super) access: EtcdAccess,
    pub(super) tls: Option<Tls>,
    pub(super) user: Option<(String, Secret)>,
    /// The client certificate's notAfter (Unix seconds).
    pub(super) not_after: Option<i64>,
}

/// The TLS files' content.
pub(super) struct Tls {
    pub(super) ca: Vec<u8>,
    /// The client certificate chain and key, PEM.
    pub(super) identity: Option<(Vec<u8>, Secret)>,
}

impl std::fmt::Debug for EtcdSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No key, no password: only what the operator could read in the
        // command line anyway.
        f.debug_struct("EtcdSettings")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("access", &self.access)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path, flag: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {flag} {}: {e}", path.display()))
}

fn certificates(
    bytes: &[u8],
    path: &Path,
    flag: &str,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{flag} {}: not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{flag} {}: no certificate (expected PEM \"-----BEGIN CERTIFICATE-----\")",
            path.display()
        ));
    }
    for (i, der) in certs.iter().enumerate() {
        x509_parser::parse_x509_certificate(der).map_err(|e| {
            format!(
                "{flag} {}: certificate {} does not parse: {e}",
                path.display(),
                i + 1
            )
        })?;
    }
    Ok(certs)
}

/// A UTC time as `2026-01-31T12:00:00Z`.
pub(crate) fn utc(secs: i64) -> String {
    crate::utc::rfc3339(secs)
}

pub(crate) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The password file's content, checked: readable by its owner only,
/// not empty once a trailing newline is dropped.
fn password_file(path: &Path) -> Result<Secret, String> {
    let flag = "--etcd-password-file";
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("cannot read {flag} {}: {e}", path.display()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o044 != 0 {
            return Err(format!(
                "{flag} {}: readable by group or others (mode {mode:04o}); \
                 `chmod 600` it (in Kubernetes, defaultMode: 0400)",
                path.display()
            ));
        }
    }
    let bytes = read(path, flag)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("{flag} {}: not valid UTF-8", path.display()))?;
    let password = text.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(format!("{flag} {}: empty", path.display()));
    }
    Ok(Secret::new(password))
}

impl EtcdSettings {
    /// Reads and checks everything `access` names for `endpoints`:
    /// `https://` URLs exactly when TLS files are given, a certificate
    /// with its key (and a key that matches it), files that exist and
    /// parse, a client certificate valid now, a user with a password.
    /// `Err` is the cause, naming the flag.
    pub(crate) fn load(
        endpoints: &[String],
        prefix: &str,
        access: &EtcdAccess,
    ) -> Result<EtcdSettings, String> {
        if endpoints.is_empty() {
            return Err("no etcd URL (--etcd URL[,URL...])".into());
        }
        let https = endpoints
            .iter()
            .filter(|e| e.starts_with("https://"))
            .count();
        let files = access.ca.is_some() || access.cert.is_some() || access.key.is_some();
        if https > 0 && https < endpoints.len() {
            return Err(format!(
                "--etcd mixes https:// and plain URLs ({}); use one scheme",
                endpoints.join(",")
            ));
        }
        if files && https == 0 {
            return Err(format!(
                "--etcd-ca, --etcd-cert and --etcd-key need https:// etcd URLs, \
                 not {} (plain HTTP would ignore them)",
                endpoints[0]
            ));
        }
        if https > 0 && access.ca.is_none() {
            return Err(format!(
                "--etcd {} is https://: give --etcd-ca FILE, the CA that signs \
                 the etcd members' certificates",
                endpoints[0]
            ));
        }
        for e in endpoints {
            if !e.starts_with("https://") && !e.starts_with("http://") {
                return Err(format!(
                    "--etcd {e}: not a URL (http://HOST:PORT or https://HOST:PORT)"
                ));
            }
        }
        let mut not_after = None;
        let tls = match &access.ca {
            None => None,
            Some(ca_path) => {
                let ca = read(ca_path, "--etcd-ca")?;
                certificates(&ca, ca_path, "--etcd-ca")?;
                let identity = match (&access.cert, &access.key) {
                    (None, None) => None,
                    (Some(_), None) => {
                        return Err("--etcd-cert needs --etcd-key (its private key)".into())
                    }
                    (None, Some(_)) => {
                        return Err("--etcd-key needs --etcd-cert (its certificate)".into())
                    }
                    (Some(cert_path), Some(key_path)) => {
                        let cert = read(cert_path, "--etcd-cert")?;
                        let chain = certificates(&cert, cert_path, "--etcd-cert")?;
                        let key = read(key_path, "--etcd-key")?;
                        let der = PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
                            format!(
                                "--etcd-key {}: not a PEM private key: {e}",
                                key_path.display()
                            )
                        })?;
                        let provider = rustls::crypto::ring::default_provider();
                        rustls::sign::CertifiedKey::from_der(chain.clone(), der, &provider)
                            .map_err(|e| {
                                format!(
                                    "--etcd-cert {} and --etcd-key {}: {e}",
                                    cert_path.display(),
                                    key_path.display()
                                )
                            })?;
                        let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0])
                            .map_err(|e| format!("--etcd-cert {}: {e}", cert_path.display()))?;
                        let validity = leaf.validity();
                        let (from, until) = (
                            validity.not_before.timestamp(),
                            validity.not_after.timestamp(),
                        );
                        let now = now_secs();
                        if now > until {
                            return Err(format!(
                                "the client certificate --etcd-cert {} expired on {}; \
                                 renew it",
                                cert_path.display(),
                                utc(until)
                            ));
                        }
                        if now < from {
                            return Err(format!(
                                "the client certificate --etcd-cert {} is not valid \
                                 before {} (is this machine's clock right?)",
                                cert_path.display(),
                                utc(from)
                            ));
                        }
                        not_after = Some(until);
                        // The key stays out of every Debug and log.
                        let key = String::from_utf8(key).map_err(|_| {
                            format!("--etcd-key {}: not valid UTF-8", key_path.display())
                        })?;
                        Some((cert, Secret::new(key)))
                    }
                };
                Some(Tls { ca, identity })
            }
        };
        let user = match (&access.user, &access.password) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err("an etcd password without a user: give --etcd-user NAME".into())
            }
            (Some(_), None) => {
                return Err("--etcd-user needs a password: --etcd-password-file FILE \
                     or the ENVID_ETCD_PASSWORD environment variable"
                    .into())
            }
            (Some(name), Some(password)) => {
                let name = name.trim();
                if name.is_empty() {
                    return Err("--etcd-user is empty".into());
                }
                let password = match password {
                    EtcdPassword::File(p) => password_file(p)?,
                    EtcdPassword::Value(v) => {
                        if v.expose().is_empty() {
                            return Err("ENVID_ETCD_PASSWORD is empty".into());
                        }
                        v.clone()
                    }
                };
                Some((name.to_string(), password))
            }
        };
        Ok(EtcdSettings {
            endpoints: endpoints.to_vec(),
            prefix: prefix.to_string(),
            access: access.clone(),
            tls,
            user,
            not_after,
        })
    }

    /// The etcd client's options.
    pub(crate) fn options(&self) -> ConnectOptions {
        let mut options = ConnectOptions::new()
            .with_timeout(REQUEST_TIMEOUT)
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(1), Duration::from_secs(2))
            .with_keep_alive_while_idle(true)
            // A member cut off from its leader refuses rather than
            // answering stale (and ends our watch).
            .with_require_leader(true);
        if let Some(tls) = &self.tls {
            let mut config = TlsOptions::new()
                .ca_certificate(Certificate::from_pem(&tls.ca))
                .timeout(REQUEST_TIMEOUT);
            if let Some((cert, key)) = &tls.identity {
                config = config.identity(Identity::from_pem(cert, key.expose()));
            }
            options = options.with_tls(config);
        }
        if let Some((name, password)) = &self.user {
            options = options
                .with_user(name.clone(), password.expose().to_string())
                // etcd's tokens end (5 minutes by default, and at a
                // password change); without this every call after that
                // fails with "invalid auth token".
                .with_auto_token_refresh(true);
        }
        options
    }

    /// What the operator gave.
    pub(crate) fn access(&self) -> &EtcdAccess {
        &self.access
    }

    /// The client certificate's notAfter (Unix seconds), if there is one.
    pub(crate) fn not_after(&self) -> Option<i64> {
        self.not_after
    }

    /// Whether there are files to watch for rotation.
    pub(crate) fn has_files(&self) -> bool {
        self.access.ca.is_some() || matches!(self.access.password, Some(EtcdPassword::File(_)))
    }

    /// What `/healthz` shows of the settings (never a secret).
    pub(crate) fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "tls": self.tls.is_some(),
            "client_cert": self.access.cert.as_ref().map(|p| p.display().to_string()),
            "client_cert_not_after": self.not_after.map(utc),
            "user": self.user.as_ref().map(|(n, _)| n.clone()),
        })
    }
}

/// The content of every file `access` names, hashed: a change means
/// rotation. A missing file hashes as its error, so it changes too.
pub(crate) fn fingerprint(access: &EtcdAccess) -> u64 {
    let mut all = Vec::new();
    let password = match &access.password {
        Some(EtcdPassword::File(p)) => Some(p.clone()),
        _ => None,
    };
    let files: [Option<PathBuf>; 4] = [
        access.ca.clone(),
        access.cert.clone(),
        access.key.clone(),
        password,
    ];
    for path in files.iter().flatten() {
        match std::fs::read(path) {
            Ok(b) => all.extend_from_slice(&b),
            Err(e) => all.extend_from_slice(e.to_string().as_bytes()),
        }
        all.push(0);
    }
    crate::hash::content_hash(&all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_767_225_599), "2025-12-31T23:59:59Z");
    }

    fn access() -> EtcdAccess {
        EtcdAccess::default()
    }

    #[test]
    fn schemes_and_files_go_together() {
        let https = vec!["https://127.0.0.1:2379".to_string()];
        let http = vec!["http://127.0.0.1:2379".to_string()];
        let e = EtcdSettings::load(&https, "/envid/", &access()).unwrap_err();
        assert!(e.contains("give --etcd-ca FILE"), "{e}");
        let mut a = access();
        a.ca = Some("/nonexistent/ca.pem".into());
        let e = EtcdSettings::load(&http, "/envid/", &a).unwrap_err();
        assert!(e.contains("need https:// etcd URLs"), "{e}");
        let e = EtcdSettings::load(&https, "/envid/", &a).unwrap_err();
        assert!(
            e.contains("cannot read --etcd-ca /nonexistent/ca.pem"),
            "{e}"
        );
        let mixed = vec![https[0].clone(), http[0].clone()];
        let e = EtcdSettings::load(&mixed, "/envid/", &a).unwrap_err();
        assert!(e.contains("mixes"), "{e}");
    }

    #[test]
    fn certificate_and_key_come_together_and_match() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let leaf = |cn: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec![cn.to_string()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (ca, _) = leaf("ca");
        let (cert, _) = leaf("one");
        let (_, other_key) = leaf("two");
        let https = vec!["https://127.0.0.1:2379".to_string()];
        let mut a = access();
        a.ca = Some(write("ca.pem", &ca));
        a.cert = Some(write("cert.pem", &cert));
        let e = EtcdSettings::load(&https, "/envid/", &a).unwrap_err();
        assert_eq!(e, "--etcd-cert needs --etcd-key (its private key)");
        a.key = Some(write("key.pem", &other_key));
        let e = EtcdSettings::load(&https, "/envid/", &a).unwrap_err();
        assert!(e.starts_with("--etcd-cert "), "{e}");
        a.key = Some(write("key.pem", "not a key"));
        let e = EtcdSettings::load(&https, "/envid/", &a).unwrap_err();
        assert!(e.contains("not a PEM private key"), "{e}");
        a.ca = Some(write("ca.pem", "garbage"));
        let e = EtcdSettings::load(&https, "/envid/", &a).unwrap_err();
        assert!(e.contains("no certificate"), "{e}");
    }

    #[test]
    fn a_user_needs_a_password_and_the_file_must_be_private() {
        let http = vec!["http://127.0.0.1:2379".to_string()];
        let mut a = access();
        a.user = Some("envid".into());
        let e = EtcdSettings::load(&http, "/envid/", &a).unwrap_err();
        assert!(e.contains("--etcd-password-file FILE"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        a.password = Some(EtcdPassword::File(file.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = EtcdSettings::load(&http, "/envid/", &a).unwrap_err();
            assert!(e.contains("readable by group or others (mode 0644)"), "{e}");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let s = EtcdSettings::load(&http, "/envid/", &a).unwrap();
        assert_eq!(s.user.as_ref().unwrap().1.expose(), "s3cret");
        let debug = format!("{s:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        std::fs::write(&file, "\n").unwrap();
        let e = EtcdSettings::load(&http, "/envid/", &a).unwrap_err();
        assert!(e.ends_with("empty"), "{e}");
        a.password = Some(EtcdPassword::Value(Secret::new("hunter2")));
        assert!(!format!("{a:?}").contains("hunter2"));
    }
}
