//! Triggers: a function run by a bus subject (the message is stdin) or by a
//! schedule. They are stored (so they survive restarts), managed through the
//! API, and their runs go to the invocation log like any other.
//!
//! Loop detection: a subject-triggered run whose message carries a reply
//! subject answers there with its stdout, and the answer carries the
//! `Flagbase-Trigger-Chain` header: the ids of the triggers that led to it.
//! A trigger that finds its own id in the chain of a message it receives
//! (it would run because of its own output), or a chain longer than
//! `MAX_CHAIN`, is stopped and marked so in the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Datelike, Timelike, Utc};
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use super::{Call, Functions};
use crate::error::{Error, Result};
use crate::iam::Caller;
use crate::model::Role;
use crate::storage::functions::{FunctionStore, TriggerRecord};

pub const CHAIN_HEADER: &str = "Flagbase-Trigger-Chain";
const MAX_CHAIN: usize = 8;
const MAX_TRIGGERS_PER_FUNCTION: usize = 16;

/// A cron schedule: `sec min hour day-of-month month day-of-week` (six
/// fields) or the classic five (seconds = 0). Each field is `*`, `*/n`,
/// `a`, `a-b`, `a-b/n` or a comma list of those.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    fields: [Vec<bool>; 6],
}

const RANGES: [(u32, u32); 6] = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6)];

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule> {
        let bad = |why: &str| {
            Error::invalid(
                "schedule",
                format!("{why} (expected cron fields such as \"*/10 * * * * *\" or \"0 3 * * *\")"),
            )
        };
        let mut parts: Vec<&str> = text.split_whitespace().collect();
        if parts.len() == 5 {
            parts.insert(0, "0");
        }
        if parts.len() != 6 {
            return Err(bad("needs five or six fields"));
        }
        let mut fields: [Vec<bool>; 6] = Default::default();
        for (i, part) in parts.iter().enumerate() {
            let (lo, hi) = RANGES[i];
            let mut allowed = vec![false; hi as usize + 1];
            for item in part.split(',') {
                let (range, step) = match item.split_once('/') {
                    Some((r, s)) => (
                        r,
                        s.parse::<u32>()
                            .ok()
                            .filter(|s| *s > 0)
                            .ok_or_else(|| bad("bad step"))?,
                    ),
                    None => (item, 1),
                };
                let (from, to) = if range == "*" {
                    (lo, hi)
                } else if let Some((a, b)) = range.split_once('-') {
                    (
                        a.parse().map_err(|_| bad("bad range"))?,
                        b.parse().map_err(|_| bad("bad range"))?,
                    )
                } else {
                    let v: u32 = range.parse().map_err(|_| bad("bad value"))?;
                    (v, if step > 1 { hi } else { v })
                };
                if from < lo || to > hi || from > to {
                    return Err(bad("value out of range"));
                }
                for v in (from..=to).step_by(step as usize) {
                    allowed[v as usize] = true;
                }
            }
            fields[i] = allowed;
        }
        Ok(Schedule { fields })
    }

    fn matches(&self, t: &DateTime<Utc>) -> bool {
        let values = [
            t.second(),
            t.minute(),
            t.hour(),
            t.day(),
            t.month(),
            t.weekday().num_days_from_sunday(),
        ];
        values
            .iter()
            .zip(&self.fields)
            .all(|(v, allowed)| allowed.get(*v as usize).copied().unwrap_or(false))
    }

    /// The first matching second after `after`, within about a year.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut t = after.with_nanosecond(0)? + chrono::Duration::seconds(1);
        for _ in 0..(366 * 24 * 3600) {
            if self.matches(&t) {
                return Some(t);
            }
            // Skip whole minutes whose minute/hour/day cannot match.
            if !(self.fields[1][t.minute() as usize] && self.fields[2][t.hour() as usize]) {
                t = t.with_second(0)? + chrono::Duration::minutes(1);
            } else {
                t += chrono::Duration::seconds(1);
            }
        }
        None
    }
}

/// Runs the stored triggers and manages new ones.
pub struct Triggers {
    functions: Arc<Functions>,
    store: Arc<dyn FunctionStore>,
    client: Option<async_nats::Client>,
    /// Running tasks by trigger id, with their function's name.
    running: Mutex<HashMap<String, (String, JoinHandle<()>)>>,
}

impl Triggers {
    /// Starts every stored trigger that was not stopped. Without a bus
    /// client, subject triggers are kept but do not run (logged).
    pub async fn start(
        functions: Arc<Functions>,
        store: Arc<dyn FunctionStore>,
        client: Option<async_nats::Client>,
    ) -> Result<Arc<Triggers>> {
        let this = Arc::new(Triggers {
            functions,
            store: store.clone(),
            client,
            running: Mutex::new(HashMap::new()),
        });
        for record in store.triggers().await? {
            if record.stopped.is_none() {
                this.spawn(record).await;
            }
        }
        Ok(this)
    }

    async fn spawn(self: &Arc<Self>, record: TriggerRecord) {
        let (this, id, function) = (self.clone(), record.id.clone(), record.function.clone());
        let handle = if let Some(subject) = record.subject.clone() {
            let Some(client) = self.client.clone() else {
                tracing::warn!(trigger = %record.id, "no bus connection; the subject trigger does not run");
                return;
            };
            // Subscribed before the task starts, so a message published
            // right after the trigger is created is not missed.
            let subscriber = match client.subscribe(subject.clone()).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(trigger = %record.id, error = %e, "cannot subscribe");
                    return;
                }
            };
            tokio::spawn(async move { this.on_subject(record, client, subscriber).await })
        } else if let Some(Ok(schedule)) = record.schedule.as_deref().map(Schedule::parse) {
            tokio::spawn(async move { this.on_schedule(record, schedule).await })
        } else {
            return;
        };
        self.running
            .lock()
            .expect("triggers")
            .insert(id, (function, handle));
    }

    async fn on_subject(
        self: Arc<Self>,
        record: TriggerRecord,
        client: async_nats::Client,
        mut messages: async_nats::Subscriber,
    ) {
        while let Some(message) = messages.next().await {
            let chain: Vec<String> = message
                .headers
                .as_ref()
                .and_then(|h| h.get(CHAIN_HEADER))
                .map(|v| {
                    v.as_str()
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            if chain.contains(&record.id) || chain.len() >= MAX_CHAIN {
                tracing::error!(trigger = %record.id, function = %record.function, "trigger loop detected; the trigger is stopped");
                if let Err(e) = self
                    .store
                    .stop_trigger(
                        &record.id,
                        "loop detected: the trigger ran on its own output",
                    )
                    .await
                {
                    tracing::error!(error = %e, "cannot mark the trigger stopped");
                }
                return;
            }
            let call = Call {
                method: "POST".into(),
                path_info: String::new(),
                query: String::new(),
                headers: vec![("X-Flagbase-Subject".into(), message.subject.to_string())],
                body: message.payload.to_vec(),
            };
            let result = self
                .functions
                .run_triggered(&record.function, &record.id, call)
                .await;
            if let Some(reply) = message.reply {
                let body = match result {
                    Ok(r) => r.body,
                    Err(e) => e.to_string().into_bytes(),
                };
                let mut headers = async_nats::HeaderMap::new();
                let mut next = chain;
                next.push(record.id.clone());
                headers.insert(CHAIN_HEADER, next.join(",").as_str());
                if let Err(e) = client
                    .publish_with_headers(reply, headers, body.into())
                    .await
                {
                    tracing::warn!(trigger = %record.id, error = %e, "cannot publish the reply");
                }
            }
        }
    }

    async fn on_schedule(self: Arc<Self>, record: TriggerRecord, schedule: Schedule) {
        loop {
            let Some(next) = schedule.next_after(Utc::now()) else {
                return;
            };
            let wait = (next - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            tokio::time::sleep(wait).await;
            let call = Call {
                method: "POST".into(),
                path_info: String::new(),
                query: String::new(),
                headers: vec![("X-Flagbase-Schedule".into(), next.to_rfc3339())],
                body: Vec::new(),
            };
            let _ = self
                .functions
                .run_triggered(&record.function, &record.id, call)
                .await;
        }
    }

    pub async fn create(
        self: &Arc<Self>,
        caller: &Caller,
        function: &str,
        body: serde_json::Value,
    ) -> Result<TriggerRecord> {
        caller.require(Role::Developer)?;
        let field = |name: &str| {
            body.get(name)
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        };
        if let Some(extra) = body
            .as_object()
            .and_then(|o| o.keys().find(|k| *k != "subject" && *k != "schedule"))
        {
            return Err(Error::invalid(
                extra,
                "unknown field (use subject or schedule)",
            ));
        }
        let (subject, schedule) = (field("subject"), field("schedule"));
        match (&subject, &schedule) {
            (Some(s), None) => {
                if s.len() > 256 || !flagbase_bus::subject::is_valid_subject(s) {
                    return Err(Error::invalid("subject", "is not a valid subject"));
                }
            }
            (None, Some(s)) => {
                Schedule::parse(s)?;
            }
            _ => {
                return Err(Error::invalid(
                    "body",
                    "give exactly one of subject or schedule",
                ))
            }
        }
        let existing = self
            .store
            .triggers()
            .await?
            .iter()
            .filter(|t| t.function == function)
            .count();
        if existing >= MAX_TRIGGERS_PER_FUNCTION {
            return Err(Error::Conflict(format!(
                "function {function} already has {MAX_TRIGGERS_PER_FUNCTION} triggers"
            )));
        }
        let record = self
            .store
            .create_trigger(
                function,
                subject.as_deref(),
                schedule.as_deref(),
                &caller.user.id,
            )
            .await?
            .value;
        self.spawn(record.clone()).await;
        Ok(record)
    }

    pub async fn list(&self, caller: &Caller, function: &str) -> Result<Vec<TriggerRecord>> {
        caller.require(Role::User)?;
        Ok(self
            .store
            .triggers()
            .await?
            .into_iter()
            .filter(|t| t.function == function)
            .collect())
    }

    pub async fn delete(&self, caller: &Caller, function: &str, id: &str) -> Result<()> {
        caller.require(Role::Developer)?;
        self.store
            .delete_trigger(function, id, &caller.user.id)
            .await?;
        if let Some((_, task)) = self.running.lock().expect("triggers").remove(id) {
            task.abort();
        }
        Ok(())
    }

    /// Stops the tasks of a deleted function (the store dropped its
    /// triggers with it).
    pub fn forget_function(&self, function: &str) {
        self.running
            .lock()
            .expect("triggers")
            .retain(|_, (f, task)| {
                let keep = f != function;
                if !keep {
                    task.abort();
                }
                keep
            });
    }
}
