//! A headless Chromium driven by ChromeDriver over the W3C WebDriver
//! protocol, through the `fantoccini` client: enough to open pages, run a
//! script in them, fill a form and take screenshots. This file only starts
//! ChromeDriver (on a free loopback port, killed on drop), asks for a
//! headless Chromium, and runs fantoccini's futures on a small runtime of
//! its own so the tests stay plain `#[test]`s: they also call the blocking
//! helpers of `common` and `envid_server::spawn`, which starts a runtime
//! and so may not run inside one.

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fantoccini::error::{CmdError, NewSessionError};
use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

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

/// How long one WebDriver command may take before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A browser session; the driver process ends with it.
pub struct Browser {
    client: Client,
    /// fantoccini's session task and its connections run on this runtime,
    /// during each `block_on`.
    rt: tokio::runtime::Runtime,
    driver: Child,
    _profile: tempfile::TempDir,
    _one: MutexGuard<'static, ()>,
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

/// Kills and reaps ChromeDriver (and so its Chromium) when `start` fails
/// before a `Browser` owns it.
struct Driver(Option<Child>);

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
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
        let mut driver = Driver(Some(
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("chromedriver starts"),
        ));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the WebDriver client");

        let mut args: Vec<String> = FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!(
            "--user-data-dir={}",
            profile.path().join("chromium").display()
        ));
        let caps: Capabilities = serde_json::from_value(json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }))
        .unwrap();
        // Plain HTTP: ChromeDriver is on loopback, so no TLS connector.
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(caps);
        let url = format!("http://127.0.0.1:{port}");
        // Until ChromeDriver listens, the session request is refused.
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            let connect = builder.connect(&url);
            match rt.block_on(async { tokio::time::timeout(COMMAND_TIMEOUT, connect).await }) {
                Ok(Ok(client)) => break client,
                Ok(Err(NewSessionError::FailedC(_))) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                result => {
                    let e = match result {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("no answer in {COMMAND_TIMEOUT:?}"),
                    };
                    let log = std::fs::read_to_string(profile.path().join("chromedriver.log"))
                        .unwrap_or_default();
                    panic!("no WebDriver session from chromedriver: {e}\n{log}");
                }
            }
        };
        let browser = Browser {
            client,
            rt,
            driver: driver.0.take().unwrap(),
            _profile: profile,
            _one: one,
        };
        // A 1280×800 viewport: the window is that plus its frame.
        let frame = browser.exec(
            "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight];",
        );
        let (dw, dh) = (
            frame[0].as_u64().unwrap_or(0) as u32,
            frame[1].as_u64().unwrap_or(0) as u32,
        );
        browser.run(
            "set the window size",
            browser.client.set_window_size(1280 + dw, 800 + dh),
        );
        Some(browser)
    }

    /// Runs one fantoccini call to its end (at most a minute); its value,
    /// or a panic naming `what`.
    fn run<T>(&self, what: &str, call: impl Future<Output = Result<T, CmdError>>) -> T {
        // The timer needs the runtime: made inside `block_on`.
        match self
            .rt
            .block_on(async { tokio::time::timeout(COMMAND_TIMEOUT, call).await })
        {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => panic!("{what}: {e}"),
            Err(_) => panic!("{what}: no answer from chromedriver in {COMMAND_TIMEOUT:?}"),
        }
    }

    /// Opens `url` and waits for its load event.
    pub fn goto(&self, url: &str) {
        self.run(&format!("open {url}"), self.client.goto(url));
    }

    /// Runs `script` (a function body: `return …`) in the page.
    pub fn exec(&self, script: &str) -> Value {
        self.run(script, self.client.execute(script, vec![]))
    }

    /// Runs `script`, which calls `done(value)` when it has its answer.
    pub fn exec_async(&self, script: &str) -> Value {
        let script = format!("const done = arguments[arguments.length - 1]; {script}");
        self.run(&script, self.client.execute_async(&script, vec![]))
    }

    /// The text of the element `css` selects (`""` when there is none): its
    /// `innerText`, as a reader sees it.
    pub fn text(&self, css: &str) -> String {
        let script = "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';";
        let v = self.run(
            &format!("the text of {css}"),
            self.client.execute(script, vec![json!(css)]),
        );
        v.as_str().unwrap_or("").to_string()
    }

    /// Waits (up to 10 s) until `css` selects an element: a form's
    /// submission may still be loading when the click returns.
    pub fn wait_for(&self, css: &str) {
        let wait = self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .every(Duration::from_millis(50))
            .for_element(Locator::Css(css));
        match self.rt.block_on(wait) {
            Ok(_) => {}
            Err(CmdError::WaitTimeout) => panic!(
                "no {css} on {}",
                self.exec("return location.href + ' ' + document.body.innerText;")
            ),
            Err(e) => panic!("waiting for {css}: {e}"),
        }
    }

    /// How many elements `css` selects.
    pub fn count(&self, css: &str) -> usize {
        self.run(
            &format!("find all {css}"),
            self.client.find_all(Locator::Css(css)),
        )
        .len()
    }

    /// Types `text` into the element `css` selects.
    pub fn type_into(&self, css: &str, text: &str) {
        let what = format!("type into {css}");
        self.run(&what, async {
            self.client
                .find(Locator::Css(css))
                .await?
                .send_keys(text)
                .await
        });
    }

    /// Clicks the element `css` selects.
    pub fn click(&self, css: &str) {
        let what = format!("click {css}");
        self.run(&what, async {
            self.client.find(Locator::Css(css)).await?.click().await
        });
    }

    /// Saves a screenshot of the viewport as `target/console-screenshots/NAME.png`
    /// and checks it is a picture, not a blank page: returns the path and
    /// the number of distinct colours.
    pub fn screenshot(&self, name: &str) -> (PathBuf, usize) {
        let png = self.run(&format!("screenshot {name}"), self.client.screenshot());
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
        // Ends the session (Chromium quits), then the driver.
        let close = self.client.clone().close();
        let _ = self
            .rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), close).await });
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
