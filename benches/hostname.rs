//! `Rules::explain` on the built-in rules: a hostname with env and domain, a
//! production one (no env segment), an upper-case one (normalisation
//! allocates), and one no rule matches.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use envid::rules::Rules;

fn explain(c: &mut Criterion) {
    let rules = Rules::builtin();
    let mut g = c.benchmark_group("hostname");
    for (name, host) in [
        (
            "explain_beta_with_domain",
            "l-flightqma9.f.beta.cn0.example.com",
        ),
        ("explain_prod", "l-qmq1.h.cn5"),
        ("explain_upper_case", "L-FLIGHTQMA9.F.BETA.CN0.EXAMPLE.COM."),
        ("explain_no_match", "web-3.example.com"),
    ] {
        g.bench_function(name, |b| b.iter(|| rules.explain(black_box(host))));
    }
    g.bench_function("env_type_of", |b| {
        b.iter(|| rules.env_type_of(black_box("betanoah")))
    });
    g.bench_function("builtin", |b| b.iter(Rules::builtin));
    g.finish();
}

criterion_group!(benches, explain);
criterion_main!(benches);
