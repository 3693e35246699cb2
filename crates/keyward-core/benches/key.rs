//! Criterion benchmarks for the key hot path: generate, parse + checksum, hash.
//!
//! Run with `cargo xtask bench` (or `cargo bench -p keyward-core --bench key`).

use criterion::{Criterion, criterion_group, criterion_main};
use keyward_core::{KeyEnvironment, KeyFormat, KeyHasher};
use std::hint::black_box;

fn key(c: &mut Criterion) {
    let format = KeyFormat::default();
    let key = format.generate(KeyEnvironment::Live);
    let sha = KeyHasher::sha256();
    let hmac = KeyHasher::hmac("p1", vec![7u8; 32]);

    c.bench_function("generate", |b| b.iter(|| format.generate(black_box(KeyEnvironment::Live))));
    c.bench_function("parse_checksum", |b| b.iter(|| format.parse(black_box(key.expose_secret()))));
    c.bench_function("hash_sha256", |b| b.iter(|| sha.hash(black_box(&key))));
    c.bench_function("hash_hmac_sha256", |b| b.iter(|| hmac.hash(black_box(&key))));
}

criterion_group!(benches, key);
criterion_main!(benches);
