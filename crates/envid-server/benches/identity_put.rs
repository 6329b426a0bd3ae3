//! What a signed identity adds to a registration: the same `PUT
//! /v1/hosts/{ip}` (an operator's token, over loopback, through the
//! library's `Registrar`) against a service without a signing key and one
//! with it, in the same run. The ratio is the figure the signed-identity
//! issue asks for.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use envid::identity::Signer;
use envid::registrar::{Registrar, Registration};
use envid::{Secret, ServiceConfig};
use envid_server::{Config, ServerHandle};

fn service(dir: &std::path::Path, signing: bool) -> ServerHandle {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut c = Config::new(root.join("testdata/registry.toml"));
    c.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    c.apps_path = Some(root.join("testdata/apps/apps.toml"));
    // Many PUTs of one IP: the per-(caller, IP) limit would refuse them.
    c.register_limit = u32::MAX as usize;
    if signing {
        let key = dir.join("signing.pem");
        std::fs::write(&key, Signer::generate_pem()).unwrap();
        c.identity.signing_key = Some(key);
    }
    envid_server::spawn(c).expect("service starts")
}

fn put(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let ip: IpAddr = "192.0.2.10".parse().unwrap();
    let registration: Registration = Registration {
        record: serde_json::from_str(r#"{"app": "payment", "env": "prod", "idc": "cn5"}"#).unwrap(),
        lease: Duration::from_secs(300),
    };
    let mut g = c.benchmark_group("identity_put");
    for (name, signing) in [("put_without_identity", false), ("put_with_identity", true)] {
        let svc = service(dir.path(), signing);
        let config = ServiceConfig::builder()
            .endpoint(svc.base_url())
            .token(Secret::new("release-token-c0ffee"))
            .build()
            .unwrap();
        let registrar = Registrar::new(config);
        registrar.register(ip, &registration).unwrap();
        assert_eq!(registrar.identity().is_some(), signing);
        g.bench_function(name, |b| {
            b.iter(|| registrar.register(ip, &registration).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, put);
criterion_main!(benches);
