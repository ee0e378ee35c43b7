//! The `LineageStore` methods, written once for both backends.
//!
//! Placeholders are `$N` (both drivers accept them); JSON columns are read back with
//! `CAST(.. AS TEXT)` (text already on SQLite, `jsonb` on PostgreSQL) into the shared rows of
//! `rows.rs`. [`store_methods!`] expands the impl for one backend, which supplies: where reads
//! and plain writes go, how a write transaction begins, the cast of a JSON bind (`::jsonb` or
//! nothing), how a JSON array of keys becomes a set in SQL, and the insertion order of dynamic
//! partitions.

/// The columns of a `MaterializationRow`, as a literal so queries stay `&'static str`.
macro_rules! materialization_columns {
    () => {
        "id, asset_key, partition_key, run_id, attempt, data_version, logical_version, code_version, \
         n_inputs, inputs_hash, storage_uri, bytes, row_count, CAST(schema AS TEXT) AS schema, \
         CAST(metadata AS TEXT) AS metadata, started_at, finished_at"
    };
}
pub(crate) use materialization_columns;

/// Expands `impl LineageStore` for one backend (see the module docs for the parameters).
macro_rules! store_methods {
    ($store:ty, $pool:ident, $writer:ident, $begin:ident, $json:literal, $in_list:literal, $dyn_order:literal) => {
#[async_trait::async_trait]
impl $crate::store::LineageStore for $store {
    fn describe(&self) -> String {
        self.describe_store()
    }

    async fn create_run(&self, run: &NewRun) -> Result<()> {
        let mut tx = self.$begin().await?;
        insert_run(&mut tx, run).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_run_status(&self, run_id: RunId, status: RunStatus, event: &RunEvent) -> Result<()> {
        let mut tx = self.$begin().await?;
        let res = sqlx::query(
            "UPDATE runs SET status = $2, \
                 started_at = CASE WHEN $2 = 'running' THEN coalesce(started_at, $3) ELSE started_at END, \
                 finished_at = CASE WHEN $2 IN ('succeeded', 'failed', 'canceled') THEN $3 ELSE finished_at END \
             WHERE id = $1",
        )
        .bind(run_id.to_string())
        .bind(status.as_str())
        .bind(event.ts)
        .execute(&mut *tx)
        .await?;
        if res.rows_affected() == 0 {
            return Err(Error::UnknownRun(run_id));
        }
        insert_events(&mut tx, std::slice::from_ref(event)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn append_event(&self, event: &RunEvent) -> Result<()> {
        let mut conn = self.$writer.acquire().await?;
        insert_events(&mut conn, std::slice::from_ref(event)).await
    }

    async fn record_steps_started(&self, events: &[RunEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.$begin().await?;
        write_steps_started(&mut tx, events).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_materializations(&self, ms: &[NewMaterialization]) -> Result<Vec<MaterializationId>> {
        if ms.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.$begin().await?;
        let ids = write_materializations(&mut tx, ms).await?;
        tx.commit().await?;
        Ok(ids)
    }

    async fn record_step_failed(&self, failure: &StepFailure) -> Result<()> {
        let mut tx = self.$begin().await?;
        let mut event = RunEvent::step(
            failure.run_id,
            failure.ts,
            EventKind::StepFailed,
            &failure.asset_key,
            &failure.partition_key,
            failure.error.clone(),
        );
        event.body = serde_json::json!({ "attempts": failure.attempts });
        insert_events(&mut tx, std::slice::from_ref(&event)).await?;
        sqlx::query(
            "INSERT INTO asset_partitions (asset_key, partition_key, last_run_id, last_attempt_status, \
                 last_error, updated_at) \
             VALUES ($1, $2, $3, 'failed', $4, $5) \
             ON CONFLICT (asset_key, partition_key) DO UPDATE SET \
                 last_run_id = excluded.last_run_id, last_attempt_status = 'failed', \
                 last_error = excluded.last_error, updated_at = excluded.updated_at",
        )
        .bind(&failure.asset_key)
        .bind(&failure.partition_key)
        .bind(failure.run_id.to_string())
        .bind(&failure.error)
        .bind(failure.ts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_step_canceled(&self, event: &RunEvent) -> Result<()> {
        let mut tx = self.$begin().await?;
        insert_events(&mut tx, std::slice::from_ref(event)).await?;
        let asset_key = event.asset_key.as_deref().unwrap_or_default();
        let partition_key = event.partition_key.as_deref().unwrap_or_default();
        sqlx::query(
            "DELETE FROM asset_partitions WHERE asset_key = $1 AND partition_key = $2 \
                 AND current_materialization_id IS NULL AND prev_attempt_status IS NULL \
                 AND last_attempt_status = 'running' AND last_run_id = $3",
        )
        .bind(asset_key)
        .bind(partition_key)
        .bind(event.run_id.to_string())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE asset_partitions SET last_attempt_status = coalesce(prev_attempt_status, 'materialized'), \
                 last_error = prev_error, updated_at = $4 \
             WHERE asset_key = $1 AND partition_key = $2 AND last_attempt_status = 'running' AND last_run_id = $3",
        )
        .bind(asset_key)
        .bind(partition_key)
        .bind(event.run_id.to_string())
        .bind(event.ts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn partition_states(&self, asset_key: &str) -> Result<Vec<PartitionState>> {
        let rows: Vec<PartitionRow> = sqlx::query_as(
            "SELECT asset_key, partition_key, current_materialization_id, data_version, logical_version, \
                 code_version, materialized_at, last_run_id, last_attempt_status, last_error, stale_inputs, \
                 input_keys_hash, updated_at \
             FROM asset_partitions WHERE asset_key = $1 ORDER BY partition_key",
        )
        .bind(asset_key)
        .fetch_all(&self.$pool)
        .await?;
        rows.into_iter().map(PartitionRow::into_state).collect()
    }

    async fn partition_summaries(&self, asset_key: &str, known_keys_hash: Option<&str>) -> Result<Vec<PartitionSummary>> {
        // Backend-specific (see `summaries` in sqlite.rs and postgres.rs).
        self.summaries(asset_key, known_keys_hash).await
    }

    async fn partition_states_of(&self, keys: &[(String, String)]) -> Result<Vec<Option<PartitionState>>> {
        // One query per asset: its partitions go in as a JSON array.
        let mut by_asset: Vec<(&str, Vec<&str>)> = Vec::new();
        for (asset, partition) in keys {
            match by_asset.iter_mut().find(|(a, _)| a == asset) {
                Some((_, ps)) => ps.push(partition),
                None => by_asset.push((asset, vec![partition])),
            }
        }
        let mut found: std::collections::HashMap<(String, String), PartitionState> = std::collections::HashMap::new();
        let mut conn = self.$pool.acquire().await?;
        for (asset, partitions) in by_asset {
            let rows: Vec<PartitionRow> = sqlx::query_as(concat!(
                "SELECT asset_key, partition_key, current_materialization_id, data_version, logical_version, \
                     code_version, materialized_at, last_run_id, last_attempt_status, last_error, stale_inputs, \
                 input_keys_hash, updated_at \
                 FROM asset_partitions WHERE asset_key = $1 AND partition_key IN (",
                $in_list,
                ")"
            ))
            .bind(asset)
            .bind(serde_json::to_string(&partitions).expect("strings serialize"))
            .fetch_all(&mut *conn)
            .await?;
            for row in rows {
                let state = row.into_state()?;
                found.insert((state.asset_key.clone(), state.partition_key.clone()), state);
            }
        }
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    async fn repair_staleness(&self) -> Result<u64> {
        let mut tx = self.$begin().await?;
        lock_staleness_all(&mut tx).await?;
        let fixed = sqlx::query(concat!(
            "UPDATE asset_partitions SET stale_inputs = ",
            $crate::writes::stale_inputs_recount!(),
            " WHERE stale_inputs <> ",
            $crate::writes::stale_inputs_recount!()
        ))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(fixed)
    }

    async fn wipe(&self, asset_key: &str, partitions: Option<&[String]>, now: DateTime<Utc>) -> Result<WipeOutcome> {
        let mut tx = self.$begin().await?;
        lock_staleness_all(&mut tx).await?;
        let keys: Vec<String> = match partitions {
            Some(keys) => keys.to_vec(),
            None => sqlx::query_scalar(
                "SELECT partition_key FROM asset_partitions WHERE asset_key = $1 \
                 UNION SELECT partition_key FROM materializations WHERE asset_key = $1 AND wiped_at IS NULL",
            )
            .bind(asset_key)
            .fetch_all(&mut *tx)
            .await?,
        };
        let keys = serde_json::to_string(&keys).expect("strings serialize");
        let running: Option<(String, Option<String>)> = sqlx::query_as(concat!(
            "SELECT partition_key, last_run_id FROM asset_partitions \
             WHERE asset_key = $1 AND last_attempt_status = 'running' AND partition_key IN (",
            $in_list,
            ") ORDER BY partition_key LIMIT 1"
        ))
        .bind(asset_key)
        .bind(&keys)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((partition, run)) = running {
            return Err(Error::PartitionRunning {
                asset: asset_key.to_owned(),
                partition,
                run: run.unwrap_or_default(),
            });
        }
        let mut out = WipeOutcome::default();
        out.partitions = sqlx::query(concat!(
            "DELETE FROM asset_partitions WHERE asset_key = $1 AND partition_key IN (",
            $in_list,
            ")"
        ))
        .bind(asset_key)
        .bind(&keys)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // Materializations are facts: they stay (their ids are cursors and inputs name them),
        // hidden from history. Readers keep their inputs; their counts are recomputed below.
        out.materializations = sqlx::query(concat!(
            "UPDATE materializations SET wiped_at = $3 WHERE asset_key = $1 AND wiped_at IS NULL AND partition_key IN (",
            $in_list,
            ")"
        ))
        .bind(asset_key)
        .bind(&keys)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(concat!(
            "DELETE FROM asset_check_results WHERE asset_key = $1 AND partition_key IN (",
            $in_list,
            ")"
        ))
        .bind(asset_key)
        .bind(&keys)
        .execute(&mut *tx)
        .await?;
        out.readers = sqlx::query(concat!(
            "UPDATE asset_partitions SET stale_inputs = ",
            $crate::writes::stale_inputs_recount!(),
            " WHERE current_materialization_id IN (SELECT materialization_id FROM materialization_inputs \
               WHERE upstream_asset_key = $1 AND upstream_partition_key IN (",
            $in_list,
            "))"
        ))
        .bind(asset_key)
        .bind(&keys)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(out)
    }

    async fn history(
        &self,
        asset_key: &str,
        partition_key: Option<&str>,
        limit: i64,
    ) -> Result<Vec<MaterializationRecord>> {
        let rows: Vec<MaterializationRow> = sqlx::query_as(concat!(
            "SELECT ",
            $crate::backend::materialization_columns!(),
            " FROM materializations WHERE asset_key = $1 AND ($2 IS NULL OR partition_key = $2) \
             AND wiped_at IS NULL ORDER BY id DESC LIMIT $3"
        ))
        .bind(asset_key)
        .bind(partition_key)
        .bind(limit)
        .fetch_all(&self.$pool)
        .await?;
        rows.into_iter().map(MaterializationRow::into_record).collect()
    }

    async fn materialization(&self, id: MaterializationId) -> Result<Option<MaterializationRecord>> {
        let row: Option<MaterializationRow> =
            sqlx::query_as(concat!("SELECT ", $crate::backend::materialization_columns!(), " FROM materializations WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.$pool)
                .await?;
        row.map(MaterializationRow::into_record).transpose()
    }

    async fn inputs_of(&self, id: MaterializationId) -> Result<Vec<InputVersion>> {
        let rows: Vec<InputRow> = sqlx::query_as(
            "SELECT upstream_asset_key, upstream_partition_key, upstream_materialization_id, upstream_data_version \
             FROM materialization_inputs WHERE materialization_id = $1 \
             ORDER BY upstream_asset_key, upstream_partition_key",
        )
        .bind(id)
        .fetch_all(&self.$pool)
        .await?;
        Ok(rows.into_iter().map(InputRow::into_input).collect())
    }

    async fn readers_of(&self, id: MaterializationId) -> Result<Vec<MaterializationRecord>> {
        let rows: Vec<MaterializationRow> = sqlx::query_as(concat!(
            "SELECT ",
            $crate::backend::materialization_columns!(),
            " FROM materializations WHERE id IN \
             (SELECT materialization_id FROM materialization_inputs WHERE upstream_materialization_id = $1) \
             AND wiped_at IS NULL ORDER BY id"
        ))
        .bind(id)
        .fetch_all(&self.$pool)
        .await?;
        rows.into_iter().map(MaterializationRow::into_record).collect()
    }

    async fn record_check_results(&self, results: &[NewCheckResult]) -> Result<()> {
        if results.is_empty() {
            return Ok(());
        }
        let mut tx = self.$begin().await?;
        for chunk in results.chunks($crate::writes::ROWS_PER_STATEMENT) {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO asset_check_results (asset_key, partition_key, run_id, check_name, severity, passed, message, created_at) ",
            );
            q.push_values(chunk, |mut row, r| {
                row.push_bind(&r.asset_key)
                    .push_bind(&r.partition_key)
                    .push_bind(r.run_id.to_string())
                    .push_bind(&r.check_name)
                    .push_bind(&r.severity)
                    .push_bind(r.passed)
                    .push_bind(&r.message)
                    .push_bind(r.created_at);
            });
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn check_results(&self, asset_key: &str, partition_key: Option<&str>, limit: i64) -> Result<Vec<CheckResultRecord>> {
        Ok(sqlx::query_as(
            "SELECT id, asset_key, partition_key, run_id, check_name, severity, passed, message, created_at \
             FROM asset_check_results WHERE asset_key = $1 AND ($2 IS NULL OR partition_key = $2) \
             ORDER BY id DESC LIMIT $3",
        )
        .bind(asset_key)
        .bind(partition_key)
        .bind(limit)
        .fetch_all(&self.$pool)
        .await?)
    }

    async fn create_backfill(&self, backfill: &NewBackfill) -> Result<()> {
        let mut tx = self.$begin().await?;
        let run = &backfill.run;
        insert_run(&mut tx, run).await?;
        sqlx::query(concat!(
            "INSERT INTO backfills (id, selection, partition_from, partition_to, policy, run_id, cells, skipped, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8",
            $json,
            ", $9)"
        ))
        .bind(backfill.id.to_string())
        .bind(&backfill.selection)
        .bind(&backfill.partition_from)
        .bind(&backfill.partition_to)
        .bind(&backfill.policy)
        .bind(run.id.to_string())
        .bind(backfill.cells)
        .bind(backfill.skipped.to_string())
        .bind(run.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn backfills(&self, id: Option<BackfillId>, limit: i64) -> Result<Vec<BackfillRecord>> {
        let rows: Vec<$crate::rows::BackfillRow> = sqlx::query_as(
            "SELECT b.id, b.selection, b.partition_from, b.partition_to, b.policy, b.run_id, r.status, b.cells, \
                 CAST(b.skipped AS TEXT) AS skipped, b.created_at, r.finished_at \
             FROM backfills b JOIN runs r ON r.id = b.run_id \
             WHERE ($1 IS NULL OR b.id = $1) ORDER BY b.created_at DESC, b.id DESC LIMIT $2",
        )
        .bind(id.map(|i| i.to_string()))
        .bind(limit)
        .fetch_all(&self.$pool)
        .await?;
        rows.into_iter().map($crate::rows::BackfillRow::into_record).collect()
    }

    async fn runs(&self, status: Option<RunStatus>, limit: i64) -> Result<Vec<RunRecord>> {
        let rows: Vec<RunRow> = sqlx::query_as(
            "SELECT id, status, trigger, selection, n_steps, CAST(tags AS TEXT) AS tags, created_at, started_at, finished_at \
             FROM runs WHERE ($1 IS NULL OR status = $1) ORDER BY created_at DESC, id DESC LIMIT $2",
        )
        .bind(status.map(RunStatus::as_str))
        .bind(limit)
        .fetch_all(&self.$pool)
        .await?;
        rows.into_iter().map(RunRow::into_record).collect()
    }

    async fn run(&self, id: RunId) -> Result<Option<RunRecord>> {
        let row: Option<RunRow> = sqlx::query_as(
            "SELECT id, status, trigger, selection, n_steps, CAST(tags AS TEXT) AS tags, created_at, started_at, finished_at \
             FROM runs WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.$pool)
        .await?;
        row.map(RunRow::into_record).transpose()
    }

    async fn run_events(&self, id: RunId) -> Result<Vec<RunEvent>> {
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT run_id, ts, kind, asset_key, partition_key, message, CAST(body AS TEXT) AS body \
             FROM run_events WHERE run_id = $1 ORDER BY id",
        )
        .bind(id.to_string())
        .fetch_all(&self.$pool)
        .await?;
        rows.into_iter().map(EventRow::into_event).collect()
    }

    async fn run_materializations(&self, id: RunId) -> Result<Vec<MaterializationRecord>> {
        let rows: Vec<MaterializationRow> = sqlx::query_as(concat!(
            "SELECT ",
            $crate::backend::materialization_columns!(),
            " FROM materializations WHERE run_id = $1 ORDER BY id"
        ))
        .bind(id.to_string())
        .fetch_all(&self.$pool)
        .await?;
        rows.into_iter().map(MaterializationRow::into_record).collect()
    }

    async fn add_dynamic_partitions(&self, partitions_def: &str, keys: &[String], now: DateTime<Utc>) -> Result<u64> {
        let mut tx = self.$begin().await?;
        let mut added = 0;
        for key in keys {
            let res = sqlx::query(
                "INSERT INTO dynamic_partitions (partitions_def, partition_key, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(partitions_def)
            .bind(key)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            added += res.rows_affected();
        }
        tx.commit().await?;
        Ok(added)
    }

    async fn dynamic_partitions(&self, partitions_def: &str) -> Result<Vec<String>> {
        let keys: Vec<String> = sqlx::query_scalar(
            concat!("SELECT partition_key FROM dynamic_partitions WHERE partitions_def = $1 ORDER BY ", $dyn_order),
        )
        .bind(partitions_def)
        .fetch_all(&self.$pool)
        .await?;
        Ok(keys)
    }
}
    };
}
pub(crate) use store_methods;
