//! Object stores: put/get/list of whole objects under validated keys.
//!
//! Keys are relative, `/`-separated and may not escape the store's root (`..`, absolute paths,
//! empty segments and backslashes are rejected). Writes are atomic: a reader sees the old object
//! or the new one, never a part.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

/// Why an object store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectStoreError {
    /// The key could escape the store's root or is otherwise unusable.
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// Why.
        reason: &'static str,
    },
    /// No object under this key.
    #[error("no object at {uri}")]
    NotFound {
        /// Where it was looked for.
        uri: String,
    },
    /// A remote store (S3) failed, after the retries transient errors get.
    #[error("object store {op} failed for {uri}: {message}")]
    Remote {
        /// The operation (`put`, `get`, `list`).
        op: &'static str,
        /// The object.
        uri: String,
        /// What the store said.
        message: String,
    },
    /// The filesystem failed.
    #[error("object store io failed at {uri}")]
    Io {
        /// Where.
        uri: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Checks that `key` stays inside the store: relative, no `.`/`..`/empty segments, no `\`.
pub fn validate_key(key: &str) -> Result<(), ObjectStoreError> {
    let invalid = |reason| Err(ObjectStoreError::InvalidKey { key: key.to_owned(), reason });
    if key.is_empty() {
        return invalid("it is empty");
    }
    if key.starts_with('/') {
        return invalid("it is absolute");
    }
    if key.contains('\\') || key.contains('\0') {
        return invalid("it contains a backslash or NUL");
    }
    if key.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
        return invalid("it has an empty, '.' or '..' segment");
    }
    Ok(())
}

/// Whole-object storage.
#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Stores `bytes` under `key` atomically, replacing any previous object; returns its URI.
    async fn put(&self, key: &str, bytes: Bytes) -> Result<String, ObjectStoreError>;
    /// Reads the object under `key`.
    async fn get(&self, key: &str) -> Result<Bytes, ObjectStoreError>;
    /// Reads the objects under `keys`: one result per key, in the keys' order. The default has
    /// up to [`engine::io::LOAD_CONCURRENCY`] reads in flight.
    async fn get_many(&self, keys: &[String]) -> Vec<Result<Bytes, ObjectStoreError>> {
        use futures_util::StreamExt;
        let gets: Vec<_> = keys.iter().map(|key| self.get(key)).collect();
        futures_util::stream::iter(gets).buffered(engine::io::LOAD_CONCURRENCY).collect().await
    }
    /// Keys under `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, ObjectStoreError>;
    /// The URI an object would have.
    fn uri(&self, key: &str) -> String;
    /// Where objects go, for people.
    fn describe(&self) -> String;
}

/// Objects as files under a root directory; writes go to a temp file, then `rename`.
#[derive(Debug, Clone)]
pub struct LocalObjectStore {
    root: PathBuf,
}

impl LocalObjectStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> LocalObjectStore {
        LocalObjectStore { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, ObjectStoreError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }
}

/// Local writes running on the blocking pool (see [`wait_for_local_writes`]).
static LOCAL_WRITES_RUNNING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Waits, up to `limit`, for the local writes still running on the blocking pool: those of a
/// step canceled mid-write go on after their caller is dropped. The process ends without shutting
/// its runtime down (which would wait for them), and a write cut short leaves its temp file
/// behind. Returns at once when none runs, as after almost every command.
pub fn wait_for_local_writes(limit: std::time::Duration) {
    let deadline = std::time::Instant::now() + limit;
    while LOCAL_WRITES_RUNNING.load(std::sync::atomic::Ordering::Acquire) > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Counts a local write as running for as long as it lives.
struct LocalWrite;

impl LocalWrite {
    fn start() -> LocalWrite {
        LOCAL_WRITES_RUNNING.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        LocalWrite
    }
}

impl Drop for LocalWrite {
    fn drop(&mut self) {
        LOCAL_WRITES_RUNNING.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

#[async_trait]
impl ObjectStore for LocalObjectStore {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<String, ObjectStoreError> {
        let path = self.path(key)?;
        let uri = self.uri(key);
        let io = |source| ObjectStoreError::Io { uri: uri.clone(), source };
        let dir = path.parent().expect("a key has a file name").to_owned();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write;
            // A write whose task has not started when the process ends never starts: nothing to
            // wait for. One that has started is waited for at exit.
            let _running = LocalWrite::start();
            std::fs::create_dir_all(&dir)?;
            // A unique temp name in the same directory, so `rename` is atomic.
            let file_name = path.file_name().expect("a key has a file name").to_string_lossy();
            let tmp = dir.join(format!(".{file_name}.{}.{}.tmp", std::process::id(), fastrand::u64(..)));
            let res = (|| {
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(&bytes)?;
                f.sync_data()?;
                std::fs::rename(&tmp, &path)
            })();
            if res.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            res
        })
        .await
        .expect("put task does not panic")
        .map_err(io)?;
        Ok(uri)
    }

    async fn get(&self, key: &str) -> Result<Bytes, ObjectStoreError> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Bytes::from(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(ObjectStoreError::NotFound { uri: self.uri(key) })
            }
            Err(source) => Err(ObjectStoreError::Io { uri: self.uri(key), source }),
        }
    }

    /// Reads the files one after another in one blocking task: a file in the page cache takes
    /// microseconds to read, less than handing each to another thread.
    async fn get_many(&self, keys: &[String]) -> Vec<Result<Bytes, ObjectStoreError>> {
        let paths: Vec<_> = keys.iter().map(|key| (self.uri(key), self.path(key))).collect();
        tokio::task::spawn_blocking(move || {
            paths
                .into_iter()
                .map(|(uri, path)| match std::fs::read(path?) {
                    Ok(bytes) => Ok(Bytes::from(bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ObjectStoreError::NotFound { uri }),
                    Err(source) => Err(ObjectStoreError::Io { uri, source }),
                })
                .collect()
        })
        .await
        .expect("reading files does not panic")
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, ObjectStoreError> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        let uri = self.uri(&prefix);
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let mut stack = vec![root.clone()];
            while let Some(dir) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                for entry in entries {
                    let entry = entry?;
                    let path = entry.path();
                    if entry.file_type()?.is_dir() {
                        stack.push(path);
                    } else if let Ok(rel) = path.strip_prefix(&root) {
                        let key = rel.to_string_lossy().replace('\\', "/");
                        let hidden = key.rsplit('/').next().is_some_and(|n| n.starts_with('.'));
                        if !hidden && key.starts_with(&prefix) {
                            out.push(key);
                        }
                    }
                }
            }
            out.sort();
            Ok(out)
        })
        .await
        .expect("list task does not panic")
        .map_err(|source| ObjectStoreError::Io { uri, source })
    }

    fn uri(&self, key: &str) -> String {
        format!("file://{}", absolute(&self.root.join(key)).display())
    }

    fn describe(&self) -> String {
        format!("local directory {}", absolute(&self.root).display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_list_and_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalObjectStore::new(dir.path());
        let uri = store.put("usage_snapshot/2025-12-15T00:00.parquet", Bytes::from_static(b"one")).await.unwrap();
        assert!(uri.starts_with("file:///") && uri.ends_with("usage_snapshot/2025-12-15T00:00.parquet"));
        store.put("usage_snapshot/2025-12-15T00:00.parquet", Bytes::from_static(b"two")).await.unwrap();
        store.put("storage_bill/2025-12-15.parquet", Bytes::from_static(b"bill")).await.unwrap();
        assert_eq!(&store.get("usage_snapshot/2025-12-15T00:00.parquet").await.unwrap()[..], b"two");
        assert_eq!(store.list("usage_snapshot/").await.unwrap(), ["usage_snapshot/2025-12-15T00:00.parquet"]);
        assert_eq!(store.list("").await.unwrap().len(), 2, "temp files never show up");
        assert!(matches!(store.get("nope.parquet").await, Err(ObjectStoreError::NotFound { .. })));
    }

    /// A write whose caller is dropped mid-write (a canceled step) goes on on the blocking pool;
    /// the process, which ends without shutting its runtime down, waits for it: the file is
    /// written whole and no temp file is left behind.
    #[test]
    fn a_write_whose_caller_is_gone_is_waited_for_at_exit() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalObjectStore::new(dir.path());
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let big = Bytes::from(vec![7u8; 64 << 20]);
        let temp_files = || -> Vec<_> {
            std::fs::read_dir(dir.path().join("big"))
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
                .collect()
        };
        runtime.block_on(async {
            let mut put = std::pin::pin!(store.put("big/file.bin", big));
            // Polled until the write has begun on the blocking pool (its temp file exists), then dropped.
            loop {
                tokio::select! {
                    res = &mut put => panic!("64 MiB written before a temp file was seen: {res:?}"),
                    () = tokio::time::sleep(std::time::Duration::from_micros(200)) => {}
                }
                if !temp_files().is_empty() {
                    break;
                }
            }
        });
        std::mem::forget(runtime);
        wait_for_local_writes(std::time::Duration::from_secs(60));
        assert!(temp_files().is_empty(), "a temp file was left behind");
        assert_eq!(std::fs::metadata(dir.path().join("big/file.bin")).unwrap().len(), 64 << 20);
    }

    #[tokio::test]
    async fn keys_that_escape_the_root_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalObjectStore::new(dir.path().join("storage"));
        for key in ["../x", "a/../../x", "/etc/passwd", "a//b", "a\\b", "", "./a"] {
            let err = store.put(key, Bytes::from_static(b"x")).await.unwrap_err();
            assert!(matches!(err, ObjectStoreError::InvalidKey { .. }), "{key:?} was accepted");
        }
        assert!(!dir.path().join("x").exists());
    }
}
