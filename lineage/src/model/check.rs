//! Asset check verdicts.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::RunId;

/// How much a failed asset check matters.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantNames,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Severity {
    /// Recorded and shown; the materialization stands.
    Warn,
    /// Recorded; the step fails, so nothing downstream reads the data.
    Error,
}

impl Severity {
    /// `warn` or `error`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The verdict of one asset check on one partition, to record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewCheckResult {
    /// The asset.
    #[serde(rename = "asset")]
    pub asset_key: String,
    /// The partition (`""` when unpartitioned).
    #[serde(rename = "partition")]
    pub partition_key: String,
    /// The run that evaluated it.
    pub run_id: RunId,
    /// The check's name.
    pub check_name: String,
    /// What a failure means.
    pub severity: Severity,
    /// Whether it passed.
    pub passed: bool,
    /// What it found.
    pub message: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A recorded check result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResultRecord {
    /// Its id (increasing).
    #[serde(rename = "check_result_id")]
    pub id: i64,
    /// The asset.
    #[serde(rename = "asset")]
    pub asset_key: String,
    /// The partition.
    #[serde(rename = "partition")]
    pub partition_key: String,
    /// The run.
    pub run_id: RunId,
    /// The check's name.
    pub check_name: String,
    /// What a failure means.
    pub severity: Severity,
    /// Whether it passed.
    pub passed: bool,
    /// What it found.
    pub message: String,
    /// When.
    pub created_at: DateTime<Utc>,
}
