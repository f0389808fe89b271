//! Bucket storage: the `ObjectStore` port and the names it accepts.
//!
//! A bucket holds objects addressed by name. Names are checked here, once,
//! before any adapter sees them, so no adapter can be led outside its root:
//! a bucket name is one segment, an object name one or more `/`-separated
//! segments, and no segment may be `.`, `..`, empty, or carry a separator,
//! a control character or anything but letters, digits, `-`, `_` and `.`.
//! The port speaks in whole objects (bounded by the caller's size limit) so
//! an object-store adapter (S3-compatible) can implement it with one PUT or
//! GET per call; `fs` is the local adapter under `storage.base_path`.

pub mod fs;
mod service;

pub use service::Buckets;

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::{Error, Result};

pub const MAX_BUCKET_NAME: usize = 63;
pub const MAX_SEGMENT: usize = 128;
pub const MAX_OBJECT_NAME: usize = 512;
/// Objects listed in one answer at most.
pub const MAX_LIST: usize = 1000;

/// A checked bucket name. Names starting with `_` are reserved for Flagbase
/// itself (function modules live in `_functions`) and cannot be made from
/// user input.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BucketName(String);

/// A checked object name: `/`-separated segments.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectName(String);

fn check_segment(field: &str, segment: &str, max: usize) -> Result<()> {
    if segment.is_empty() {
        return Err(Error::invalid(field, "has an empty segment"));
    }
    if segment == "." || segment == ".." {
        return Err(Error::invalid(
            field,
            "must not contain `.` or `..` segments",
        ));
    }
    if segment.len() > max {
        return Err(Error::invalid(
            field,
            format!("has a segment longer than {max} bytes"),
        ));
    }
    if !segment
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(Error::invalid(
            field,
            "may only contain letters, digits, '-', '_' and '.' (and '/' between segments of an object name)",
        ));
    }
    Ok(())
}

impl BucketName {
    /// A bucket name from a request.
    pub fn parse(name: &str) -> Result<Self> {
        check_segment("bucket", name, MAX_BUCKET_NAME)?;
        if name.starts_with('_') {
            return Err(Error::invalid(
                "bucket",
                "names starting with '_' are reserved",
            ));
        }
        Ok(BucketName(name.to_string()))
    }

    /// One of Flagbase's own buckets.
    pub(crate) fn internal(name: &'static str) -> Self {
        debug_assert!(
            name.starts_with('_') && check_segment("bucket", name, MAX_BUCKET_NAME).is_ok()
        );
        BucketName(name.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl ObjectName {
    pub fn parse(name: &str) -> Result<Self> {
        if name.len() > MAX_OBJECT_NAME {
            return Err(Error::invalid(
                "name",
                format!("is longer than {MAX_OBJECT_NAME} bytes"),
            ));
        }
        if name.starts_with('/') {
            return Err(Error::invalid("name", "must not be an absolute path"));
        }
        for segment in name.split('/') {
            check_segment("name", segment, MAX_SEGMENT)?;
        }
        Ok(ObjectName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl fmt::Display for BucketName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the store knows of an object.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ObjectInfo {
    pub name: String,
    pub size: u64,
    /// Hex SHA-256 of the content; the HTTP `ETag`. Listings leave it out
    /// (it would mean reading every object).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub modified_at: DateTime<Utc>,
}

/// The bucket storage port. Blocking: callers run it on blocking threads
/// (HTTP handlers through `spawn_blocking`, functions' host calls already
/// run on one).
pub trait ObjectStore: Send + Sync {
    /// Stores `data` atomically: a reader sees the old object or the new
    /// one, never a part. Creates the bucket if needed; the flag says so.
    fn put(
        &self,
        bucket: &BucketName,
        name: &ObjectName,
        data: &[u8],
    ) -> Result<(ObjectInfo, bool)>;
    /// The object's content and description; `NotFound` when absent.
    fn get(&self, bucket: &BucketName, name: &ObjectName) -> Result<(ObjectInfo, Vec<u8>)>;
    /// `NotFound` when absent. Returns whether the bucket is now empty (and
    /// so gone).
    fn delete(&self, bucket: &BucketName, name: &ObjectName) -> Result<bool>;
    /// Objects whose names start with `prefix`, by name, at most `limit`.
    fn list(&self, bucket: &BucketName, prefix: &str, limit: usize) -> Result<Vec<ObjectInfo>>;
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_odd_names_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/../b",
            "/etc/passwd",
            "a//b",
            "a/",
            "a\\b",
            "a\0b",
            "a\nb",
            "ä",
            "a b",
            "..\\..\\x",
            "a/./b",
        ] {
            assert!(ObjectName::parse(bad).is_err(), "{bad:?} was accepted");
        }
        for bad in ["", ".", "..", "a/b", "_functions", "a\\b", "x\u{7f}"] {
            assert!(
                BucketName::parse(bad).is_err(),
                "bucket {bad:?} was accepted"
            );
        }
        assert!(BucketName::parse(&"b".repeat(MAX_BUCKET_NAME + 1)).is_err());
        assert!(ObjectName::parse(&"o".repeat(MAX_SEGMENT + 1)).is_err());
        assert!(ObjectName::parse("reports/2026/q1.csv").is_ok());
        assert!(
            ObjectName::parse("..hidden").is_ok(),
            "a dotted name is not a parent"
        );
        assert!(BucketName::parse("team-a.assets").is_ok());
    }
}
