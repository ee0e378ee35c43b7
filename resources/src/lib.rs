//! Resources: the outside world the assets talk to, behind small traits.
//!
//! * [`object_store`]: where outputs live (a local directory, atomically written).
//! * [`s3`]: the same on S3 or an S3-compatible server.
//! * [`parquet_io`]: the engine's `IoManager` port, writing Parquet through an object store.
//! * [`appdb`]: the RoboSystems application database (tenants, plans, the credits ledger).
//! * [`graph_storage`]: how big each graph is (a labeled dev source in embedded mode).
//! * [`graph_api`]: the Graph API over HTTP: storage per graph, graph creation.
//! * [`qbo`]: QuickBooks Online reports (OAuth with rotating refresh tokens) and their rows.
//! * [`secret`]: credentials that never print.
//! * [`plaid`]: Plaid `/transactions/sync` (live client and labeled dev source), access tokens per item.
//! * [`sec`]: SEC EDGAR filings and XBRL facts as Arrow tables (live API or labeled dev source).
//! * [`webhook`]: JSON posted to an HTTP receiver (retried or refused by status), the transport
//!   of [`openlineage`] events and of failure alerts.
//!
//! Only this crate knows parquet, the object stores and the app database's SQL. It knows nothing
//! of plans, runs or the lineage store.

pub mod appdb;
pub mod graph_api;
pub mod graph_storage;
pub mod object_store;
pub mod openlineage;
pub mod parquet_io;
pub mod plaid;
pub mod qbo;
pub mod s3;
pub mod sec;
pub mod secret;
pub mod webhook;

pub use appdb::{AppDb, PgAppDb, SqliteAppDb};
pub use graph_api::{GraphApiClient, GraphApiConfig, GraphApiError};
pub use graph_storage::{DevGraphStorage, GraphStorage};
pub use object_store::{LocalObjectStore, ObjectStore, ObjectStoreError};
pub use parquet_io::ParquetIoManager;
pub use plaid::{DevPlaid, PlaidClient, PlaidConfig, PlaidError, PlaidItems, PlaidSource};
pub use qbo::{DevQbo, QboClient, QboConfig, QboSource, QboTokens};
pub use s3::{S3Config, S3ObjectStore};
pub use sec::{DevSecSource, SecClient, SecConfig, SecError, SecSource};
pub use secret::Secret;
