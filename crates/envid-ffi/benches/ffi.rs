//! The C ABI's hot paths through the exported `extern "C"` functions: one
//! field of the process-wide environment (goal: at most 50 ns a call), and a
//! replica lookup against the Rust `Replica` in the same run (the C call adds
//! the record's JSON and its free).
//!
//! `cargo bench -p envid-ffi --bench ffi` (reads testdata/example.toml
//! through `ENVID_DESCRIPTOR`, set here when not already set; the replica
//! syncs from the reference service on 127.0.0.1 serving
//! testdata/registry.toml).

use std::ffi::c_char;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use envid_ffi::envid_result;
use envid_ffi::environment::{
    envid_current, envid_environment, envid_environment_env, envid_environment_field,
    envid_environment_label,
};
use envid_ffi::marshal::envid_string_free;
use envid_ffi::options::{
    envid_lookup_options, envid_lookup_options_add_endpoint, envid_lookup_options_free,
    envid_lookup_options_new,
};
use envid_ffi::replica::{
    envid_replica, envid_replica_free, envid_replica_lookup, envid_replica_new,
};

fn process_wide() -> *const envid_environment {
    if std::env::var_os("ENVID_DESCRIPTOR").is_none() {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/example.toml");
        // SAFETY: set once at start, before any other thread exists.
        unsafe { std::env::set_var("ENVID_DESCRIPTOR", example) };
    }
    let mut env: *const envid_environment = std::ptr::null();
    // SAFETY: a valid out pointer.
    let rc = unsafe { envid_current(&mut env) };
    assert_eq!(
        rc,
        envid_result::ENVID_OK,
        "the process-wide environment loads"
    );
    env
}

fn bench(c: &mut Criterion) {
    let env = process_wide();
    let mut g = c.benchmark_group("c_abi");
    g.bench_function("envid_environment_env", |b| {
        let mut out: *const c_char = std::ptr::null();
        b.iter(|| {
            // SAFETY: env is the live process-wide environment; out is writable.
            let rc = unsafe { envid_environment_env(black_box(env), &mut out) };
            black_box((rc, out))
        })
    });
    g.bench_function("envid_current+envid_environment_env", |b| {
        let mut cur: *const envid_environment = std::ptr::null();
        let mut out: *const c_char = std::ptr::null();
        b.iter(|| {
            // SAFETY: writable out pointers; cur is the live process-wide environment.
            unsafe {
                envid_current(&mut cur);
                black_box(envid_environment_env(black_box(cur), &mut out));
            }
            black_box(out)
        })
    });
    g.bench_function("envid_environment_field(idc)", |b| {
        let mut out: *const c_char = std::ptr::null();
        b.iter(|| {
            // SAFETY: as above.
            let rc = unsafe { envid_environment_field(black_box(env), black_box(4), &mut out) };
            black_box((rc, out))
        })
    });
    g.bench_function("envid_environment_label(team)", |b| {
        let mut out: *const c_char = std::ptr::null();
        b.iter(|| {
            // SAFETY: as above; the key is NUL-terminated.
            let rc = unsafe { envid_environment_label(black_box(env), c"team".as_ptr(), &mut out) };
            black_box((rc, out))
        })
    });
    g.finish();
}

/// A replica through the C ABI, synced from `url`.
fn c_replica(url: &str) -> *mut envid_replica {
    let url = std::ffi::CString::new(url).unwrap();
    let mut opts: *mut envid_lookup_options = std::ptr::null_mut();
    let mut replica: *mut envid_replica = std::ptr::null_mut();
    // SAFETY: writable out pointers; opts is live until freed; url is NUL-terminated.
    unsafe {
        assert_eq!(envid_lookup_options_new(&mut opts), envid_result::ENVID_OK);
        assert_eq!(
            envid_lookup_options_add_endpoint(opts, url.as_ptr()),
            envid_result::ENVID_OK
        );
        assert_eq!(
            envid_replica_new(opts, &mut replica),
            envid_result::ENVID_OK
        );
        envid_lookup_options_free(opts);
    }
    replica
}

fn replica(c: &mut Criterion) {
    let registry = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/registry.toml");
    let service = envid_server::spawn(envid_server::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..envid_server::Config::new(registry)
    })
    .expect("the reference service starts");
    let url = service.base_url();
    let config = envid::ServiceConfig::builder()
        .endpoint(url.clone())
        .build()
        .unwrap();
    let rust = envid::replica::Replica::builder(config).build().unwrap();
    let c_side = c_replica(&url);
    let mut g = c.benchmark_group("replica");
    // Inside 10.8.1.0/24 (and /16, /8): a longest-prefix answer.
    let ip: std::net::IpAddr = "10.8.1.200".parse().unwrap();
    assert!(rust.lookup(ip).is_some());
    g.bench_function("rust_lookup_cidr", |b| {
        b.iter(|| rust.lookup(black_box(ip)))
    });
    g.bench_function("c_lookup_cidr+string_free", |b| {
        let mut json: *mut c_char = std::ptr::null_mut();
        b.iter(|| {
            // SAFETY: c_side is live; the IP is NUL-terminated; json is
            // writable and freed once per successful call.
            unsafe {
                let rc = envid_replica_lookup(c_side, black_box(c"10.8.1.200".as_ptr()), &mut json);
                assert_eq!(rc, envid_result::ENVID_OK);
                envid_string_free(json);
            }
        })
    });
    g.bench_function("c_lookup_not_found", |b| {
        let mut json: *mut c_char = std::ptr::null_mut();
        b.iter(|| {
            // SAFETY: as above; nothing is written on NOT_FOUND.
            let rc = unsafe {
                envid_replica_lookup(c_side, black_box(c"192.0.2.1".as_ptr()), &mut json)
            };
            assert_eq!(rc, envid_result::ENVID_NOT_FOUND);
        })
    });
    g.finish();
    // SAFETY: live, and not used after this.
    unsafe { envid_replica_free(c_side) };
    drop(rust);
    service.shutdown();
}

criterion_group!(benches, bench, replica);
criterion_main!(benches);
