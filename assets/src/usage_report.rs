//! `usage_report`: monthly. Per tenant, month M's storage (GB-days over the plan, credits
//! charged, days billed), the credits allocated for M, and M's overage as settled by M+1's
//! allocation. Output: a Parquet table, plus a CSV report per tenant at
//! `usage_report/<M>/<tenant>.csv` next to the outputs (their URIs are in the metadata). Both have
//! the same columns with the same values: `month` is the month's first day (a DATE in Parquet,
//! `2025-12-01` in the CSV), credits and GB-days are exact decimals with three places.
//!
//! Reads `storage_bill` for the days of M and `credit_allocation` for M and M+1
//! (`time_window(0, 1)`): the report of December can be made on January's 1st, once January's
//! allocation has settled December's overage (today's schedule runs it on the 2nd at 06:00).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Int64Type};
use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use engine::{AssetContext, AssetDef, AssetError, Output, PartitionMapping, PartitionsDef, asset};
use resources::ObjectStore;

use crate::billing::format_milli;
use crate::columns::{DATE, credits, credits_type, dates, month_of};
use crate::{REPORTS, START_DATE};

pub(crate) fn definition() -> AssetDef {
    asset("usage_report")
        .requires(REPORTS)
        .description("Monthly per-tenant usage: storage GB-days and credits, allocation and overage; Parquet and a CSV per tenant.")
        .group("billing")
        .owner("platform@robosystems.ai")
        .tag("team", "billing")
        .code_version("1")
        .partitions(PartitionsDef::monthly(START_DATE))
        .dep("storage_bill")
        .dep_mapped("credit_allocation", PartitionMapping::time_window(0, 1))
        .compute(compute)
}

/// The columns of a report, in the Parquet table and in every CSV.
pub const COLUMNS: [&str; 8] = [
    "month",
    "tenant_id",
    "days_billed",
    "excess_gb_days",
    "storage_credits",
    "allocated_credits",
    "overage_credits",
    "net_credits",
];

/// The schema of a report: [`COLUMNS`]; `month` a DATE, credits and GB-days `Decimal128(38, 3)`.
pub fn schema() -> Arc<Schema> {
    let types = [
        DATE,
        DataType::Utf8,
        DataType::Int64,
        credits_type(),
        credits_type(),
        credits_type(),
        credits_type(),
        credits_type(),
    ];
    Arc::new(Schema::new(COLUMNS.iter().zip(types).map(|(name, t)| Field::new(*name, t, false)).collect::<Vec<_>>()))
}

#[derive(Default, Clone, Copy)]
struct Line {
    days: i64,
    excess: i64,
    storage: i64,
    allocated: i64,
    overage: i64,
}

fn i64_col<'a>(batch: &'a RecordBatch, name: &str, what: &str) -> Result<&'a arrow_array::Int64Array, AssetError> {
    Ok(batch.column_by_name(name).ok_or_else(|| format!("{what} has no {name}"))?.as_primitive::<Int64Type>())
}

fn date_col<'a>(batch: &'a RecordBatch, name: &str, what: &str) -> Result<&'a arrow_array::Date32Array, AssetError> {
    Ok(batch.column_by_name(name).ok_or_else(|| format!("{what} has no {name}"))?.as_primitive::<Date32Type>())
}

fn str_col<'a>(batch: &'a RecordBatch, name: &str, what: &str) -> Result<&'a arrow_array::StringArray, AssetError> {
    Ok(batch.column_by_name(name).ok_or_else(|| format!("{what} has no {name}"))?.as_string::<i32>())
}

async fn compute(ctx: AssetContext) -> Result<Output, AssetError> {
    let reports: Arc<dyn ObjectStore> = ctx.resource(REPORTS)?;
    let month = ctx.partition_key.clone();
    let month_date = month_of(&month)?;
    let mut lines: BTreeMap<String, Line> = BTreeMap::new();
    let bills = ctx.load("storage_bill").await?;
    for (day, batch) in &bills {
        let what = format!("bill {day}");
        let (tenants, excess, charge) = (
            str_col(batch, "tenant_id", &what)?,
            i64_col(batch, "excess_milli_gb_days", &what)?,
            i64_col(batch, "charge_millicredits", &what)?,
        );
        for row in 0..batch.num_rows() {
            let line = lines.entry(tenants.value(row).to_owned()).or_default();
            line.days += 1;
            line.excess += excess.value(row);
            line.storage += charge.value(row);
        }
    }
    for (allocation_month, batch) in ctx.load("credit_allocation").await? {
        let what = format!("allocation {allocation_month}");
        let (tenants, allocated, previous, overage) = (
            str_col(&batch, "tenant_id", &what)?,
            i64_col(&batch, "allocated_millicredits", &what)?,
            date_col(&batch, "previous_month", &what)?,
            i64_col(&batch, "overage_millicredits", &what)?,
        );
        for row in 0..batch.num_rows() {
            let line = lines.entry(tenants.value(row).to_owned()).or_default();
            if allocation_month == month {
                line.allocated += allocated.value(row);
            }
            if previous.value_as_date(row) == Some(month_date) {
                line.overage += overage.value(row);
            }
        }
    }

    let mut uris = Vec::with_capacity(lines.len());
    for (tenant, line) in &lines {
        let mut csv = COLUMNS.join(",");
        let _ = writeln!(
            csv,
            "\n{month_date},{tenant},{},{},{},{},{},{}",
            line.days,
            format_milli(line.excess),
            format_milli(line.storage),
            format_milli(line.allocated),
            format_milli(line.overage),
            format_milli(net(line)),
        );
        uris.push(reports.put(&format!("usage_report/{month}/{tenant}.csv"), csv.into_bytes().into()).await?);
    }

    let rows: Vec<(&String, &Line)> = lines.iter().collect();
    let n = rows.len();
    let col = |f: fn(&Line) -> i64| credits(rows.iter().map(|r| f(r.1)));
    let table = RecordBatch::try_new(
        schema(),
        vec![
            dates(month_date, n),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.as_str()))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1.days))),
            col(|l| l.excess),
            col(|l| l.storage),
            col(|l| l.allocated),
            col(|l| l.overage),
            col(net),
        ],
    )?;
    let total = |f: fn(&Line) -> i64| lines.values().map(f).sum::<i64>();
    Ok(Output::table(table)
        .with_metadata("tenants", n)
        .with_metadata("days", bills.len())
        .with_metadata("storage_credits", format_milli(total(|l| l.storage)))
        .with_metadata("allocated_credits", format_milli(total(|l| l.allocated)))
        .with_metadata("overage_credits", format_milli(total(|l| l.overage)))
        .with_metadata("excess_gb_days", format_milli(total(|l| l.excess)))
        .with_metadata("reports", uris))
}

/// Credits left from the month: allocated − storage charged + overage invoiced.
fn net(l: &Line) -> i64 {
    l.allocated - l.storage + l.overage
}
