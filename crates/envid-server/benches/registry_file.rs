//! `parse_registry` on registry files of 1,000 and 20,000 records: the time
//! the service spends on a reload before it can serve the new version.
//! Locations are computed for every record, so this also guards against the
//! quadratic line counting that once made 20,000 records take 12 s.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use envid_server::registry_file::parse_registry;

fn registry_text(records: u32) -> String {
    let mut text = String::from("schema = 1\n");
    for i in 0..records {
        let [_, a, b, c] = i.to_be_bytes();
        text.push_str(&format!(
            "[[records]]\nip = \"10.{a}.{b}.{c}\"\napp = \"app{i}\"\nenv = \"prod\"\nidc = \"cn{}\"\n",
            i % 7
        ));
    }
    text
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("registry_parse");
    g.sample_size(10);
    for records in [1_000u32, 20_000] {
        let text = registry_text(records);
        g.throughput(Throughput::Elements(records.into()));
        g.bench_with_input(BenchmarkId::from_parameter(records), &text, |b, text| {
            b.iter(|| parse_registry(black_box(text), Path::new("registry.toml")).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
