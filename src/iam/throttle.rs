//! Failed-login throttling per account and per client address: after too
//! many failures inside a window, attempts are refused (429) until the
//! window ends, before any password is hashed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept before expired ones are swept; bounds memory under attack.
const MAX_ENTRIES: usize = 100_000;

struct Window {
    started: Instant,
    failures: u32,
}

struct Counter {
    limit: u32,
    entries: HashMap<String, Window>,
}

impl Counter {
    fn locked_for(&self, key: &str, now: Instant, window: Duration) -> Option<Duration> {
        let w = self.entries.get(key)?;
        let ends = w.started + window;
        (w.failures >= self.limit && now < ends).then(|| ends - now)
    }

    fn fail(&mut self, key: &str, now: Instant, window: Duration) {
        if self.entries.len() >= MAX_ENTRIES && !self.entries.contains_key(key) {
            self.entries.retain(|_, w| now < w.started + window);
            if self.entries.len() >= MAX_ENTRIES {
                return;
            }
        }
        let w = self.entries.entry(key.to_string()).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now >= w.started + window {
            *w = Window {
                started: now,
                failures: 0,
            };
        }
        w.failures += 1;
    }
}

pub struct LoginThrottle {
    window: Duration,
    state: Mutex<(Counter, Counter)>,
}

#[derive(Clone, Copy, Debug)]
pub struct ThrottleLimits {
    pub per_account: u32,
    pub per_address: u32,
    pub window: Duration,
}

impl LoginThrottle {
    pub fn new(limits: ThrottleLimits) -> Self {
        let counter = |limit| Counter {
            limit,
            entries: HashMap::new(),
        };
        LoginThrottle {
            window: limits.window,
            state: Mutex::new((counter(limits.per_account), counter(limits.per_address))),
        }
    }

    /// How long the caller must wait, if either key is locked out.
    pub fn check(&self, account: &str, address: Option<IpAddr>) -> Option<Duration> {
        let now = Instant::now();
        let state = self.state.lock().expect("throttle lock");
        let by_account = state.0.locked_for(account, now, self.window);
        let by_address = address.and_then(|a| state.1.locked_for(&a.to_string(), now, self.window));
        by_account.max(by_address)
    }

    pub fn record_failure(&self, account: &str, address: Option<IpAddr>) {
        let now = Instant::now();
        let mut state = self.state.lock().expect("throttle lock");
        state.0.fail(account, now, self.window);
        if let Some(a) = address {
            state.1.fail(&a.to_string(), now, self.window);
        }
    }

    pub fn record_success(&self, account: &str) {
        self.state
            .lock()
            .expect("throttle lock")
            .0
            .entries
            .remove(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(per_account: u32, per_address: u32) -> LoginThrottle {
        LoginThrottle::new(ThrottleLimits {
            per_account,
            per_address,
            window: Duration::from_secs(60),
        })
    }

    #[test]
    fn locks_an_account_after_the_limit() {
        let t = throttle(3, 100);
        let ip = Some("127.0.0.1".parse().unwrap());
        for _ in 0..3 {
            assert!(t.check("a@x.io", ip).is_none());
            t.record_failure("a@x.io", ip);
        }
        let wait = t.check("a@x.io", ip).expect("locked");
        assert!(wait <= Duration::from_secs(60));
        assert!(
            t.check("b@x.io", ip).is_none(),
            "other accounts are unaffected"
        );
    }

    #[test]
    fn locks_an_address_across_accounts() {
        let t = throttle(100, 2);
        let ip = Some("10.0.0.1".parse().unwrap());
        t.record_failure("a@x.io", ip);
        t.record_failure("b@x.io", ip);
        assert!(t.check("c@x.io", ip).is_some());
        assert!(t
            .check("c@x.io", Some("10.0.0.2".parse().unwrap()))
            .is_none());
    }

    #[test]
    fn success_clears_the_account() {
        let t = throttle(2, 100);
        t.record_failure("a@x.io", None);
        t.record_success("a@x.io");
        t.record_failure("a@x.io", None);
        assert!(t.check("a@x.io", None).is_none());
    }
}
