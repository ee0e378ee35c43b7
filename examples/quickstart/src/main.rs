use std::process::ExitCode;
use std::sync::Arc;

use robo_assets::arrow_array::{Int64Array, RecordBatch, StringArray};
use robo_assets::arrow_schema::{DataType, Field, Schema};
use robo_assets::{AssetDef, Output, PartitionsDef, Project, asset};

/// The resource key of the price list.
const PRICES: &str = "prices";

/// What a reading costs: a resource of this project, bound by key.
struct PriceList {
    cents_per_reading: i64,
}

/// Each hour's readings of two sensors (made up from the hour here; fetched in real life).
fn readings() -> AssetDef {
    asset("readings")
        .description("Sensor readings, one row per sensor and hour")
        .partitions(PartitionsDef::hourly("2025-12-01"))
        .compute(|ctx| async move {
            let hour: i64 = ctx.partition_key[11..13].parse()?;
            let schema = Schema::new(vec![
                Field::new("sensor", DataType::Utf8, false),
                Field::new("value", DataType::Int64, false),
            ]);
            let table = RecordBatch::try_new(
                Arc::new(schema),
                vec![
                    Arc::new(StringArray::from(vec!["north", "south"])),
                    Arc::new(Int64Array::from(vec![10 + hour, 20 + 2 * hour])),
                ],
            )?;
            Ok(Output::table(table))
        })
}

/// The day's bill: every reading of its 24 hours, priced by the price list.
fn daily_bill() -> AssetDef {
    asset("daily_bill")
        .description("Readings of the day and what they cost")
        .partitions(PartitionsDef::daily("2025-12-01"))
        .dep("readings")
        .requires(PRICES)
        .compute(|ctx| async move {
            let prices: Arc<PriceList> = ctx.resource(PRICES)?;
            let mut readings = 0;
            for (_hour, table) in ctx.load("readings").await? {
                readings += table.num_rows() as i64;
            }
            Ok(Output::none()
                .with_metadata("readings", readings)
                .with_metadata("cents", readings * prices.cents_per_reading))
        })
}

fn main() -> ExitCode {
    Project::new("my-assets")
        .assets([readings(), daily_bill()])
        .resource(PRICES, Arc::new(PriceList { cents_per_reading: 3 }))
        .main()
}
