//! Longest-prefix lookups in `envid::prefix::PrefixTable` (target: ≤100 ns).

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, Criterion};
use envid::prefix::PrefixTable;
use envid::protocol::RecordKey;

fn table() -> PrefixTable<u32> {
    let mut t = PrefixTable::new();
    let mut n = 0;
    let mut add = |k: String| {
        t.insert(k.parse::<RecordKey>().unwrap(), n);
        n += 1;
    };
    // 20,000 single IPs (VMs), 2,000 /24s, 200 /16s, one /8, and IPv6.
    for i in 0..20_000u32 {
        add(format!(
            "10.{}.{}.{}",
            100 + i / 65_536,
            i / 256 % 256,
            i % 256
        ));
    }
    for i in 0..2_000u32 {
        add(format!("172.{}.{}.0/24", 16 + i / 256, i % 256));
    }
    for i in 0..200u32 {
        add(format!("10.{i}.0.0/16"));
    }
    add("10.0.0.0/8".into());
    for i in 0..1_000u32 {
        add(format!("2001:db8:{i:x}::/48"));
        add(format!("2001:db8:{i:x}::1"));
    }
    add("2001:db8::/32".into());
    t
}

fn bench(c: &mut Criterion) {
    let t = table();
    let cases: [(&str, &str); 6] = [
        ("v4_exact", "10.100.3.7"),
        ("v4_slash24", "172.17.3.9"),
        ("v4_slash16", "10.150.3.9"),
        ("v4_slash8", "10.250.3.9"),
        ("v4_miss", "192.168.1.1"),
        ("v6_slash48", "2001:db8:3e7::abcd"),
    ];
    for (name, ip) in cases {
        let ip: IpAddr = ip.parse().unwrap();
        assert!(name.ends_with("miss") || t.lookup(ip).is_some(), "{name}");
        c.bench_function(&format!("prefix_table/{name}"), |b| {
            b.iter(|| t.lookup(black_box(ip)).copied())
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
