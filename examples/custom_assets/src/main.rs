//! A project of its own on the robo-assets command line: a shop's hourly `events`, read from
//! the CSV this crate ships (`data/events.csv`, or the file `CUSTOM_ASSETS_EVENTS` names), and a
//! `daily_revenue` aggregate that prices them with a resource of its own (`TaxRates`, bound by
//! key). `cargo run -p custom-assets -- materialize daily_revenue -p 2025-12-01 --with-upstream`,
//! then `backfill`, `status`, `lineage`, `why`: the whole CLI works for it.
//!
//! `kind_daily` is partitioned in two dimensions, day × event kind (`day=2025-12-01|kind=order`),
//! and reads the day's hours of `events` for its kind; `kind_totals` (per kind) reads every day
//! of its kind. Both mappings are inferred: the time dimensions pair, and so do the kinds.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use robo_assets::arrow_array::cast::AsArray;
use robo_assets::arrow_array::types::{Int64Type, TimestampMicrosecondType};
use robo_assets::arrow_array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use robo_assets::arrow_schema::{DataType, Field, Schema, TimeUnit};
use robo_assets::chrono::{DateTime, Utc};
use robo_assets::{AssetContext, AssetDef, AssetError, Output, PartitionsDef, Project, asset, clap};

/// The resource key of the tax rates.
const TAX_RATES: &str = "tax_rates";

/// Tax per event kind, in basis points (1/100 of a percent): this project's own resource.
#[derive(Debug)]
struct TaxRates {
    basis_points: BTreeMap<&'static str, i64>,
}

impl TaxRates {
    /// 20 % on everything the shop sells, and on what it refunds.
    fn standard() -> TaxRates {
        TaxRates { basis_points: BTreeMap::from([("order", 2_000), ("refund", 2_000), ("subscription", 2_000)]) }
    }

    /// The tax on `cents` of `kind`, rounded half away from zero to whole cents.
    fn tax_cents(&self, kind: &str, cents: i64) -> Result<i64, AssetError> {
        let bps = self.basis_points.get(kind).ok_or_else(|| format!("no tax rate for event kind {kind:?}"))?;
        let scaled = cents * bps;
        Ok((scaled + scaled.signum() * 5_000) / 10_000)
    }
}

/// The events file: the one this crate ships unless `CUSTOM_ASSETS_EVENTS` names another.
fn events_file() -> String {
    std::env::var("CUSTOM_ASSETS_EVENTS")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/data/events.csv").to_owned())
}

/// Each hour's events: `ts,kind,amount_cents` rows of the CSV whose time falls in the hour.
fn events() -> AssetDef {
    asset("events")
        .description("Shop events of the hour (orders, refunds, subscriptions), from the CSV")
        .group("shop")
        .partitions(PartitionsDef::hourly("2025-12-01"))
        .compute(|ctx: AssetContext| async move {
            let window = ctx.time_window.ok_or("events are hourly")?;
            let path = events_file();
            let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
            let (mut ts, mut kinds, mut cents) = (Vec::new(), Vec::new(), Vec::new());
            for (n, line) in text.lines().enumerate().skip(1).filter(|(_, l)| !l.trim().is_empty()) {
                let fields: Vec<&str> = line.split(',').collect();
                let [time, kind, amount] = fields[..] else {
                    return Err(format!("{path} line {}: expected ts,kind,amount_cents", n + 1).into());
                };
                let time: DateTime<Utc> = time.parse().map_err(|e| format!("{path} line {}: {e}", n + 1))?;
                if window.start <= time && time < window.end {
                    ts.push(time.timestamp_micros());
                    kinds.push(kind.to_owned());
                    cents.push(amount.parse::<i64>().map_err(|e| format!("{path} line {}: {e}", n + 1))?);
                }
            }
            let schema = Schema::new(vec![
                Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
                Field::new("kind", DataType::Utf8, false),
                Field::new("amount_cents", DataType::Int64, false),
            ]);
            let table = RecordBatch::try_new(
                Arc::new(schema),
                vec![
                    Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("UTC")),
                    Arc::new(StringArray::from(kinds)),
                    Arc::new(Int64Array::from(cents)),
                ],
            )?;
            Ok(Output::table(table))
        })
}

/// Each day's revenue per event kind, from its 24 hours of events, with the tax on it.
fn daily_revenue() -> AssetDef {
    asset("daily_revenue")
        .description("Revenue and tax per event kind for the day, in cents")
        .group("shop")
        .partitions(PartitionsDef::daily("2025-12-01"))
        .dep("events")
        .requires(TAX_RATES)
        .compute(|ctx: AssetContext| async move {
            let rates: Arc<TaxRates> = ctx.resource(TAX_RATES)?;
            // kind → (events, gross cents)
            let mut by_kind: BTreeMap<String, (i64, i64)> = BTreeMap::new();
            for (_hour, table) in ctx.load("events").await? {
                let kinds = table.column_by_name("kind").ok_or("events has no kind")?.as_string::<i32>();
                let cents =
                    table.column_by_name("amount_cents").ok_or("events has no amount")?.as_primitive::<Int64Type>();
                for row in 0..table.num_rows() {
                    let entry = by_kind.entry(kinds.value(row).to_owned()).or_default();
                    entry.0 += 1;
                    entry.1 += cents.value(row);
                }
            }
            let mut taxes = Vec::with_capacity(by_kind.len());
            for (kind, (_, gross)) in &by_kind {
                taxes.push(rates.tax_cents(kind, *gross)?);
            }
            let schema = Schema::new(vec![
                Field::new("kind", DataType::Utf8, false),
                Field::new("events", DataType::Int64, false),
                Field::new("gross_cents", DataType::Int64, false),
                Field::new("tax_cents", DataType::Int64, false),
            ]);
            let table = RecordBatch::try_new(
                Arc::new(schema),
                vec![
                    Arc::new(StringArray::from(by_kind.keys().cloned().collect::<Vec<_>>())),
                    Arc::new(Int64Array::from(by_kind.values().map(|v| v.0).collect::<Vec<_>>())),
                    Arc::new(Int64Array::from(by_kind.values().map(|v| v.1).collect::<Vec<_>>())),
                    Arc::new(Int64Array::from(taxes.clone())),
                ],
            )?;
            Ok(Output::table(table)
                .with_metadata("events", by_kind.values().map(|v| v.0).sum::<i64>())
                .with_metadata("gross_cents", by_kind.values().map(|v| v.1).sum::<i64>())
                .with_metadata("tax_cents", taxes.iter().sum::<i64>()))
        })
}

/// The event kinds the shop has.
fn kinds() -> PartitionsDef {
    PartitionsDef::fixed(["order", "refund", "subscription"])
}

/// One kind's events of one day: two dimensions.
fn kind_daily() -> AssetDef {
    asset("kind_daily")
        .description("One event kind's events of the day, in cents")
        .group("shop")
        .partitions(PartitionsDef::multi([("day", PartitionsDef::daily("2025-12-01")), ("kind", kinds())]))
        .dep("events")
        .compute(|ctx: AssetContext| async move {
            let kind = ctx.dimension("kind").ok_or("kind_daily is partitioned by kind")?.to_owned();
            let (mut ts, mut cents) = (Vec::new(), Vec::new());
            for (_hour, table) in ctx.load("events").await? {
                let times =
                    table.column_by_name("ts").ok_or("events has no ts")?.as_primitive::<TimestampMicrosecondType>();
                let kinds = table.column_by_name("kind").ok_or("events has no kind")?.as_string::<i32>();
                let amounts =
                    table.column_by_name("amount_cents").ok_or("events has no amount")?.as_primitive::<Int64Type>();
                for row in (0..table.num_rows()).filter(|&r| kinds.value(r) == kind) {
                    ts.push(times.value(row));
                    cents.push(amounts.value(row));
                }
            }
            let schema = Schema::new(vec![
                Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
                Field::new("amount_cents", DataType::Int64, false),
            ]);
            let (events, gross) = (ts.len() as i64, cents.iter().sum::<i64>());
            let table = RecordBatch::try_new(
                Arc::new(schema),
                vec![
                    Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("UTC")),
                    Arc::new(Int64Array::from(cents)),
                ],
            )?;
            Ok(Output::table(table).with_metadata("events", events).with_metadata("gross_cents", gross))
        })
}

/// Every day of one kind, one row per day: a one-dimensional asset reading a two-dimensional one.
fn kind_totals() -> AssetDef {
    asset("kind_totals")
        .description("One event kind's gross per day, in cents")
        .group("shop")
        .partitions(kinds())
        .dep("kind_daily")
        .compute(|ctx: AssetContext| async move {
            let (mut days, mut gross) = (Vec::new(), Vec::new());
            for (key, table) in ctx.load("kind_daily").await? {
                let day = key.split('|').find_map(|p| p.strip_prefix("day=")).ok_or("kind_daily keys name the day")?;
                let cents =
                    table.column_by_name("amount_cents").ok_or("kind_daily has no amount")?.as_primitive::<Int64Type>();
                days.push(day.to_owned());
                gross.push(cents.values().iter().sum::<i64>());
            }
            let total: i64 = gross.iter().sum();
            let schema = Schema::new(vec![
                Field::new("day", DataType::Utf8, false),
                Field::new("gross_cents", DataType::Int64, false),
            ]);
            let table = RecordBatch::try_new(
                Arc::new(schema),
                vec![Arc::new(StringArray::from(days)), Arc::new(Int64Array::from(gross))],
            )?;
            Ok(Output::table(table).with_metadata("gross_cents", total))
        })
}

fn main() -> ExitCode {
    Project::new("custom-assets")
        .assets([events(), daily_revenue(), kind_daily(), kind_totals()])
        .resource(TAX_RATES, Arc::new(TaxRates::standard()))
        // A command of the project's own, beside the built-in ones.
        .command(
            clap::Command::new("tax-rate")
                .about("Print the tax rate of an event kind")
                .arg(clap::Arg::new("kind").required(true).help("order, refund or subscription")),
            |_setup, args| async move {
                let kind = args.get_one::<String>("kind").expect("required");
                let rates = TaxRates::standard();
                let bps = rates.basis_points.get(kind.as_str()).ok_or_else(|| {
                    let known: Vec<&str> = rates.basis_points.keys().copied().collect();
                    robo_assets::user_error(format!("no tax rate for {kind:?}; kinds: {}", known.join(", ")))
                })?;
                println!("{kind}: {}.{:02} %", bps / 100, bps % 100);
                Ok(())
            },
        )
        .main()
}
