//! The store's traits: [`LineageStore`] (what was materialized, from what, by which run),
//! [`RequestQueue`] (requests, leases, fenced completion, pools) and [`AutomationStore`]
//! (schedules, sensors, ticks, condition evaluations), [`OutboxStore`] (the outboxes and delivery
//! leases) and [`RetentionStore`] (pruning finished history). Every store serves all of them; the
//! engine holds an `Arc<dyn LineageStore>`, which is all of them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::Result;
use crate::model::*;

/// Everything the engine remembers, behind one trait that SQLite and PostgreSQL both serve.
///
/// Every write is one transaction: a caller never sees half of a write. A read is one
/// statement, except where its documentation says it reads in parts.
#[async_trait]
pub trait LineageStore: RequestQueue + AutomationStore + OutboxStore + RetentionStore + Send + Sync + 'static {
    /// A short name of the backend and where it lives, with secrets redacted.
    fn describe(&self) -> String;

    /// Creates a run in `queued` state.
    async fn create_run(&self, run: &NewRun) -> Result<()>;

    /// Moves a run to `status`, appending `event` to its log in the same transaction.
    ///
    /// `running` sets `started_at`; a terminal status sets `finished_at`.
    async fn set_run_status(&self, run_id: RunId, status: RunStatus, event: &RunEvent) -> Result<()>;

    /// Appends one event to a run's log.
    async fn append_event(&self, event: &RunEvent) -> Result<()>;

    /// Marks each event's (asset, partition) as running in its run and logs `step_started`, all
    /// in one transaction (group commit: the executor batches steps that start together).
    async fn record_steps_started(&self, events: &[RunEvent]) -> Result<()>;

    /// Records materializations, their inputs, their current-state rows and their
    /// `step_succeeded` events, all in one transaction; returns their ids in order.
    async fn record_materializations(&self, ms: &[NewMaterialization]) -> Result<Vec<MaterializationId>>;

    /// Marks one (asset, partition) as running; see [`LineageStore::record_steps_started`].
    async fn record_step_started(&self, event: &RunEvent) -> Result<()> {
        self.record_steps_started(std::slice::from_ref(event)).await
    }

    /// Records one materialization; see [`LineageStore::record_materializations`].
    async fn record_materialization(&self, m: &NewMaterialization) -> Result<MaterializationId> {
        Ok(self.record_materializations(std::slice::from_ref(m)).await?[0])
    }

    /// The current state of every known partition of `asset_key`.
    async fn partition_states(&self, asset_key: &str) -> Result<Vec<PartitionState>>;

    /// What status needs of every known partition of `asset_key`, in partition order. A row
    /// whose `input_keys_hash` equals `known_keys_hash` (one the caller knows is current, e.g.
    /// the empty set's for an asset without upstream) returns `None` there: nothing to compare,
    /// and less to read.
    async fn partition_summaries(
        &self,
        asset_key: &str,
        known_keys_hash: Option<&str>,
    ) -> Result<Vec<PartitionSummary>>;

    /// The stored partitions of `asset_key` as runs of one [`PartitionClass`], in the order of
    /// their keys the database keeps (bytewise on SQLite, the database's collation on
    /// PostgreSQL: the primary key's, so each run is a seek; callers check it against their
    /// own): ranges, not rows, so a million partitions are read as a handful of runs. `code_version` is the definition's now; `known_keys_hash` as for
    /// [`partition_summaries`](Self::partition_summaries), and a materialized partition that read
    /// other keys is [`PartitionClass::Unverified`]. At most `limit` runs are read (each costs a
    /// seek, more than a row): when there are more, the last one returned stands for every stored
    /// partition from its first key on, and a caller wanting ranges should read rows instead.
    async fn partition_runs(
        &self,
        asset_key: &str,
        code_version: &str,
        known_keys_hash: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PartitionRun>>;

    /// How many partitions of `asset_key` the store holds a current state for.
    async fn partition_count(&self, asset_key: &str) -> Result<i64>;

    /// The current state of each requested (asset, partition), in the order asked; `None` when
    /// the store has never seen it. Reads one statement per asset, not in one transaction: a
    /// write may land between them (callers use it for display and for gathering inputs, whose
    /// versions are recorded as read).
    async fn partition_states_of(&self, keys: &[(String, String)]) -> Result<Vec<Option<PartitionState>>>;

    /// Recomputes every partition's `stale_inputs` from the inputs its current materialization
    /// read and the data versions now current; returns how many rows were wrong (0 when the
    /// incremental maintenance is right).
    async fn repair_staleness(&self) -> Result<u64>;

    /// Forgets partitions of `asset_key` (every partition when `partitions` is `None`): their
    /// current state and check results are removed and their materializations marked wiped at
    /// `now` (kept for lineage, hidden from history), in one transaction. Current
    /// materializations that read one become stale. Refuses while a run materializes one.
    async fn wipe(&self, asset_key: &str, partitions: Option<&[String]>, now: DateTime<Utc>) -> Result<WipeOutcome>;

    /// Materializations of an asset (optionally one partition), newest first, older than
    /// `before` when given (keyset pagination).
    async fn history(
        &self,
        asset_key: &str,
        partition_key: Option<&str>,
        before: Option<MaterializationId>,
        limit: i64,
    ) -> Result<Vec<MaterializationRecord>>;

    /// How many rows a listing has in all, whatever page is shown.
    async fn count(&self, of: Counted<'_>) -> Result<i64>;

    /// One materialization by id.
    async fn materialization(&self, id: MaterializationId) -> Result<Option<MaterializationRecord>>;

    /// The inputs a materialization read, ordered by asset then partition.
    async fn inputs_of(&self, id: MaterializationId) -> Result<Vec<InputVersion>>;

    /// Materializations that read materialization `id` as an input, oldest first (impact).
    async fn readers_of(&self, id: MaterializationId) -> Result<Vec<MaterializationRecord>>;

    /// Check results of an asset (one partition when given), newest first, older than `before`
    /// (a check result id) when given.
    async fn check_results(
        &self,
        asset_key: &str,
        partition_key: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<CheckResultRecord>>;

    /// What a run's checks found: the latest verdict of each (asset, partition, check) the run
    /// evaluated (a retried step's last attempt), ordered by asset, partition and check name.
    async fn run_check_results(&self, run_id: RunId) -> Result<Vec<CheckResultRecord>>;

    /// The latest verdict of every check on every partition of `asset_key` (whichever run
    /// evaluated it), ordered by partition and check name: what `status` shows per asset.
    async fn latest_check_results(&self, asset_key: &str) -> Result<Vec<CheckResultRecord>>;

    /// Creates a backfill and its (queued) run in one transaction; its cells are submitted
    /// separately as requests of that run.
    async fn create_backfill(&self, backfill: &NewBackfill) -> Result<()>;

    /// Backfills, newest first (only `id` when given), older than `before` when given.
    async fn backfills(
        &self,
        id: Option<BackfillId>,
        before: Option<BackfillId>,
        limit: i64,
    ) -> Result<Vec<BackfillRecord>>;

    /// Runs, newest first, as `filter` says.
    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>>;

    /// One run.
    async fn run(&self, id: RunId) -> Result<Option<RunRecord>>;

    /// How many runs are in each status, by status.
    async fn run_counts(&self) -> Result<Vec<(RunStatus, i64)>>;

    /// A run's event log, oldest first.
    async fn run_events(&self, id: RunId) -> Result<Vec<RunEvent>>;

    /// Materializations recorded by a run, in recording order.
    async fn run_materializations(&self, id: RunId) -> Result<Vec<MaterializationRecord>>;

    /// The materialization a run recorded for one partition of an asset, if any.
    async fn step_materialization(
        &self,
        run: RunId,
        asset_key: &str,
        partition_key: &str,
    ) -> Result<Option<MaterializationRecord>>;

    /// Adds keys to a dynamic partitions definition; returns how many were new.
    async fn add_dynamic_partitions(&self, partitions_def: &str, keys: &[String], now: DateTime<Utc>) -> Result<u64>;

    /// The keys of a dynamic partitions definition, in the order they were added.
    async fn dynamic_partitions(&self, partitions_def: &str) -> Result<Vec<String>>;

    /// The keys of several dynamic partitions definitions in one read, each definition's in the
    /// order they were added (one without keys maps to none).
    async fn dynamic_partitions_of(
        &self,
        partitions_defs: &[&str],
    ) -> Result<std::collections::HashMap<String, Vec<String>>>;

    /// Ids of `kind` that begin or end with `fragment` (lowercase hex digits and dashes, as a
    /// UUID is written; the caller validates it, so it holds no `LIKE` wildcard), oldest first,
    /// at most `limit`: how an abbreviated id given on the command line is resolved. A prefix
    /// is an index range; a suffix scans the table.
    async fn ids_matching(&self, kind: IdKind, fragment: &str, limit: i64) -> Result<Vec<uuid::Uuid>>;

    /// Materializations recorded after id `after`: (id, asset, partition), oldest first. A
    /// cursor may move to the last id returned: no materialization with a lower id becomes
    /// visible later (on PostgreSQL, this read waits for the transactions recording some).
    async fn materializations_after(&self, after: i64, limit: i64) -> Result<Vec<(i64, String, String)>>;
}

/// The request queue, kept in the lineage store: requests with idempotency keys, leases,
/// fenced completion, retries and pools. Every `LineageStore` is one.
#[async_trait]
pub trait RequestQueue: Send + Sync {
    /// A wake-up for an idle worker: resolves when work may have become claimable (submitted,
    /// unblocked, released or reopened). A hint, not a promise: poll as well, for retries coming
    /// due. On PostgreSQL every process's writes feed it (`LISTEN`/`NOTIFY`); on SQLite only
    /// this process's.
    fn work_signal(&self) -> crate::WorkSignal;

    /// Submits requests and the edges between them (`(upstream index, downstream index)` into
    /// `requests`), in one transaction. A known idempotency key returns the existing request and
    /// adds nothing. A request with unfinished upstream requests starts `blocked`.
    async fn submit_requests(&self, requests: &[NewRequest], edges: &[(usize, usize)]) -> Result<Vec<SubmitOutcome>>;

    /// Submits requests as the new run `run`, in one transaction: the run is created, its
    /// `n_steps` the number of new requests, only if some request is new. No worker can claim a
    /// request of a run that does not exist yet, and a crash leaves both or neither. A run whose
    /// new requests all wait on upstream requests that failed meanwhile ends at once. When every
    /// key was known, no run is created and the outcomes name the existing requests. `event` (the
    /// run's start, for a run this process carries out) is appended in the same transaction when
    /// the run is created.
    async fn submit_run(
        &self,
        run: &NewRun,
        requests: &[NewRequest],
        edges: &[(usize, usize)],
        event: Option<&RunEvent>,
    ) -> Result<Vec<SubmitOutcome>>;

    /// Claims up to `limit` available requests for `worker` with a lease until `lease_until`,
    /// highest priority first, never exceeding a pool's slot limit across all workers; only
    /// requests of `only_run` when given (an in-process `materialize` runs only its own run).
    /// The claimed partitions are marked running (with `step_started` events) in the same
    /// transaction.
    async fn claim_requests(
        &self,
        worker: &str,
        only_run: Option<RunId>,
        limit: i64,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<ClaimedRequest>>;

    /// Extends `worker`'s leases on `ids`, and on the runs it owns; returns the requests it still
    /// holds, each with whether a cancel was requested.
    async fn heartbeat(
        &self,
        worker: &str,
        ids: &[RequestId],
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<(RequestId, bool)>>;

    /// Records finished attempts, fenced on (lease owner, attempt): a completion from a worker
    /// that lost its lease records nothing, not even its check verdicts. Each recorded one is
    /// written with its materialization, its partition's current state, its check verdicts and
    /// its run's end (when it was the last) in one transaction, and unblocks its downstream.
    async fn complete_requests(
        &self,
        worker: &str,
        completions: &[Completion],
        now: DateTime<Utc>,
    ) -> Result<Vec<CompletionResult>>;

    /// Records a failed attempt, fenced like completion, in one transaction with its check
    /// verdicts, its event and its partition's state: back to `available` at `retry_at` when
    /// given and attempts remain (the partition's previous state restored), otherwise `failed`
    /// (the partition failed with the error, its downstream `upstream_failed`, the run ended
    /// when nothing of it waits or runs).
    async fn fail_request(&self, worker: &str, failed: &FailedAttempt, now: DateTime<Utc>) -> Result<FailOutcome>;

    /// Marks a running request whose cancel was requested as canceled (fenced), restoring its
    /// partition's previous state and failing its downstream, in one transaction; false if the
    /// lease was lost.
    async fn acknowledge_cancel(&self, worker: &str, id: RequestId, attempt: i64, now: DateTime<Utc>) -> Result<bool>;

    /// Settles what lost its holder, each in the transaction that changes it: a running request
    /// whose lease expired is canceled if a cancel was asked, else retried at
    /// `now + backoff(attempt)`, else (attempts spent) failed with its partition; a run whose
    /// owning process stopped renewing its lease ends canceled with everything of it that had not
    /// finished.
    async fn reap_expired(
        &self,
        now: DateTime<Utc>,
        backoff: &(dyn Fn(i64) -> std::time::Duration + Send + Sync),
    ) -> Result<Reaped>;

    /// Settles at once the work of processes known to be dead (`owners`: worker ids), as the
    /// reaper would when their leases expire, except that an interrupted attempt is not charged
    /// (the asset did not fail; its process died).
    async fn release_abandoned(&self, owners: &[String], now: DateTime<Utc>) -> Result<Reaped>;

    /// Every worker that holds a request's lease or owns an unfinished run (to find the dead
    /// ones of this host).
    async fn lease_holders(&self) -> Result<Vec<String>>;

    /// Cancels a run: its waiting requests at once, its running ones by asking their workers;
    /// the run ends when nothing of it runs. Returns (canceled, asked to stop).
    async fn cancel_run(&self, run: RunId, now: DateTime<Utc>) -> Result<(u64, u64)>;

    /// Puts a run's requests in `states` back in the queue with fresh attempts (blocked again
    /// behind upstream requests that have not succeeded); an ended run waits again, a running one
    /// stays running. Returns how many.
    async fn reopen_requests(&self, run: RunId, states: &[RequestState], now: DateTime<Utc>) -> Result<u64>;

    /// `backfill resume` in one transaction: reopens the run's requests in `states` (as
    /// [`RequestQueue::reopen_requests`]), submits `requests` to the run (as
    /// [`RequestQueue::submit_requests`]: a known key adds nothing), and ends the run if nothing
    /// of it is left waiting or running. A worker finishing the reopened requests cannot end the
    /// run before the new ones are in it. Returns how many were reopened, and the outcomes.
    async fn resume_run(
        &self,
        run: RunId,
        states: &[RequestState],
        requests: &[NewRequest],
        edges: &[(usize, usize)],
        now: DateTime<Utc>,
    ) -> Result<(u64, Vec<SubmitOutcome>)>;

    /// Ends a run that has nothing left waiting or running, as its last settler's check does
    /// (one name for both: the store's `finish_run`), for after
    /// [`RequestQueue::reopen_requests`]: what was reopened may all be `upstream_failed` again
    /// at once. Returns whether it ended now.
    async fn finish_run(&self, run: RunId, now: DateTime<Utc>) -> Result<bool>;

    /// For each (asset, partition) of `cells`, its oldest request that has not ended (blocked,
    /// available or running), from any run; cells with none are left out.
    async fn pending_requests(&self, cells: &[(String, String)]) -> Result<Vec<PendingRequest>>;

    /// The runs other than `run` holding a request that one of `run`'s waits on and that has not
    /// ended, oldest first: what must run before `run` can finish.
    async fn runs_waited_on(&self, run: RunId) -> Result<Vec<RunId>>;

    /// How many of a run's requests are in each state, per asset.
    async fn request_counts(&self, run: RunId) -> Result<Vec<(String, RequestState, i64)>>;

    /// Cancels a request: a waiting one at once (with its downstream), a running one by asking
    /// its worker. Returns its state after the call, or `None` if it does not exist.
    async fn cancel_request(&self, id: RequestId, now: DateTime<Utc>) -> Result<Option<RequestState>>;

    /// One request.
    async fn request(&self, id: RequestId) -> Result<Option<RequestRecord>>;

    /// Requests, newest first, optionally of one run and/or in one state.
    async fn requests(
        &self,
        run_id: Option<RunId>,
        state: Option<RequestState>,
        before: Option<RequestId>,
        limit: i64,
    ) -> Result<Vec<RequestRecord>>;

    /// Sets a pool's slot limit.
    async fn set_pool_limit(&self, pool: &str, slot_limit: i64) -> Result<()>;

    /// Every pool with a limit, with how many of its requests run now, by name.
    async fn pools(&self) -> Result<Vec<PoolState>>;

    /// How many requests wait or run (`blocked`, `available`, `running`), by state and pool
    /// family (a pool kept per dimension counts under its family's name): the queue's depth.
    /// Finished requests are not counted.
    async fn queue_depth(&self) -> Result<Vec<QueueDepth>>;
}

/// Automation state: which schedules and sensors exist and run, their ticks (each committed with
/// its requests), and the evaluations of declarative conditions.
#[async_trait]
pub trait AutomationStore: Send + Sync {
    /// Registers schedules and sensors (name, kind) not yet known, as running.
    async fn ensure_instigators(&self, instigators: &[(String, InstigatorKind)], now: DateTime<Utc>) -> Result<()>;

    /// Every known schedule and sensor, by name.
    async fn instigators(&self) -> Result<Vec<InstigatorState>>;

    /// Sets an instigator's status and/or cursor; false if it is unknown.
    async fn set_instigator(
        &self,
        name: &str,
        status: Option<InstigatorStatus>,
        cursor: Option<Option<&str>>,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// Records a tick with its requests, run, dynamic partitions and cursor in one transaction;
    /// a tick already recorded (by another daemon) or a cursor that moved writes nothing.
    async fn commit_tick(&self, tick: &NewTick) -> Result<TickCommit>;

    /// Condition evaluations of an asset (one partition when given), newest first.
    async fn condition_evaluations(
        &self,
        asset_key: &str,
        partition_key: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ConditionEvaluationRecord>>;

    /// An instigator's ticks, newest first (by tick time), after tick `before` in that order
    /// when given.
    async fn ticks(&self, instigator: &str, before: Option<i64>, limit: i64) -> Result<Vec<TickRecord>>;
}

/// The outboxes: OpenLineage events written by the transitions they describe (a run or a step
/// attempt started, completed, failed, aborted) and failure alerts written by a run failing, each
/// in the same transaction as the change, read back in id order to be delivered (or exported);
/// and the leases that let one process at a time deliver each.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Undelivered events, oldest first.
    async fn outbox_pending(&self, limit: i64) -> Result<Vec<OutboxEvent>>;

    /// Every event (delivered or not) at or after `since`, with an id above `after`, in id order.
    async fn outbox_events(&self, since: DateTime<Utc>, after: i64, limit: i64) -> Result<Vec<OutboxEvent>>;

    /// Marks events delivered, or, with `rejected`, given up on: the receiver refused them for
    /// good (a 4xx), which the row keeps as its last error.
    async fn outbox_delivered(&self, ids: &[i64], now: DateTime<Utc>, rejected: Option<&str>) -> Result<()>;

    /// Records a failed delivery of an event, which stays pending.
    async fn outbox_delivery_failed(&self, id: i64, error: &str) -> Result<()>;

    /// How many events wait for delivery.
    async fn outbox_backlog(&self) -> Result<i64>;

    /// Takes or renews the lease of `delivery` (one per kind) for `owner` until `until`; false
    /// while another owner's lease runs (past `now`), unless that owner is `replacing` (a holder
    /// known to be dead). Two daemons never deliver the same events or alerts at once.
    async fn delivery_lease(
        &self,
        delivery: Delivery,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        replacing: Option<&str>,
    ) -> Result<bool>;

    /// Who holds (or last held) the lease of `delivery`.
    async fn delivery_lease_holder(&self, delivery: Delivery) -> Result<Option<String>>;

    /// Alerts not yet sent, oldest first.
    async fn alerts_pending(&self, limit: i64) -> Result<Vec<Alert>>;

    /// Every alert of `run`, sent or not, oldest first.
    async fn run_alerts(&self, run: RunId) -> Result<Vec<Alert>>;

    /// Marks an alert sent, or, with `refused`, given up on: the receiver refused it for good (a
    /// 4xx), which the row keeps as its last error.
    async fn alert_delivered(&self, id: i64, now: DateTime<Utc>, refused: Option<&str>) -> Result<()>;

    /// Records a failed delivery of an alert, which stays pending.
    async fn alert_delivery_failed(&self, id: i64, error: &str) -> Result<()>;

    /// How many alerts wait to be sent.
    async fn alert_backlog(&self) -> Result<i64>;
}

/// Retention: deletes finished history older than a cutoff, so a store that runs schedules for
/// months does not grow without bound. Lineage is never pruned: materializations, their inputs,
/// runs, partition state, check verdicts, backfills and dynamic partitions stay forever.
#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// Deletes, in batches of bounded size (each its own transaction, each leaving the store
    /// consistent, so a prune cut short is carried on by the next), what finished before `cutoff`: the events of runs that
    /// finished before it (unless an alert of the run is still unsent, whose body reads them);
    /// those runs' finished requests and every edge touching them, except a backfill's (its
    /// status is counted from them); ticks before it but each instigator's latest (catch-up
    /// starts from it); delivered OpenLineage rows and settled alerts from before it. Queued and
    /// running work is never touched. `dry_run`: counts the same rows and deletes nothing.
    async fn prune(&self, cutoff: DateTime<Utc>, dry_run: bool) -> Result<PruneReport>;
}
