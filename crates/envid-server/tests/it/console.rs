//! The console (`/ui/`) and its JSON (`/v1/changes`, `/v1/refusals`,
//! `/v1/status`): in a real headless Chromium (driven through ChromeDriver
//! with fantoccini, `console/webdriver.rs`) against a service with static records, leased
//! registrations, a refusal and a refused reload; HTML in records shown as
//! text and never run; the Registry page at 100,000 records (timings
//! printed with `-- --nocapture`); the read token's prompt. Screenshots
//! land in `target/console-screenshots/`.

mod webdriver;

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use webdriver::Browser;

fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// 12 static records: 10 of app `pay` (env prod, idc cn5, label
/// team=pay) in 10.60.0.0/24, one of app `shop`, and a range.
fn registry() -> String {
    let mut t = String::from("schema = 1\n");
    for i in 1..=10 {
        t.push_str(&format!(
            "[[records]]\nip = \"10.60.0.{i}\"\napp = \"pay\"\nenv = \"prod\"\nidc = \"cn5\"\nlabels = {{ team = \"pay\" }}\n"
        ));
    }
    t.push_str("[[records]]\nip = \"10.61.0.1\"\napp = \"shop\"\nenv = \"beta\"\nidc = \"cn0\"\nlabels = { team = \"web\" }\n");
    t.push_str("[[records]]\ncidr = \"10.62.0.0/16\"\nenv = \"dev\"\nidc = \"cn0\"\n");
    t
}

/// Registers `ip` as app `fleet` with the operator's token.
fn put(a: SocketAddr, ip: &str, body: serde_json::Value) -> Resp {
    request(
        a,
        "PUT",
        &format!("/v1/hosts/{ip}"),
        &[("Content-Type", "application/json"), OPERATOR_AUTH],
        body.to_string().as_bytes(),
    )
}

fn lease(app: &str) -> serde_json::Value {
    serde_json::json!({"app": app, "env": "beta", "idc": "cn0", "lease_seconds": 600, "labels": {"team": "fleet"}})
}

/// A service with the registry above, 3 leased registrations, a refused
/// registration (app `payment`'s token for an IP not its own) and a
/// refused reload (the file cut to 2 records).
struct Scene {
    _dir: tempfile::TempDir,
    svc: envid_server::ServerHandle,
}

fn scene() -> Scene {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    write(&path, &registry());
    let svc = envid_server::spawn(config(&path)).unwrap();
    let a = svc.local_addr();
    for ip in ["192.0.2.10", "192.0.2.11", "192.0.2.12"] {
        assert_eq!(put(a, ip, lease("fleet")).status, 200);
    }
    let refused = request(
        a,
        "PUT",
        "/v1/hosts/192.0.2.99",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &format!("Bearer {PAYMENT}")),
        ],
        br#"{"app": "payment", "env": "prod", "idc": "cn5", "lease_seconds": 60}"#,
    );
    assert_eq!(refused.status, 403, "{}", refused.body);
    // A wipe: 12 static records -> 2, refused as a mass deletion.
    let cut: String = registry()
        .split("[[records]]")
        .take(3)
        .collect::<Vec<_>>()
        .join("[[records]]");
    write(&path, &cut);
    wait_until("the refused reload", Duration::from_secs(5), || {
        !get(a, "/healthz").json()["reload_refused"].is_null()
    });
    Scene { _dir: dir, svc }
}

#[test]
fn console_pages_in_a_browser() {
    let Some(b) = Browser::start() else { return };
    let s = scene();
    let base = s.svc.base_url();

    // Registry: counts, then filtered lists.
    b.goto(&format!("{base}/ui/"));
    assert_eq!(b.text("#matching"), "15");
    let summary = b.text("p.summary");
    assert!(summary.contains("12 static · 3 leased"), "{summary}");
    assert_eq!(b.count("#records tbody tr"), 15);
    let facets = b.text(".facets");
    assert!(
        facets.contains("pay\n10") || facets.contains("pay\t10"),
        "{facets}"
    );
    let (shot, colours) = b.screenshot("registry");
    println!("registry: {} ({colours} colours)", shot.display());

    b.goto(&format!(
        "{base}/ui/registry?app=pay&label=team%3Dpay&q=10.60.0.0%2F29"
    ));
    assert_eq!(
        b.text("#matching"),
        "7",
        "10.60.0.1-7 are in /29 (.0 is none)"
    );
    b.goto(&format!("{base}/ui/registry?kind=leased"));
    assert_eq!(b.text("#matching"), "3");
    let leased = b.text("#records");
    assert!(
        leased.contains("192.0.2.11") && leased.contains("fleet"),
        "{leased}"
    );
    assert!(leased.contains("lease 600 s"), "{leased}");
    b.goto(&format!("{base}/ui/registry?q=10.62.3.4"));
    assert_eq!(b.text("#matching"), "1");
    assert!(b.text("#records").contains("10.62.0.0/16"));
    // The filter form works from the page itself.
    b.goto(&format!("{base}/ui/registry"));
    b.type_into("input[name=idc]", "cn0");
    b.click("form.filters button");
    b.wait_for("#matching");
    assert_eq!(b.text("#matching"), "5", "shop, the range, 3 leases");

    // Changes: the registrations joined, newest first.
    b.goto(&format!("{base}/ui/changes"));
    let changes = b.text("#changes");
    assert!(changes.contains("joined 192.0.2.12"), "{changes}");
    assert_eq!(b.count("#changes tbody tr"), 3);
    let first = b.text("#changes tbody tr:first-child");
    assert!(first.contains("192.0.2.12"), "newest first: {first}");
    b.screenshot("changes");

    // Refusals: the reason and the app the token named, never the token.
    b.goto(&format!("{base}/ui/refusals"));
    assert_eq!(b.text("#refusal-total"), "1");
    let reasons = b.text("#reasons");
    assert!(reasons.contains("not_own_ip"), "{reasons}");
    let recent = b.text("#refusals");
    assert!(
        recent.contains("payment") && recent.contains("192.0.2.99"),
        "{recent}"
    );
    let html = b.exec("return document.documentElement.outerHTML;");
    assert!(
        !html.as_str().unwrap().contains(PAYMENT),
        "a token on the page"
    );
    b.screenshot("refusals");

    // Health: the wipe refused, still serving, and the rest.
    b.goto(&format!("{base}/ui/health"));
    let protection = b.text("#protection");
    assert!(protection.contains("protected"), "{protection}");
    assert!(protection.contains("would delete 10 of 12"), "{protection}");
    let reload = b.text("#reload");
    assert!(
        reload.contains("refused") && reload.contains("--allow-mass-delete"),
        "{reload}"
    );
    let service = b.text("#service");
    assert!(
        service.contains("15 (12 static, 3 registrations)"),
        "{service}"
    );
    assert!(b.text("#store").contains("embedded"));
    assert_eq!(b.text(".banner .badge"), "protected");
    b.screenshot("health");

    // Nothing ran that the CSP refused (inline script or style).
    let errors = b.exec(
        "return performance.getEntriesByType('resource').filter(e => e.name.includes('/ui/assets/')).length;",
    );
    assert!(
        errors.as_u64().unwrap() >= 2,
        "the stylesheet and script load: {errors}"
    );
}

#[test]
fn html_in_records_is_shown_as_text_and_never_run() {
    let Some(b) = Browser::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    write(
        &path,
        r#"schema = 1
[[records]]
ip = "10.70.0.1"
app = "xss"
env = "prod"
idc = "cn0"
labels = { note = "<script>window.__pwned = 'label'</script>", "x\"><img src=y onerror=window.__pwned=1>" = "v" }
release = { id = "<img src=x onerror=\"window.__pwned='release'\">", version = "</td><script>document.title='pwned'</script>" }
"#,
    );
    let svc = envid_server::spawn(config(&path)).unwrap();
    let a = svc.local_addr();
    let mut body = lease("fleet");
    body["labels"] = serde_json::json!({"svg": "<svg onload=\"window.__pwned='lease'\"></svg>"});
    body["sub_env"] = "<iframe src=javascript:window.__pwned=2>".into();
    assert_eq!(put(a, "192.0.2.20", body).status, 200);
    let base = svc.base_url();
    for page in ["/ui/registry", "/ui/changes", "/ui/registry?label=note"] {
        b.goto(&format!("{base}{page}"));
        let state = b.exec("return [typeof window.__pwned, document.title];");
        assert_eq!(state[0], "undefined", "{page}: a payload ran: {state}");
        assert!(
            !state[1].as_str().unwrap().contains("pwned"),
            "{page}: {state}"
        );
        assert_eq!(
            b.count("main script, main img, main svg, main iframe"),
            0,
            "{page}"
        );
    }
    b.goto(&format!("{base}/ui/registry"));
    let table = b.text("#records");
    assert!(
        table.contains("note=<script>window.__pwned = 'label'</script>"),
        "{table}"
    );
    assert!(
        table.contains("<svg onload=\"window.__pwned='lease'\"></svg>"),
        "{table}"
    );
    assert!(
        table.contains("</td><script>document.title='pwned'</script>"),
        "{table}"
    );
    b.screenshot("xss");
    // And the page says where it may load from.
    let r = get(a, "/ui/registry");
    let csp = r.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(
        !r.body.contains(" style=") && !r.body.contains("<script>"),
        "inline script or style"
    );
}

/// 100,000 static records: 10.a.b.c, apps a0…a99, envs prod/beta, idcs cn0…cn4.
fn big_registry(n: usize) -> String {
    let mut t = String::with_capacity(n * 80);
    t.push_str("schema = 1\n");
    for i in 0..n {
        t.push_str(&format!(
            "[[records]]\nip = \"10.{}.{}.{}\"\napp = \"a{}\"\nenv = \"{}\"\nidc = \"cn{}\"\n",
            i >> 16 & 255,
            i >> 8 & 255,
            i & 255,
            i % 100,
            if i % 3 == 0 { "beta" } else { "prod" },
            i % 5
        ));
    }
    t
}

#[test]
fn registry_page_at_100k_records() {
    let Some(b) = Browser::start() else { return };
    const N: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    write(&path, &big_registry(N));
    let started = Instant::now();
    let svc = envid_server::spawn(config(&path)).unwrap();
    println!("100k: service up in {:?}", started.elapsed());
    let a = svc.local_addr();

    // The server's time for the page (the whole answer over loopback),
    // best of 5 after a warm-up.
    let _ = get(a, "/ui/registry");
    let mut server = Vec::new();
    let mut bytes = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let r = get(a, "/ui/registry");
        server.push(t.elapsed());
        assert_eq!(r.status, 200);
        bytes = r.body.len();
        assert!(bytes < 200_000, "one page, not the registry: {bytes} bytes");
    }
    server.sort();
    let t = Instant::now();
    let filtered = get(a, "/ui/registry?app=a7&env=prod&idc=cn2&q=10.1.0.0%2F16");
    let filtered_time = t.elapsed();
    assert_eq!(filtered.status, 200);

    b.goto(&format!("{}/ui/registry", svc.base_url()));
    assert_eq!(b.text("#matching"), "100000");
    assert_eq!(b.count("#records tbody tr"), 50);
    // The paint entry may be reported after the load event: wait for it
    // (buffered), at most 2 s.
    let perf = b.exec_async(
        "const n = performance.getEntriesByType('navigation')[0];
         const render = (n.serverTiming || []).find(s => s.name === 'render');
         const answer = fcp => done({ttfb: n.responseStart, response_end: n.responseEnd,
             dom: n.domContentLoadedEventEnd, load: n.loadEventEnd, fcp: fcp,
             render: render ? render.duration : null});
         new PerformanceObserver(list => {
             const p = list.getEntries().find(e => e.name === 'first-contentful-paint');
             if (p) answer(p.startTime);
         }).observe({type: 'paint', buffered: true});
         setTimeout(() => answer(null), 2000);",
    );
    println!(
        "100k records: server {:.1} ms (best of 5; median {:.1} ms; {bytes} bytes), render {} ms by \
         Server-Timing; filtered page {:.1} ms; browser: first byte {} ms, first contentful paint {} ms, \
         load event {} ms",
        server[0].as_secs_f64() * 1e3,
        server[2].as_secs_f64() * 1e3,
        perf["render"],
        filtered_time.as_secs_f64() * 1e3,
        perf["ttfb"],
        perf["fcp"],
        perf["load"],
    );
    b.screenshot("registry-100k");
    // Loose: a debug build on a shared 2-core machine.
    assert!(server[2] < Duration::from_secs(3), "server {:?}", server[2]);
    let load = perf["load"].as_f64().unwrap();
    assert!(load < 3000.0, "load event at {load} ms");
    if let Some(fcp) = perf["fcp"].as_f64() {
        assert!(fcp < 3000.0, "first contentful paint at {fcp} ms");
    }
}

const READ_TOKEN: &str = "console-read-token-5e1f";

#[test]
fn a_read_token_guards_the_console_and_its_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    write(&path, &registry());
    let mut c = config(&path);
    c.token = Some(READ_TOKEN.into());
    let svc = envid_server::spawn(c).unwrap();
    let a = svc.local_addr();

    // Without the token: the prompt, and no data.
    for page in [
        "/ui/",
        "/ui/registry",
        "/ui/changes",
        "/ui/refusals",
        "/ui/health",
    ] {
        let r = get(a, page);
        assert_eq!(r.status, 401, "{page}");
        assert!(r.body.contains("name=\"token\""), "{page}: no prompt");
        assert!(
            !r.body.contains("10.60.0.1") && !r.body.contains("version"),
            "{page}: data without the token"
        );
    }
    for path in ["/v1/changes", "/v1/refusals", "/v1/status"] {
        assert_eq!(get(a, path).status, 401, "{path}");
        let r = get_auth(a, path, READ_TOKEN);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        r.json();
    }
    // The bearer token lets a script in too.
    assert_eq!(get_auth(a, "/ui/registry", READ_TOKEN).status, 200);

    // A wrong token is refused; the right one gives a cookie that is
    // not the token.
    let login = |token: &str| {
        request(
            a,
            "POST",
            "/ui/login",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            format!("token={token}&next=%2Fui%2Fhealth").as_bytes(),
        )
    };
    let wrong = login("nope");
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_none());
    let right = login(READ_TOKEN);
    assert_eq!(right.status, 303, "{}", right.body);
    assert_eq!(right.header("location"), Some("/ui/health"));
    let cookie = right.header("set-cookie").unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains(READ_TOKEN));
    let session = cookie.split(';').next().unwrap();
    let r = request(a, "GET", "/ui/registry", &[("Cookie", session)], b"");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("10.60.0.1"));
    // The cookie is not a read token for the API.
    let r = request(a, "GET", "/v1/status", &[("Cookie", session)], b"");
    assert_eq!(r.status, 401);
    // A forged session is the prompt.
    let last = if session.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &session[..session.len() - 1]);
    let r = request(a, "GET", "/ui/registry", &[("Cookie", &forged)], b"");
    assert_eq!(r.status, 401);
    // A login posted by another site's page is refused.
    let r = request(
        a,
        "POST",
        "/ui/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", "https://evil.example"),
        ],
        format!("token={READ_TOKEN}").as_bytes(),
    );
    assert_eq!(r.status, 403);

    // In the browser: the prompt, then the data.
    let Some(b) = Browser::start() else { return };
    b.goto(&format!("{}/ui/registry", svc.base_url()));
    assert_eq!(b.count("input[name=token]"), 1);
    assert_eq!(b.count("#records"), 0);
    b.screenshot("login");
    b.type_into("input[name=token]", READ_TOKEN);
    b.click("form button");
    b.wait_for("#matching");
    assert_eq!(b.text("#matching"), "12");
    assert_eq!(b.count("input[name=token]"), 0);
    // HttpOnly: the page's scripts cannot read the session.
    assert_eq!(b.exec("return document.cookie;"), "");
}

#[test]
fn the_json_endpoints_say_what_the_pages_show() {
    let s = scene();
    let a = s.svc.local_addr();
    let changes = get(a, "/v1/changes?limit=2").json();
    assert_eq!(changes["changes"].as_array().unwrap().len(), 2, "{changes}");
    let newest = &changes["changes"][0];
    assert_eq!(newest["joins"], 1, "{changes}");
    assert_eq!(newest["joined"][0]["key"], "192.0.2.12", "{changes}");
    assert!(newest["at_unix_ms"].as_u64().unwrap() > 0);
    assert_eq!(get(a, "/v1/changes?limit=0").error_code(), "invalid_query");

    let refusals = get(a, "/v1/refusals").json();
    assert_eq!(refusals["total"], 1, "{refusals}");
    assert_eq!(refusals["counts"]["not_own_ip"], 1, "{refusals}");
    let r = &refusals["refusals"][0];
    assert_eq!(r["app"], "payment", "{refusals}");
    assert_eq!(r["ip"], "192.0.2.99", "{refusals}");
    assert_eq!(r["op"], "register", "{refusals}");
    assert!(!refusals.to_string().contains(PAYMENT));

    let status = get(a, "/v1/status").json();
    assert_eq!(status["status"], "ok", "{status}");
    assert_eq!(status["records"], 15, "{status}");
    assert_eq!(status["static_records"], 12, "{status}");
    assert_eq!(status["registrations"], 3, "{status}");
    assert_eq!(status["store"]["kind"], "embedded", "{status}");
    assert_eq!(
        status["protection"]["reload_refused"]["would_delete"], 10,
        "{status}"
    );
    assert_eq!(status["last_reload"]["result"], "refused", "{status}");
    assert_eq!(status["history"], get(a, "/healthz").json()["history"]);

    // The console writes nothing: every page is GET only.
    assert_eq!(request(a, "POST", "/ui/registry", &[], b"").status, 405);
    assert_eq!(request(a, "DELETE", "/ui/health", &[], b"").status, 405);
}
