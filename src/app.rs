//! Wiring: binds resource keys to implementations and opens the stores.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context as _;
use engine::{
    AssetId, Clock, Definitions, Executor, FixedClock, LineageSnapshot, PartitionsContext, PartitionsDef, Resources,
    SystemClock,
};
use lineage::LineageStore;
use resources::{
    AppDb, DevGraphStorage, GraphStorage, LocalObjectStore, ObjectStore, ParquetIoManager, S3ObjectStore, SqliteAppDb,
};

use crate::config::Config;

/// Everything a command needs.
pub struct App {
    pub config: Config,
    pub defs: Definitions,
    pub store: Arc<dyn LineageStore>,
    pub clock: Arc<dyn Clock>,
}

impl App {
    /// Loads definitions and opens the lineage store (no resources: read-only commands).
    pub async fn open(config: Config) -> anyhow::Result<App> {
        let defs = assets::definitions().map_err(|e| crate::user_error(format!("invalid asset definitions: {e}")))?;
        let store = lineage::open(&config.lineage_url)
            .await
            .with_context(|| format!("opening lineage store {}", lineage::redact_url(&config.lineage_url)))?;
        let clock: Arc<dyn Clock> = match config.now {
            Some(now) => Arc::new(FixedClock(now)),
            None => Arc::new(SystemClock),
        };
        Ok(App { config, defs, store, clock })
    }

    /// Dynamic partition keys of every dynamic definition in the graph.
    pub async fn dynamic_keys(&self) -> anyhow::Result<HashMap<String, Vec<String>>> {
        let mut out = HashMap::new();
        for def in self.defs.graph().assets() {
            if let Some(PartitionsDef::Dynamic { name }) = &def.partitions
                && !out.contains_key(name)
            {
                out.insert(name.clone(), self.store.dynamic_partitions(name).await?);
            }
        }
        Ok(out)
    }

    /// The partitions context now.
    pub async fn partitions_context(&self) -> anyhow::Result<PartitionsContext> {
        Ok(PartitionsContext { now: self.clock.now(), dynamic: self.dynamic_keys().await? })
    }

    /// Which partitions of `assets` are materialized, for the planner.
    pub async fn snapshot(&self, assets: impl IntoIterator<Item = AssetId>) -> anyhow::Result<LineageSnapshot> {
        let mut snapshot = LineageSnapshot::default();
        for id in assets {
            let key = self.defs.graph().asset(id).key.to_string();
            for state in self.store.partition_states(&key).await? {
                if state.current_materialization_id.is_some() {
                    snapshot.insert(id, state.partition_key);
                }
            }
        }
        Ok(snapshot)
    }

    /// Binds the resources and builds an executor.
    pub async fn executor(&self) -> anyhow::Result<Executor> {
        let app_db = SqliteAppDb::open(&self.config.app_db_path)
            .await
            .with_context(|| format!("opening app database {}", self.config.app_db_path.display()))?;
        let graphs = DevGraphStorage::new(self.config.home.join("graphs")).with_latency(self.config.dev_latency);
        if app_db.seed_demo(self.clock.now()).await? {
            let sizes: Vec<(&str, u64)> =
                resources::appdb::DEMO_TENANTS.iter().flat_map(|t| t.3.iter().copied()).collect();
            graphs.seed(&sizes).context("seeding demo graph folders")?;
            tracing::info!(
                message = "Seeded the embedded app database with demo tenants (dev source).",
                app_db = %self.config.app_db_path.display(),
            );
        }
        let app_db: Arc<dyn AppDb> = Arc::new(app_db);
        let graph_storage: Arc<dyn GraphStorage> = Arc::new(graphs);
        let resources = Resources::default().with(assets::APP_DB, app_db).with(assets::GRAPH_STORAGE, graph_storage);
        let objects: Arc<dyn ObjectStore> = match &self.config.s3 {
            Some(s3) => Arc::new(S3ObjectStore::connect(s3).await),
            None => Arc::new(LocalObjectStore::new(&self.config.storage_dir)),
        };
        let io = ParquetIoManager::new(objects);
        Ok(Executor {
            defs: self.defs.clone(),
            store: self.store.clone(),
            io: Arc::new(io),
            resources,
            clock: self.clock.clone(),
            dynamic: self.dynamic_keys().await?,
        })
    }
}
