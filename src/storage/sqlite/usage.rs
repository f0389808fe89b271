//! Flag usage from the metric_buckets table (exposure rows only).

use async_trait::async_trait;
use rusqlite::params;

use super::{db_err, SqliteStore};
use crate::error::Result;
use crate::storage::usage::{FlagUsage, UsageStore};

#[async_trait]
impl UsageStore for SqliteStore {
    async fn flag_usage(&self, since: i64) -> Result<Vec<FlagUsage>> {
        self.pool
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT flag_key, MAX(bucket),
                                SUM(CASE WHEN bucket >= ?1 THEN count ELSE 0 END)
                           FROM metric_buckets WHERE event_type = ?2
                          GROUP BY flag_key",
                    )
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map(params![since, crate::metrics::EXPOSURE], |r| {
                        Ok(FlagUsage {
                            flag_key: r.get(0)?,
                            last_bucket: r.get(1)?,
                            exposures_since: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                        })
                    })
                    .map_err(db_err)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
            })
            .await
    }
}
