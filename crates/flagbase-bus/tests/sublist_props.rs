//! The subscription index and `subject::matches` agree with a plain
//! reference matcher on random subscriptions, subjects and removals.

use flagbase_bus::subject;
use flagbase_bus::sublist::Sublist;
use proptest::prelude::*;

/// The definition of NATS wildcard matching, written independently of the
/// crate: `*` takes one token, a final `>` one or more.
fn reference(filter: &[&str], subject: &[&str]) -> bool {
    match (filter.split_first(), subject.split_first()) {
        (None, None) => true,
        (Some((&">", [])), Some(_)) => true,
        (Some((&f, filter)), Some((&s, subject))) => {
            (f == "*" || f == s) && reference(filter, subject)
        }
        _ => false,
    }
}

fn tokens(s: &str) -> Vec<&str> {
    s.split('.').collect()
}

fn filter() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "*"]), 0..4),
        any::<bool>(),
    )
        .prop_map(|(mut parts, full)| {
            if full || parts.is_empty() {
                parts.push(">");
            }
            parts.join(".")
        })
}

fn literal() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..5).prop_map(|p| p.join("."))
}

proptest! {
    #[test]
    fn index_matches_exactly_what_the_reference_matches(
        subs in prop::collection::vec((filter(), prop::option::of(prop::sample::select(vec!["q1", "q2"]))), 0..24),
        removed in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        subjects in prop::collection::vec(literal(), 1..8),
    ) {
        let mut list = Sublist::new();
        for (id, (filter, queue)) in subs.iter().enumerate() {
            list.insert(filter, queue.as_deref(), id).unwrap();
        }
        let mut live: Vec<bool> = vec![true; subs.len()];
        if !subs.is_empty() {
            for index in removed {
                let id = index.index(subs.len());
                let (filter, queue) = &subs[id];
                prop_assert_eq!(list.remove(filter, queue.as_deref(), &id), live[id]);
                live[id] = false;
            }
        }
        prop_assert_eq!(list.len(), live.iter().filter(|l| **l).count());
        for subject in &subjects {
            let found = list.matches(subject);
            let mut plain = found.plain.clone();
            plain.sort_unstable();
            let mut queued: Vec<(String, usize)> = found
                .queues
                .iter()
                .flat_map(|(q, members)| members.iter().map(move |m| (q.to_string(), *m)))
                .collect();
            queued.sort();
            let mut want_plain = Vec::new();
            let mut want_queued = Vec::new();
            for (id, (filter, queue)) in subs.iter().enumerate() {
                let hit = live[id] && reference(&tokens(filter), &tokens(subject));
                prop_assert_eq!(subject::matches(filter, subject), reference(&tokens(filter), &tokens(subject)));
                match (hit, queue) {
                    (true, None) => want_plain.push(id),
                    (true, Some(q)) => want_queued.push((q.to_string(), id)),
                    _ => {}
                }
            }
            want_queued.sort();
            prop_assert_eq!(plain, want_plain);
            prop_assert_eq!(queued, want_queued);
            // One member per group, every plain subscription, nothing else.
            let groups = found.queues.len();
            prop_assert_eq!(found.deliveries(|n| n / 2).count(), found.plain.len() + groups);
        }
    }

    #[test]
    fn publish_subjects_are_valid_subscription_subjects_without_wildcards(s in "[a-c*> .\t]{0,8}") {
        let publish = subject::is_valid_publish_subject(&s);
        prop_assert_eq!(publish, subject::is_valid_subject(&s) && !tokens(&s).iter().any(|t| *t == "*" || *t == ">"));
        if subject::is_valid_subject(&s) {
            prop_assert!(!s.is_empty() && !s.contains(' ') && !s.contains('\t'));
            prop_assert!(tokens(&s).iter().all(|t| !t.is_empty()));
            prop_assert!(!tokens(&s).split_last().unwrap().1.contains(&">"));
        }
    }
}
