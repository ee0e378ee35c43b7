//! `group:plaid`: bank transactions from Plaid, one partition per item (dynamic partitions
//! `plaid_items`).
//!
//! - `plaid_transactions`: an incremental sync. Each materialization calls `/transactions/sync`
//!   from the cursor stored as metadata of the partition's current materialization (the first:
//!   no cursor) until `has_more` is false, and writes the *changes* since then, one row per
//!   change (`added`, `modified`, `removed`). The new cursor is metadata of the same
//!   materialization, so it is recorded in the same transaction; a failed or killed sync records
//!   nothing and the next starts from the old cursor. Each sync's changes are also kept in the
//!   [`ChangeLog`] under a sequence number (`sync_seq`).
//! - `plaid_transactions_current`: the current set per item, folded from the changes: its own
//!   previous output, plus every sync it has not folded yet (the change log's, up to the one
//!   `plaid_transactions` holds now), so running it after several syncs misses none. Removed
//!   transactions are gone, modified ones replaced.
//!
//! Each sync's Parquet file says which sync it is in its schema metadata (`plaid.sync_seq`, and
//! `plaid.generation`, the run that made the item's first sync), so two syncs with the same
//! changes (two empty ones) are still two data versions, and the fold knows exactly which syncs
//! it has not seen.
//!
//! `amount` is `decimal(28, 8)`, exact; positive = money out of the account (Plaid's sign).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Decimal128Type};
use arrow_array::{ArrayRef, BooleanArray, Date32Array, Decimal128Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;
use engine::{AssetContext, AssetDef, AssetError, NotRetryable, Output, PartitionsDef, RetryPolicy, asset};
use resources::ObjectStore;
use resources::plaid::{AMOUNT_PRECISION, AMOUNT_SCALE, Change, ChangeKind, ChangeLog, PlaidError, PlaidSource};

use crate::{OBJECT_STORE, PLAID};

/// The dynamic partitions definition of Plaid item ids.
pub const PLAID_ITEMS: &str = "plaid_items";

pub(crate) fn transactions() -> AssetDef {
    asset("plaid_transactions")
        .requires(PLAID)
        .requires(OBJECT_STORE)
        .description(
            "Transaction changes (added, modified, removed) since the previous sync, from Plaid /transactions/sync \
             (or the dev source); the cursor is metadata.",
        )
        .group("plaid")
        .owner("platform@robosystems.ai")
        .tag("team", "finance")
        .code_version("1")
        .partitions(PartitionsDef::dynamic(PLAID_ITEMS))
        .pool("plaid")
        // Plaid unavailable after the client's own retries, transactions not ready yet, or still
        // changing: the step is tried again a minute later, then two (a re-link is not retried).
        .retry(RetryPolicy::exponential(3, std::time::Duration::from_secs(60)))
        .compute(sync)
}

pub(crate) fn current() -> AssetDef {
    asset("plaid_transactions_current")
        .requires(PLAID)
        .requires(OBJECT_STORE)
        .description("The current transactions of each Plaid item, folded from every change plaid_transactions synced.")
        .group("plaid")
        .owner("platform@robosystems.ai")
        .tag("team", "finance")
        .code_version("1")
        .partitions(PartitionsDef::dynamic(PLAID_ITEMS))
        .dep("plaid_transactions")
        .compute(fold)
}

/// The schema of `plaid_transactions` (with `change`) or `plaid_transactions_current` (without;
/// every row then has an account, an amount, a date and `pending`).
pub fn schema(with_change: bool) -> SchemaRef {
    let nullable = with_change;
    let mut fields = vec![
        Field::new("item_id", DataType::Utf8, false),
        Field::new("transaction_id", DataType::Utf8, false),
        Field::new("account_id", DataType::Utf8, nullable),
    ];
    if with_change {
        fields.push(Field::new("change", DataType::Utf8, false));
    }
    fields.extend([
        Field::new("amount", DataType::Decimal128(AMOUNT_PRECISION, AMOUNT_SCALE), nullable),
        Field::new("iso_currency_code", DataType::Utf8, true),
        Field::new("date", DataType::Date32, nullable),
        Field::new("authorized_date", DataType::Date32, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("merchant_name", DataType::Utf8, true),
        Field::new("pending", DataType::Boolean, nullable),
        Field::new("category_primary", DataType::Utf8, true),
        Field::new("category_detailed", DataType::Utf8, true),
    ]);
    Arc::new(Schema::new(fields))
}

const EPOCH: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).expect("1970-01-01 is a date");

fn days(date: Option<NaiveDate>) -> Option<i32> {
    date.map(|d| (d - EPOCH).num_days() as i32)
}

/// The rows of `changes` for `item` (with the `change` column) or of a current set (without).
fn table<'a>(
    item: &str,
    changes: impl ExactSizeIterator<Item = &'a Change> + Clone,
    with_change: bool,
    metadata: HashMap<String, String>,
) -> Result<RecordBatch, AssetError> {
    let n = changes.len();
    let text =
        |f: fn(&Change) -> Option<&str>| -> ArrayRef { Arc::new(StringArray::from_iter(changes.clone().map(f))) };
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![item; n])),
        Arc::new(StringArray::from_iter_values(changes.clone().map(|c| c.transaction_id.as_str()))),
        text(|c| c.account_id.as_deref()),
    ];
    if with_change {
        columns.push(Arc::new(StringArray::from_iter_values(changes.clone().map(|c| c.kind.as_str()))));
    }
    columns.extend([
        Arc::new(
            Decimal128Array::from_iter(changes.clone().map(|c| c.amount))
                .with_precision_and_scale(AMOUNT_PRECISION, AMOUNT_SCALE)?,
        ) as ArrayRef,
        text(|c| c.iso_currency_code.as_deref()),
        Arc::new(Date32Array::from_iter(changes.clone().map(|c| days(c.date)))),
        Arc::new(Date32Array::from_iter(changes.clone().map(|c| days(c.authorized_date)))),
        text(|c| c.name.as_deref()),
        text(|c| c.merchant_name.as_deref()),
        Arc::new(BooleanArray::from_iter(changes.clone().map(|c| c.pending))),
        text(|c| c.category_primary.as_deref()),
        text(|c| c.category_detailed.as_deref()),
    ]);
    let schema = Arc::new(schema(with_change).as_ref().clone().with_metadata(metadata));
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// Schema metadata keys of a sync's file: which sync of which generation it is.
const SYNC_SEQ: &str = "plaid.sync_seq";
const GENERATION: &str = "plaid.generation";

/// (generation, sync number) of a `plaid_transactions` file.
fn sync_of(batch: &RecordBatch) -> Result<(String, u64), AssetError> {
    let metadata = batch.schema_ref().metadata();
    let seq = metadata.get(SYNC_SEQ).and_then(|s| s.parse().ok());
    match (metadata.get(GENERATION), seq) {
        (Some(generation), Some(seq)) => Ok((generation.clone(), seq)),
        _ => {
            Err(format!("the file has no {SYNC_SEQ} and {GENERATION} schema metadata: it is not a Plaid sync's").into())
        }
    }
}

/// The rows of a `plaid_transactions` or `plaid_transactions_current` table, as changes (a
/// current row is `added`).
fn rows(batch: &RecordBatch) -> Result<Vec<Change>, AssetError> {
    let column = |name: &str| batch.column_by_name(name).ok_or_else(|| format!("column {name} is missing"));
    let text = |name: &str| -> Result<Vec<Option<String>>, AssetError> {
        Ok(column(name)?.as_string::<i32>().iter().map(|v| v.map(str::to_owned)).collect())
    };
    let date = |name: &str| -> Result<Vec<Option<NaiveDate>>, AssetError> {
        let dates = column(name)?.as_primitive::<Date32Type>();
        Ok(dates.iter().map(|d| d.map(|d| EPOCH + chrono::TimeDelta::days(d.into()))).collect())
    };
    let ids = text("transaction_id")?;
    let accounts = text("account_id")?;
    let kinds = match batch.column_by_name("change") {
        Some(_) => text("change")?,
        None => vec![Some("added".to_owned()); batch.num_rows()],
    };
    let amounts: Vec<Option<i128>> = column("amount")?.as_primitive::<Decimal128Type>().iter().collect();
    let currencies = text("iso_currency_code")?;
    let (dates, authorized) = (date("date")?, date("authorized_date")?);
    let (names, merchants) = (text("name")?, text("merchant_name")?);
    let pending: Vec<Option<bool>> = column("pending")?.as_boolean().iter().collect();
    let (primary, detailed) = (text("category_primary")?, text("category_detailed")?);
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let kind = match kinds[i].as_deref() {
            Some("added") => ChangeKind::Added,
            Some("modified") => ChangeKind::Modified,
            Some("removed") => ChangeKind::Removed,
            other => return Err(format!("row {i}: change {other:?} is not added, modified or removed").into()),
        };
        out.push(Change {
            kind,
            transaction_id: ids[i].clone().ok_or("a transaction_id is null")?,
            account_id: accounts[i].clone(),
            amount: amounts[i],
            iso_currency_code: currencies[i].clone(),
            date: dates[i],
            authorized_date: authorized[i],
            name: names[i].clone(),
            merchant_name: merchants[i].clone(),
            pending: pending[i],
            category_primary: primary[i].clone(),
            category_detailed: detailed[i].clone(),
        });
    }
    Ok(out)
}

async fn sync(ctx: AssetContext) -> Result<Output, AssetError> {
    let plaid: Arc<dyn PlaidSource> = ctx.resource(PLAID)?;
    let objects: Arc<dyn ObjectStore> = ctx.resource(OBJECT_STORE)?;
    let item = ctx.partition_key.as_str();
    let previous = ctx.previous().await?;
    let (cursor, seq, generation) = match &previous {
        Some(m) => {
            let source = m.metadata["source"].as_str().unwrap_or_default();
            if source != plaid.source() {
                return Err(format!(
                    "plaid item {item} was synced from the {source} source, and Plaid is now {}: its cursor means \
                     nothing there; to start over, `robo-assets wipe plaid_transactions -p {item} --yes` (and \
                     plaid_transactions_current)",
                    plaid.source()
                )
                .into());
            }
            (
                m.metadata["cursor"].as_str().unwrap_or_default().to_owned(),
                m.metadata["sync_seq"].as_u64().unwrap_or(0),
                m.metadata["generation"].as_str().unwrap_or_default().to_owned(),
            )
        }
        // The first sync (or the first after a wipe) starts a generation of sync numbers.
        None => (String::new(), 0, ctx.run_id.to_string()),
    };
    let batch = plaid.sync(item, &cursor).await.map_err(|e| -> AssetError {
        match e {
            // Retrying cannot fix these: a step retried later would fail the same way.
            PlaidError::NotLinked { .. }
            | PlaidError::LoginRequired { .. }
            | PlaidError::Refused { .. }
            | PlaidError::Malformed { .. }
            | PlaidError::Config { .. } => Box::new(NotRetryable(e.to_string())),
            // Plaid unavailable, transactions not ready or still changing: try again later.
            e => Box::new(e),
        }
    })?;
    let seq = seq + 1;
    let file_metadata =
        HashMap::from([(SYNC_SEQ.to_owned(), seq.to_string()), (GENERATION.to_owned(), generation.clone())]);
    let table = table(item, batch.changes.iter(), true, file_metadata)?;
    // Kept before the materialization is recorded; a killed sync's file is replaced by the next.
    ChangeLog::new(objects).put(item, seq, &table).await?;
    let count = |kind| batch.changes.iter().filter(|c| c.kind == kind).count();
    Ok(Output::table(table)
        .with_metadata("cursor", batch.next_cursor)
        .with_metadata("sync_seq", seq)
        .with_metadata("generation", generation)
        .with_metadata("added", count(ChangeKind::Added))
        .with_metadata("modified", count(ChangeKind::Modified))
        .with_metadata("removed", count(ChangeKind::Removed))
        .with_metadata("pages", batch.pages)
        .with_metadata("restarts", batch.restarts)
        .with_metadata("source", plaid.source()))
}

/// Applies changes, in order, to a current set.
fn apply(current: &mut BTreeMap<String, Change>, changes: Vec<Change>) {
    for change in changes {
        match change.kind {
            ChangeKind::Added | ChangeKind::Modified => {
                current.insert(change.transaction_id.clone(), change);
            }
            ChangeKind::Removed => {
                current.remove(&change.transaction_id);
            }
        }
    }
}

async fn fold(ctx: AssetContext) -> Result<Output, AssetError> {
    let plaid: Arc<dyn PlaidSource> = ctx.resource(PLAID)?;
    let log = ChangeLog::new(ctx.resource::<Arc<dyn ObjectStore>>(OBJECT_STORE)?);
    let item = ctx.partition_key.as_str();
    // The latest sync (its bytes checked against the recorded version), and which one it is.
    let (_, latest) = ctx.load("plaid_transactions").await?.pop().ok_or_else(|| {
        format!("plaid item {item} has not been synced: materialize plaid_transactions -p {item} first")
    })?;
    let (generation, latest_seq) = sync_of(&latest)?;
    // Build on the previous current set when it belongs to the same generation of syncs (a
    // wiped and re-synced plaid_transactions starts a new one, from its whole history).
    let mut current = BTreeMap::new();
    let mut seq = 0;
    if let Some((previous, batch)) = ctx.load_previous().await?
        && previous.metadata["generation"].as_str() == Some(generation.as_str())
        && let Some(folded) = previous.metadata["folded_seq"].as_u64().filter(|f| *f <= latest_seq)
    {
        apply(&mut current, rows(&batch)?);
        seq = folded;
    }
    let folded_from = seq;
    while seq + 1 < latest_seq {
        seq += 1;
        let missing = || {
            format!(
                "sync {seq} of plaid item {item} is not in the change log (plaid_changes/{item}/): wipe                  plaid_transactions and plaid_transactions_current for {item} and sync again"
            )
        };
        let (batch, _) = log.get(item, seq).await?.ok_or_else(missing)?;
        if sync_of(&batch)? != (generation.clone(), seq) {
            return Err(missing().into());
        }
        apply(&mut current, rows(&batch)?);
    }
    if seq < latest_seq {
        apply(&mut current, rows(&latest)?);
        seq = latest_seq;
    }
    let table = table(item, current.values(), false, HashMap::new())
        .map_err(|e| format!("building the current set of {item}: {e}"))?;
    Ok(Output::table(table)
        .with_metadata("transactions", current.len())
        .with_metadata("syncs_folded", seq - folded_from)
        .with_metadata("folded_seq", seq)
        .with_metadata("generation", generation)
        .with_metadata("source", plaid.source()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(kind: ChangeKind, id: &str, amount: Option<i128>) -> Change {
        Change {
            kind,
            transaction_id: id.into(),
            account_id: Some("acc".into()),
            amount,
            iso_currency_code: Some("USD".into()),
            date: NaiveDate::from_ymd_opt(2025, 11, 24),
            authorized_date: None,
            name: Some("x".into()),
            merchant_name: None,
            pending: Some(false),
            category_primary: None,
            category_detailed: None,
        }
    }

    #[test]
    fn rows_read_back_what_the_table_holds_and_folding_replaces_and_removes() {
        let changes = vec![
            change(ChangeKind::Added, "a", Some(7_210_000_000)),
            change(ChangeKind::Added, "b", Some(-1)),
            change(ChangeKind::Modified, "a", Some(1)),
            Change {
                account_id: None,
                amount: None,
                date: None,
                pending: None,
                ..change(ChangeKind::Removed, "b", None)
            },
        ];
        let batch = table("item-1", changes.iter(), true, HashMap::new()).unwrap();
        assert_eq!(rows(&batch).unwrap(), changes);
        let mut current = BTreeMap::new();
        apply(&mut current, changes);
        let folded = table("item-1", current.values(), false, HashMap::new()).unwrap();
        assert_eq!(folded.num_rows(), 1);
        let back = rows(&folded).unwrap();
        assert_eq!((back[0].transaction_id.as_str(), back[0].amount, back[0].kind), ("a", Some(1), ChangeKind::Added));
    }
}
