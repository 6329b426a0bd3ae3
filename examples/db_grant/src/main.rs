//! A database that lets an app's hosts in as they join and shuts them out
//! as they leave: the seed's use case of `envid::events`, on a real MariaDB
//! (or MySQL).
//!
//! It follows the hosts of `--app` (and `--env`) and, for each event,
//! acts on the database, then acknowledges the event:
//!
//! * **join**: `CREATE USER IF NOT EXISTS 'app'@'ip' …` and `GRANT SELECT
//!   ON db.* TO 'app'@'ip'`, and records which registration the grant is
//!   for in a table of its own (`envid_db_grant.envid_grants`);
//! * **leave**: `DROP USER IF EXISTS 'app'@'ip'` (no error when there is no
//!   such account), only when the grant recorded for (app, ip) is the
//!   registration that left: a late or repeated leave of an IP's previous
//!   owner never revokes the host that has the IP now (the rule Cilium
//!   applies to its endpoints);
//! * **change** (another registration, or another app, for a joined IP):
//!   the previous app's grant is revoked as for a leave, the new one made.
//!
//! What it guarantees: an event is acknowledged only once the database
//! applied it, and every step is idempotent, so a crash anywhere (`kill -9`
//! between the `GRANT` and the bookkeeping row, say) is repaired by the
//! redelivery after a restart; a database that is down or refuses is
//! retried every second with the same event (said on stderr: a consumer
//! stuck on an event is visible); the checkpoint makes a restart resume
//! where it stopped, with exactly the joins and leaves it missed. Each
//! account is `'app'@'ip'` for the registered IP itself, and only the
//! accounts it granted are ever dropped. Its test (`tests/db_grant.rs`)
//! runs it on a real MariaDB through churn and `kill -9`.
//!
//! ```sh
//! DB_GRANT_URL='mysql://root@localhost/?socket=/run/mysqld/mysqld.sock' \
//! DB_GRANT_APP_PASSWORD=… \
//!   db_grant --endpoint https://envsvc.cn0.example:7070 --app payment --env prod \
//!     --database appdb --checkpoint /var/lib/db_grant/events.json
//! ```

mod grants;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use envid::events::{Events, Filter};
use envid::ServiceConfig;

use grants::Grants;

/// Grants SELECT on a database to the hosts of an app as they join, and
/// revokes it as they leave.
#[derive(Debug, Parser)]
struct Args {
    /// The environment service.
    #[arg(long, value_name = "URL")]
    endpoint: String,
    /// The apps whose hosts get access (repeated or comma-separated); each
    /// host's database user is its app's name.
    #[arg(
        long = "app",
        value_name = "APP",
        required = true,
        value_delimiter = ','
    )]
    apps: Vec<String>,
    /// Only hosts in these environments (default: any).
    #[arg(long = "env", value_name = "ENV", value_delimiter = ',')]
    envs: Vec<String>,
    /// The database the hosts may read.
    #[arg(long, value_name = "NAME", default_value = "appdb")]
    database: String,
    /// Where envid keeps what was granted and the events not yet applied.
    #[arg(long, value_name = "FILE")]
    checkpoint: PathBuf,
    /// How long an acknowledgement may stay unwritten (one fsync per
    /// interval; what a crash loses is applied again, harmlessly).
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    ack_flush_interval_ms: u64,
    /// The administrator's connection, `mysql://user:password@host/`
    /// (`?socket=PATH` for a local socket). A secret: never printed.
    #[arg(long, env = "DB_GRANT_URL", hide_env_values = true)]
    db_url: String,
    /// The password the granted users get. A secret: never printed.
    #[arg(long, env = "DB_GRANT_APP_PASSWORD", hide_env_values = true)]
    app_password: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match follow(&args) {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("db_grant: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Follows the events for ever; returns only what retrying cannot fix (a
/// bad setting, an unusable checkpoint).
fn follow(args: &Args) -> Result<std::convert::Infallible, Box<dyn std::error::Error>> {
    // Only these apps' hosts are followed: each is a user name, checked now.
    if let Some(bad) = args.apps.iter().find(|a| !grants::plain(a, 80)) {
        return Err(format!("--app {bad:?}: a database user name is letters, digits and _").into());
    }
    let config = ServiceConfig::builder().endpoint(&args.endpoint).build()?;
    let filter = Filter {
        apps: args.apps.clone(),
        envs: args.envs.clone(),
        ..Filter::new()
    };
    let mut events = Events::builder(config)
        .filter(filter)
        .checkpoint(&args.checkpoint)
        .ack_flush_interval(Duration::from_millis(args.ack_flush_interval_ms))
        .build()?;
    loop {
        // Each event is acknowledged once the database applied it; the
        // first that fails stops `run` unacknowledged, and is retried.
        let failure = match Grants::connect(&args.db_url, &args.database, &args.app_password) {
            Ok(mut db) => events.run(|event| db.apply(event))?,
            Err(e) => e,
        };
        eprintln!("db_grant: {failure}; retrying in 1 s");
        std::thread::sleep(Duration::from_secs(1));
    }
}
