//! `storage_bill`: the daily storage charge of every tenant, from the day's hourly snapshots.
//!
//! Writes the bill as a table and one ledger debit per tenant per day, keyed
//! `storage_bill:<tenant>:<day>`: re-materializing replaces the amount, never adds it again.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use engine::{AssetContext, AssetDef, AssetError, FreshnessPolicy, Output, PartitionsDef, asset};
use resources::AppDb;
use resources::appdb::LedgerEntry;

use crate::billing::{excess_milli_gb_days, format_milli, storage_charge_millicredits};
use crate::{APP_DB, START_DATE};

pub(crate) fn definition() -> AssetDef {
    asset("storage_bill")
        .requires(APP_DB)
        .description(
            "Daily storage credits per tenant: average GB over the plan's included storage, from 24 hourly snapshots.",
        )
        .group("billing")
        .owner("platform@robosystems.ai")
        .tag("team", "billing")
        .code_version("1")
        .partitions(PartitionsDef::daily(START_DATE))
        // Finance reads day D's bill by D+1 06:00 (today's job runs at 02:00).
        .freshness(FreshnessPolicy::AfterWindowEnd(std::time::Duration::from_secs(6 * 3600)))
        .dep("usage_snapshot")
        .compute(compute)
}

/// The schema of a bill: `day` is a DATE.
pub fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("day", crate::columns::DATE, false),
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("plan_id", DataType::Utf8, true),
        Field::new("hours", DataType::Int64, false),
        Field::new("byte_hours", DataType::Int64, false),
        Field::new("avg_bytes", DataType::Int64, false),
        Field::new("included_gb", DataType::Int64, false),
        Field::new("excess_milli_gb_days", DataType::Int64, false),
        Field::new("rate_millicredits_per_gb_day", DataType::Int64, false),
        Field::new("charge_millicredits", DataType::Int64, false),
        Field::new("ledger_key", DataType::Utf8, false),
    ]))
}

/// One tenant's line on the bill.
struct BillRow {
    tenant_id: String,
    plan_id: Option<String>,
    byte_hours: i128,
    included_gb: i64,
    excess_milli_gb_days: i64,
    rate: i64,
    charge: i64,
    ledger_key: String,
}

async fn compute(ctx: AssetContext) -> Result<Output, AssetError> {
    let app_db: Arc<dyn AppDb> = ctx.resource(APP_DB)?;
    let day = ctx.partition_key.clone();
    let date = crate::columns::day_of(&day)?;
    let snapshots = ctx.load("usage_snapshot").await?;
    let n_hours = snapshots.len() as i128;

    // Σ over hours and graphs of bytes, per tenant.
    let mut byte_hours: BTreeMap<String, i128> = BTreeMap::new();
    for (hour, batch) in &snapshots {
        let tenants = batch
            .column_by_name("tenant_id")
            .ok_or_else(|| format!("snapshot {hour} has no tenant_id"))?
            .as_string::<i32>();
        let bytes = batch
            .column_by_name("bytes")
            .ok_or_else(|| format!("snapshot {hour} has no bytes"))?
            .as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            *byte_hours.entry(tenants.value(row).to_owned()).or_default() += bytes.value(row) as i128;
        }
    }
    let plans: BTreeMap<String, resources::appdb::TenantPlan> =
        app_db.tenant_plans().await?.into_iter().map(|p| (p.tenant_id.clone(), p)).collect();

    let mut rows = Vec::new();
    let mut entries = Vec::new();
    let (mut total, mut total_excess) = (0i64, 0i64);
    for (tenant, byte_hours) in &byte_hours {
        let plan = plans.get(tenant);
        let (included, rate) = plan.map_or((0, 0), |p| (p.included_storage_gb, p.storage_millicredits_per_gb_day));
        let charge = storage_charge_millicredits(*byte_hours, n_hours, included, rate);
        let excess = excess_milli_gb_days(*byte_hours, n_hours, included);
        let key = format!("storage_bill:{tenant}:{day}");
        total += charge;
        total_excess += excess;
        entries.push(LedgerEntry {
            tenant_id: tenant.clone(),
            idempotency_key: key.clone(),
            kind: "storage_charge".to_owned(),
            period: day.clone(),
            amount_millicredits: -charge,
            description: format!("storage {day}: {} GB-days over the included {included} GB", format_milli(excess)),
        });
        rows.push(BillRow {
            tenant_id: tenant.clone(),
            plan_id: plan.map(|p| p.plan_id.clone()),
            byte_hours: *byte_hours,
            included_gb: included,
            excess_milli_gb_days: excess,
            rate,
            charge,
            ledger_key: key,
        });
    }
    let write = app_db.replace_period_entries("storage_charge", &day, &entries, ctx.now()).await?;

    let n = rows.len();
    ctx.log.info(format!(
        "billed {n} tenant{} for {n_hours} hour{}: {} credits ({} new ledger entries, {} revised)",
        if n == 1 { "" } else { "s" },
        if n_hours == 1 { "" } else { "s" },
        format_milli(total),
        write.inserted,
        write.revised
    ));
    let unplanned: Vec<&str> = rows.iter().filter(|r| r.plan_id.is_none()).map(|r| r.tenant_id.as_str()).collect();
    if !unplanned.is_empty() {
        ctx.log.warn(format!("tenants without a plan, billed nothing: {}", unplanned.join(", ")));
    }
    let i64s = |f: fn(&BillRow) -> i64| Arc::new(Int64Array::from_iter_values(rows.iter().map(f)));
    let avg = |r: &BillRow| r.byte_hours.checked_div(n_hours).map_or(0, |a| a as i64);
    let table = RecordBatch::try_new(
        schema(),
        vec![
            crate::columns::dates(date, n),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.tenant_id.as_str()))),
            Arc::new(StringArray::from_iter(rows.iter().map(|r| r.plan_id.as_deref()))),
            Arc::new(Int64Array::from(vec![n_hours as i64; n])),
            i64s(|r| i64::try_from(r.byte_hours).unwrap_or(i64::MAX)),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(avg))),
            i64s(|r| r.included_gb),
            i64s(|r| r.excess_milli_gb_days),
            i64s(|r| r.rate),
            i64s(|r| r.charge),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.ledger_key.as_str()))),
        ],
    )?;
    Ok(Output::table(table)
        .with_metadata("tenants_billed", n)
        .with_metadata("hours", n_hours as i64)
        .with_metadata("total_millicredits", total)
        .with_metadata("total_credits", format_milli(total))
        .with_metadata("excess_gb_days", format_milli(total_excess))
        .with_metadata(
            "ledger",
            serde_json::json!({
                "inserted": write.inserted, "revised": write.revised,
                "unchanged": write.unchanged, "zeroed": write.zeroed,
            }),
        ))
}
