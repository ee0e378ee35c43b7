//! `credit_health`: weekly asset checks on the credits ledger.
//!
//! - `balance_equals_ledger` (error): every tenant's stored balance equals the sum of its entries;
//! - `no_duplicate_entries` (error): no tenant has two entries of one kind for one period (one
//!   charge per day, one allocation and one overage per month, whatever their keys);
//! - `subscriptions_allocated` (warn): every active subscription has its allocation for the
//!   month the week ends in.
//!
//! A failed error check fails the partition (recorded with the findings), so nothing downstream
//! reads a ledger known to be wrong; `robo-assets checks credit_health` shows the verdicts.

use std::sync::Arc;

use engine::{AssetContext, AssetDef, AssetError, Output, PartitionsDef, Severity, asset};
use resources::AppDb;

use crate::APP_DB;

const FIRST_MONDAY: &str = "2025-01-06";

pub(crate) fn definition() -> AssetDef {
    asset("credit_health")
        .requires(APP_DB)
        .description("Weekly checks of the credits ledger: balances equal the ledger, no duplicate entries, every active subscription allocated.")
        .group("billing")
        .owner("platform@robosystems.ai")
        .tag("team", "billing")
        .code_version("1")
        // Monday to Sunday weeks (the first Monday of 2025): checked on Monday mornings.
        .partitions(PartitionsDef::weekly(FIRST_MONDAY))
        .compute(compute)
}

/// At most this many findings are spelled out in a message.
const SHOWN: usize = 5;

fn listed<T>(items: &[T], show: impl Fn(&T) -> String) -> String {
    let mut parts: Vec<String> = items.iter().take(SHOWN).map(show).collect();
    if items.len() > SHOWN {
        parts.push(format!("and {} more", items.len() - SHOWN));
    }
    parts.join("; ")
}

async fn compute(ctx: AssetContext) -> Result<Output, AssetError> {
    let app_db: Arc<dyn AppDb> = ctx.resource(APP_DB)?;
    let window = ctx.time_window.as_ref().ok_or_else(|| format!("{:?} is not a week", ctx.partition_key))?;
    let last_day = window.end - chrono::Duration::seconds(1);
    let month = last_day.format("%Y-%m").to_string();
    let health = app_db.ledger_health(&month).await?;

    let balances = if health.balance_mismatches.is_empty() {
        format!("{} tenants: stored balances equal the ledger", health.tenants)
    } else {
        listed(&health.balance_mismatches, |(t, stored, sum)| {
            format!("{t}: stored {stored}, ledger sums to {sum} millicredits")
        })
    };
    let duplicates = if health.duplicate_entries.is_empty() {
        "one entry per tenant, kind and period".to_owned()
    } else {
        listed(&health.duplicate_entries, |(t, kind, period, n)| format!("{t}: {n} {kind} entries for {period}"))
    };
    let allocated = if health.unallocated.is_empty() {
        format!("every active subscription has its {month} allocation")
    } else {
        listed(&health.unallocated, |(t, sub)| format!("{t} ({sub}) has no allocation for {month}"))
    };
    Ok(Output::none()
        .with_metadata("month", month.clone())
        .with_metadata("tenants", health.tenants)
        .with_metadata("balance_mismatches", health.balance_mismatches.len())
        .with_metadata("duplicate_entries", health.duplicate_entries.len())
        .with_metadata("unallocated_subscriptions", health.unallocated.len())
        .with_check("balance_equals_ledger", Severity::Error, health.balance_mismatches.is_empty(), balances)
        .with_check("no_duplicate_entries", Severity::Error, health.duplicate_entries.is_empty(), duplicates)
        .with_check("subscriptions_allocated", Severity::Warn, health.unallocated.is_empty(), allocated))
}
