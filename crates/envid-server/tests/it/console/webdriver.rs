//! A headless Chromium driven by ChromeDriver over the W3C WebDriver
//! protocol (JSON over HTTP, with the tests' own raw client): enough to
//! open pages, run a script in them, fill a form and take screenshots.
//! ChromeDriver is started on a free loopback port and killed on drop.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{parse_response, Resp};

/// One browser at a time: 2 cores, and the timing test must not share them
/// with another Chromium.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

/// Chromium's flags: headless, and quiet on a closed network (without the
/// background-networking flags it floods refused connections).
const FLAGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,800",
];

/// A browser session; the driver process ends with it.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
    _one: MutexGuard<'static, ()>,
}

/// One request to ChromeDriver. Not the tests' `common::request`: that
/// reads until the server closes, and ChromeDriver keeps the connection
/// open despite `Connection: close`, so every call would wait for the read
/// timeout. This reads the head, then `Content-Length` bytes.
fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Resp {
    try_request(addr, method, path, body)
        .unwrap_or_else(|e| panic!("{method} {path} to chromedriver: {e}"))
}

fn try_request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> std::io::Result<Resp> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        if length.is_some_and(|len| raw.len() >= end + 4 + len) {
            break;
        }
    }
    Ok(parse_response(&raw))
}

/// `program`'s path on `PATH`.
fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// Chromium under ChromeDriver, or `None` when either is missing (the
    /// test is skipped, and fails under `CI=true`).
    pub fn start() -> Option<Browser> {
        let why = "the console's browser tests (apt-get install chromium chromium-driver)";
        if !envid_testkit::require_program("chromedriver", why)
            || !envid_testkit::require_program("chromium", why)
        {
            return None;
        }
        let one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
        let chromium = which("chromium").expect("chromium is on PATH");
        let profile = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = std::fs::File::create(profile.path().join("chromedriver.log")).unwrap();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("chromedriver starts");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut browser = Browser {
            driver,
            addr,
            session: String::new(),
            _profile: profile,
            _one: one,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = try_request(addr, "GET", "/status", b"")
                .is_ok_and(|r| r.status == 200 && r.json()["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let data_dir = format!(
            "--user-data-dir={}",
            browser._profile.path().join("chromium").display()
        );
        let mut args: Vec<String> = FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(data_dir);
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let session = browser.call("POST", "/session", Some(caps));
        browser.session = session["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {session}"))
            .to_string();
        // A 1280×800 viewport: the window is that plus its frame.
        let frame = browser.exec(
            "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight];",
        );
        let (dw, dh) = (
            frame[0].as_i64().unwrap_or(0),
            frame[1].as_i64().unwrap_or(0),
        );
        browser.call(
            "POST",
            &browser.session_path("/window/rect"),
            Some(json!({"width": 1280 + dw, "height": 800 + dh})),
        );
        Some(browser)
    }

    /// One WebDriver command; its `value`.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let r = request(self.addr, method, path, body.as_bytes());
        let v = r.json();
        assert_eq!(r.status, 200, "{method} {path}: {}", r.body);
        v["value"].clone()
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Opens `url` and waits for its load event.
    pub fn goto(&self, url: &str) {
        self.call(
            "POST",
            &self.session_path("/url"),
            Some(json!({"url": url})),
        );
    }

    /// Runs `script` (a function body: `return …`) in the page.
    pub fn exec(&self, script: &str) -> Value {
        self.call(
            "POST",
            &self.session_path("/execute/sync"),
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Runs `script`, which calls `done(value)` when it has its answer.
    pub fn exec_async(&self, script: &str) -> Value {
        let script = format!("const done = arguments[arguments.length - 1]; {script}");
        self.call(
            "POST",
            &self.session_path("/execute/async"),
            Some(json!({"script": script, "args": []})),
        )
    }

    /// The text of the element `css` selects (`""` when there is none).
    pub fn text(&self, css: &str) -> String {
        let script = format!(
            "const e = document.querySelector({}); return e ? e.innerText : '';",
            json!(css)
        );
        self.exec(&script).as_str().unwrap_or("").to_string()
    }

    /// Waits (up to 10 s) until `css` selects an element: a form's
    /// submission may still be loading when the click returns.
    pub fn wait_for(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.count(css) == 0 {
            assert!(
                Instant::now() < deadline,
                "no {css} on {}",
                self.exec("return location.href + ' ' + document.body.innerText;")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// How many elements `css` selects.
    pub fn count(&self, css: &str) -> usize {
        let script = format!("return document.querySelectorAll({}).length;", json!(css));
        self.exec(&script).as_u64().unwrap() as usize
    }

    fn element(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            &self.session_path("/element"),
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    /// Types `text` into the element `css` selects.
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.call(
            "POST",
            &self.session_path(&format!("/element/{id}/value")),
            Some(json!({ "text": text })),
        );
    }

    /// Clicks the element `css` selects.
    pub fn click(&self, css: &str) {
        let id = self.element(css);
        self.call(
            "POST",
            &self.session_path(&format!("/element/{id}/click")),
            Some(json!({})),
        );
    }

    /// Saves a screenshot of the viewport as `target/console-screenshots/NAME.png`
    /// and checks it is a picture, not a blank page: returns the path and
    /// the number of distinct colours.
    pub fn screenshot(&self, name: &str) -> (PathBuf, usize) {
        use base64::Engine;
        let v = self.call("GET", &self.session_path("/screenshot"), None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 PNG"))
            .expect("base64");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, &png).unwrap();
        let colours = distinct_colours(&png);
        assert!(
            colours > 8,
            "{} looks blank: {colours} colours",
            path.display()
        );
        (path, colours)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = request(self.addr, "DELETE", &path, b"");
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `target/console-screenshots/` (beside the tests' `target/tmp`).
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp has a parent")
        .join("console-screenshots")
}

/// How many distinct colours a PNG has (capped at 10,000).
fn distinct_colours(png_bytes: &[u8]) -> usize {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let bytes = &buf[..info.buffer_size()];
    let step = info.color_type.samples()
        * if info.bit_depth == png::BitDepth::Sixteen {
            2
        } else {
            1
        };
    let mut seen = std::collections::HashSet::new();
    for px in bytes.chunks_exact(step) {
        seen.insert(px.to_vec());
        if seen.len() >= 10_000 {
            break;
        }
    }
    seen.len()
}
