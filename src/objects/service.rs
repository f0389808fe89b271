//! `Buckets`: the user-facing bucket API over the `ObjectStore` port, with
//! its roles (developer+ writes, user+ reads) and the size limit.

use std::sync::Arc;

use super::{BucketName, ObjectInfo, ObjectName, ObjectStore, MAX_LIST};
use crate::error::{Error, Result};
use crate::iam::Caller;
use crate::model::Role;

pub struct Buckets {
    store: Arc<dyn ObjectStore>,
    /// `storage.max_object_bytes`.
    pub max_object_bytes: usize,
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
        blocking(move || store.put(&bucket, &name, &data)).await
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
        blocking(move || store.delete(&bucket, &name)).await
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
