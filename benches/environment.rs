//! Cold identification and the cached `current()`.
//!
//! `cargo bench -p envid --bench environment`
//!
//! Goals (issue 2): `current()` ≤ 2 ns; a full cold load from a descriptor
//! ≤ 10 µs. "Cold" means a fresh `Environment::builder().load()`: the file is
//! opened, read, parsed and merged every iteration (the OS page cache is warm,
//! as it is on a real host after the first read).
//!
//! Baseline in the same run: OpenTelemetry Rust's host + os + process
//! resource detectors (`otel_host_os_process`), which give fewer facts.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use envid::vars::Vars;
use envid::Environment;
use opentelemetry_resource_detectors::{
    HostResourceDetector, OsResourceDetector, ProcessResourceDetector,
};
use opentelemetry_sdk::resource::ResourceDetector;
use opentelemetry_sdk::Resource;

fn benches(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = root.join("testdata/example.toml");
    let no_vars = Vars::from_pairs::<_, String, String>([]);

    // SAFETY of set_var: the bench is single-threaded at this point.
    std::env::set_var("ENVID_DESCRIPTOR", &example);
    envid::current().expect("example loads");
    c.bench_function("current", |b| {
        b.iter(|| black_box(envid::current().unwrap()))
    });

    c.bench_function("cold_load_descriptor", |b| {
        b.iter(|| {
            let e = Environment::builder()
                .descriptor(&example)
                .vars(no_vars.clone())
                .load()
                .unwrap();
            black_box(e.env().len())
        })
    });

    c.bench_function("otel_host_os_process", |b| {
        b.iter(|| {
            let detectors: [Box<dyn ResourceDetector>; 3] = [
                Box::new(HostResourceDetector::default()),
                Box::new(OsResourceDetector),
                Box::new(ProcessResourceDetector),
            ];
            let r = Resource::builder_empty().with_detectors(&detectors).build();
            black_box(r.len())
        })
    });

    // Parsing alone (no I/O), to split the cold load into read and parse.
    let toml_bytes = std::fs::read(&example).unwrap();
    c.bench_function("descriptor_parse_toml", |b| {
        b.iter(|| {
            envid::descriptor::parse(
                black_box(&toml_bytes),
                &example,
                envid::descriptor::Format::Toml,
                false,
            )
            .unwrap()
        })
    });
    // The toml crate's own share of `descriptor_parse_toml`.
    let toml_text = std::str::from_utf8(&toml_bytes).unwrap();
    c.bench_function("toml_detable_parse", |b| {
        b.iter(|| toml::de::DeTable::parse(black_box(toml_text)).unwrap())
    });
    let json_path = root.join("testdata/descriptors/good/full.json");
    let json_bytes = std::fs::read(&json_path).unwrap();
    c.bench_function("descriptor_parse_json", |b| {
        b.iter(|| {
            envid::descriptor::parse(
                black_box(&json_bytes),
                &json_path,
                envid::descriptor::Format::Json,
                false,
            )
            .unwrap()
        })
    });
    c.bench_function("cold_load_descriptor_json", |b| {
        b.iter(|| {
            let e = Environment::builder()
                .descriptor(&json_path)
                .vars(no_vars.clone())
                .load()
                .unwrap();
            black_box(e.env().len())
        })
    });

    // The KVM fallback: no descriptor, hostname read from a fake root.
    let host = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(host.path().join("etc")).unwrap();
    std::fs::write(
        host.path().join("etc/hostname"),
        "l-flightqma9.f.beta.cn0.example.com\n",
    )
    .unwrap();
    c.bench_function("cold_load_hostname_fallback", |b| {
        b.iter(|| {
            let e = Environment::builder()
                .root(host.path())
                .vars(no_vars.clone())
                .load()
                .unwrap();
            black_box(e.idc().len())
        })
    });

    // The same plus every probe (platform, container, virtualization, ip).
    c.bench_function("cold_load_hostname_fallback_all_probes", |b| {
        b.iter(|| {
            let e = Environment::builder()
                .root(host.path())
                .vars(no_vars.clone())
                .load()
                .unwrap();
            black_box((
                e.platform(),
                e.container().is_some(),
                e.virtualization().is_some(),
            ))
        })
    });
}

criterion_group!(environment, benches);
criterion_main!(environment);
