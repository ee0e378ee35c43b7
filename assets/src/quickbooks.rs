//! QuickBooks Online (`group:quickbooks`): each connected company's (realm's) profit and loss
//! over a month and balance sheet at its end, partitioned realm × month
//! (`month=2025-11|realm=9130354`), one row per account.
//!
//! The reports come from the `qbo` resource: the live API (`QBO_CLIENT_ID`, …) or the labeled
//! dev source. A month is re-read later to pick up adjustments: `qbo_monthly_close` runs on the
//! 3rd for the month that closed and the month before it again.

use std::sync::Arc;

use chrono::Duration;
use engine::{AssetContext, AssetDef, AssetError, NotRetryable, Output, PartitionsDef, RetryPolicy, asset};
use resources::qbo::{QboReport, QboSource, flatten};

use crate::START_DATE;

/// Resource key of the QuickBooks source (`Arc<dyn resources::QboSource>`).
pub const QBO: &str = "qbo";
/// The dynamic partitions of connected realms (`robo-assets qbo connect REALM` adds one).
pub const QBO_REALMS: &str = "qbo_realms";

/// Realm × month.
pub fn realm_months() -> PartitionsDef {
    PartitionsDef::multi([
        ("realm", PartitionsDef::dynamic(QBO_REALMS).key_format(realm_id)),
        ("month", PartitionsDef::monthly(START_DATE)),
    ])
}

/// A realm id as QuickBooks gives it: 1 to 20 digits.
pub fn realm_id(key: &str) -> Result<String, String> {
    let key = key.trim();
    if (1..=20).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_digit()) {
        Ok(key.to_owned())
    } else {
        Err("a QuickBooks realm id: 1 to 20 digits (the company id in the QuickBooks URL)".to_owned())
    }
}

pub(crate) fn profit_and_loss() -> AssetDef {
    report_asset(
        "qbo_profit_and_loss",
        QboReport::ProfitAndLoss,
        "Each connected QuickBooks company's profit and loss for the month, one row per account (and computed line)",
    )
}

pub(crate) fn balance_sheet() -> AssetDef {
    report_asset(
        "qbo_balance_sheet",
        QboReport::BalanceSheet,
        "Each connected QuickBooks company's balance sheet at the month's end, one row per account",
    )
}

fn report_asset(name: &'static str, report: QboReport, description: &str) -> AssetDef {
    asset(name)
        .requires(QBO)
        .description(description)
        .group("quickbooks")
        .owner("platform@robosystems.ai")
        .tag("source", "quickbooks")
        .code_version("1")
        .partitions(realm_months())
        .retry(RetryPolicy::exponential(3, std::time::Duration::from_secs(5)))
        // Intuit allows 10 requests at once per realm and app: `robo-assets pools set quickbooks 10`
        // caps each realm's steps across every worker (the client also paces each realm's
        // requests to 10 a second and 500 a minute across workers).
        .pool_per("quickbooks", "realm")
        .compute(move |ctx| compute(ctx, name, report))
}

async fn compute(ctx: AssetContext, name: &'static str, report: QboReport) -> Result<Output, AssetError> {
    let source: Arc<dyn QboSource> = ctx.resource(QBO)?;
    let realm = ctx.dimension("realm").ok_or("the partition names no realm")?;
    let month = ctx.dimension("month").ok_or("the partition names no month")?;
    let window = ctx.time_window.ok_or("the partition has no month window")?;
    let (start, end) = (window.start.date_naive(), (window.end - Duration::days(1)).date_naive());
    let fetch = source.report(realm, report, start, end).await.map_err(|e| -> AssetError {
        if e.is_retryable() { Box::new(e) } else { Box::new(NotRetryable(e.to_string())) }
    })?;
    let flat = flatten(&fetch.report, realm, month).map_err(|e| format!("{name} {realm} {month}: {e}"))?;
    if fetch.source == "dev" {
        tracing::info!(realm, month, "{name}: from the labeled dev source (no QBO_* variable is set)");
    }
    let mut out = Output::table(flat.table).with_metadata("source", fetch.source);
    for (key, value) in flat.header {
        out = out.with_metadata(&key, value);
    }
    if let Some(tid) = fetch.intuit_tid {
        out = out.with_metadata("intuit_tid", tid);
    }
    Ok(out)
}
