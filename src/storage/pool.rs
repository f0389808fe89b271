//! Connections for SQLite: one writer and a few read-only readers, each used
//! on tokio's blocking threads so no query ever stalls an async worker.
//!
//! SQLite serialises writers anyway, so a single writer connection costs
//! nothing and avoids `SQLITE_BUSY` between our own writes; WAL lets the
//! readers proceed while it writes.

use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::Semaphore;

use crate::error::{Error, Result};

type Opener = Arc<dyn Fn() -> rusqlite::Result<Connection> + Send + Sync>;

/// A fixed set of interchangeable connections.
///
/// The permit and the connection belong to the blocking work, not to the
/// future awaiting it: if the request that asked for a query is dropped
/// (its client hung up), the query still runs to its end holding both, so
/// the single-writer rule and the reader cap hold whatever clients do.
struct Slots {
    permits: Arc<Semaphore>,
    size: u32,
    idle: Arc<Mutex<Vec<Connection>>>,
    open: Opener,
}

impl Slots {
    fn new(size: usize, open: Opener) -> rusqlite::Result<Self> {
        let idle = (0..size)
            .map(|_| open())
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Slots {
            permits: Arc::new(Semaphore::new(size)),
            size: size as u32,
            idle: Arc::new(Mutex::new(idle)),
            open,
        })
    }

    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Unavailable("the database is closed".into()))?;
        let (idle, open) = (self.idle.clone(), self.open.clone());
        let joined = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let taken = idle.lock().expect("pool lock").pop();
            let mut conn = match taken {
                Some(conn) => conn,
                // A connection is lost only when a query panicked; replace
                // it here, on the blocking thread, never on an async worker.
                None => open().map_err(Error::internal)?,
            };
            let result = f(&mut conn);
            idle.lock().expect("pool lock").push(conn);
            result
        })
        .await;
        joined.map_err(|e| Error::internal(format!("database task failed: {e}")))?
    }

    /// Waits for every connection to come back, then closes them all.
    async fn close(&self) {
        if let Ok(all) = self.permits.acquire_many(self.size).await {
            all.forget();
            self.permits.close();
        }
        let conns = std::mem::take(&mut *self.idle.lock().expect("pool lock"));
        for conn in conns {
            if let Err((_, e)) = conn.close() {
                tracing::warn!(error = %e, "closing a database connection failed");
            }
        }
    }
}

pub struct Pool {
    writer: Slots,
    readers: Slots,
}

impl Pool {
    pub fn new(readers: usize, open_writer: Opener, open_reader: Opener) -> rusqlite::Result<Self> {
        Ok(Pool {
            writer: Slots::new(1, open_writer)?,
            readers: Slots::new(readers, open_reader)?,
        })
    }

    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.readers.run(move |c| f(c)).await
    }

    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        self.writer.run(f).await
    }

    /// Readers first, so the writer is the last connection to close and
    /// checkpoints the WAL into the main file.
    pub async fn close(&self) {
        self.readers.close().await;
        self.writer.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn pool(dir: &std::path::Path) -> Arc<Pool> {
        let path = dir.join("pool.db");
        let (w, r) = (path.clone(), path);
        Arc::new(
            Pool::new(
                1,
                Arc::new(move || Connection::open(&w)),
                Arc::new(move || Connection::open(&r)),
            )
            .unwrap(),
        )
    }

    /// Regression: the permit used to belong to the awaiting future, so a
    /// request dropped mid-write released it while its write still ran, and
    /// the next write opened a second writer connection beside it.
    #[tokio::test]
    async fn regression_a_dropped_caller_keeps_the_writer_until_its_work_ends() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(dir.path());
        let writing = Arc::new(AtomicUsize::new(0));
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();

        let (p, w) = (pool.clone(), writing.clone());
        let first = tokio::spawn(async move {
            p.write(move |_| {
                w.fetch_add(1, Ordering::SeqCst);
                let _ = started_tx.send(());
                let _ = release_rx.recv();
                w.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            })
            .await
        });
        started_rx.await.unwrap();
        first.abort();

        let (p, w) = (pool.clone(), writing.clone());
        let second =
            tokio::spawn(async move { p.write(move |_| Ok(w.load(Ordering::SeqCst))).await });
        // Nothing can be awaited here in correct code (the second write must
        // not start); give a wrong pool a moment to start it concurrently.
        tokio::time::sleep(Duration::from_millis(50)).await;
        release_tx.send(()).unwrap();
        let concurrent = second.await.unwrap().unwrap();
        assert_eq!(concurrent, 0, "two writes ran at once");
        assert_eq!(
            pool.writer.idle.lock().unwrap().len(),
            1,
            "one writer connection"
        );
    }
}
