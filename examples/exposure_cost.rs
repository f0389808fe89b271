//! What counting an exposure adds to one evaluation, measured in process
//! (bench/detector.sh runs it; figures in docs/benchmarks.md, "Detector").
//! An HTTP benchmark on a shared machine cannot resolve a few percent, so
//! this times the two halves directly: evaluating the flag of
//! bench/http.sh, and evaluating it and counting its exposure, interleaved
//! over many rounds on one thread and then on two threads at once.
//!
//! `cargo run --release --example exposure_cost`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use flagbase::metrics::Recorder;
use flagbase_engine::{Context, FlagSpec};

const CALLS: u32 = 200_000;
const ROUNDS: usize = 21;

fn main() {
    let spec: FlagSpec = serde_json::from_value(serde_json::json!({
        "key": "bench-001", "enabled": true, "default_value": false, "rollout_percentage": 25,
        "rules": [{"attribute": "plan", "operator": "equals", "value": "pro", "variant": true, "priority": 0}]
    }))
    .unwrap();
    let flag = Arc::new(flagbase_engine::compile(spec).unwrap());
    let ctx = Context::with_targeting_key("user-42").with("plan", "free");
    let recorder = Arc::new(Recorder::new(10));

    for threads in [1, 2] {
        let mut plain = Vec::new();
        let mut counted = Vec::new();
        for _ in 0..ROUNDS {
            for count in [false, true] {
                let started = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..threads {
                        s.spawn(|| {
                            for _ in 0..CALLS {
                                let e = flag.evaluate(black_box(&ctx));
                                if count {
                                    recorder.exposed(&flag, &e);
                                }
                                black_box(&e);
                            }
                        });
                    }
                });
                let ns = started.elapsed().as_nanos() as f64 / f64::from(CALLS);
                if count {
                    counted.push(ns)
                } else {
                    plain.push(ns)
                }
            }
            recorder.drain();
        }
        plain.sort_by(f64::total_cmp);
        counted.sort_by(f64::total_cmp);
        let (p, c) = (plain[ROUNDS / 2], counted[ROUNDS / 2]);
        println!(
            "SUMMARY exposure cost, {threads} thread(s): evaluate {p:.0} ns, evaluate + count {c:.0} ns, counting {:.0} ns per evaluation (median of {ROUNDS} interleaved rounds of {CALLS})",
            c - p
        );
    }
}
