//! Explanations: why a flag serves what it serves to a context, step by
//! step (targeted users, each rule and each of its conditions, the bucket).
//!
//! The served value, variant and reason are those of [`CompiledFlag::evaluate`]
//! itself, called here; the trace is built with the same compiled
//! conditions and bucketer, and the step it names as deciding is checked
//! against that evaluation by the shared vectors in `spec/`, so an
//! explanation cannot tell a different story from evaluation.

use serde::Serialize;
use serde_json::Value;

use crate::bucket::Split;
use crate::compile::CompiledFlag;
use crate::context::{Context, Lookup};
use crate::evaluate::Evaluation;
use crate::model::ConditionSpec;

/// Which step of the evaluation order decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "step", content = "rule_index")]
pub enum Decision {
    /// The flag is disabled.
    Disabled,
    /// The user id is in `targeted_users`.
    TargetedUser,
    /// The rule at this index of the definition's `rules` matched.
    Rule(usize),
    /// The percentage rollout admitted the context or a weighted split
    /// picked a variant.
    Split,
    /// Nothing applied: the default value.
    Default,
}

/// One condition of a rule, as tested.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConditionTrace {
    /// The attribute read.
    pub attribute: String,
    /// The operator, as written.
    pub operator: String,
    /// The operand, as written (`null` for `exists` / `not_exists`).
    pub values: Value,
    /// The context's value (`null` when absent).
    pub actual: Value,
    /// Whether the condition held.
    pub passed: bool,
}

/// One rule, in evaluation (priority) order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleTrace {
    /// Index in the definition's `rules`.
    pub index: usize,
    /// Whether every condition held.
    pub matched: bool,
    /// Its conditions, in order.
    pub conditions: Vec<ConditionTrace>,
}

/// The explanation of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation<'a> {
    /// Exactly what [`CompiledFlag::evaluate`] returns for the context.
    #[serde(flatten)]
    pub evaluation: Evaluation<'a>,
    /// The step that decided.
    pub decision: Decision,
    /// The context's position in `0..100` (three decimals), or `None`
    /// when it has no bucket value.
    pub bucket: Option<f64>,
    /// Every rule, in the order they are tried (all of them, also after
    /// the deciding one, so a user can see what else would match).
    pub rules: Vec<RuleTrace>,
}

impl CompiledFlag {
    /// Explains [`CompiledFlag::evaluate`] for `ctx`.
    pub fn explain<'a>(&'a self, ctx: &Context) -> Explanation<'a> {
        let evaluation = self.evaluate(ctx);
        let p = &self.program;

        // Compiled rules are the definition's, stably sorted by priority:
        // the same sort gives each compiled rule its definition index.
        let mut order: Vec<usize> = (0..self.spec.rules.len()).collect();
        order.sort_by_key(|&i| self.spec.rules[i].priority);
        let mut lookup = Lookup::new(ctx);
        let rules: Vec<RuleTrace> = order
            .iter()
            .zip(p.rules.iter())
            .map(|(&index, compiled)| {
                let spec = &self.spec.rules[index];
                let written: Vec<ConditionSpec> = match &spec.conditions {
                    Some(list) => list.clone(),
                    None => vec![ConditionSpec {
                        attribute: spec.attribute.clone().unwrap_or_default(),
                        operator: spec.operator.clone().unwrap_or_default(),
                        value: spec.value.clone(),
                    }],
                };
                let conditions: Vec<ConditionTrace> = compiled
                    .conditions
                    .iter()
                    .zip(written)
                    .map(|(c, w)| ConditionTrace {
                        passed: c.matches(&mut lookup),
                        actual: c.actual(ctx).unwrap_or(Value::Null),
                        attribute: w.attribute,
                        operator: w.operator,
                        values: w.value.unwrap_or(Value::Null),
                    })
                    .collect();
                RuleTrace {
                    index,
                    matched: conditions.iter().all(|c| c.passed),
                    conditions,
                }
            })
            .collect();

        let position = p.bucketer.position(ctx, true);
        let targeted = p.on.is_some()
            && ctx
                .user_id()
                .is_some_and(|id| p.targeted_users.binary_search_by(|u| (**u).cmp(id)).is_ok());
        let split = position.is_some_and(|pos| match &p.split {
            Split::None => false,
            Split::Rollout { threshold, .. } => p.on.is_some() && pos < *threshold,
            Split::Weighted { .. } => true,
        });
        let decision = if !p.enabled {
            Decision::Disabled
        } else if targeted {
            Decision::TargetedUser
        } else if let Some(rule) = rules.iter().find(|r| r.matched) {
            Decision::Rule(rule.index)
        } else if split {
            Decision::Split
        } else {
            Decision::Default
        };
        Explanation {
            evaluation,
            decision,
            bucket: position.map(|pos| f64::from(pos) / 1000.0),
            rules,
        }
    }
}
