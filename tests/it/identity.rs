//! Signed identities end to end: the real service signs and serves its keys
//! over loopback, `envid::identity::Verifier` verifies, and an independent
//! JWT library (jsonwebtoken) agrees.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use envid::identity::{set_identity, Claims, IdentityError, KeySet, Signer, Verifier};
use envid::protocol::HostRecord;
use envid::ServiceConfig;

const REGISTRY: &str = "schema = 1\n";

struct Service {
    _dir: tempfile::TempDir,
    handle: Option<envid_server::ServerHandle>,
    identity: envid_server::identity::IdentityConfig,
}

impl Service {
    /// A service signing with `signing` (a PEM file) and still serving the
    /// public halves of `verify`.
    fn start(signing: Option<&Path>, verify: &[&Path]) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.toml");
        std::fs::write(&path, REGISTRY).unwrap();
        let mut config = envid_server::Config::new(&path);
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.drain_timeout = Duration::from_millis(200);
        config.identity.signing_key = signing.map(Path::to_path_buf);
        config.identity.verify_keys = verify.iter().map(|p| p.to_path_buf()).collect();
        config.identity.issuer = "envsvc-test".into();
        let identity = config.identity.clone();
        let handle = envid_server::spawn(config).expect("service starts");
        Service {
            _dir: dir,
            handle: Some(handle),
            identity,
        }
    }

    fn url(&self) -> String {
        self.handle.as_ref().unwrap().base_url()
    }

    fn stop(&mut self) {
        self.handle.take().unwrap().shutdown();
    }

    /// An identity as the registration handler issues it, from the same
    /// configuration the service runs with.
    fn issue(&self, app: &str, ip: &str) -> String {
        envid_server::identity::Identity::load(&self.identity)
            .unwrap()
            .issue_identity(&record(app), ip.parse().unwrap())
            .expect("a signing key is configured")
    }
}

fn record(app: &str) -> HostRecord {
    serde_json::from_value(serde_json::json!({
        "ip": "10.1.2.3", "app": app, "env": "prod", "idc": "cn0", "sub_env": "blue",
    }))
    .unwrap()
}

fn key_file(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, Signer::generate_pem()).unwrap();
    path
}

fn config(urls: &[String]) -> ServiceConfig {
    let mut b = ServiceConfig::builder();
    for u in urls {
        b = b.endpoint(u.as_str());
    }
    b.connect_timeout(Duration::from_millis(200))
        .build()
        .unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(iss: &str, aud: &str, nbf: u64, exp: u64) -> Claims {
    let mut c = Claims::for_record(
        &record("pay"),
        "10.1.2.3".parse().unwrap(),
        iss,
        aud,
        nbf,
        1,
    )
    .unwrap();
    c.exp = exp;
    c
}

fn offline(signer: &Signer) -> Verifier {
    Verifier::with_keys(KeySet {
        keys: vec![signer.jwk().clone()],
    })
    .issuer("envsvc-test")
    .build()
    .unwrap()
}

#[test]
fn sign_then_verify_round_trips_every_claim() {
    let signer = Signer::from_pem(&Signer::generate_pem()).unwrap();
    let c = claims("envsvc-test", "envid", now(), now() + 3600);
    let token = signer.sign(&c);
    let v = offline(&signer);
    let got = v.verify(&token).unwrap();
    assert_eq!(*got, c);
    assert_eq!(got.sub, "envid://pay/prod");
    assert_eq!(got.sub_env.as_deref(), Some("blue"));
    assert_eq!(got.env_type, Some(envid::EnvType::Prod));
    // Again, from the cache: the same claims.
    assert_eq!(*v.verify(&token).unwrap(), c);
    // Through the header convention.
    let mut headers = http::HeaderMap::new();
    set_identity(&mut headers, &token).unwrap();
    assert!(headers.get("Envid-Identity").unwrap().is_sensitive());
    assert_eq!(*v.verify_headers(&headers).unwrap(), c);
}

#[test]
fn every_error_kind_and_none_echoes_the_token() {
    let signer = Signer::from_pem(&Signer::generate_pem()).unwrap();
    let other = Signer::from_pem(&Signer::generate_pem()).unwrap();
    let v = offline(&signer);
    let t = now();
    let good = signer.sign(&claims("envsvc-test", "envid", t, t + 600));
    let (h, rest) = good.split_once('.').unwrap();
    let (p, s) = rest.split_once('.').unwrap();
    let tampered_payload = {
        let mut c = claims("envsvc-test", "envid", t, t + 600);
        c.env = "dev".into();
        let forged = signer.sign(&c);
        format!("{h}.{}.{s}", forged.split('.').nth(1).unwrap())
    };
    let none_alg = {
        use base64::Engine;
        let hdr =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"x"}"#);
        format!("{hdr}.{p}.")
    };
    let foreign_kid = other.sign(&claims("envsvc-test", "envid", t, t + 600));
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "missing"),
        ("abc".into(), "malformed"),
        (format!("{h}.{p}"), "malformed"),
        (format!("{h}.{p}.{s}.x"), "malformed"),
        (format!("{h}.{p}.***"), "malformed"),
        (none_alg, "malformed"),
        ("e30.e30.AAAA".into(), "malformed"),
        ("x".repeat(9000), "malformed"),
        (tampered_payload, "bad_signature"),
        (
            format!("{h}.{p}.{}AAAA", &s[..s.len() - 4]),
            "bad_signature",
        ),
        (foreign_kid, "unknown_key"),
        (
            signer.sign(&claims("envsvc-test", "envid", t - 7200, t - 3600)),
            "expired",
        ),
        (
            signer.sign(&claims("envsvc-test", "envid", t + 3600, t + 7200)),
            "not_yet_valid",
        ),
        (
            signer.sign(&claims("someone-else", "envid", t, t + 600)),
            "wrong_issuer",
        ),
        (
            signer.sign(&claims("envsvc-test", "billing", t, t + 600)),
            "wrong_audience",
        ),
    ];
    for (token, kind) in &cases {
        let e = v.verify(token).expect_err(kind);
        assert_eq!(e.kind(), *kind, "{e}");
        for shown in [e.to_string(), format!("{e:?}")] {
            for part in token.split('.').filter(|x| x.len() > 8) {
                assert!(!shown.contains(part), "{kind}: {shown} echoes the token");
            }
        }
    }
    // The leeway: expired 30 s ago passes with the default 60 s, not with 0.
    let just_expired = signer.sign(&claims("envsvc-test", "envid", t - 600, t - 30));
    assert!(v.verify(&just_expired).is_ok());
    let strict = Verifier::with_keys(v.key_set())
        .leeway(Duration::ZERO)
        .build()
        .unwrap();
    assert_eq!(strict.verify(&just_expired).unwrap_err().kind(), "expired");
    // A cached token expires too.
    assert!(v.verify(&good).is_ok());
    assert_eq!(
        v.verify_at(&good, t + 600 + 61).unwrap_err().kind(),
        "expired"
    );
    // Headers: none, several.
    let mut headers = http::HeaderMap::new();
    assert_eq!(
        v.verify_headers(&headers).unwrap_err(),
        IdentityError::Missing
    );
    set_identity(&mut headers, &good).unwrap();
    headers.append("envid-identity", http::HeaderValue::from_static("x"));
    assert_eq!(v.verify_headers(&headers).unwrap_err().kind(), "malformed");
    // No keys: nothing listens there and no cache file.
    let e = Verifier::builder(config(&["http://127.0.0.1:9".into()]))
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), "no_keys", "{e}");
    // A bad key.
    assert_eq!(Signer::from_pem("nope").unwrap_err().kind(), "invalid_key");
}

#[test]
fn service_issues_serves_keys_and_the_verifier_checks() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "signing.pem");
    let service = Service::start(Some(&key), &[]);
    let token = service.issue("pay", "10.1.2.3");
    let v = Verifier::builder(config(&[service.url()]))
        .issuer("envsvc-test")
        .build()
        .unwrap();
    let c = v.verify(&token).unwrap();
    assert_eq!(
        (c.app.as_str(), c.env.as_str(), c.idc.as_str()),
        ("pay", "prod", "cn0")
    );
    assert_eq!(c.ip, Some("10.1.2.3".parse::<IpAddr>().unwrap()));
    assert_eq!(c.exp - c.iat, 3600);
    assert_eq!(c.iss, "envsvc-test");
    // /v1/keys: JWKS with caching headers, 304 when unchanged, no token needed.
    let agent = ureq::Agent::new_with_defaults();
    let resp = agent
        .get(format!("{}/v1/keys", service.url()))
        .call()
        .unwrap();
    let etag = resp.headers()["etag"].to_str().unwrap().to_string();
    assert!(resp.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age="));
    let set: KeySet = serde_json::from_reader(resp.into_body().into_reader()).unwrap();
    assert_eq!(set, v.key_set());
    assert_eq!(set.keys[0].kid, Signer::from_pem_file(&key).unwrap().kid());
    let again = agent
        .get(format!("{}/v1/keys", service.url()))
        .header("if-none-match", &etag)
        .call()
        .unwrap();
    assert_eq!(again.status(), 304);
    // Without a signing key: no identities, /v1/keys is 404.
    let bare = Service::start(None, &[]);
    let e = Verifier::builder(config(&[bare.url()]))
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), "no_keys");
}

#[test]
fn rotation_old_key_verifies_until_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (key_file(dir.path(), "a.pem"), key_file(dir.path(), "b.pem"));
    // Three services, as one service restarted through a rotation; the
    // verifier fails over from each stopped one to the next.
    let mut s1 = Service::start(Some(&a), &[]);
    let mut s2 = Service::start(Some(&b), &[&a]);
    let s3 = Service::start(Some(&b), &[]);
    let v = Verifier::builder(config(&[s1.url(), s2.url(), s3.url()]))
        .build()
        .unwrap();
    let token_a = s1.issue("pay", "10.1.2.3");
    let token_b = s2.issue("pay", "10.1.2.4");
    assert!(v.verify(&token_a).is_ok());
    assert_eq!(v.verify(&token_b).unwrap_err().kind(), "unknown_key");
    s1.stop();
    v.refresh().unwrap();
    assert_eq!(v.key_set().keys.len(), 2);
    assert!(v.verify(&token_a).is_ok(), "the old key still verifies");
    assert!(v.verify(&token_b).is_ok(), "the new key signs");
    s2.stop();
    v.refresh().unwrap();
    assert_eq!(v.key_set().keys.len(), 1);
    // Verified (and cached) before, but its key is gone now.
    assert_eq!(v.verify(&token_a).unwrap_err().kind(), "unknown_key");
    assert!(v.verify(&token_b).is_ok());
}

#[test]
fn service_stopped_verification_goes_on_from_cached_keys() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "signing.pem");
    let cache = dir.path().join("keys.json");
    let mut service = Service::start(Some(&key), &[]);
    let url = service.url();
    let v = Verifier::builder(config(std::slice::from_ref(&url)))
        .cache_file(&cache)
        .refresh_interval(Duration::from_millis(50))
        .backoff(Duration::from_millis(20))
        .build()
        .unwrap();
    let token = service.issue("pay", "10.1.2.3");
    assert!(v.verify(&token).is_ok());
    service.stop();
    // The refresh thread fails for a while; nothing changes for verifiers.
    thread::sleep(Duration::from_millis(300));
    assert!(v.verify(&token).is_ok());
    let never_seen = service.issue("pay", "10.1.2.9");
    assert!(v.verify(&never_seen).is_ok());
    assert!(v.refresh().is_err());
    drop(v);
    // A new process: the service is still down, the cache file serves.
    let v2 = Verifier::builder(config(std::slice::from_ref(&url)))
        .cache_file(&cache)
        .build()
        .unwrap();
    assert!(v2.verify(&never_seen).is_ok());
    // A cache file older than max_cache_age is not trusted.
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    doc["fetched_at"] = 1000.into();
    std::fs::write(&cache, serde_json::to_vec(&doc).unwrap()).unwrap();
    let e = Verifier::builder(config(&[url]))
        .cache_file(&cache)
        .max_cache_age(Duration::from_secs(3600))
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), "no_keys");
    assert!(e.to_string().contains("too old"), "{e}");
}

#[test]
fn sixteen_threads_verify_the_same_and_different_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "signing.pem");
    let service = Service::start(Some(&key), &[]);
    let v = Arc::new(Verifier::builder(config(&[service.url()])).build().unwrap());
    let shared = Arc::new(service.issue("shared", "10.1.0.1"));
    let handles: Vec<_> = (0..16)
        .map(|i| {
            let v = v.clone();
            let shared = shared.clone();
            let own = service.issue(&format!("app{i}"), &format!("10.1.1.{i}"));
            thread::spawn(move || {
                for _ in 0..200 {
                    assert_eq!(v.verify(&shared).unwrap().app, "shared");
                    assert_eq!(v.verify(&own).unwrap().app, format!("app{i}"));
                }
                let mut bad = own.clone();
                bad.pop();
                assert!(v.verify(&bad).is_err());
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn jsonwebtoken_verifies_the_tokens_from_v1_keys() {
    use jsonwebtoken::{decode, decode_header, jwk::JwkSet, Algorithm, DecodingKey, Validation};
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "signing.pem");
    let old = key_file(dir.path(), "old.pem");
    let service = Service::start(Some(&key), &[&old]);
    let token = service.issue("pay", "10.1.2.3");
    let body = ureq::get(format!("{}/v1/keys", service.url()))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    let jwks: JwkSet = serde_json::from_str(&body).unwrap();
    let kid = decode_header(&token).unwrap().kid.unwrap();
    let jwk = jwks.find(&kid).expect("the token's kid is in the set");
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["envid"]);
    validation.set_issuer(&["envsvc-test"]);
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    let data =
        decode::<serde_json::Value>(&token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
            .unwrap();
    assert_eq!(data.claims["sub"], "envid://pay/prod");
    assert_eq!(data.claims["env"], "prod");
    // And it refuses a tampered one, as envid does.
    let mut bad = token.clone();
    bad.insert(token.find('.').unwrap() + 3, 'x');
    assert!(
        decode::<serde_json::Value>(&bad, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
            .is_err()
    );
}

#[test]
fn finding_10_aud_is_compared_exactly_as_a_string_or_a_list() {
    use envid::identity::Audience;
    let signer = Signer::from_pem(&Signer::generate_pem()).unwrap();
    let v = offline(&signer);
    // One string holding a comma is one audience, not two.
    let mut c = claims("envsvc-test", "other,envid", now(), now() + 3600);
    let e = v.verify(&signer.sign(&c)).unwrap_err();
    assert_eq!(e.kind(), "wrong_audience", "{e}");
    // A JSON list names each audience.
    c.aud = Audience::Many(vec!["other".into(), "envid".into()]);
    let got = v.verify(&signer.sign(&c)).unwrap();
    assert!(got.aud.contains("envid") && !got.aud.contains("envi"));
    c.aud = Audience::Many(vec!["other,envid".into()]);
    let e = v.verify(&signer.sign(&c)).unwrap_err();
    assert_eq!(e.kind(), "wrong_audience", "{e}");
    assert!(
        e.to_string().contains("[\\\"other,envid\\\"]") || e.to_string().contains("other,envid")
    );
}

#[test]
fn finding_10_keys_are_not_fetched_over_plain_http_off_loopback_unless_allowed() {
    use envid::client::{ClientError, Request, Transport};
    /// Answers every request with `keys`: no network in this test.
    struct Keys(Vec<u8>);
    impl Transport for Keys {
        fn send(&self, _: &Request<'_>) -> Result<Option<Vec<u8>>, ClientError> {
            Ok(Some(self.0.clone()))
        }
    }
    let signer = Signer::from_pem(&Signer::generate_pem()).unwrap();
    let keys = serde_json::to_vec(&KeySet {
        keys: vec![signer.jwk().clone()],
    })
    .unwrap();
    let config = ServiceConfig::builder()
        .endpoint("http://envsvc.example:7070")
        .build()
        .unwrap();
    let e = Verifier::builder(config.clone())
        .transport(Arc::new(Keys(keys.clone())))
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), "no_keys");
    let m = e.to_string();
    assert!(
        m.contains("plain HTTP from http://envsvc.example:7070") && m.contains("insecure_http"),
        "{m}"
    );
    // An explicit opt-in, or https, or loopback: fetched.
    let v = Verifier::builder(config)
        .insecure_http(true)
        .transport(Arc::new(Keys(keys.clone())))
        .build()
        .unwrap();
    assert_eq!(v.key_set().keys.len(), 1);
    for url in ["https://envsvc.example:7443", "http://127.0.0.1:7070"] {
        let config = ServiceConfig::builder().endpoint(url).build().unwrap();
        Verifier::builder(config)
            .transport(Arc::new(Keys(keys.clone())))
            .build()
            .unwrap();
    }
}
