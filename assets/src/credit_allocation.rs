//! `credit_allocation`: monthly. Allocates month M's plan credits to every active subscription
//! and settles month M-1's overage from M-1's daily storage bills (a time-window mapping with
//! offset -1: partition `2026-01` reads the bills of 2025-12-01 ..= 2025-12-31).
//!
//! Ledger entries, each replacing its own earlier version (never added twice):
//! - `credit_allocation:<tenant>:<M>` (kind `allocation`, period M): + the plan's monthly credits;
//! - `overage:<tenant>:<M-1>` (kind `overage`, period M-1): + the storage charges of M-1 above the
//!   plan's monthly credits, which are invoiced in money instead, so the credits debited for them
//!   are restored. Zero when the month's charges fit in the plan.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use engine::{AssetContext, AssetDef, AssetError, Output, PartitionMapping, PartitionsDef, asset};
use resources::AppDb;
use resources::appdb::LedgerEntry;

use crate::billing::{format_milli, overage_millicredits};
use crate::{APP_DB, START_DATE};

pub(crate) fn definition() -> AssetDef {
    asset("credit_allocation")
        .requires(APP_DB)
        .description(
            "Monthly credits of every active subscription for month M, and M-1's storage overage settled from its daily bills.",
        )
        .group("billing")
        .owner("platform@robosystems.ai")
        .tag("team", "billing")
        .code_version("1")
        // Month M exists from its first day (end offset 1): allocation runs on the 1st.
        .partitions(PartitionsDef::monthly(START_DATE).end_offset(1))
        .dep_mapped("storage_bill", PartitionMapping::time_window(-1, -1))
        .compute(compute)
}

/// The schema of an allocation: `month` and `previous_month` are DATEs, each month's first day.
pub fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("month", crate::columns::DATE, false),
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("subscription_id", DataType::Utf8, false),
        Field::new("plan_id", DataType::Utf8, false),
        Field::new("allocated_millicredits", DataType::Int64, false),
        Field::new("previous_month", crate::columns::DATE, false),
        Field::new("previous_storage_millicredits", DataType::Int64, false),
        Field::new("overage_millicredits", DataType::Int64, false),
        Field::new("allocation_key", DataType::Utf8, false),
        Field::new("overage_key", DataType::Utf8, false),
    ]))
}

async fn compute(ctx: AssetContext) -> Result<Output, AssetError> {
    let app_db: Arc<dyn AppDb> = ctx.resource(APP_DB)?;
    let month = ctx.partition_key.clone();
    let bills = ctx.load("storage_bill").await?;
    let previous = previous_month(&month).ok_or_else(|| format!("not a month partition: {month:?}"))?;
    let (month_date, previous_date) = (crate::columns::month_of(&month)?, crate::columns::month_of(&previous)?);

    // M-1's storage charges per tenant, from the bills themselves (exact integers).
    let mut used: BTreeMap<String, i64> = BTreeMap::new();
    for (day, batch) in &bills {
        let tenants =
            batch.column_by_name("tenant_id").ok_or_else(|| format!("bill {day} has no tenant_id"))?.as_string::<i32>();
        let charges = batch
            .column_by_name("charge_millicredits")
            .ok_or_else(|| format!("bill {day} has no charge_millicredits"))?
            .as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            let total = used.entry(tenants.value(row).to_owned()).or_default();
            *total = total.checked_add(charges.value(row)).ok_or("storage charges overflow i64 millicredits")?;
        }
    }

    let plans = app_db.tenant_plans().await?;
    let (mut allocations, mut overages, mut rows) = (Vec::new(), Vec::new(), Vec::new());
    let (mut total_allocated, mut total_overage) = (0i64, 0i64);
    for plan in &plans {
        let previous_used = used.get(&plan.tenant_id).copied().unwrap_or(0);
        let overage = overage_millicredits(previous_used, plan.monthly_millicredits);
        let allocation_key = format!("credit_allocation:{}:{month}", plan.tenant_id);
        let overage_key = format!("overage:{}:{previous}", plan.tenant_id);
        allocations.push(LedgerEntry {
            tenant_id: plan.tenant_id.clone(),
            idempotency_key: allocation_key.clone(),
            kind: "allocation".to_owned(),
            period: month.clone(),
            amount_millicredits: plan.monthly_millicredits,
            description: format!("{} plan credits for {month}", plan.plan_id),
        });
        if overage > 0 {
            overages.push(LedgerEntry {
                tenant_id: plan.tenant_id.clone(),
                idempotency_key: overage_key.clone(),
                kind: "overage".to_owned(),
                period: previous.clone(),
                amount_millicredits: overage,
                description: format!(
                    "storage overage {previous}: {} credits used, {} included; invoiced",
                    format_milli(previous_used),
                    format_milli(plan.monthly_millicredits)
                ),
            });
        }
        total_allocated += plan.monthly_millicredits;
        total_overage += overage;
        rows.push((plan, previous_used, overage, allocation_key, overage_key));
    }
    let allocated = app_db.replace_period_entries("allocation", &month, &allocations, ctx.now()).await?;
    let settled = app_db.replace_period_entries("overage", &previous, &overages, ctx.now()).await?;

    let n = rows.len();
    let table = RecordBatch::try_new(
        schema(),
        vec![
            crate::columns::dates(month_date, n),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.tenant_id.as_str()))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.subscription_id.as_str()))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.plan_id.as_str()))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0.monthly_millicredits))),
            crate::columns::dates(previous_date, n),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.3.as_str()))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.4.as_str()))),
        ],
    )?;
    Ok(Output::table(table)
        .with_metadata("tenants_allocated", n)
        .with_metadata("bills_read", bills.len())
        .with_metadata("total_allocated_millicredits", total_allocated)
        .with_metadata("total_allocated_credits", format_milli(total_allocated))
        .with_metadata("total_overage_millicredits", total_overage)
        .with_metadata("total_overage_credits", format_milli(total_overage))
        .with_metadata(
            "ledger",
            serde_json::json!({
                "allocation": {"inserted": allocated.inserted, "revised": allocated.revised, "unchanged": allocated.unchanged, "zeroed": allocated.zeroed},
                "overage": {"inserted": settled.inserted, "revised": settled.revised, "unchanged": settled.unchanged, "zeroed": settled.zeroed},
            }),
        ))
}

/// `2026-01` → `2025-12`.
fn previous_month(month: &str) -> Option<String> {
    let (y, m) = month.split_once('-')?;
    let (y, m): (i32, u32) = (y.parse().ok()?, m.parse().ok()?);
    if !(1..=12).contains(&m) {
        return None;
    }
    Some(if m == 1 { format!("{}-12", y - 1) } else { format!("{y}-{:02}", m - 1) })
}

#[cfg(test)]
mod tests {
    #[test]
    fn previous_month_crosses_years() {
        assert_eq!(super::previous_month("2026-01").as_deref(), Some("2025-12"));
        assert_eq!(super::previous_month("2025-12").as_deref(), Some("2025-11"));
        assert_eq!(super::previous_month("2025-13"), None);
    }
}
