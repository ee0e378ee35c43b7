//! The typed columns of the billing tables: a time partition's day or month as a DATE, its hour
//! as a UTC TIMESTAMP, and credits as exact decimals. DuckDB, pandas and polars read them as
//! dates, timestamps and decimals, with no parsing of key text; the key itself is in the file's
//! provenance metadata (`robo_assets.partition`) and its path.

use std::sync::Arc;

use arrow_array::types::Date32Type;
use arrow_array::{ArrayRef, Date32Array, Decimal128Array, TimestampMicrosecondArray};
use arrow_schema::{DataType, TimeUnit};
use chrono::NaiveDate;
use engine::{AssetContext, AssetError};

/// A day or a month (its first day): Arrow `Date32`, Parquet `DATE`.
pub const DATE: DataType = DataType::Date32;

/// Precision of the credit and GB-day decimals: any `i64` of thousandths fits.
pub const CREDITS_PRECISION: u8 = 38;
/// Scale of the credit and GB-day decimals: thousandths (millicredits, milli-GB-days).
pub const CREDITS_SCALE: i8 = 3;

/// An hour: Arrow `Timestamp(µs, "UTC")`, Parquet `TIMESTAMP(isAdjustedToUTC, MICROS)`: the
/// instant the hour starts.
pub fn hour_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Credits (or GB-days) in thousandths, as an exact decimal: `Decimal128(38, 3)`.
pub fn credits_type() -> DataType {
    DataType::Decimal128(CREDITS_PRECISION, CREDITS_SCALE)
}

/// The day of a daily partition key (`2025-12-15`).
pub fn day_of(key: &str) -> Result<NaiveDate, AssetError> {
    NaiveDate::parse_from_str(key, "%Y-%m-%d").map_err(|_| format!("not a day partition: {key:?}").into())
}

/// The first day of a monthly partition key (`2025-12` → 2025-12-01).
pub fn month_of(key: &str) -> Result<NaiveDate, AssetError> {
    NaiveDate::parse_from_str(&format!("{key}-01"), "%Y-%m-%d")
        .map_err(|_| format!("not a month partition: {key:?}").into())
}

/// `date`, `n` times.
pub fn dates(date: NaiveDate, n: usize) -> ArrayRef {
    Arc::new(Date32Array::from(vec![Date32Type::from_naive_date(date); n]))
}

/// The start of the step's hour (its time window), `n` times.
pub fn hours(ctx: &AssetContext, n: usize) -> Result<ArrayRef, AssetError> {
    let window = ctx.time_window.as_ref().ok_or_else(|| format!("{} has no time window", ctx.partition_key))?;
    Ok(Arc::new(TimestampMicrosecondArray::from(vec![window.start.timestamp_micros(); n]).with_timezone("UTC")))
}

/// Thousandths as exact decimals of [`credits_type`].
pub fn credits(thousandths: impl IntoIterator<Item = i64>) -> ArrayRef {
    let values = Decimal128Array::from_iter_values(thousandths.into_iter().map(i128::from));
    Arc::new(values.with_precision_and_scale(CREDITS_PRECISION, CREDITS_SCALE).expect("38 digits hold any i64"))
}
