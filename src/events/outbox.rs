//! The bounded queue of changes waiting to reach the bus, in commit order.
//!
//! A change leaves the queue only once the bus has confirmed it (`confirm`),
//! so an outage loses nothing as long as the queue has room. When it is
//! full the oldest change is dropped: subscribers that notice the gap in
//! `seq` re-read the store, which is cheaper for them than missing the
//! newest state. Every loss is counted (`lost_since_report`, `lost_total`)
//! so the publisher can say how many, never silently.

use std::collections::VecDeque;

pub struct Outbox<T> {
    queue: VecDeque<T>,
    capacity: usize,
    lost_total: u64,
    lost_unreported: u64,
}

impl<T: Clone> Outbox<T> {
    /// A queue holding at most `capacity` (at least 1) items.
    pub fn new(capacity: usize) -> Outbox<T> {
        let capacity = capacity.max(1);
        Outbox {
            // Grows on demand: a healthy bus keeps it nearly empty.
            queue: VecDeque::with_capacity(capacity.min(64)),
            capacity,
            lost_total: 0,
            lost_unreported: 0,
        }
    }

    /// Queues `item` last; when full, drops the oldest first and returns
    /// true (the drop is counted).
    pub fn push(&mut self, item: T) -> bool {
        let dropped = self.queue.len() >= self.capacity;
        if dropped {
            self.queue.pop_front();
            self.count_lost(1);
        }
        self.queue.push_back(item);
        dropped
    }

    /// Counts `n` items lost before they reached the queue.
    pub fn count_lost(&mut self, n: u64) {
        self.lost_total = self.lost_total.saturating_add(n);
        self.lost_unreported = self.lost_unreported.saturating_add(n);
    }

    /// The oldest `n` items (fewer if fewer are queued), still queued.
    pub fn front(&self, n: usize) -> Vec<T> {
        self.queue.iter().take(n).cloned().collect()
    }

    /// Removes the oldest `n` items: the bus has them.
    pub fn confirm(&mut self, n: usize) {
        let n = n.min(self.queue.len());
        self.queue.drain(..n);
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Losses since the last call (0 if none), for one log line per report.
    pub fn lost_since_report(&mut self) -> u64 {
        std::mem::take(&mut self.lost_unreported)
    }

    /// Losses since the queue was made.
    pub fn lost_total(&self) -> u64 {
        self.lost_total
    }
}

#[cfg(test)]
mod tests {
    use super::Outbox;

    #[test]
    fn items_leave_in_order_and_only_when_confirmed() {
        let mut q = Outbox::new(10);
        for i in 1..=5 {
            assert!(!q.push(i));
        }
        assert_eq!(q.front(3), [1, 2, 3]);
        // Not confirmed (the send failed): the same items come back.
        assert_eq!(q.front(3), [1, 2, 3]);
        q.confirm(3);
        assert_eq!(q.front(10), [4, 5]);
        q.confirm(10);
        assert!(q.is_empty());
        assert_eq!(q.lost_total(), 0);
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts_every_loss() {
        let mut q = Outbox::new(3);
        let dropped: Vec<bool> = (1..=5).map(|i| q.push(i)).collect();
        assert_eq!(dropped, [false, false, false, true, true]);
        assert_eq!(q.front(10), [3, 4, 5]);
        q.count_lost(7);
        assert_eq!(q.lost_since_report(), 9);
        assert_eq!(q.lost_since_report(), 0);
        q.push(6);
        assert_eq!(q.lost_since_report(), 1);
        assert_eq!(q.lost_total(), 10);
        assert_eq!(q.len(), 3);
    }

    #[test]
    fn a_zero_capacity_still_holds_the_newest_item() {
        let mut q = Outbox::new(0);
        q.push("a");
        assert!(q.push("b"));
        assert_eq!(q.front(5), ["b"]);
    }
}
