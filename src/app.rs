//! Wiring: opens the lineage store and binds the project's resources by key.

use std::sync::Arc;

use anyhow::Context as _;
use engine::automation::Automation;
use engine::{AssetId, Clock, Definitions, Executor, FixedClock, PartitionsContext, Resources, SystemClock};
use lineage::LineageStore;
use resources::{LocalObjectStore, ObjectStore, ParquetIoManager, S3ObjectStore};

use crate::config::Config;
use crate::project::{Deployment, OBJECT_STORE, Setup};
use crate::user_error;

/// Everything a command needs.
pub struct App {
    pub config: Config,
    pub defs: Definitions,
    pub automation: Automation,
    pub store: Arc<dyn LineageStore>,
    pub clock: Arc<dyn Clock>,
    deployment: Deployment,
    /// The executor [`App::executor`] built: one set of resources a process, dropped with the
    /// `App` (never, for a command that ends the process: see "Exit" in ARCHITECTURE.md).
    executor: tokio::sync::OnceCell<Executor>,
}

impl App {
    /// Opens the lineage store for a validated project (no resources yet: read-only commands
    /// never build them).
    pub async fn open(config: Config, deployment: Deployment) -> anyhow::Result<App> {
        let store = lineage::open(&config.lineage_url)
            .await
            .with_context(|| format!("opening lineage store {}", lineage::redact_url(&config.lineage_url)))?;
        let clock: Arc<dyn Clock> = match config.now {
            Some(now) => Arc::new(FixedClock(now)),
            None => Arc::new(SystemClock),
        };
        let (defs, mut automation) = (deployment.defs.clone(), deployment.automation.clone());
        if let Some(max) = config.max_upstream_fill {
            automation.max_upstream_fill = max;
        }
        Ok(App { config, defs, automation, store, clock, deployment, executor: tokio::sync::OnceCell::new() })
    }

    /// The partitions context now, with every dynamic definition's keys.
    pub async fn partitions_context(&self) -> anyhow::Result<PartitionsContext> {
        Ok(PartitionsContext::load(&*self.store, self.defs.graph(), None, self.clock.now()).await?)
    }

    /// The partitions context now, with the keys of the dynamic definitions `assets` use only.
    pub async fn partitions_context_of(&self, assets: &[AssetId]) -> anyhow::Result<PartitionsContext> {
        Ok(PartitionsContext::load(&*self.store, self.defs.graph(), Some(assets), self.clock.now()).await?)
    }

    /// What resource factories are given: the state directory, the clock, the object store.
    pub async fn setup(&self) -> Setup {
        let objects: Arc<dyn ObjectStore> = match &self.config.s3 {
            Some(s3) => Arc::new(S3ObjectStore::connect(s3).await),
            None => Arc::new(LocalObjectStore::new(&self.config.storage_dir)),
        };
        Setup { home: self.config.home.clone(), clock: self.clock.clone(), objects, store: self.store.clone() }
    }

    /// Where OpenLineage events say they come from: the configured namespace, and the object
    /// store's as the datasets' (`s3://bucket`, or the storage directory as a `file://` URL).
    pub fn openlineage_config(&self) -> engine::openlineage::OpenLineageConfig {
        let dataset_namespace = match &self.config.s3 {
            Some(s3) => format!("s3://{}", s3.bucket),
            None => {
                let dir =
                    std::path::absolute(&self.config.storage_dir).unwrap_or_else(|_| self.config.storage_dir.clone());
                format!("file://{}", dir.display())
            }
        };
        engine::openlineage::OpenLineageConfig {
            namespace: self.config.openlineage_namespace.clone(),
            dataset_namespace,
        }
    }

    /// The OpenLineage receiver, if `OPENLINEAGE_URL` names one.
    pub fn openlineage_transport(&self) -> anyhow::Result<Option<Arc<dyn engine::openlineage::Transport>>> {
        let Some(url) = &self.config.openlineage_url else { return Ok(None) };
        let transport = resources::openlineage::transport(
            url,
            self.config.openlineage_api_key.clone(),
            std::time::Duration::from_secs(10),
        )
        .map_err(user_error)?;
        Ok(Some(Arc::new(transport)))
    }

    /// The failure-alert webhook, if `ROBO_ASSETS_ALERT_WEBHOOK` names one.
    pub fn alert_transport(&self) -> anyhow::Result<Option<Arc<dyn engine::delivery::Transport>>> {
        let Some(url) = &self.config.alert_webhook else { return Ok(None) };
        let transport =
            resources::webhook::alert_webhook(url.expose(), std::time::Duration::from_secs(10)).map_err(user_error)?;
        Ok(Some(Arc::new(transport)))
    }

    /// What alerts say besides the store's facts: the web view's address for links.
    pub fn alert_config(&self) -> engine::alert::AlertConfig {
        engine::alert::AlertConfig::new(self.config.ui_url.clone())
    }

    /// An executor around every resource the project binds, built once, at the first call, and
    /// kept by the `App`: a process has one set of resources, and a command that ends the process
    /// never closes them (each app-database connection was closed on a thread of its own started
    /// as the process exited).
    pub async fn executor(&self) -> anyhow::Result<Executor> {
        Ok(self.executor.get_or_try_init(|| self.build_executor()).await?.clone())
    }

    async fn build_executor(&self) -> anyhow::Result<Executor> {
        let setup = self.setup().await;
        let mut resources = Resources::default().with(OBJECT_STORE, setup.objects.clone());
        for binding in &self.deployment.bindings {
            let value =
                (binding.make)(setup.clone()).await.with_context(|| format!("binding resource {:?}", binding.key))?;
            resources.insert(binding.key, value);
        }
        Ok(Executor {
            defs: self.defs.clone(),
            store: self.store.clone(),
            io: Arc::new(ParquetIoManager::new(setup.objects)),
            resources,
            clock: self.clock.clone(),
        })
    }

    /// Runs one of the project's own commands.
    pub async fn run_project_command(&self, name: &str, matches: clap::ArgMatches) -> anyhow::Result<()> {
        let (_, run) = self.deployment.commands.iter().find(|(n, _)| n == name).expect("parsed as a project command");
        run(self.setup().await, matches).await
    }

    /// Seeds the project's demo data (`demo seed`).
    pub async fn seed_demo(&self) -> anyhow::Result<String> {
        let seed = self.deployment.demo.as_ref().ok_or_else(|| user_error("this project defines no demo data"))?;
        seed(self.setup().await).await
    }
}
