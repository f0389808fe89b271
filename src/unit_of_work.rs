//! Work that must finish once it has started, whether or not the request
//! that asked for it is still waiting.
//!
//! hyper drops a handler's future when the client hangs up. A state change
//! that commits to the store and is then dropped before its follow-ups run
//! (snapshot swap, cache invalidation, and later bus and stream events)
//! leaves the process disagreeing with its own database. So every state
//! change runs as its own task, holding everything it needs, and the request
//! only awaits its handle: dropping the request drops the handle, never the
//! work.

use std::future::Future;

/// Runs `work` on its own task to completion and returns its output.
///
/// A panic inside `work` is resumed here, so the HTTP layer's panic
/// recovery still turns it into a 500 for the waiting request.
pub async fn run_to_completion<T, F>(work: F) -> T
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    match tokio::spawn(work).await {
        Ok(output) => output,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only the runtime shutting down cancels a spawned task, and then
        // nobody is left to answer.
        Err(e) => panic!("unit of work cancelled by runtime shutdown: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn dropping_the_waiter_does_not_drop_the_work() {
        let finished = Arc::new(AtomicBool::new(false));
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let flag = finished.clone();
        let waiter = tokio::spawn(run_to_completion(async move {
            let _ = started_tx.send(());
            tokio::time::sleep(Duration::from_millis(50)).await;
            flag.store(true, Ordering::SeqCst);
            let _ = done_tx.send(());
        }));
        started_rx.await.unwrap();
        waiter.abort();
        done_rx.await.expect("the work ran to its end");
        assert!(finished.load(Ordering::SeqCst));
    }

    #[tokio::test]
    #[should_panic(expected = "boom")]
    async fn a_panic_reaches_the_waiter() {
        run_to_completion(async { panic!("boom") }).await
    }
}
