//! The C ABI's hot path: one field of the process-wide environment through
//! the exported `extern "C"` functions (goal: at most 50 ns a call).
//!
//! `cargo bench -p envid-ffi --bench ffi` (reads testdata/example.toml
//! through `ENVID_DESCRIPTOR`, set here when not already set).

use std::ffi::c_char;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use envid_ffi::envid_result;
use envid_ffi::environment::{
    envid_current, envid_environment, envid_environment_env, envid_environment_field,
    envid_environment_label,
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

criterion_group!(benches, bench);
criterion_main!(benches);
