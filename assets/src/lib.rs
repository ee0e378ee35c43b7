//! The RoboSystems assets: what the billing pipelines produce, as asset definitions.
//!
//! Assets name the resources they use by key ([`APP_DB`], [`GRAPH_STORAGE`], [`REPORTS`], [`SEC`]) and
//! trait type, and declare them (`.requires(..)`); the binary binds concrete implementations. Money math lives in [`billing`], pure and exact.

mod api_key_cleanup;
pub mod automation;
pub mod billing;
pub mod columns;
mod credit_allocation;
mod credit_health;
pub mod graph_provisioning;
pub mod quickbooks;
pub mod sec;
mod storage_bill;
mod usage_report;
mod usage_snapshot;

// Plaid (issue 13 §4).
pub mod plaid;

use engine::{AssetDef, Definitions, DefinitionsError};

/// Resource key of the app database (`Arc<dyn resources::AppDb>`).
pub const APP_DB: &str = "app_db";
/// Resource key of the object store reports are written to (`Arc<dyn resources::ObjectStore>`).
pub const REPORTS: &str = "reports";
/// Resource key of the graph storage source (`Arc<dyn resources::GraphStorage>`).
pub const GRAPH_STORAGE: &str = "graph_storage";
pub use sec::SEC;

/// Resource key of the Plaid transactions source (`Arc<dyn resources::PlaidSource>`): Plaid, or
/// the labeled dev source.
pub const PLAID: &str = "plaid";
/// Resource key of the object store outputs go to (`Arc<dyn resources::ObjectStore>`; every
/// project binds it): Plaid keeps each sync's changes there.
pub const OBJECT_STORE: &str = "object_store";

/// The first partition of every RoboSystems time-partitioned asset.
pub const START_DATE: &str = "2025-01-01";

/// Every RoboSystems asset, validated.
pub fn definitions() -> Result<Definitions, DefinitionsError> {
    Definitions::new(assets())
}

/// Every RoboSystems asset, as defined (validated when a deployment starts).
pub fn assets() -> Vec<AssetDef> {
    vec![
        usage_snapshot::definition(),
        storage_bill::definition(),
        credit_allocation::definition(),
        usage_report::definition(),
        api_key_cleanup::definition(),
        credit_health::definition(),
        graph_provisioning::definition(),
        quickbooks::profit_and_loss(),
        quickbooks::balance_sheet(),
        plaid::transactions(),
        plaid::current(),
        sec::submissions(),
        sec::company_facts(),
    ]
}

#[cfg(test)]
mod tests;
