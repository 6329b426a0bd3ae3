//! A bare service process: `envid-server --registry FILE [--listen ADDR]
//! [--state FILE] [--etcd URL[,URL...]] [--etcd-prefix PREFIX] [--etcd-ca
//! FILE] [--etcd-cert FILE --etcd-key FILE] [--etcd-user NAME
//! [--etcd-password-file FILE]] [--insecure-open-registration]
//! [--max-connections N] [--max-long-polls N] [--fanout-rate N]` (the etcd
//! password may come from `ENVID_ETCD_PASSWORD` instead). It prints `listening on ADDR` on stdout once
//! bound and shuts down cleanly when stdin closes. The crash tests run it as
//! a child to `kill -9` it; operators use `envid serve`.

use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

fn main() {
    envid_server::limit_malloc_arenas();
    let mut args = std::env::args().skip(1);
    let mut config = envid_server::Config::new("");
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    // The crash tests register in bursts.
    config.register_limit = 0;
    config.max_in_flight = 4096;
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next().unwrap_or_else(|| {
                eprintln!("{flag} needs a value");
                std::process::exit(2)
            })
        };
        match flag.as_str() {
            "--registry" => config.registry_path = value().into(),
            "--listen" => {
                config.listen = value().parse().unwrap_or_else(|e| {
                    eprintln!("--listen: {e}");
                    std::process::exit(2)
                })
            }
            "--state" => config.state_path = Some(value().into()),
            "--etcd" => config.etcd = value().split(',').map(str::to_string).collect(),
            "--etcd-prefix" => config.etcd_prefix = value(),
            "--etcd-ca" => config.etcd_access.ca = Some(value().into()),
            "--etcd-cert" => config.etcd_access.cert = Some(value().into()),
            "--etcd-key" => config.etcd_access.key = Some(value().into()),
            "--etcd-user" => config.etcd_access.user = Some(value()),
            "--etcd-password-file" => {
                config.etcd_access.password = Some(envid_server::EtcdPassword::File(value().into()))
            }
            "--insecure-open-registration" => config.insecure_open_registration = true,
            // The fleet benchmark's 10,000 replicas (the defaults are 4,096).
            "--max-connections" => config.max_connections = number(&flag, value()),
            "--max-long-polls" => config.max_long_polls = number(&flag, value()),
            "--fanout-rate" => config.fanout_rate = number(&flag, value()),
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2)
            }
        }
    }
    if config.etcd_access.user.is_some() && config.etcd_access.password.is_none() {
        if let Ok(p) = std::env::var("ENVID_ETCD_PASSWORD") {
            config.etcd_access.password =
                Some(envid_server::EtcdPassword::Value(envid::Secret::new(p)));
        }
    }
    let handle = match envid_server::spawn(config) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("envid-server: {e}");
            std::process::exit(1)
        }
    };
    println!("listening on {}", handle.local_addr());
    // Until stdin closes (the parent ended or closed it): then a clean stop.
    let mut sink = [0u8; 64];
    while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
    handle.shutdown();
    std::thread::sleep(Duration::from_millis(10));
}

fn number(flag: &str, value: String) -> usize {
    value.parse().unwrap_or_else(|e| {
        eprintln!("{flag}: {e}");
        std::process::exit(2)
    })
}
