//! Guess limits for logins and registrations, taken before any password is
//! hashed.
//!
//! An attempt reserves its slot atomically (check and count under one lock)
//! before it is verified, so however many requests arrive at once, at most
//! the limit of them are ever verified; a slot is given back only by a
//! success. Counting is per (account, address) and per address, so a
//! stranger's failures lock out the stranger, never the account's owner
//! logging in from elsewhere; account-wide, attempts are only slowed
//! ([`AccountLanes`]). IPv6 addresses count per /64, the block one host
//! usually controls.
//!
//! Memory is bounded: keys are fixed-size (an address and a keyed 64-bit
//! hash of the normalised email, never the raw input), and each table holds
//! at most `max_entries`. When a table is full of live windows, new keys
//! share one overflow window with the same limit: guessing stays bounded,
//! at the price that newcomers may be refused until windows expire.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Live windows kept per table before new keys share the overflow window.
pub const MAX_ENTRIES: usize = 100_000;

/// The counting unit for a client address: an IPv4 address, or the /64 an
/// IPv6 address belongs to (IPv4-mapped IPv6 counts as IPv4).
pub fn address_group(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// Requests without a known peer (tests, in-process callers) share one key.
const NO_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

struct Window {
    started: Instant,
    /// Slots taken in this window: attempts in flight or failed.
    taken: u32,
}

/// Windows per key; `None` is the overflow key shared by newcomers when the
/// table is full.
struct Table<K> {
    limit: u32,
    max_entries: usize,
    entries: HashMap<Option<K>, Window>,
}

impl<K: Hash + Eq + Copy> Table<K> {
    fn new(limit: u32, max_entries: usize) -> Self {
        Table {
            limit,
            max_entries,
            entries: HashMap::new(),
        }
    }

    /// The key this attempt counts under: its own, or the overflow key when
    /// there is no room for it even after dropping expired windows.
    fn slot_key(&mut self, key: K, now: Instant, window: Duration) -> Option<K> {
        let key = Some(key);
        if self.entries.contains_key(&key) || self.entries.len() < self.max_entries {
            return key;
        }
        self.entries.retain(|_, w| now < w.started + window);
        if self.entries.len() < self.max_entries {
            key
        } else {
            None
        }
    }

    /// How long until `key` has a free slot, if it has none now.
    fn wait(&self, key: &Option<K>, now: Instant, window: Duration) -> Option<Duration> {
        let w = self.entries.get(key)?;
        let ends = w.started + window;
        (w.taken >= self.limit && now < ends).then(|| ends - now)
    }

    fn take(&mut self, key: Option<K>, now: Instant, window: Duration) {
        let w = self.entries.entry(key).or_insert(Window {
            started: now,
            taken: 0,
        });
        if now >= w.started + window {
            *w = Window {
                started: now,
                taken: 0,
            };
        }
        w.taken += 1;
    }

    /// Gives one slot back, if its window is still the one it was taken in.
    fn give_back(&mut self, key: &Option<K>, taken_at: Instant) {
        if let Some(w) = self.entries.get_mut(key) {
            if w.started <= taken_at {
                w.taken = w.taken.saturating_sub(1);
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct ThrottleLimits {
    /// Failures per (account, address group) in a window.
    pub per_account_address: u32,
    /// Failures per address group in a window, across accounts.
    pub per_address: u32,
    pub window: Duration,
    pub max_entries: usize,
}

struct Tables {
    pairs: Table<(u64, IpAddr)>,
    addresses: Table<IpAddr>,
}

pub struct LoginThrottle {
    window: Duration,
    /// Keyed per process, so nobody can aim collisions at an account.
    hasher: RandomState,
    tables: Mutex<Tables>,
}

/// A slot taken by one login attempt. Unless [`Attempt::succeeded`] is
/// called, it stays counted as a failure, also when the request is dropped
/// half-way: hanging up buys no extra guesses.
#[must_use]
pub struct Attempt<'a> {
    throttle: &'a LoginThrottle,
    pair: Option<Option<(u64, IpAddr)>>,
    address: Option<IpAddr>,
    taken_at: Instant,
}

impl Attempt<'_> {
    /// The password was right: the (account, address) window is cleared and
    /// the address gets its slot back. The address is not cleared, or one
    /// valid account would reset an attacker's budget for all the others.
    pub fn succeeded(self) {
        let mut tables = self.throttle.tables.lock().expect("throttle lock");
        if let Some(pair) = &self.pair {
            tables.pairs.entries.remove(pair);
        }
        tables.addresses.give_back(&self.address, self.taken_at);
    }
}

impl LoginThrottle {
    pub fn new(limits: ThrottleLimits) -> Self {
        LoginThrottle {
            window: limits.window,
            hasher: RandomState::new(),
            tables: Mutex::new(Tables {
                pairs: Table::new(limits.per_account_address, limits.max_entries),
                addresses: Table::new(limits.per_address, limits.max_entries),
            }),
        }
    }

    fn account_key(&self, account: &str) -> u64 {
        self.hasher.hash_one(account)
    }

    /// Takes a slot for one attempt on `account` (a normalised email) from
    /// `address`, or says how long to wait. `account` is `None` for input
    /// that cannot name an account (an invalid email): it costs the address
    /// a slot and nothing else.
    pub fn begin(
        &self,
        account: Option<&str>,
        address: Option<IpAddr>,
    ) -> Result<Attempt<'_>, Duration> {
        let now = Instant::now();
        let group = address.map_or(NO_ADDRESS, address_group);
        let account = account.map(|a| self.account_key(a));
        let mut tables = self.tables.lock().expect("throttle lock");
        let address_key = tables.addresses.slot_key(group, now, self.window);
        let pair_key = account.map(|a| tables.pairs.slot_key((a, group), now, self.window));
        let wait_address = tables.addresses.wait(&address_key, now, self.window);
        let wait_pair = pair_key
            .as_ref()
            .and_then(|k| tables.pairs.wait(k, now, self.window));
        if let Some(wait) = wait_address.max(wait_pair) {
            return Err(wait);
        }
        tables.addresses.take(address_key, now, self.window);
        if let Some(k) = pair_key {
            tables.pairs.take(k, now, self.window);
        }
        Ok(Attempt {
            throttle: self,
            pair: pair_key,
            address: address_key,
            taken_at: now,
        })
    }
}

/// Account-wide slowing without locking: verifications for one account run
/// one at a time, however many addresses try it at once. Accounts map onto
/// a fixed set of lanes by a keyed hash, so memory does not grow with the
/// number of accounts tried; two accounts sharing a lane only take turns.
pub struct AccountLanes {
    hasher: RandomState,
    lanes: Vec<Arc<Semaphore>>,
}

impl AccountLanes {
    pub fn new(lanes: usize) -> Self {
        AccountLanes {
            hasher: RandomState::new(),
            lanes: (0..lanes.max(1))
                .map(|_| Arc::new(Semaphore::new(1)))
                .collect(),
        }
    }

    /// Waits for the account's turn; the permit belongs to the caller's
    /// verification and may be moved into the work that does it.
    pub async fn turn(&self, account: &str) -> OwnedSemaphorePermit {
        let lane = self.hasher.hash_one(account) as usize % self.lanes.len();
        self.lanes[lane]
            .clone()
            .acquire_owned()
            .await
            .expect("account lanes are never closed")
    }
}

/// Per-address budget for anonymous registrations: every attempt takes a
/// slot, refused or not, so one address can neither mass-create accounts
/// nor probe which emails are taken faster than the limit.
pub struct RegisterThrottle {
    window: Duration,
    table: Mutex<Table<IpAddr>>,
}

impl RegisterThrottle {
    pub fn new(per_address: u32, window: Duration, max_entries: usize) -> Self {
        RegisterThrottle {
            window,
            table: Mutex::new(Table::new(per_address, max_entries)),
        }
    }

    /// Takes a slot for `address`, or says how long to wait.
    pub fn take(&self, address: Option<IpAddr>) -> Result<(), Duration> {
        let now = Instant::now();
        let group = address.map_or(NO_ADDRESS, address_group);
        let mut table = self.table.lock().expect("throttle lock");
        let key = table.slot_key(group, now, self.window);
        if let Some(wait) = table.wait(&key, now, self.window) {
            return Err(wait);
        }
        table.take(key, now, self.window);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(per_pair: u32, per_address: u32, max_entries: usize) -> LoginThrottle {
        LoginThrottle::new(ThrottleLimits {
            per_account_address: per_pair,
            per_address,
            window: Duration::from_secs(60),
            max_entries,
        })
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn regression_concurrent_attempts_take_at_most_the_limit_of_slots() {
        let t = throttle(5, 1000, MAX_ENTRIES);
        let granted = std::sync::atomic::AtomicU32::new(0);
        let barrier = std::sync::Barrier::new(16);
        std::thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| {
                    barrier.wait();
                    for _ in 0..8 {
                        // Slots are kept (never `succeeded`): every one is a
                        // failed guess.
                        if t.begin(Some("a@x.io"), ip("10.0.0.1")).is_ok() {
                            granted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        assert_eq!(granted.into_inner(), 5);
        assert!(t.begin(Some("a@x.io"), ip("10.0.0.1")).is_err());
    }

    #[test]
    fn regression_a_strangers_failures_do_not_lock_the_owner_out() {
        let t = throttle(3, 100, MAX_ENTRIES);
        for _ in 0..3 {
            let _ = t.begin(Some("a@x.io"), ip("203.0.113.9")).unwrap();
        }
        let wait = t
            .begin(Some("a@x.io"), ip("203.0.113.9"))
            .err()
            .expect("the stranger is locked");
        assert!(wait <= Duration::from_secs(60));
        t.begin(Some("a@x.io"), ip("198.51.100.7"))
            .expect("the owner elsewhere is not")
            .succeeded();
        assert!(t.begin(Some("b@x.io"), ip("203.0.113.9")).is_ok());
    }

    #[test]
    fn an_address_is_limited_across_accounts() {
        let t = throttle(100, 2, MAX_ENTRIES);
        let _ = t.begin(Some("a@x.io"), ip("10.0.0.1")).unwrap();
        let _ = t.begin(None, ip("10.0.0.1")).unwrap();
        assert!(t.begin(Some("c@x.io"), ip("10.0.0.1")).is_err());
        assert!(t.begin(Some("c@x.io"), ip("10.0.0.2")).is_ok());
    }

    #[test]
    fn regression_ipv6_addresses_count_per_64() {
        let t = throttle(100, 2, MAX_ENTRIES);
        let _ = t.begin(Some("a@x.io"), ip("2001:db8:1:2::1")).unwrap();
        let _ = t.begin(Some("a@x.io"), ip("2001:db8:1:2:ffff::9")).unwrap();
        assert!(t.begin(Some("a@x.io"), ip("2001:db8:1:2:abcd::1")).is_err());
        assert!(t.begin(Some("a@x.io"), ip("2001:db8:1:3::1")).is_ok());
        assert_eq!(
            address_group("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn success_clears_the_pair_and_returns_only_its_own_address_slot() {
        let t = throttle(2, 4, MAX_ENTRIES);
        let _ = t.begin(Some("a@x.io"), ip("10.0.0.1")).unwrap();
        t.begin(Some("a@x.io"), ip("10.0.0.1")).unwrap().succeeded();
        // The pair starts again: two more failures are allowed.
        let _ = t.begin(Some("a@x.io"), ip("10.0.0.1")).unwrap();
        let _ = t.begin(Some("a@x.io"), ip("10.0.0.1")).unwrap();
        assert!(t.begin(Some("a@x.io"), ip("10.0.0.1")).is_err());
        // The address holds three failures; the success gave its slot back.
        assert!(t.begin(Some("b@x.io"), ip("10.0.0.1")).is_ok());
        assert!(t.begin(Some("c@x.io"), ip("10.0.0.1")).is_err());
    }

    #[test]
    fn regression_a_full_table_keeps_counting_under_the_overflow_key() {
        let t = throttle(2, 1000, 4);
        for n in 0..4 {
            let _ = t.begin(Some(&format!("{n}@x.io")), ip("10.0.0.1")).unwrap();
        }
        // No room for new pairs: they share one overflow window, which is
        // limited like any other key.
        let _ = t.begin(Some("new1@x.io"), ip("10.0.0.1")).unwrap();
        let _ = t.begin(Some("new2@x.io"), ip("10.0.0.1")).unwrap();
        assert!(t.begin(Some("new3@x.io"), ip("10.0.0.1")).is_err());
        let tables = t.tables.lock().unwrap();
        assert!(tables.pairs.entries.len() <= 5);
    }

    #[test]
    fn registrations_are_limited_per_address() {
        let r = RegisterThrottle::new(2, Duration::from_secs(60), MAX_ENTRIES);
        assert!(r.take(ip("10.0.0.1")).is_ok());
        assert!(r.take(ip("10.0.0.1")).is_ok());
        assert!(r.take(ip("10.0.0.1")).is_err());
        assert!(r.take(ip("10.0.0.2")).is_ok());
    }

    #[tokio::test]
    async fn one_account_verifies_one_at_a_time() {
        let lanes = AccountLanes::new(8);
        let first = lanes.turn("a@x.io").await;
        let second = lanes.turn("a@x.io");
        tokio::pin!(second);
        assert!(futures_poll_once(second.as_mut()).await.is_none());
        drop(first);
        let _ = second.await;
    }

    /// Polls a future once, without waiting.
    async fn futures_poll_once<F: std::future::Future + Unpin>(f: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            out = f => Some(out),
            _ = std::future::ready(()) => None,
        }
    }
}
