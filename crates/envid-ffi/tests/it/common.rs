//! Shared by the C and Java harnesses: where the built library is, the
//! fixture files, and the Rust library's answers to compare against.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `testdata/example.toml`.
pub fn example() -> PathBuf {
    repo_root()
        .join("testdata/example.toml")
        .canonicalize()
        .unwrap()
}

/// The directory of the freshly built cdylib. The test executable lives in
/// `target/<profile>/deps/`; `cargo test` writes the cdylib into that same
/// `deps/` directory, and `cargo build` copies it up into `target/<profile>/`.
/// Either may be stale (the copy up does not happen for test builds), so the
/// newer of the two wins.
pub fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap().to_path_buf();
    let profile = deps.parent().unwrap().to_path_buf();
    let modified = |dir: &Path| {
        std::fs::metadata(dir.join(lib_file_name()))
            .and_then(|m| m.modified())
            .ok()
    };
    let candidates = [(modified(&deps), deps), (modified(&profile), profile)];
    let best = candidates
        .into_iter()
        .filter(|(m, _)| m.is_some())
        .max_by_key(|(m, _)| *m)
        .map(|(_, d)| d);
    best.unwrap_or_else(|| {
        panic!(
            "{} not found next to {}; cargo builds the cdylib with the library (cargo test -p envid-ffi)",
            lib_file_name(),
            exe.display()
        )
    })
}

/// `libenvid_ffi.so` (or the platform's equivalent).
pub fn lib_file_name() -> String {
    format!(
        "{}envid_ffi{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// Variables that would change what envid sees; child processes run without them.
pub const ENVID_VARS: &[&str] = &[
    "ENVID_APP",
    "ENVID_ENV",
    "ENVID_SUB_ENV",
    "ENVID_IDC",
    "ENVID_PLATFORM",
    "ENVID_IP",
    "ENVID_DESCRIPTOR",
    "POD_NAME",
    "POD_NAMESPACE",
    "NODE_NAME",
    "POD_IP",
    "KUBERNETES_SERVICE_HOST",
];

/// A command with those variables removed.
pub fn clean_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    for v in ENVID_VARS {
        c.env_remove(v);
    }
    c
}

/// The Rust library's environment for `descriptor`, with no variables at all
/// (the child processes run with none of [`ENVID_VARS`]).
pub fn rust_env(descriptor: &Path) -> envid::Environment {
    envid::Environment::builder()
        .descriptor(descriptor)
        .vars(envid::vars::Vars::from_pairs(Vec::<(String, String)>::new()))
        .load()
        .unwrap_or_else(|e| panic!("the Rust library loads {}: {e}", descriptor.display()))
}

/// The Rust library's JSON for `descriptor` (no secrets, no sources).
pub fn rust_json(descriptor: &Path) -> String {
    serde_json::to_string(&rust_env(descriptor).report(false, false)).unwrap()
}

/// Writes the fixture files both harnesses use into `dir`.
pub fn write_fixtures(dir: &Path) {
    let w = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    w("expected.json", &rust_json(&example()));
    w("bad-syntax.toml", "schema = 1\nenv \"beta\"\n");
    w(
        "unknown-key.toml",
        "schema = 1\nenv = \"beta\"\nidc = \"cn0\"\nfuture_key = 1\n",
    );
    w("no-env.toml", "schema = 1\napp = \"lonely\"\n");
    w(
        "rules.toml",
        "[[rule]]\nname = \"web\"\npattern = '^web-(?P<app>[a-z]+)-\\d+\\.(?P<env>[a-z]+)\\.(?P<idc>cn\\d+)$'\n\n[aliases]\nperf = \"test\"\n",
    );
    w(
        "bad-rules.toml",
        "[[rule]]\nname = \"broken\"\npattern = '(?P<idc>cn\\d+'\n",
    );
    std::fs::create_dir_all(dir.join("root")).unwrap();
    // A host set up for Apollo only: its server.properties, no descriptor.
    let apollo = dir.join("apollo/opt/settings");
    std::fs::create_dir_all(&apollo).unwrap();
    w(
        "apollo/opt/settings/server.properties",
        "env=PRO\nidc=cn5\n",
    );
}

/// The "N passed, M failed" line of a test program's output.
pub fn summary(stdout: &str) -> Option<(usize, usize)> {
    let line = stdout.lines().rev().find(|l| l.contains(" passed, "))?;
    let mut it = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// The reference environment service on loopback, serving
/// `testdata/registry.toml`; stopped on drop.
pub struct Service {
    handle: Option<envid_server::ServerHandle>,
}

impl Service {
    /// Starts it on an ephemeral port.
    pub fn start() -> Service {
        let registry = repo_root().join("testdata/registry.toml");
        let handle = envid_server::spawn(envid_server::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..envid_server::Config::new(registry)
        })
        .expect("the reference service starts");
        Service {
            handle: Some(handle),
        }
    }

    /// Serves a copy of `testdata/registry.toml` in `dir`, noticing changes
    /// to it every 50 ms: tests rewrite the copy (then restore it) to make
    /// the service publish deltas. Returns the copy's path too.
    pub fn start_on_copy(dir: &Path) -> (Service, PathBuf) {
        let registry = dir.join("registry.toml");
        std::fs::copy(repo_root().join("testdata/registry.toml"), &registry).unwrap();
        let handle = envid_server::spawn(envid_server::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            reload_interval: std::time::Duration::from_millis(50),
            ..envid_server::Config::new(&registry)
        })
        .expect("the reference service starts");
        let service = Service {
            handle: Some(handle),
        };
        (service, registry)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.handle.as_ref().unwrap().base_url()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
        }
    }
}

/// A service that signs identities, and the identity cases every binding
/// must answer as the Rust verifier does.
pub struct IdentityCases {
    /// The signing service (its `/v1/keys`).
    pub service: envid_server::ServerHandle,
    /// `identity.tsv`: one case a line, `token \t expected \t claims JSON`,
    /// `expected` being `OK` or the result code's name without `ENVID_`.
    pub file: PathBuf,
    /// How many cases.
    pub count: usize,
}

/// Starts a signing service (issuer `envsvc-test`, audience `envid`) and
/// writes tokens of every outcome with the Rust verifier's answers.
pub fn identity_cases(dir: &Path) -> IdentityCases {
    use envid::identity::{Claims, Signer, Verifier};
    let key = dir.join("signing.pem");
    std::fs::write(&key, Signer::generate_pem()).unwrap();
    let mut config = envid_server::Config::new(repo_root().join("testdata/registry.toml"));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.identity.signing_key = Some(key.clone());
    config.identity.issuer = "envsvc-test".into();
    let identity = envid_server::identity::Identity::load(&config.identity).unwrap();
    let service = envid_server::spawn(config).expect("the signing service starts");
    let signer = Signer::from_pem_file(&key).unwrap();
    let stranger = Signer::from_pem(&Signer::generate_pem()).unwrap();
    let record = |app: &str, sub_env: Option<&str>| -> envid::protocol::HostRecord {
        serde_json::from_value(serde_json::json!({
            "app": app, "env": "prod", "idc": "cn0", "sub_env": sub_env,
        }))
        .unwrap()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |iss: &str, aud: &str, nbf: u64, exp: u64| {
        let mut c = Claims::for_record(
            &record("pay", None),
            "10.1.2.3".parse().unwrap(),
            iss,
            aud,
            nbf,
            1,
        )
        .unwrap();
        c.exp = exp;
        c
    };
    let good = identity
        .issue_identity(
            &record("flight_order", Some("blue")),
            "10.8.1.77".parse().unwrap(),
        )
        .unwrap();
    let mut tampered: Vec<&str> = good.split('.').collect();
    let other_payload = signer.sign(&claims("envsvc-test", "envid", now, now + 600));
    tampered[1] = other_payload.split('.').nth(1).unwrap();
    let tampered = tampered.join(".");
    let tokens = vec![
        good.clone(),
        identity
            .issue_identity(&record("hotel", None), "2001:db8::10".parse().unwrap())
            .unwrap(),
        signer.sign(&claims("envsvc-test", "envid", now - 7200, now - 3600)),
        signer.sign(&claims("envsvc-test", "envid", now + 3600, now + 7200)),
        signer.sign(&claims("someone-else", "envid", now, now + 600)),
        signer.sign(&claims("envsvc-test", "billing", now, now + 600)),
        tampered,
        stranger.sign(&claims("envsvc-test", "envid", now, now + 600)),
        "not-a-jwt".into(),
        "a.b.c".into(),
        String::new(),
    ];
    let verifier = Verifier::builder(
        envid::ServiceConfig::builder()
            .endpoint(service.base_url())
            .build()
            .unwrap(),
    )
    .issuer("envsvc-test")
    .build()
    .unwrap();
    let mut out = String::new();
    for t in &tokens {
        match verifier.verify(t) {
            Ok(c) => out.push_str(&format!(
                "{t}\tOK\t{}\n",
                serde_json::to_string(&*c).unwrap()
            )),
            Err(e) => {
                let code = envid_ffi::error::Fail::from(e).code;
                let name = code.name().to_str().unwrap().trim_start_matches("ENVID_");
                out.push_str(&format!("{t}\t{name}\t\n"));
            }
        }
    }
    let file = dir.join("identity.tsv");
    std::fs::write(&file, out).unwrap();
    IdentityCases {
        service,
        file,
        count: tokens.len(),
    }
}

/// `flight_order`'s app token in `testdata/apps/apps.toml` (only its
/// SHA-256 is in that file); `testdata/example.toml` is a flight_order host.
pub const FLIGHT_ORDER_TOKEN: &str = "tok-example-3f9a1c";

/// A service that takes registrations (`testdata/apps/apps.toml`, loopback
/// allowed) and signs identities with a fresh key written into `dir`.
pub fn registration_service(dir: &Path) -> envid_server::ServerHandle {
    let key = dir.join("registrar-signing.pem");
    std::fs::write(&key, envid::identity::Signer::generate_pem()).unwrap();
    let mut config = envid_server::Config::new(repo_root().join("testdata/registry.toml"));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.apps_path = Some(repo_root().join("testdata/apps/apps.toml"));
    config.allow_loopback_registration = true;
    config.identity.signing_key = Some(key);
    envid_server::spawn(config).expect("the registration service starts")
}

/// The service the events tests of both bindings follow: registration
/// open (the tests register with the Rust registrar), an empty registry
/// file `events-registry.toml` in `dir` that the programs rewrite,
/// noticed every 50 ms, mass deletions applied (a program's run replaces
/// the previous run's records). Returns the file's path too.
pub fn events_service(dir: &Path) -> (envid_server::ServerHandle, PathBuf) {
    let registry = dir.join("events-registry.toml");
    std::fs::write(&registry, "schema = 1\n").unwrap();
    let mut config = envid_server::Config::new(&registry);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.reload_interval = std::time::Duration::from_millis(50);
    config.insecure_open_registration = true;
    config.allow_mass_delete = true;
    let service = envid_server::spawn(config).expect("the events service starts");
    (service, registry)
}

/// Registers `10.5RUN.0.7` as app `aRUN` (env prod, idc cn0): the events
/// programs expect it to join with a registration id.
pub fn register_for_events(url: &str, run: u8) {
    use envid::registrar::{Registrar, Registration};
    let config = envid::ServiceConfig::builder()
        .endpoint(url)
        .build()
        .unwrap();
    let record: envid::protocol::HostRecord = serde_json::from_value(serde_json::json!({
        "app": format!("a{run}"), "env": "prod", "idc": "cn0"
    }))
    .unwrap();
    Registrar::new(config)
        .register(
            format!("10.5{run}.0.7").parse().unwrap(),
            &Registration {
                record,
                lease: std::time::Duration::from_secs(3600),
            },
        )
        .expect("register the events programs' host");
}
