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
struct Slots {
    permits: Semaphore,
    size: u32,
    idle: Mutex<Vec<Connection>>,
    open: Opener,
}

impl Slots {
    fn new(size: usize, open: Opener) -> rusqlite::Result<Self> {
        let idle = (0..size)
            .map(|_| open())
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Slots {
            permits: Semaphore::new(size),
            size: size as u32,
            idle: Mutex::new(idle),
            open,
        })
    }

    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Error::Unavailable("the database is closed".into()))?;
        let taken = self.idle.lock().expect("pool lock").pop();
        let mut conn = match taken {
            Some(conn) => conn,
            // A connection is lost only when a query panicked; replace it.
            None => (self.open)().map_err(Error::internal)?,
        };
        let joined = tokio::task::spawn_blocking(move || {
            let result = f(&mut conn);
            (conn, result)
        })
        .await;
        match joined {
            Ok((conn, result)) => {
                self.idle.lock().expect("pool lock").push(conn);
                result
            }
            Err(e) => Err(Error::internal(format!("database task failed: {e}"))),
        }
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
