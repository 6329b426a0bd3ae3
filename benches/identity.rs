//! Signed identities: what verifying costs next to the Ed25519 check it
//! cannot avoid, what a cached verification costs, and what signing one
//! (the service's share of a registration) costs.
//!
//! * `identity verify never seen` vs `identity bare ed25519 verify`, in the
//!   same run: the target is at most 1.5× (the rest is base64url, two small
//!   JSON parses, SHA-256 of the token and the cache insert).
//! * `identity verify cached`: target at most 200 ns.
//! * `identity sign` and `identity issue` (claims with a random jti + sign).

use std::hint::black_box;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use criterion::Criterion;
use envid::identity::{Claims, KeySet, Signer, Verifier};
use envid::protocol::HostRecord;

fn main() {
    let signer = Signer::from_pem(&Signer::generate_pem()).unwrap();
    let record: HostRecord = serde_json::from_value(serde_json::json!({
        "app": "flight_order", "env": "prod", "idc": "cn0", "sub_env": "blue",
    }))
    .unwrap();
    let ip = "10.8.1.77".parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = Claims::for_record(&record, ip, "envsvc", "envid", now, 3600).unwrap();
    let keys = KeySet {
        keys: vec![signer.jwk().clone()],
    };
    // Distinct tokens (distinct jti), more than the cold verifier remembers.
    let tokens: Vec<String> = (0..1024)
        .map(|_| {
            signer.sign(&Claims::for_record(&record, ip, "envsvc", "envid", now, 3600).unwrap())
        })
        .collect();
    eprintln!("token length: {} bytes", tokens[0].len());

    let public = URL_SAFE_NO_PAD.decode(&signer.jwk().x).unwrap();
    let key = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public);
    let (input, sig) = tokens[0].rsplit_once('.').unwrap();
    let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    c.bench_function("identity bare ed25519 verify", |b| {
        b.iter(|| {
            key.verify(black_box(input.as_bytes()), black_box(&sig))
                .unwrap()
        })
    });
    // A cache of one: every token of the cycle was evicted since it was
    // last seen, so each call does the whole verification and an insert.
    let cold = Verifier::with_keys(keys.clone())
        .cache_capacity(1)
        .build()
        .unwrap();
    let mut i = 0usize;
    c.bench_function("identity verify never seen", |b| {
        b.iter(|| {
            i = (i + 1) % tokens.len();
            cold.verify(black_box(&tokens[i])).unwrap()
        })
    });
    let warm = Verifier::with_keys(keys).build().unwrap();
    warm.verify(&tokens[0]).unwrap();
    c.bench_function("identity verify cached", |b| {
        b.iter(|| warm.verify(black_box(&tokens[0])).unwrap())
    });
    c.bench_function("identity sign", |b| {
        b.iter(|| signer.sign(black_box(&claims)))
    });
    c.bench_function("identity issue (claims + jti + sign)", |b| {
        b.iter(|| {
            let c =
                Claims::for_record(black_box(&record), ip, "envsvc", "envid", now, 3600).unwrap();
            signer.sign(&c)
        })
    });
    c.final_summary();
}
