//! Wiring: binds resource keys to implementations and opens the stores.

use std::sync::Arc;

use anyhow::Context as _;
use engine::{
    AssetId, Clock, Definitions, Executor, FixedClock, LineageSnapshot, PartitionsContext, Resources, SystemClock,
};
use lineage::LineageStore;
use resources::{
    AppDb, DevGraphStorage, GraphStorage, LocalObjectStore, ObjectStore, ParquetIoManager, PgAppDb, S3ObjectStore,
    SqliteAppDb,
};

use crate::config::{AppDbLocation, Config};

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

    /// The partitions context now, with every dynamic definition's keys.
    pub async fn partitions_context(&self) -> anyhow::Result<PartitionsContext> {
        Ok(PartitionsContext::load(&*self.store, self.defs.graph(), None, self.clock.now()).await?)
    }

    /// Which partitions of `assets` are materialized, for the planner.
    pub async fn snapshot(&self, assets: impl IntoIterator<Item = AssetId>) -> anyhow::Result<LineageSnapshot> {
        Ok(engine::backfill::CellStates::load(&*self.store, self.defs.graph(), assets).await?.snapshot())
    }

    /// Opens the configured app database (migrating it).
    pub async fn app_db(&self) -> anyhow::Result<Arc<dyn AppDb>> {
        Ok(match &self.config.app_db {
            AppDbLocation::Sqlite(path) => Arc::new(
                SqliteAppDb::open(path).await.with_context(|| format!("opening app database {}", path.display()))?,
            ),
            AppDbLocation::Postgres(url) => {
                let shown = lineage::redact_url(url);
                Arc::new(
                    PgAppDb::connect(url, shown.clone())
                        .await
                        .with_context(|| format!("opening app database {shown}"))?,
                )
            }
        })
    }

    /// The labeled dev graph source under `$ROBO_ASSETS_HOME/graphs`.
    pub fn dev_graphs(&self) -> DevGraphStorage {
        DevGraphStorage::new(self.config.home.join("graphs")).with_latency(self.config.dev_latency)
    }

    /// Seeds the demo tenants and their graph folders if the app database has no tenants.
    pub async fn seed_demo(&self, app_db: &dyn AppDb, graphs: &DevGraphStorage) -> anyhow::Result<bool> {
        if !app_db.seed_demo(self.clock.now()).await? {
            return Ok(false);
        }
        let sizes: Vec<(&str, u64)> = resources::appdb::DEMO_TENANTS.iter().flat_map(|t| t.3.iter().copied()).collect();
        graphs.seed(&sizes).context("seeding demo graph folders")?;
        tracing::info!(
            message = "Seeded the app database with demo tenants (dev source).",
            app_db = %app_db.describe(),
        );
        Ok(true)
    }

    /// Binds the resources and builds an executor.
    pub async fn executor(&self) -> anyhow::Result<Executor> {
        let app_db = self.app_db().await?;
        let graphs = self.dev_graphs();
        // Only the embedded database is seeded on first use; a production one never is.
        if matches!(self.config.app_db, AppDbLocation::Sqlite(_)) {
            self.seed_demo(&*app_db, &graphs).await?;
        }
        let graph_storage: Arc<dyn GraphStorage> = match &self.config.graph_api {
            Some(api) => Arc::new(api.clone()),
            None => Arc::new(graphs),
        };
        let objects: Arc<dyn ObjectStore> = match &self.config.s3 {
            Some(s3) => Arc::new(S3ObjectStore::connect(s3).await),
            None => Arc::new(LocalObjectStore::new(&self.config.storage_dir)),
        };
        let resources = Resources::default()
            .with(assets::APP_DB, app_db)
            .with(assets::GRAPH_STORAGE, graph_storage)
            .with(assets::REPORTS, objects.clone());
        let io = ParquetIoManager::new(objects);
        Ok(Executor {
            defs: self.defs.clone(),
            store: self.store.clone(),
            io: Arc::new(io),
            resources,
            clock: self.clock.clone(),
        })
    }
}
