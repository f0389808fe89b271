//! `Buckets`: the user-facing bucket API over the `ObjectStore` port, with
//! its roles (developer+ writes, user+ reads) and the size limit, and the
//! bus events of its writes (`flagbase.bucket.<bucket>.created|deleted`).
//!
//! Objects are not audited and take no change number, so these events do
//! not go through the change feed (whose `seq` is the store's gapless
//! change sequence): they are published on Flagbase's own bus connection
//! (the one function triggers use) once the write is done, best effort,
//! with no `seq`. While the bus is unreachable the client buffers them.

use std::sync::{Arc, OnceLock};

use serde_json::json;

use super::{BucketName, ObjectInfo, ObjectName, ObjectStore, MAX_LIST};
use crate::error::{Error, Result};
use crate::iam::Caller;
use crate::model::Role;

pub struct Buckets {
    store: Arc<dyn ObjectStore>,
    /// `storage.max_object_bytes`.
    pub max_object_bytes: usize,
    /// Flagbase's own bus connection, once the server has one.
    bus: OnceLock<async_nats::Client>,
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::internal(format!("blocking task: {e}")))?
}

impl Buckets {
    pub fn new(store: Arc<dyn ObjectStore>, max_object_bytes: usize) -> Self {
        Buckets {
            store,
            max_object_bytes,
            bus: OnceLock::new(),
        }
    }

    /// Publishes bucket events on `client` from now on.
    pub fn attach_bus(&self, client: async_nats::Client) {
        let _ = self.bus.set(client);
    }

    /// `flagbase.bucket.<bucket>.<what>` with `{bucket, name, size,
    /// sha256, actor, at}` (size and sha256 null for a deletion).
    async fn announce(
        &self,
        what: &str,
        bucket: &str,
        info: Option<&ObjectInfo>,
        name: &str,
        actor: &str,
    ) {
        let Some(client) = self.bus.get() else {
            return;
        };
        let body = json!({
            "bucket": bucket,
            "name": name,
            "size": info.map(|i| i.size),
            "sha256": info.and_then(|i| i.sha256.clone()),
            "actor": actor,
            "at": chrono::Utc::now(),
        });
        let subject = format!("flagbase.bucket.{bucket}.{what}");
        if let Err(e) = client.publish(subject, body.to_string().into()).await {
            tracing::warn!(bucket, error = %e, "cannot publish a bucket event");
        }
    }

    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// Stores an object; the flag says whether the bucket was created.
    pub async fn put(
        &self,
        caller: &Caller,
        bucket: &str,
        name: &str,
        data: Vec<u8>,
    ) -> Result<(ObjectInfo, bool)> {
        caller.require(Role::Developer)?;
        let (bucket, name) = (BucketName::parse(bucket)?, ObjectName::parse(name)?);
        if data.len() > self.max_object_bytes {
            return Err(Error::invalid(
                "body",
                format!(
                    "is larger than {} bytes (storage.max_object_bytes)",
                    self.max_object_bytes
                ),
            ));
        }
        let store = self.store.clone();
        let (b, n) = (bucket.clone(), name.clone());
        let (info, created) = blocking(move || store.put(&b, &n, &data)).await?;
        self.announce(
            "created",
            bucket.as_str(),
            Some(&info),
            name.as_str(),
            &caller.user.id,
        )
        .await;
        Ok((info, created))
    }

    pub async fn get(
        &self,
        caller: &Caller,
        bucket: &str,
        name: &str,
    ) -> Result<(ObjectInfo, Vec<u8>)> {
        caller.require(Role::User)?;
        let (bucket, name) = (BucketName::parse(bucket)?, ObjectName::parse(name)?);
        let store = self.store.clone();
        blocking(move || store.get(&bucket, &name)).await
    }

    /// Deletes an object; the flag says whether its bucket went with it.
    pub async fn delete(&self, caller: &Caller, bucket: &str, name: &str) -> Result<bool> {
        caller.require(Role::Developer)?;
        let (bucket, name) = (BucketName::parse(bucket)?, ObjectName::parse(name)?);
        let store = self.store.clone();
        let (b, n) = (bucket.clone(), name.clone());
        let gone = blocking(move || store.delete(&b, &n)).await?;
        self.announce(
            "deleted",
            bucket.as_str(),
            None,
            name.as_str(),
            &caller.user.id,
        )
        .await;
        Ok(gone)
    }

    pub async fn list(
        &self,
        caller: &Caller,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<ObjectInfo>> {
        caller.require(Role::User)?;
        let bucket = BucketName::parse(bucket)?;
        if prefix.len() > super::MAX_OBJECT_NAME {
            return Err(Error::invalid("prefix", "is too long"));
        }
        let (store, prefix) = (self.store.clone(), prefix.to_string());
        blocking(move || store.list(&bucket, &prefix, MAX_LIST)).await
    }
}
