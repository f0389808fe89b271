//! What the detector decides for one flag at one look, pure: the guard's
//! settings and the counts read from the store in, a decision record (or
//! nothing) out. The worker does the reading and the acting.
//!
//! Two rules, in this order:
//! - **Comparison.** When the control and at least one treatment each have
//!   `min_sample` exposures since the rollout started, each such treatment
//!   is compared with the control by the sequential test in `stats`
//!   (α shared between treatments, Bonferroni). The comparison replaces the
//!   count: a baseline error rate shared by both arms never fires it.
//! - **Count.** Otherwise, more than `max_count` events of the guard's
//!   metric within the window fire it. Once exposures show both arms being
//!   served, only the treatments' events count: the control's are the
//!   baseline the flag had before its rollout (without this, a 10 % rollout
//!   of a flag with a 2 % baseline would be "caught" before its sample
//!   grew, as the simulation shows).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::stats::{self, Arm};
use crate::metrics::EXPOSURE;
use crate::storage::metrics::MetricTotal;

/// What the detector does when a guard fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Disable,
    Alert,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Disable => "disable",
            Action::Alert => "alert",
        }
    }
}

/// A flag's guard as `PUT /api/v1/flags/{key}/guard` takes it: every field
/// optional, an absent one falls back to the configured default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_sample: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// The control variant; by default the flag's default (`false` for a
    /// boolean flag).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control: Option<String>,
    /// The one treatment to watch; by default every other variant served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub treatment: Option<String>,
}

/// A guard with every setting decided.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Guard {
    pub metric: String,
    pub max_count: u64,
    pub min_sample: u64,
    pub alpha: f64,
    pub action: Action,
    pub control: Option<String>,
    pub treatment: Option<String>,
}

pub const MAX_NAME: usize = 128;

impl GuardSettings {
    /// `Err((field, reason))` for a setting outside its range.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if let Some(m) = &self.metric {
            if m.is_empty() || m.len() > MAX_NAME {
                return Err(("metric", "must be 1 to 128 characters"));
            }
        }
        if self.min_sample == Some(0) {
            return Err(("min_sample", "must be at least 1"));
        }
        if let Some(a) = self.alpha {
            if !(a > 0.0 && a < 0.5) {
                return Err(("alpha", "must be between 0 and 0.5"));
            }
        }
        for (field, v) in [("control", &self.control), ("treatment", &self.treatment)] {
            if v.as_ref()
                .is_some_and(|v| v.is_empty() || v.len() > MAX_NAME)
            {
                return Err((field, "must be 1 to 128 characters"));
            }
        }
        if self.control.is_some() && self.control == self.treatment {
            return Err(("treatment", "must differ from control"));
        }
        Ok(())
    }

    /// These settings over `defaults`.
    pub fn over(&self, defaults: &Guard) -> Guard {
        Guard {
            metric: self
                .metric
                .clone()
                .unwrap_or_else(|| defaults.metric.clone()),
            max_count: self.max_count.unwrap_or(defaults.max_count),
            min_sample: self.min_sample.unwrap_or(defaults.min_sample),
            alpha: self.alpha.unwrap_or(defaults.alpha),
            action: self.action.unwrap_or(defaults.action),
            control: self.control.clone().or_else(|| defaults.control.clone()),
            treatment: self
                .treatment
                .clone()
                .or_else(|| defaults.treatment.clone()),
        }
    }
}

/// What one look at one flag read.
pub struct Observation<'a> {
    pub flag_key: &'a str,
    /// The variant served when nothing applies (see `control_of`).
    pub default_variant: &'a str,
    /// Totals since the rollout started (the sequential test's data).
    pub since_start: &'a [MetricTotal],
    pub start: DateTime<Utc>,
    /// Totals within the sliding window (the count's data).
    pub in_window: &'a [MetricTotal],
    pub window_start: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

/// Why the detector acts; the payload of the audit record, the bus message
/// and the stored anomaly.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub variant: Option<String>,
    pub record: Value,
}

/// The arm of `variant` for `metric`.
fn arm(totals: &[MetricTotal], variant: &str, metric: &str) -> Arm {
    let count = |event_type: &str| {
        totals
            .iter()
            .filter(|t| t.variant == variant && t.event_type == event_type)
            .map(|t| t.count)
            .sum()
    };
    Arm {
        exposures: count(EXPOSURE),
        errors: count(metric),
    }
}

fn arm_json(variant: &str, arm: Arm) -> Value {
    json!({
        "variant": variant,
        "exposures": arm.exposures,
        "errors": arm.errors,
        "rate": arm.rate(),
    })
}

pub fn decide(guard: &Guard, obs: &Observation<'_>) -> Option<Decision> {
    let control_name = guard.control.as_deref().unwrap_or(obs.default_variant);
    let control = arm(obs.since_start, control_name, &guard.metric);
    let mut treatments: Vec<&str> = match &guard.treatment {
        Some(t) => vec![t.as_str()],
        None => obs
            .since_start
            .iter()
            .filter(|t| t.event_type == EXPOSURE && t.variant != control_name)
            .map(|t| t.variant.as_str())
            .collect(),
    };
    treatments.dedup();
    let sampled: Vec<(&str, Arm)> = treatments
        .iter()
        .map(|t| (*t, arm(obs.since_start, t, &guard.metric)))
        .filter(|(_, a)| a.exposures >= guard.min_sample)
        .collect();
    let base = |test: &str| {
        json!({
            "flag": obs.flag_key,
            "metric": guard.metric,
            "test": test,
            "action": guard.action.as_str(),
            "at": obs.now,
        })
    };
    if control.exposures >= guard.min_sample && !sampled.is_empty() {
        let alpha = guard.alpha / sampled.len() as f64;
        let worst = sampled
            .iter()
            .filter_map(|(name, t)| stats::compare(control, *t, alpha).map(|o| (*name, *t, o)))
            .filter(|(_, _, o)| o.worse)
            .max_by(|a, b| a.2.log_lr.total_cmp(&b.2.log_lr))?;
        let (name, treatment, outcome) = worst;
        let mut record = base("mixture_sprt");
        record["variant"] = json!(name);
        record["window"] = json!({
            "from": obs.start,
            "to": obs.now,
            "seconds": (obs.now - obs.start).num_seconds(),
        });
        record["arms"] = json!({
            "control": arm_json(control_name, control),
            "treatment": arm_json(name, treatment),
        });
        record["statistic"] = json!({
            "name": "log_likelihood_ratio",
            "value": outcome.log_lr,
            "expected_error_share": outcome.expected_share,
            "observed_error_share": outcome.observed_share,
        });
        record["threshold"] = json!(outcome.threshold);
        record["alpha"] = json!(alpha);
        record["min_sample"] = json!(guard.min_sample);
        return Some(Decision {
            variant: Some(name.to_string()),
            record,
        });
    }
    // While the sample is too small to compare, the control's errors are
    // the baseline the flag had before the rollout, not its effect: once
    // both arms are known to be served, only the treatments' errors count.
    let arms_known = control.exposures > 0
        && treatments
            .iter()
            .any(|t| arm(obs.since_start, t, &guard.metric).exposures > 0);
    let errors: u64 = obs
        .in_window
        .iter()
        .filter(|t| t.event_type == guard.metric)
        .filter(|t| !arms_known || t.variant != control_name)
        .map(|t| t.count)
        .sum();
    if errors <= guard.max_count {
        return None;
    }
    let mut variants: Vec<&str> = obs.in_window.iter().map(|t| t.variant.as_str()).collect();
    variants.sort_unstable();
    variants.dedup();
    let arms: Vec<Value> = variants
        .iter()
        .map(|v| arm_json(v, arm(obs.in_window, v, &guard.metric)))
        .collect();
    let mut record = base("count");
    record["variant"] = Value::Null;
    record["window"] = json!({
        "from": obs.window_start,
        "to": obs.now,
        "seconds": (obs.now - obs.window_start).num_seconds(),
    });
    record["arms"] = json!(arms);
    record["statistic"] = json!({ "name": "count", "value": errors });
    record["threshold"] = json!(guard.max_count);
    Some(Decision {
        variant: None,
        record,
    })
}

#[cfg(test)]
mod tests;
