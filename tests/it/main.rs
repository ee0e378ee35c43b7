//! The one integration-test binary: the CLI as a user runs it, and the executor against the
//! real lineage store, object store and Parquet files.

mod alerts;
mod automation;
mod backfill;
mod bad_input;
mod billing;
mod browser;
mod cli;
mod common;
mod contract;
mod crash;
mod crashpoints;
mod deploy;
mod executor;
mod graph_api;
mod metrics;
mod netns;
mod onboarding;
mod openlineage;
mod plaid;
mod postgres;
mod project;
mod qbo;
mod retention;
mod run_output;
mod s3;
mod sec;
mod web;
