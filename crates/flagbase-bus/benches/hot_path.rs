//! Micro-benchmarks of the bus's per-message path, without sockets: decoding
//! a 64 KiB read of `PUB`s (what one read of a flooding publisher holds),
//! matching a subject in the subscription index, and encoding a `MSG`.
//! `cargo bench -p flagbase-bus`; bench/bus.sh measures the whole server.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flagbase_bus::codec::{encode_msg, Decoder, Limits, OpRef};
use flagbase_bus::sublist::Sublist;

/// A 64 KiB read's worth of `PUB bench <size>` ops, and how many there are.
fn read_of_pubs(size: usize) -> (Vec<u8>, u64) {
    let one = format!("PUB bench {size}\r\n{}\r\n", "x".repeat(size));
    let count = 64 * 1024 / one.len();
    (one.repeat(count).into_bytes(), count as u64)
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode 64 KiB read");
    for size in [16, 1024] {
        let (input, count) = read_of_pubs(size);
        group.throughput(Throughput::Elements(count));
        group.bench_function(format!("PUB {size} B"), |b| {
            let mut decoder = Decoder::new(Limits::default());
            b.iter(|| {
                let mut at = 0;
                let mut bytes = 0;
                while let Some(op) = decoder.next(black_box(&input), &mut at).unwrap() {
                    if let OpRef::Pub { payload, .. } = op {
                        bytes += payload.len();
                    }
                }
                bytes
            });
        });
    }
    group.finish();
}

fn match_subject(c: &mut Criterion) {
    let mut list = Sublist::new();
    for i in 0..1000 {
        list.insert(&format!("svc.{i}.requests"), None, i).unwrap();
    }
    list.insert("svc.*.requests", Some("workers"), 1000)
        .unwrap();
    list.insert("svc.>", None, 1001).unwrap();
    c.bench_function("sublist match, 1002 subscriptions", |b| {
        b.iter(|| list.matches(black_box("svc.500.requests")))
    });
}

fn encode(c: &mut Criterion) {
    let payload = vec![b'x'; 16];
    let mut out = Vec::with_capacity(64 * 1024);
    c.bench_function("encode MSG 16 B", |b| {
        b.iter(|| {
            out.clear();
            encode_msg(black_box("bench"), "1", None, black_box(&payload), &mut out);
        })
    });
}

criterion_group!(benches, decode, match_subject, encode);
criterion_main!(benches);
