//! How much storage each graph uses.
//!
//! Production asks the Graph API (`GRAPH_API_URL`). The embedded mode uses [`DevGraphStorage`], a
//! **dev source** that reports the apparent byte size of `$ROBO_ASSETS_HOME/graphs/<graph_id>`,
//! seeded with sparse files so demo graphs have realistic sizes without using disk.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

/// Why sizes could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GraphStorageError {
    /// The dev source could not read a folder.
    #[error("reading storage of graph {graph_id} from {source_name}")]
    Io {
        /// The graph.
        graph_id: String,
        /// The source, described.
        source_name: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The Graph API failed (see its outcomes).
    #[error(transparent)]
    Api(#[from] crate::graph_api::GraphApiError),
}

/// Reports each graph's storage in bytes.
#[async_trait]
pub trait GraphStorage: Send + Sync + 'static {
    /// The size of each graph, in the order given; `None` for a graph the source does not know
    /// (deleted since the app database listed it).
    async fn storage_bytes(&self, graph_ids: &[String]) -> Result<Vec<Option<u64>>, GraphStorageError>;
    /// Creates a graph for a tenant; an existing one counts as created. Returns whether this
    /// call created it.
    async fn create_graph(&self, graph_id: &str, tenant_id: &str) -> Result<bool, GraphStorageError>;
    /// What the source is; dev sources say so.
    fn describe(&self) -> String;
}

/// The dev source: folder sizes under a root directory.
#[derive(Debug, Clone)]
pub struct DevGraphStorage {
    root: PathBuf,
    latency: std::time::Duration,
}

impl DevGraphStorage {
    /// A dev source over `root` (`$ROBO_ASSETS_HOME/graphs`).
    pub fn new(root: impl Into<PathBuf>) -> DevGraphStorage {
        DevGraphStorage { root: root.into(), latency: std::time::Duration::ZERO }
    }

    /// Makes every read take at least `latency`, like a remote Graph API would (set from
    /// `ROBO_ASSETS_DEV_LATENCY_MS`; crash tests use it to kill a worker mid-step).
    pub fn with_latency(mut self, latency: std::time::Duration) -> DevGraphStorage {
        self.latency = latency;
        self
    }

    /// Creates `root/<graph>/data.bin` as a sparse file of `bytes` for each graph that has no
    /// folder yet; returns how many it created.
    pub fn seed(&self, graphs: &[(&str, u64)]) -> std::io::Result<usize> {
        let mut created = 0;
        for (graph, bytes) in graphs {
            let dir = self.root.join(graph);
            if dir.exists() {
                continue;
            }
            std::fs::create_dir_all(&dir)?;
            let f = std::fs::File::create(dir.join("data.bin"))?;
            f.set_len(*bytes)?;
            created += 1;
        }
        Ok(created)
    }
}

fn dir_size(path: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    let entries = match std::fs::read_dir(path) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() { dir_size(&entry.path())? } else { meta.len() };
    }
    Ok(total)
}

#[async_trait]
impl GraphStorage for DevGraphStorage {
    async fn storage_bytes(&self, graph_ids: &[String]) -> Result<Vec<Option<u64>>, GraphStorageError> {
        tokio::time::sleep(self.latency).await;
        let root = self.root.clone();
        let ids = graph_ids.to_vec();
        let source_name = self.describe();
        tokio::task::spawn_blocking(move || {
            ids.iter()
                .map(|id| {
                    dir_size(&root.join(id)).map(Some).map_err(|source| GraphStorageError::Io {
                        graph_id: id.clone(),
                        source_name: source_name.clone(),
                        source,
                    })
                })
                .collect()
        })
        .await
        .expect("size task does not panic")
    }

    async fn create_graph(&self, graph_id: &str, _tenant_id: &str) -> Result<bool, GraphStorageError> {
        let dir = self.root.join(graph_id);
        if dir.exists() {
            return Ok(false);
        }
        std::fs::create_dir_all(&dir).map_err(|source| GraphStorageError::Io {
            graph_id: graph_id.to_owned(),
            source_name: self.describe(),
            source,
        })?;
        Ok(true)
    }

    fn describe(&self) -> String {
        format!("dev source: folder sizes under {}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sizes_are_apparent_folder_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let source = DevGraphStorage::new(dir.path());
        assert_eq!(source.seed(&[("g1", 5_000_000_000), ("g2", 10)]).unwrap(), 2);
        assert_eq!(source.seed(&[("g1", 1)]).unwrap(), 0, "existing folders are left alone");
        std::fs::create_dir_all(dir.path().join("g2/sub")).unwrap();
        std::fs::write(dir.path().join("g2/sub/extra"), b"12345").unwrap();
        let sizes = source.storage_bytes(&["g1".into(), "g2".into(), "missing".into()]).await.unwrap();
        assert_eq!(sizes, [Some(5_000_000_000), Some(15), Some(0)]);
        assert!(source.describe().starts_with("dev source"));
    }
}
