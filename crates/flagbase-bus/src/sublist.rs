//! The subscription index: a trie of subject tokens, with a `*` and a `>`
//! branch at every level, so matching a published subject costs a walk over
//! its tokens rather than a scan of every subscription.
//!
//! Entries are opaque values (a server stores connection and sid); a queue
//! subscription is filed under its group, and [`Matches::deliveries`] picks
//! one member per group for each message, as nats-server does.

use std::collections::HashMap;

use crate::subject::is_valid_subject;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Invalid Subject")]
pub struct InvalidSubject;

/// The subscriptions of a whole server, keyed by subject.
#[derive(Debug)]
pub struct Sublist<T> {
    root: Level<T>,
    count: usize,
}

#[derive(Debug)]
struct Level<T> {
    literal: HashMap<Box<str>, Node<T>>,
    /// The `*` token.
    one: Option<Box<Node<T>>>,
    /// The `>` token; always a leaf, since `>` must be last.
    rest: Option<Box<Node<T>>>,
}

#[derive(Debug)]
struct Node<T> {
    next: Level<T>,
    plain: Vec<T>,
    queues: Vec<(Box<str>, Vec<T>)>,
}

/// The subscriptions a subject matched: every plain one, and each queue
/// group's members (merged across the subjects that matched).
#[derive(Debug, PartialEq, Eq)]
pub struct Matches<T> {
    pub plain: Vec<T>,
    pub queues: Vec<(Box<str>, Vec<T>)>,
}

impl<T> Default for Level<T> {
    fn default() -> Self {
        Level {
            literal: HashMap::new(),
            one: None,
            rest: None,
        }
    }
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Node {
            next: Level::default(),
            plain: Vec::new(),
            queues: Vec::new(),
        }
    }
}

impl<T> Node<T> {
    fn is_empty(&self) -> bool {
        self.plain.is_empty()
            && self.queues.is_empty()
            && self.next.literal.is_empty()
            && self.next.one.is_none()
            && self.next.rest.is_none()
    }
}

impl<T> Default for Sublist<T> {
    fn default() -> Self {
        Sublist {
            root: Level::default(),
            count: 0,
        }
    }
}

impl<T: Clone + PartialEq> Sublist<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many subscriptions are indexed.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Files `value` under `subject` (and `queue`, for a queue subscription).
    pub fn insert(
        &mut self,
        subject: &str,
        queue: Option<&str>,
        value: T,
    ) -> Result<(), InvalidSubject> {
        if !is_valid_subject(subject) {
            return Err(InvalidSubject);
        }
        let mut level = &mut self.root;
        let mut tokens = subject.split('.').peekable();
        let node = loop {
            let token = tokens.next().expect("a valid subject has a token");
            let node: &mut Node<T> = match token {
                "*" => level.one.get_or_insert_with(Default::default),
                ">" => level.rest.get_or_insert_with(Default::default),
                _ => level.literal.entry(token.into()).or_default(),
            };
            if tokens.peek().is_none() {
                break node;
            }
            level = &mut node.next;
        };
        match queue {
            None => node.plain.push(value),
            Some(queue) => match node.queues.iter_mut().find(|(name, _)| &**name == queue) {
                Some((_, members)) => members.push(value),
                None => node.queues.push((queue.into(), vec![value])),
            },
        }
        self.count += 1;
        Ok(())
    }

    /// Removes one entry equal to `value` filed under `subject` and `queue`;
    /// false if there was none. Emptied branches are pruned.
    pub fn remove(&mut self, subject: &str, queue: Option<&str>, value: &T) -> bool {
        let tokens: Vec<&str> = subject.split('.').collect();
        let removed = remove_in(&mut self.root, &tokens, queue, value);
        if removed {
            self.count -= 1;
        }
        removed
    }

    /// Every subscription whose subject matches `subject`, its tokens taken
    /// literally (a published `*` is no wildcard). Like nats-server, a subject
    /// with an empty token matches nothing, not even `>`.
    pub fn matches(&self, subject: &str) -> Matches<T> {
        let mut found = Matches {
            plain: Vec::new(),
            queues: Vec::new(),
        };
        // Tokens on the stack for the usual short subjects: this runs for
        // every published message.
        let mut stack = [""; 16];
        let mut count = 0;
        for token in subject.split('.') {
            if token.is_empty() {
                return found;
            }
            if count == stack.len() {
                let tokens: Vec<&str> = subject.split('.').collect();
                if !tokens.contains(&"") {
                    match_in(&self.root, &tokens, &mut found);
                }
                return found;
            }
            stack[count] = token;
            count += 1;
        }
        match_in(&self.root, &stack[..count], &mut found);
        found
    }
}

fn remove_in<T: PartialEq>(
    level: &mut Level<T>,
    tokens: &[&str],
    queue: Option<&str>,
    value: &T,
) -> bool {
    let Some((&token, rest)) = tokens.split_first() else {
        return false;
    };
    let removed_from = |node: &mut Node<T>| -> bool {
        if rest.is_empty() {
            remove_value(node, queue, value)
        } else {
            remove_in(&mut node.next, rest, queue, value)
        }
    };
    match token {
        "*" | ">" => {
            let slot = if token == "*" {
                &mut level.one
            } else {
                &mut level.rest
            };
            let Some(node) = slot.as_deref_mut() else {
                return false;
            };
            let removed = removed_from(node);
            if node.is_empty() {
                *slot = None;
            }
            removed
        }
        _ => {
            let Some(node) = level.literal.get_mut(token) else {
                return false;
            };
            let removed = removed_from(node);
            if node.is_empty() {
                level.literal.remove(token);
            }
            removed
        }
    }
}

fn remove_value<T: PartialEq>(node: &mut Node<T>, queue: Option<&str>, value: &T) -> bool {
    let list = match queue {
        None => &mut node.plain,
        Some(queue) => match node.queues.iter_mut().find(|(name, _)| &**name == queue) {
            Some((_, members)) => members,
            None => return false,
        },
    };
    let Some(at) = list.iter().position(|v| v == value) else {
        return false;
    };
    list.swap_remove(at);
    node.queues.retain(|(_, members)| !members.is_empty());
    true
}

fn match_in<T: Clone>(level: &Level<T>, tokens: &[&str], found: &mut Matches<T>) {
    let Some((&token, rest)) = tokens.split_first() else {
        return;
    };
    // `>` matches this token and everything after it.
    if let Some(node) = &level.rest {
        collect(node, found);
    }
    let mut visit = |node: &Node<T>| {
        if rest.is_empty() {
            collect(node, found);
        } else {
            match_in(&node.next, rest, found);
        }
    };
    if let Some(node) = &level.one {
        visit(node);
    }
    if let Some(node) = level.literal.get(token) {
        visit(node);
    }
}

fn collect<T: Clone>(node: &Node<T>, found: &mut Matches<T>) {
    found.plain.extend(node.plain.iter().cloned());
    for (name, members) in &node.queues {
        match found.queues.iter_mut().find(|(have, _)| have == name) {
            Some((_, all)) => all.extend(members.iter().cloned()),
            None => found.queues.push((name.clone(), members.clone())),
        }
    }
}

impl<T> Matches<T> {
    /// The entries one message goes to: every plain subscription and one
    /// member of each queue group, the one at index `choose(group size)`
    /// (the caller brings the randomness; an index out of range wraps).
    pub fn deliveries(&self, mut choose: impl FnMut(usize) -> usize) -> impl Iterator<Item = &T> {
        let picked = self
            .queues
            .iter()
            .map(move |(_, members)| &members[choose(members.len()) % members.len()]);
        self.plain.iter().chain(picked)
    }

    pub fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.queues.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(mut v: Vec<u32>) -> Vec<u32> {
        v.sort_unstable();
        v
    }

    #[test]
    fn matches_literal_and_wildcard_subscriptions() {
        let mut list = Sublist::new();
        for (i, subject) in ["a.b.c", "a.*.c", "a.>", ">", "a.b", "*.b.*", "x.y"]
            .iter()
            .enumerate()
        {
            list.insert(subject, None, i as u32).unwrap();
        }
        assert_eq!(sorted(list.matches("a.b.c").plain), vec![0, 1, 2, 3, 5]);
        assert_eq!(sorted(list.matches("a.b").plain), vec![2, 3, 4]);
        assert_eq!(sorted(list.matches("a").plain), vec![3]);
        assert_eq!(sorted(list.matches("q.b.r").plain), vec![3, 5]);
        // Published tokens are literal, and empty ones match nothing.
        assert_eq!(sorted(list.matches("*.b.*").plain), vec![3, 5]);
        for empty in ["", ".", "a..c", ".a", "a.b."] {
            assert!(list.matches(empty).is_empty(), "{empty:?}");
        }
        assert_eq!(list.len(), 7);
    }

    #[test]
    fn long_subjects_match_past_the_on_stack_tokens() {
        let long = vec!["t"; 20].join(".");
        let mut list = Sublist::new();
        list.insert(">", None, 1).unwrap();
        list.insert(&long, None, 2).unwrap();
        list.insert(&format!("{long}.*"), None, 3).unwrap();
        list.insert("t.*.>", None, 4).unwrap();
        assert_eq!(sorted(list.matches(&long).plain), vec![1, 2, 4]);
        assert_eq!(
            sorted(list.matches(&format!("{long}.u")).plain),
            vec![1, 3, 4]
        );
        assert!(list.matches(&format!("{long}..u")).is_empty());
    }

    #[test]
    fn refuses_invalid_subjects() {
        let mut list = Sublist::new();
        for bad in ["", "a..b", "a.>.b", "a b", "."] {
            assert_eq!(list.insert(bad, None, 1), Err(InvalidSubject), "{bad:?}");
        }
        assert!(list.is_empty());
    }

    #[test]
    fn queue_groups_merge_across_subjects_and_deliver_one_member_each() {
        let mut list = Sublist::new();
        list.insert("job.*", Some("workers"), 1).unwrap();
        list.insert("job.run", Some("workers"), 2).unwrap();
        list.insert("job.>", Some("audit"), 3).unwrap();
        list.insert("job.run", None, 4).unwrap();
        let found = list.matches("job.run");
        assert_eq!(found.plain, vec![4]);
        assert_eq!(found.queues.len(), 2);
        let first: Vec<u32> = found.deliveries(|_| 0).copied().collect();
        let second: Vec<u32> = found.deliveries(|n| n - 1).copied().collect();
        assert_eq!(sorted(first), vec![1, 3, 4]);
        assert_eq!(sorted(second), vec![2, 3, 4]);
    }

    #[test]
    fn remove_prunes_and_leaves_other_entries() {
        let mut list = Sublist::new();
        list.insert("a.*", None, 1).unwrap();
        list.insert("a.*", None, 2).unwrap();
        list.insert("a.b", Some("q"), 3).unwrap();
        assert!(list.remove("a.*", None, &1));
        assert!(!list.remove("a.*", None, &1));
        assert!(!list.remove("a.b", None, &3), "filed under its queue");
        assert!(list.remove("a.b", Some("q"), &3));
        assert_eq!(list.matches("a.b").plain, vec![2]);
        assert!(list.remove("a.*", None, &2));
        assert!(list.is_empty());
        assert!(list.root.literal.is_empty(), "emptied branches pruned");
    }
}
