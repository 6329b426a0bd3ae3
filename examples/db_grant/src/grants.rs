//! [`Grants`]: the database side. Account names and passwords cannot be
//! bound as statement parameters, so they are checked to need no quoting
//! rather than escaped (an escape depends on the server's `sql_mode`);
//! the bookkeeping rows use parameters.

use std::net::IpAddr;

use envid::events::{Event, EventKind};
use envid::protocol::HostRecord;
use mysql::prelude::Queryable;
use mysql::{Conn, Opts};

/// What stops the handling of an event (it is then retried).
pub type Error = Box<dyn std::error::Error>;

/// The schema and table where each grant's registration is kept. The
/// granted users read `--database`, never this.
const TABLE: &str = "envid_db_grant.envid_grants";

/// One connection to the database, as an administrator.
pub struct Grants {
    conn: Conn,
    database: String,
    password: String,
}

impl Grants {
    /// Connects, and creates the bookkeeping table when it is not there.
    pub fn connect(url: &str, database: &str, password: &str) -> Result<Grants, Error> {
        if !plain(database, 64) {
            return Err(format!("database name {database:?}: use letters, digits and _").into());
        }
        if password.is_empty() || password.contains(['\'', '\\']) {
            return Err("the app password must be non-empty, without ' or \\".into());
        }
        let mut conn = Conn::new(Opts::from_url(url)?)?;
        conn.query_drop("CREATE DATABASE IF NOT EXISTS envid_db_grant")?;
        conn.query_drop(format!(
            "CREATE TABLE IF NOT EXISTS {TABLE} (app VARCHAR(80) NOT NULL, \
             ip VARCHAR(45) NOT NULL, registration VARCHAR(64) NOT NULL, \
             PRIMARY KEY (app, ip))"
        ))?;
        Ok(Grants {
            conn,
            database: database.to_string(),
            password: password.to_string(),
        })
    }

    /// Acts on one event; every step can run again after a crash.
    pub fn apply(&mut self, event: &Event) -> Result<(), Error> {
        // A record of the registry file has no registration: "" stands for it.
        let registration = event.registration.as_deref().unwrap_or("");
        match event.kind {
            EventKind::Join => self.grant(app(&event.record), event.ip, registration),
            EventKind::Leave => self.revoke_if(app(&event.record), event.ip, registration),
            EventKind::Change => {
                let previous = event
                    .previous
                    .as_deref()
                    .ok_or("a change without its previous record")?;
                if previous.app != event.record.app {
                    let was = event.previous_registration.as_deref().unwrap_or("");
                    self.revoke_if(app(previous), event.ip, was)?;
                }
                // The same app: the account stays; its row names the new registration.
                self.grant(app(&event.record), event.ip, registration)
            }
        }
    }

    /// Creates the account and grants it, then records the registration.
    fn grant(&mut self, app: &str, ip: IpAddr, registration: &str) -> Result<(), Error> {
        let account = account(app, ip)?;
        let (db, password) = (&self.database, &self.password);
        self.conn.query_drop(format!(
            "CREATE USER IF NOT EXISTS {account} IDENTIFIED BY '{password}'"
        ))?;
        self.conn
            .query_drop(format!("GRANT SELECT ON `{db}`.* TO {account}"))?;
        self.conn.exec_drop(
            format!("REPLACE INTO {TABLE} (app, ip, registration) VALUES (?, ?, ?)"),
            (app, ip.to_string(), registration),
        )?;
        println!("granted {account} (registration {registration:?})");
        Ok(())
    }

    /// Drops the account, only when its grant is for `registration`.
    fn revoke_if(&mut self, app: &str, ip: IpAddr, registration: &str) -> Result<(), Error> {
        let account = account(app, ip)?;
        let granted: Option<String> = self.conn.exec_first(
            format!("SELECT registration FROM {TABLE} WHERE app = ? AND ip = ?"),
            (app, ip.to_string()),
        )?;
        match granted {
            Some(g) if g == registration => {}
            Some(g) => {
                // The IP was registered anew since: this leave is late.
                println!("kept {account}: granted to registration {g:?}, the leave is of {registration:?}");
                return Ok(());
            }
            None => {
                println!("nothing to revoke for {account} (registration {registration:?})");
                return Ok(());
            }
        }
        self.conn
            .query_drop(format!("DROP USER IF EXISTS {account}"))?;
        self.conn.exec_drop(
            format!("DELETE FROM {TABLE} WHERE app = ? AND ip = ? AND registration = ?"),
            (app, ip.to_string(), registration),
        )?;
        println!("revoked {account} (registration {registration:?})");
        Ok(())
    }
}

/// The record's app ("" for none, which [`account`] refuses).
fn app(record: &HostRecord) -> &str {
    record.app.as_deref().unwrap_or("")
}

/// `'app'@'ip'`: the account of `app`'s host at `ip`.
fn account(app: &str, ip: IpAddr) -> Result<String, Error> {
    if !plain(app, 80) {
        return Err(format!(
            "app {app:?} cannot be a database user name: use letters, digits and _"
        )
        .into());
    }
    Ok(format!("'{app}'@'{ip}'"))
}

/// Letters, digits and `_`, 1 to `max` of them: nothing a statement could
/// take for anything but a name.
pub fn plain(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_become_accounts() {
        let ip: IpAddr = "2001:db8::7".parse().unwrap();
        assert_eq!(
            account("flight_order", ip).unwrap(),
            "'flight_order'@'2001:db8::7'"
        );
        for bad in ["", "a'b", "a b", "a-b", "x\\", "é"] {
            assert!(account(bad, ip).is_err(), "{bad:?}");
        }
        assert!(plain("appdb", 64) && !plain("app`db", 64) && !plain(&"a".repeat(65), 64));
    }
}
