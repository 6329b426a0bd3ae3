//! Per-credential scope (issue 26: "a beta token cannot claim prod"): one
//! app with several credentials (`[[app.token]]`), each with its own envs,
//! sub envs, label and expiry, against the real service over loopback.

use crate::common;

use std::time::Duration;

use common::trust::*;
use common::*;
use serde_json::json;

/// `web`'s credential for beta only.
const BETA: &str = "web-beta-token-0a1b";
/// `web`'s credential for prod only.
const PROD: &str = "web-prod-token-2c3d";
/// `web`'s credential past its `not_after`.
const OLD: &str = "web-old-token-4e5f";
/// `web`'s beta credential that may claim the sub env `blue`.
const BLUE: &str = "web-blue-token-6071";
/// The credential that replaces `BETA` in the rotation test.
const BETA_2: &str = "web-beta-token-rotated-8293";

fn apps_text(beta: (&str, &str)) -> String {
    format!(
        r#"[[app]]
name = "web"
envs = ["beta", "prod"]

[[app.token]]
label = "{}"
sha256 = "{}"
envs = ["beta"]

[[app.token]]
label = "prod-only"
sha256 = "{}"
envs = ["prod"]

[[app.token]]
label = "retired"
sha256 = "{}"
not_after = 2020-01-01T00:00:00Z

[[app.token]]
label = "blue-only"
sha256 = "{}"
envs = ["beta"]
sub_envs = ["blue"]

[[operator]]
name = "release"
token_sha256 = ["{}"]
"#,
        beta.0,
        sha(beta.1),
        sha(PROD),
        sha(OLD),
        sha(BLUE),
        sha(OPERATOR)
    )
}

/// A service with these credentials (and a signing key) in `dir`.
fn serve_in(dir: &std::path::Path) -> envid_server::ServerHandle {
    let key = dir.join("signing.pem");
    std::fs::write(&key, envid::identity::Signer::generate_pem()).unwrap();
    let mut c = config(example_registry());
    c.apps_path = Some(write_apps(dir, &apps_text(("beta-only", BETA))));
    c.identity.signing_key = Some(key);
    envid_server::spawn(c).unwrap()
}

#[test]
fn two_credentials_of_one_app_each_claim_only_their_own_scope() {
    let dir = tempfile::tempdir().unwrap();
    let svc = serve_in(dir.path());
    let a = svc.local_addr();
    let (beta_ip, prod_ip) = (lo(40).to_string(), lo(41).to_string());

    // Each registers its own env...
    expect(
        &put(a, 40, &beta_ip, Some(BETA), &rec("web", "beta", "cn0")),
        200,
        "",
    );
    expect(
        &put(a, 41, &prod_ip, Some(PROD), &rec("web", "prod", "cn0")),
        200,
        "",
    );
    // ...and never the other's: 403 naming the credential's scope, not the token.
    for (from, ip, token, env, scope) in [
        (40, &beta_ip, BETA, "prod", "envs beta;"),
        (41, &prod_ip, PROD, "beta", "envs prod;"),
    ] {
        let r = put(a, from, ip, Some(token), &rec("web", env, "cn0"));
        expect(&r, 403, "forbidden");
        let m = r.error_message();
        assert!(m.contains(&format!("may not claim env \"{env}\"")), "{m}");
        assert!(m.contains(scope), "{m}");
        assert!(!m.contains(token) && !m.contains(&sha(token)), "{m}");
    }
    assert_eq!(
        get(a, &format!("/v1/hosts/{prod_ip}")).json()["env"],
        "prod"
    );

    // Renewal and removal across scopes are refused, even from the IP.
    expect(&renew(a, 41, &prod_ip, Some(BETA)), 403, "forbidden");
    expect(&delete(a, 41, &prod_ip, Some(BETA)), 403, "forbidden");
    expect(&renew(a, 40, &beta_ip, Some(PROD)), 403, "forbidden");
    expect(&delete(a, 40, &beta_ip, Some(PROD)), 403, "forbidden");
    assert_eq!(
        get(a, &format!("/v1/hosts/{prod_ip}")).json()["env"],
        "prod"
    );
    // Their own: fine.
    expect(&renew(a, 41, &prod_ip, Some(PROD)), 200, "");
    expect(&renew(a, 40, &beta_ip, Some(BETA)), 200, "");

    // A credential past its not_after: 401 saying so, whatever it asks.
    let r = put(
        a,
        42,
        &lo(42).to_string(),
        Some(OLD),
        &rec("web", "beta", "cn0"),
    );
    expect(&r, 401, "unauthorized");
    let m = r.error_message();
    assert!(
        m.contains("\"retired\"") && m.contains("expired at 2020-01-01T00:00:00Z"),
        "{m}"
    );
    expect(&renew(a, 40, &beta_ip, Some(OLD)), 401, "unauthorized");

    // The metrics tell which credential is in use, by label.
    let text = get(a, "/metrics").body;
    let series = |name: &str, label: &str| {
        metric(
            &text,
            &format!("{name}{{app=\"web\",credential=\"{label}\"}}"),
        )
    };
    assert_eq!(
        series("envid_registrations_by_credential_total", "beta-only"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        series("envid_registrations_by_credential_total", "prod-only"),
        Some(1.0),
        "{text}"
    );
    assert!(series("envid_credential_last_used_seconds", "prod-only").unwrap() > 1.7e9);
    assert_eq!(
        series("envid_registrations_by_credential_total", "retired"),
        None
    );
    assert!(!text.contains(BETA) && !text.contains(&sha(BETA)));
    assert_eq!(
        metric(
            &text,
            "envid_registration_refusals_total{reason=\"token_expired\"}"
        ),
        Some(2.0)
    );
}

#[test]
fn rotating_one_credential_leaves_the_other_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let svc = serve_in(dir.path());
    let a = svc.local_addr();
    let (beta_ip, prod_ip) = (lo(43).to_string(), lo(44).to_string());
    expect(
        &put(a, 43, &beta_ip, Some(BETA), &rec("web", "beta", "cn0")),
        200,
        "",
    );
    expect(
        &put(a, 44, &prod_ip, Some(PROD), &rec("web", "prod", "cn0")),
        200,
        "",
    );
    // beta-only is replaced by beta-2; prod-only is not touched.
    write_apps(dir.path(), &apps_text(("beta-2", BETA_2)));
    wait_until("the apps reload", Duration::from_secs(5), || {
        metric(
            &get(a, "/metrics").body,
            "envid_apps_reloads_total{result=\"ok\"}",
        ) == Some(1.0)
    });
    expect(&renew(a, 43, &beta_ip, Some(BETA)), 401, "unauthorized");
    expect(&renew(a, 43, &beta_ip, Some(BETA_2)), 200, "");
    expect(&renew(a, 44, &prod_ip, Some(PROD)), 200, "");
    expect(
        &put(
            a,
            45,
            &lo(45).to_string(),
            Some(BETA_2),
            &rec("web", "beta", "cn0"),
        ),
        200,
        "",
    );
    expect(
        &put(
            a,
            45,
            &lo(45).to_string(),
            Some(BETA_2),
            &rec("web", "prod", "cn0"),
        ),
        403,
        "forbidden",
    );
}

#[test]
fn finding_11_a_sub_env_is_signed_only_when_the_credential_lists_it() {
    let dir = tempfile::tempdir().unwrap();
    let svc = serve_in(dir.path());
    let a = svc.local_addr();
    let with_sub_env = |sub_env: &str| {
        let mut body = rec("web", "beta", "cn0");
        body["sub_env"] = json!(sub_env);
        body
    };
    // A credential listing sub_envs: only those, and signed.
    let ip = lo(46).to_string();
    let r = put(a, 46, &ip, Some(BLUE), &with_sub_env("prod-admin"));
    expect(&r, 403, "forbidden");
    assert!(
        r.error_message()
            .contains("may not claim sub_env \"prod-admin\""),
        "{}",
        r.body
    );
    let r = put(a, 46, &ip, Some(BLUE), &with_sub_env("blue"));
    expect(&r, 200, "");
    assert_eq!(
        claims_of(r.json()["identity"].as_str().unwrap())["sub_env"],
        "blue"
    );
    // A credential without sub_envs may register one, but no identity
    // carries a sub env nobody checked.
    let ip = lo(47).to_string();
    let r = put(a, 47, &ip, Some(BETA), &with_sub_env("prod-admin"));
    expect(&r, 200, "");
    let claims = claims_of(r.json()["identity"].as_str().unwrap());
    assert_eq!(claims["app"], "web");
    assert!(claims.get("sub_env").is_none(), "{claims}");
    let r = renew(a, 47, &ip, Some(BETA));
    expect(&r, 200, "");
    assert!(claims_of(r.json()["identity"].as_str().unwrap())
        .get("sub_env")
        .is_none());
    // An operator's word is signed as said.
    let r = put(a, 1, "192.0.2.46", Some(OPERATOR), &with_sub_env("canary"));
    expect(&r, 200, "");
    assert_eq!(
        claims_of(r.json()["identity"].as_str().unwrap())["sub_env"],
        "canary"
    );
}
