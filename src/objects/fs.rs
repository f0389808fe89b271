//! The local-filesystem adapter of `ObjectStore`: bucket `b`, object `x/y`
//! is the file `<base>/buckets/b/x/y`. Writes go to a temporary file under
//! `<base>/tmp` (same file system), are fsynced, then renamed into place and
//! the directory fsynced, so a crash leaves the old object or the new one.
//! Names reach this file already checked (`BucketName`, `ObjectName`), so a
//! path built here never leaves the base directory.

use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::{sha256_hex, BucketName, ObjectInfo, ObjectName, ObjectStore};
use crate::error::{Error, Result};

pub struct FsObjectStore {
    buckets: PathBuf,
    tmp: PathBuf,
}

impl FsObjectStore {
    /// Creates the directories it needs under `base` and clears temporary
    /// files a crash may have left behind.
    pub fn open(base: &Path) -> std::io::Result<Self> {
        let buckets = base.join("buckets");
        let tmp = base.join("tmp");
        fs::create_dir_all(&buckets)?;
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        Ok(FsObjectStore { buckets, tmp })
    }

    fn bucket_dir(&self, bucket: &BucketName) -> PathBuf {
        self.buckets.join(bucket.as_str())
    }

    fn object_path(&self, bucket: &BucketName, name: &ObjectName) -> PathBuf {
        let mut path = self.bucket_dir(bucket);
        path.extend(name.segments());
        path
    }
}

/// The kinds callers can act on; the OS text stays in the log.
fn io_err(what: &str, e: std::io::Error) -> Error {
    match e.kind() {
        ErrorKind::NotFound => Error::NotFound(what.to_string()),
        ErrorKind::NotADirectory | ErrorKind::IsADirectory | ErrorKind::AlreadyExists => {
            Error::Conflict(format!(
                "{what} clashes with another object's name (an object cannot also be a prefix)"
            ))
        }
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => {
            Error::Unavailable("the object storage is full".into())
        }
        _ => Error::internal(format!("object storage, {what}: {e}")),
    }
}

fn modified(meta: &fs::Metadata) -> DateTime<Utc> {
    meta.modified()
        .map(DateTime::<Utc>::from)
        .unwrap_or_default()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl ObjectStore for FsObjectStore {
    fn put(
        &self,
        bucket: &BucketName,
        name: &ObjectName,
        data: &[u8],
    ) -> Result<(ObjectInfo, bool)> {
        let what = format!("object {bucket}/{name}");
        let bucket_dir = self.bucket_dir(bucket);
        let created = !bucket_dir.exists();
        let target = self.object_path(bucket, name);
        let parent = target.parent().expect("an object path has a parent");
        fs::create_dir_all(parent).map_err(|e| io_err(&what, e))?;
        let tmp = self.tmp.join(uuid::Uuid::new_v4().to_string());
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&tmp)?;
            file.write_all(data)?;
            file.sync_all()?;
            fs::rename(&tmp, &target)?;
            sync_dir(parent)
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(&what, e));
        }
        if created {
            let _ = sync_dir(&self.buckets);
        }
        let meta = fs::metadata(&target).map_err(|e| io_err(&what, e))?;
        Ok((
            ObjectInfo {
                name: name.as_str().to_string(),
                size: data.len() as u64,
                sha256: Some(sha256_hex(data)),
                modified_at: modified(&meta),
            },
            created,
        ))
    }

    fn get(&self, bucket: &BucketName, name: &ObjectName) -> Result<(ObjectInfo, Vec<u8>)> {
        let what = format!("object {bucket}/{name}");
        let path = self.object_path(bucket, name);
        let mut file = File::open(&path).map_err(|e| io_err(&what, e))?;
        let meta = file.metadata().map_err(|e| io_err(&what, e))?;
        if !meta.is_file() {
            return Err(Error::NotFound(what));
        }
        let mut data = Vec::with_capacity(meta.len() as usize);
        file.read_to_end(&mut data).map_err(|e| io_err(&what, e))?;
        Ok((
            ObjectInfo {
                name: name.as_str().to_string(),
                size: data.len() as u64,
                sha256: Some(sha256_hex(&data)),
                modified_at: modified(&meta),
            },
            data,
        ))
    }

    fn delete(&self, bucket: &BucketName, name: &ObjectName) -> Result<bool> {
        let what = format!("object {bucket}/{name}");
        let path = self.object_path(bucket, name);
        if !fs::metadata(&path).map_err(|e| io_err(&what, e))?.is_file() {
            return Err(Error::NotFound(what));
        }
        fs::remove_file(&path).map_err(|e| io_err(&what, e))?;
        // Empty prefixes go with their last object, and so does an empty
        // bucket: `remove_dir` only removes empty directories, so a racing
        // put into one simply keeps it.
        let bucket_dir = self.bucket_dir(bucket);
        let mut dir = path.parent().map(Path::to_path_buf);
        while let Some(d) = dir {
            if !d.starts_with(&bucket_dir) || fs::remove_dir(&d).is_err() {
                break;
            }
            if d == bucket_dir {
                return Ok(true);
            }
            dir = d.parent().map(Path::to_path_buf);
        }
        Ok(false)
    }

    fn list(&self, bucket: &BucketName, prefix: &str, limit: usize) -> Result<Vec<ObjectInfo>> {
        let root = self.bucket_dir(bucket);
        let mut found = Vec::new();
        let mut pending = vec![(root.clone(), String::new())];
        while let Some((dir, at)) = pending.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == ErrorKind::NotFound && dir == root => {
                    return Err(Error::NotFound(format!("bucket {bucket}")))
                }
                Err(e) => return Err(io_err(&format!("bucket {bucket}"), e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| io_err(&format!("bucket {bucket}"), e))?;
                let Ok(file_name) = entry.file_name().into_string() else {
                    continue;
                };
                let name = format!("{at}{file_name}");
                let meta = entry.metadata().map_err(|e| io_err(&name, e))?;
                if meta.is_dir() {
                    let child = format!("{name}/");
                    // Only descend where the prefix can still match.
                    if child.starts_with(prefix) || prefix.starts_with(&child) {
                        pending.push((entry.path(), child));
                    }
                } else if meta.is_file() && name.starts_with(prefix) {
                    found.push(ObjectInfo {
                        name,
                        size: meta.len(),
                        sha256: None,
                        modified_at: modified(&meta),
                    });
                }
            }
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        found.truncate(limit);
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_list_delete_stay_inside_the_base() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsObjectStore::open(dir.path()).unwrap();
        let b = BucketName::parse("reports").unwrap();
        let n = ObjectName::parse("2026/q1.csv").unwrap();
        let (info, created) = store.put(&b, &n, b"a,b\n").unwrap();
        assert!(created);
        assert_eq!(info.sha256.as_deref(), Some(sha256_hex(b"a,b\n").as_str()));
        let (_, again) = store.put(&b, &n, b"c\n").unwrap();
        assert!(!again);
        assert_eq!(store.get(&b, &n).unwrap().1, b"c\n");
        let listed = store.list(&b, "2026/", 10).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, "2026/q1.csv");
        assert!(store.list(&b, "2025", 10).unwrap().is_empty());
        assert!(matches!(
            store.put(&b, &ObjectName::parse("2026/q1.csv/x").unwrap(), b""),
            Err(Error::Conflict(_))
        ));
        assert!(
            store.delete(&b, &n).unwrap(),
            "the bucket went with its last object"
        );
        assert!(matches!(store.get(&b, &n), Err(Error::NotFound(_))));
        assert!(!dir.path().join("buckets/reports").exists());
        // Nothing was written outside buckets/ and tmp/.
        let mut top: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        top.sort();
        assert_eq!(top, ["buckets", "tmp"]);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }
}
