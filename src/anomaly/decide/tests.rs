//! The decision rules, and the simulation that proves the false-alarm rate
//! and the power of the comparison (seeded, pure, run with the unit tests).

use super::*;
use chrono::TimeZone;

fn guard() -> Guard {
    Guard {
        metric: "error".into(),
        max_count: 10,
        min_sample: 100,
        alpha: 0.01,
        action: Action::Disable,
        control: None,
        treatment: None,
    }
}

fn total(variant: &str, event_type: &str, count: u64) -> MetricTotal {
    MetricTotal {
        variant: variant.into(),
        event_type: event_type.into(),
        count,
        sum: count as f64,
    }
}

fn look(totals: &[MetricTotal], window: &[MetricTotal]) -> Option<Decision> {
    let t = Utc.timestamp_opt(1_000_000, 0).unwrap();
    decide(
        &guard(),
        &Observation {
            flag_key: "f",
            default_variant: "false",
            since_start: totals,
            start: t,
            in_window: window,
            window_start: t,
            now: t,
        },
    )
}

#[test]
fn more_than_max_count_errors_fire_the_count_and_max_count_do_not() {
    let ten = [total("true", "error", 10)];
    assert_eq!(look(&ten, &ten), None);
    let eleven = [total("true", "error", 6), total("false", "error", 5)];
    let d = look(&eleven, &eleven).expect("11 errors fire");
    assert_eq!(d.variant, None);
    assert_eq!(d.record["test"], "count");
    assert_eq!(d.record["statistic"]["value"], 11);
    assert_eq!(d.record["threshold"], 10);
    // Errors outside the window (only in the since-start totals) do not count.
    assert_eq!(look(&eleven, &ten), None);
}

#[test]
fn with_enough_exposures_the_comparison_replaces_the_count() {
    // 50 errors per arm: far above the count, but the same rate.
    let same = [
        total("false", "exposure", 1000),
        total("false", "error", 50),
        total("true", "exposure", 1000),
        total("true", "error", 50),
    ];
    assert_eq!(look(&same, &same), None);
    let worse = [
        total("false", "exposure", 1000),
        total("false", "error", 20),
        total("true", "exposure", 1000),
        total("true", "error", 80),
    ];
    let d = look(&worse, &worse).expect("a clearly worse treatment fires");
    assert_eq!(d.variant.as_deref(), Some("true"));
    assert_eq!(d.record["test"], "mixture_sprt");
    assert_eq!(d.record["arms"]["control"]["errors"], 20);
    assert_eq!(d.record["arms"]["treatment"]["exposures"], 1000);
    assert!(
        d.record["statistic"]["value"].as_f64().unwrap() >= d.record["threshold"].as_f64().unwrap()
    );
}

#[test]
fn below_the_minimum_sample_the_count_still_guards() {
    let few = [
        total("false", "exposure", 99),
        total("true", "exposure", 99),
        total("true", "error", 11),
    ];
    assert_eq!(look(&few, &few).unwrap().record["test"], "count");
}

#[test]
fn below_the_minimum_sample_the_controls_baseline_errors_do_not_count() {
    let few = [
        total("false", "exposure", 90),
        total("false", "error", 20),
        total("true", "exposure", 10),
        total("true", "error", 1),
    ];
    assert_eq!(look(&few, &few), None);
}

#[test]
fn settings_fall_back_to_defaults_and_are_validated() {
    let s: GuardSettings =
        serde_json::from_value(json!({"max_count": 3, "action": "alert"})).unwrap();
    let g = s.over(&guard());
    assert_eq!(
        (g.max_count, g.action, g.min_sample),
        (3, Action::Alert, 100)
    );
    for bad in [
        json!({"alpha": 0.7}),
        json!({"min_sample": 0}),
        json!({"control": "a", "treatment": "a"}),
        json!({"metric": ""}),
    ] {
        let s: GuardSettings = serde_json::from_value(bad.clone()).unwrap();
        assert!(s.validate().is_err(), "{bad}");
    }
    assert!(serde_json::from_value::<GuardSettings>(json!({"action": "explode"})).is_err());
    assert!(serde_json::from_value::<GuardSettings>(json!({"treshold": 1})).is_err());
}

/// SplitMix64: a small, seeded, dependency-free generator for the simulation.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn binomial(&mut self, n: u64, p: f64) -> u64 {
        (0..n).filter(|_| self.uniform() < p).count() as u64
    }
}

const TICKS: usize = 100;
const WINDOW_TICKS: usize = 10;
const RUNS: usize = 1000;

struct Scenario {
    control_per_tick: u64,
    treatment_per_tick: u64,
    control_rate: f64,
    treatment_rate: f64,
}

/// Watches `RUNS` rollouts for `TICKS` looks each with the full decision
/// (count below the minimum sample, comparison above it); returns how many
/// were acted on and the exposures (both arms) seen by then.
fn simulate(s: &Scenario, seed: u64) -> (usize, Vec<u64>) {
    let mut rng = Rng(seed);
    let g = guard();
    let mut fired = 0;
    let mut exposures_needed = Vec::new();
    for _ in 0..RUNS {
        let (mut c, mut t) = (Arm::default(), Arm::default());
        let mut window: Vec<(u64, u64)> = Vec::new();
        for _ in 0..TICKS {
            let ce = s.control_per_tick;
            let te = s.treatment_per_tick;
            let (cx, tx) = (
                rng.binomial(ce, s.control_rate),
                rng.binomial(te, s.treatment_rate),
            );
            c.exposures += ce;
            c.errors += cx;
            t.exposures += te;
            t.errors += tx;
            window.push((cx, tx));
            let recent = window.iter().rev().take(WINDOW_TICKS);
            let (wc, wt) = recent.fold((0, 0), |(a, b), (c, t)| (a + c, b + t));
            let since_start = [
                total("false", "exposure", c.exposures),
                total("false", "error", c.errors),
                total("true", "exposure", t.exposures),
                total("true", "error", t.errors),
            ];
            let in_window = [total("false", "error", wc), total("true", "error", wt)];
            let now = Utc.timestamp_opt(0, 0).unwrap();
            let obs = Observation {
                flag_key: "f",
                default_variant: "false",
                since_start: &since_start,
                start: now,
                in_window: &in_window,
                window_start: now,
                now,
            };
            if decide(&g, &obs).is_some() {
                fired += 1;
                exposures_needed.push(c.exposures + t.exposures);
                break;
            }
        }
    }
    exposures_needed.sort_unstable();
    (fired, exposures_needed)
}

/// The README's promise: of 1,000 healthy rollouts (2 % errors on both
/// arms, 100 exposures per arm per look) watched for 100 looks, at most 1 %
/// are disabled; of rollouts whose error rate is twice the control's, most
/// are caught. The median exposures to catch one go to docs/benchmarks.md
/// (`cargo test --lib anomaly::decide -- --nocapture` prints them).
#[test]
fn simulation_healthy_rollouts_are_left_alone_and_doubled_error_rates_are_caught() {
    let healthy = Scenario {
        control_per_tick: 100,
        treatment_per_tick: 100,
        control_rate: 0.02,
        treatment_rate: 0.02,
    };
    let (false_alarms, _) = simulate(&healthy, 11);
    eprintln!("healthy 50/50: {false_alarms} of {RUNS} disabled");
    assert!(false_alarms <= RUNS / 100, "{false_alarms} false alarms");

    // A 10 % rollout: the exposure split, not 50/50, is the null.
    let small = Scenario {
        control_per_tick: 180,
        treatment_per_tick: 20,
        control_rate: 0.02,
        treatment_rate: 0.02,
    };
    let (false_alarms, _) = simulate(&small, 12);
    eprintln!("healthy 90/10: {false_alarms} of {RUNS} disabled");
    assert!(false_alarms <= RUNS / 100, "{false_alarms} false alarms");

    let doubled = Scenario {
        treatment_rate: 0.04,
        ..healthy
    };
    let (caught, needed) = simulate(&doubled, 13);
    let median = needed[needed.len() / 2];
    eprintln!("doubled 50/50: {caught} of {RUNS} caught; median exposures {median}");
    assert!(caught > RUNS * 9 / 10, "only {caught} caught");
}
