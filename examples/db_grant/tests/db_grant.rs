//! The example against a real MariaDB and the real service: the test
//! starts MariaDB itself (a temporary datadir, a free loopback port and its
//! own socket; killed on drop) and the envid service, registers hosts of
//! two apps under the example's filter and of one outside it, runs the
//! example as a child process and churns the registry while it runs
//! (hundreds of registrations, leases that expire, deregistrations, IPs
//! moving between apps, an IP reused by a new registration), kills the
//! example with `kill -9` mid-way and starts it again, and checks at the
//! end that the database's accounts, their grants and the example's
//! bookkeeping are exactly the registry's hosts under the filter, with
//! their registrations. Bounded: every wait has a deadline.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use envid::client::{HttpTransport, Method, Request, Transport};
use envid::protocol::{HostRecord, RegistrySnapshot};
use envid::registrar::{Registrar, Registration};
use envid::ServiceConfig;
use mysql::prelude::Queryable;
use mysql::{Conn, Opts};

/// The apps the example follows, and one it must never grant.
const APPS: [&str; 2] = ["payment", "billing"];
const OUTSIDER: &str = "intruder";
const PASSWORD: &str = "only-for-this-test";

/// A MariaDB server of the test's own: a datadir in a temporary directory,
/// `127.0.0.1:port` and a socket there; killed on drop.
struct MariaDb {
    child: Child,
    dir: tempfile::TempDir,
}

impl MariaDb {
    fn start(mariadbd: &str) -> MariaDb {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let o = Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(["--auth-root-authentication-method=normal", "--user=root"])
            .arg("--skip-test-db")
            .output()
            .expect("run mariadb-install-db");
        assert!(
            o.status.success(),
            "mariadb-install-db: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(mariadbd)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", dir.path().join("sock").display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .arg(format!(
                "--log-error={}",
                dir.path().join("error.log").display()
            ))
            .args([
                "--user=root",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=32M",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mariadbd");
        let mut db = MariaDb { child, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Conn::new(Opts::from_url(&db.url()).unwrap()).is_err() {
            if let Ok(Some(status)) = db.child.try_wait() {
                panic!("mariadbd exited ({status}):\n{}", db.log());
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd not ready in 60 s:\n{}",
                db.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        db
    }

    /// The administrator's connection: root over the socket.
    fn url(&self) -> String {
        format!(
            "mysql://root@localhost/?socket={}",
            self.dir.path().join("sock").display()
        )
    }

    fn conn(&self) -> Conn {
        Conn::new(Opts::from_url(&self.url()).unwrap()).expect("connect to MariaDB")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The example, as a child process; killed on drop.
struct Example {
    child: Child,
}

impl Example {
    fn start(url: &str, db: &MariaDb, checkpoint: &Path, out: &Path, run: u32) -> Example {
        Example::start_with(url, db, checkpoint, out, run, &[])
    }

    fn start_with(
        url: &str,
        db: &MariaDb,
        checkpoint: &Path,
        out: &Path,
        run: u32,
        extra: &[&str],
    ) -> Example {
        let log =
            |name: &str| std::fs::File::create(out.join(format!("{name}-{run}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_db_grant"))
            .args(["--endpoint", url, "--app", &APPS.join(","), "--env", "prod"])
            .args(["--database", "appdb", "--checkpoint"])
            .arg(checkpoint)
            .args(extra)
            .env("DB_GRANT_URL", db.url())
            .env("DB_GRANT_APP_PASSWORD", PASSWORD)
            .stdin(Stdio::null())
            .stdout(log("stdout"))
            .stderr(log("stderr"))
            .spawn()
            .expect("start the example");
        Example { child }
    }

    /// `kill -9`: no chance to write anything.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 10.70.x.y, the i-th host of the churn.
fn host(i: usize) -> IpAddr {
    format!("10.70.{}.{}", i / 250, i % 250 + 1)
        .parse()
        .unwrap()
}

/// What a registration says: `app` in prod, cn0.
fn registration(app: &str, lease_seconds: u64) -> Registration {
    let record: HostRecord = serde_json::from_value(serde_json::json!({
        "app": app, "env": "prod", "idc": "cn0"
    }))
    .unwrap();
    Registration {
        record,
        lease: Duration::from_secs(lease_seconds),
    }
}

/// (app, ip, registration) of every host the registry holds under the
/// example's filter, from a snapshot of the service.
fn registry_under_filter(url: &str) -> Rows {
    let config = ServiceConfig::builder().endpoint(url).build().unwrap();
    let body = HttpTransport::new(&config)
        .send(&Request::new(Method::Get, url, "/v1/registry"))
        .unwrap()
        .expect("a snapshot");
    let snapshot: RegistrySnapshot = serde_json::from_slice(&body).unwrap();
    snapshot
        .records
        .iter()
        .filter(|r| r.ip.is_some() && r.env == "prod")
        .filter(|r| r.app.as_deref().is_some_and(|a| APPS.contains(&a)))
        .map(|r| {
            (
                r.app.clone().unwrap(),
                r.ip.unwrap().to_string(),
                r.registration.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// (user, host) of database accounts.
type Accounts = BTreeSet<(String, String)>;
/// (app, ip, registration): the example's rows, or the registry's hosts.
type Rows = BTreeSet<(String, String, String)>;

/// The database's accounts of the apps (the outsider's too, which must be
/// none), and the example's bookkeeping rows.
fn database(db: &MariaDb) -> (Accounts, Rows) {
    let mut conn = db.conn();
    let users: Vec<(String, String)> = conn
        .query("SELECT user, host FROM mysql.user WHERE user IN ('payment', 'billing', 'intruder')")
        .unwrap();
    let rows: Vec<(String, String, String)> = conn
        .query("SELECT app, ip, registration FROM envid_db_grant.envid_grants")
        .unwrap_or_default();
    (users.into_iter().collect(), rows.into_iter().collect())
}

#[test]
fn the_database_grants_exactly_the_registrys_hosts_through_churn_and_kill_9() {
    let mariadbd = if !envid_testkit::program_available("mariadbd")
        && Path::new("/usr/sbin/mariadbd").exists()
    {
        "/usr/sbin/mariadbd"
    } else {
        "mariadbd"
    };
    if !envid_testkit::require_program(mariadbd, "the example grants on a real MariaDB") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let db = MariaDb::start(mariadbd);
    db.conn()
        .query_drop("CREATE DATABASE appdb")
        .expect("create appdb");

    let registry = work.path().join("registry.toml");
    std::fs::write(&registry, "schema = 1\n").unwrap();
    let mut config = envid_server::Config::new(&registry);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.insecure_open_registration = true; // the test registers for every host
    config.register_limit = 0;
    let service = envid_server::spawn(config).expect("the service starts");
    let url = service.base_url();
    let registrar = Registrar::new(ServiceConfig::builder().endpoint(&url).build().unwrap());
    let register = |i: usize, app: &str, lease: u64| {
        registrar
            .register(host(i), &registration(app, lease))
            .unwrap_or_else(|e| panic!("register {}: {e}", host(i)))
    };
    let app_of = |i: usize| APPS[i % 2];

    // Before the example starts: 200 hosts of the two apps, 20 outsiders.
    for i in 0..200 {
        register(i, app_of(i), 3600);
    }
    for i in 500..520 {
        register(i, OUTSIDER, 3600);
    }
    let checkpoint = work.path().join("events.json");
    let example = Example::start(&url, &db, &checkpoint, work.path(), 1);

    // While it runs: 150 more, 40 of them on a 2 s lease that is never
    // renewed; 30 deregistered; an IP moving from payment to billing (a
    // change for the example), one to the outsider (a leave), one from the
    // outsider to payment (a join); an IP registered again (a new
    // registration of the same app), one deregistered and reused.
    for i in 200..275 {
        register(i, app_of(i), if i < 240 { 2 } else { 3600 });
    }
    let wait_for_grants = |at_least: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while database(&db).0.len() < at_least {
            assert!(
                Instant::now() < deadline,
                "the example granted fewer than {at_least} accounts in 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for_grants(150);
    // Acknowledgements are written within a second, at the next event:
    // past it, the 30 removals below make the example write them.
    std::thread::sleep(Duration::from_millis(1200));
    for i in 0..30 {
        registrar.deregister(host(i)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while database(&db)
        .0
        .contains(&("payment".into(), host(0).to_string()))
    {
        assert!(Instant::now() < deadline, "host 0 was not revoked in 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    register(30, "billing", 3600); // host 30 was payment's
    register(31, OUTSIDER, 3600);
    register(500, "payment", 3600);
    register(32, app_of(32), 3600); // the same app again: a new registration
    registrar.deregister(host(34)).unwrap();
    register(34, app_of(34), 3600);
    // Mid-way, with events in flight: kill -9.
    example.kill();
    for i in 275..350 {
        register(i, app_of(i), 3600);
    }
    registrar.deregister(host(36)).unwrap();
    register(36, "billing", 3600); // host 36 was payment's: reused by another app
    let example = Example::start(&url, &db, &checkpoint, work.path(), 2);

    // The 2 s leases end (the service sweeps every 100 ms).
    std::thread::sleep(Duration::from_secs(3));
    let want = registry_under_filter(&url);
    // 350, less the 40 expired, the 30 deregistered, host 31 gone to the
    // outsider, plus host 500 come from it.
    assert_eq!(want.len(), 350 - 40 - 30 - 1 + 1, "the registry's hosts");
    let want_users: Accounts = want
        .iter()
        .map(|(app, ip, _)| (app.clone(), ip.clone()))
        .collect();

    let deadline = Instant::now() + Duration::from_secs(90);
    let (users, rows) = loop {
        let (users, rows) = database(&db);
        if (users == want_users && rows == want) || Instant::now() > deadline {
            break (users, rows);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let logs = || {
        let read = |n: &str| std::fs::read_to_string(work.path().join(n)).unwrap_or_default();
        format!(
            "first run stderr:\n{}\nsecond run stderr:\n{}",
            read("stderr-1.log"),
            read("stderr-2.log")
        )
    };
    assert_eq!(
        users.difference(&want_users).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "accounts the registry does not have\n{}",
        logs()
    );
    assert_eq!(
        want_users.difference(&users).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "hosts without an account\n{}",
        logs()
    );
    assert_eq!(rows, want, "the bookkeeping names each host's registration");
    assert!(users.iter().all(|(app, _)| app != OUTSIDER));

    // Each account may read appdb, and only that.
    let mut conn = db.conn();
    for (app, ip) in &users {
        let grants: Vec<String> = conn
            .query(format!("SHOW GRANTS FOR '{app}'@'{ip}'"))
            .unwrap();
        assert!(
            grants
                .iter()
                .any(|g| g == &format!("GRANT SELECT ON `appdb`.* TO `{app}`@`{ip}`")),
            "{app}@{ip}: {grants:?}"
        );
        assert!(
            !grants.iter().any(|g| g.contains("envid_db_grant")),
            "{app}@{ip}: {grants:?}"
        );
    }
    // Each account is for the registered IP itself, never a wildcard.
    assert!(users.iter().all(|(_, ip)| ip.parse::<IpAddr>().is_ok()));

    // The second run resumed from the checkpoint: what the first had
    // acknowledged and written (the first 200 hosts' joins) was not
    // delivered again; what it had not may have been, and was harmless.
    let first = std::fs::read_to_string(work.path().join("stdout-1.log")).unwrap();
    let second = std::fs::read_to_string(work.path().join("stdout-2.log")).unwrap();
    let untouched = format!("@'{}'", host(100));
    assert!(first.contains(&untouched), "{first}");
    assert!(!second.contains(&untouched), "{second}");
    println!(
        "{} accounts; the first run applied {} events before kill -9, the second {}",
        users.len(),
        first.lines().count(),
        second.lines().count()
    );

    // A late leave, made certain: run 3 writes no acknowledgement (a 60 s
    // flush interval); host 40 leaves and is registered anew, run 3 acts on
    // both and dies. Run 4 gets the leave of the old registration again,
    // after the grant of the new one: it keeps the grant (the Cilium rule).
    example.kill();
    let example = Example::start_with(
        &url,
        &db,
        &checkpoint,
        work.path(),
        3,
        &["--ack-flush-interval-ms", "60000"],
    );
    let ip40 = host(40).to_string();
    let row40 = |db: &MariaDb| {
        database(db)
            .1
            .into_iter()
            .find(|(_, ip, _)| *ip == ip40)
            .map(|(_, _, registration)| registration)
    };
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < deadline, "{what} in 60 s\n{}", logs());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let old = row40(&db).expect("host 40 is granted");
    registrar.deregister(host(40)).unwrap();
    wait("host 40 revoked", &|| row40(&db).is_none());
    register(40, app_of(40), 3600);
    let new = registrar.registration(host(40)).unwrap();
    wait("host 40 granted anew", &|| {
        row40(&db).as_deref() == Some(new.as_str())
    });
    example.kill();
    let example = Example::start(&url, &db, &checkpoint, work.path(), 4);
    let kept = format!(
        "kept '{}'@'{ip40}': granted to registration {new:?}, the leave is of {old:?}",
        app_of(40)
    );
    wait("run 4 kept host 40's new grant", &|| {
        std::fs::read_to_string(work.path().join("stdout-4.log"))
            .unwrap_or_default()
            .contains(&kept)
    });
    wait("run 4 caught up", &|| {
        database(&db)
            == (want_users.clone(), {
                let mut w = want.clone();
                w.retain(|(_, ip, _)| *ip != ip40);
                w.insert((app_of(40).to_string(), ip40.clone(), new.clone()));
                w
            })
    });
    drop(example);
    service.shutdown();
}
