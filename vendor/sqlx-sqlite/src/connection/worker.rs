use std::future::Future;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use futures_channel::oneshot;
use futures_intrusive::sync::{Mutex, MutexGuard};
use sqlx_core::sql_str::SqlStr;
use tracing::span::Span;

use sqlx_core::error::Error;
use sqlx_core::transaction::{
    begin_ansi_transaction_sql, commit_ansi_transaction_sql, rollback_ansi_transaction_sql,
};
use sqlx_core::Either;

use crate::connection::establish::EstablishParams;
use crate::connection::execute;
use crate::connection::ConnectionState;
use crate::{SqliteArguments, SqliteQueryResult, SqliteRow, SqliteStatement};

#[cfg(feature = "deserialize")]
use crate::connection::deserialize::{deserialize, serialize, SchemaName, SqliteOwnedBuf};

// Each SQLite connection has a dedicated thread, unless its statements run on the calling thread
// (robo-assets: `SqliteConnectOptions::calling_thread`).

// TODO: Tweak this so that we can use a thread pool per pool of SQLite3 connections to reduce
//       OS resource usage. Low priority because a high concurrent load for SQLite3 is very
//       unlikely.

pub(crate) struct ConnectionWorker {
    /// robo-assets: `None` when statements run on the calling thread.
    command_tx: Option<flume::Sender<(Command, tracing::Span)>>,
    /// Mutex for locking access to the database.
    ///
    /// robo-assets: taken out in `drop` (see there), never dropped in place.
    pub(crate) shared: ManuallyDrop<Arc<WorkerSharedState>>,
    /// robo-assets: `shutdown` was called: the connection closes on the calling thread when the
    /// worker drops (without a worker thread).
    close_here: bool,
    /// robo-assets: how long a statement that met a lock waits for it, on a blocking thread
    /// (without a worker thread; statements run on the calling thread without waiting).
    busy_timeout: Duration,
}

// robo-assets: without a worker thread, a dropped connection closes on a thread of its own, as
// it would on its worker thread: closing the last connection to a WAL database checkpoints and
// fsyncs, which the caller does not wait for unless it called `close`.
impl Drop for ConnectionWorker {
    fn drop(&mut self) {
        // SAFETY: `shared` is not used after this; `drop` runs once.
        let shared = unsafe { ManuallyDrop::take(&mut self.shared) };
        if self.command_tx.is_none() && !self.close_here {
            if let Err(e) = thread::Builder::new().name("sqlx-sqlite-close".into()).spawn(move || drop(shared)) {
                tracing::warn!(error = %e, "could not start a thread to close a SQLite connection; closing it here");
            }
        }
    }
}

pub(crate) struct WorkerSharedState {
    transaction_depth: AtomicUsize,
    cached_statements_size: AtomicUsize,
    pub(crate) conn: Mutex<ConnectionState>,
    /// robo-assets: dropped transactions' rollbacks (one per dropped transaction or savepoint),
    /// for whoever takes the lock next: without a worker thread, `start_rollback` cannot wait
    /// for a query still running on a blocking thread.
    rollbacks_pending: AtomicUsize,
    /// robo-assets: a rollback failed; the connection is unusable, as upstream's worker thread
    /// stops then (every later call fails with `WorkerCrashed`, and the pool discards it).
    broken: AtomicBool,
}

impl WorkerSharedState {
    pub(crate) fn get_transaction_depth(&self) -> usize {
        self.transaction_depth.load(Ordering::Acquire)
    }

    pub(crate) fn get_cached_statements_size(&self) -> usize {
        self.cached_statements_size.load(Ordering::Acquire)
    }
}

enum Command {
    Prepare {
        query: SqlStr,
        tx: oneshot::Sender<Result<SqliteStatement, Error>>,
    },
    #[cfg(feature = "offline")]
    Describe {
        query: SqlStr,
        tx: oneshot::Sender<Result<sqlx_core::describe::Describe<crate::Sqlite>, Error>>,
    },
    Execute {
        query: SqlStr,
        arguments: Option<SqliteArguments>,
        persistent: bool,
        tx: flume::Sender<Result<Either<SqliteQueryResult, SqliteRow>, Error>>,
        limit: Option<usize>,
    },
    #[cfg(feature = "deserialize")]
    Serialize {
        schema: Option<SchemaName>,
        tx: oneshot::Sender<Result<SqliteOwnedBuf, Error>>,
    },
    #[cfg(feature = "deserialize")]
    Deserialize {
        schema: Option<SchemaName>,
        data: SqliteOwnedBuf,
        read_only: bool,
        tx: oneshot::Sender<Result<(), Error>>,
    },
    Begin {
        tx: rendezvous_oneshot::Sender<Result<(), Error>>,
        statement: Option<SqlStr>,
    },
    Commit {
        tx: rendezvous_oneshot::Sender<Result<(), Error>>,
    },
    Rollback {
        tx: Option<rendezvous_oneshot::Sender<Result<(), Error>>>,
    },
    UnlockDb,
    ClearCache {
        tx: oneshot::Sender<()>,
    },
    Ping {
        tx: oneshot::Sender<()>,
    },
    Shutdown {
        tx: oneshot::Sender<()>,
    },
}

impl ConnectionWorker {
    pub(crate) async fn establish(params: EstablishParams) -> Result<Self, Error> {
        if params.calling_thread {
            let mut conn = params.establish()?;
            set_busy_timeout(&mut conn, Duration::ZERO)?;
            return Ok(Self {
                command_tx: None,
                shared: ManuallyDrop::new(Arc::new(WorkerSharedState {
                    transaction_depth: AtomicUsize::new(0),
                    cached_statements_size: AtomicUsize::new(0),
                    conn: Mutex::new(conn, true),
                    rollbacks_pending: AtomicUsize::new(0),
                    broken: AtomicBool::new(false),
                })),
                close_here: false,
                busy_timeout: params.busy_timeout,
            });
        }
        let (establish_tx, establish_rx) = oneshot::channel();

        thread::Builder::new()
            .name(params.thread_name.clone())
            .spawn(move || {
                let (command_tx, command_rx) = flume::bounded(params.command_channel_size);

                let conn = match params.establish() {
                    Ok(conn) => conn,
                    Err(e) => {
                        establish_tx.send(Err(e)).ok();
                        return;
                    }
                };

                let shared = Arc::new(WorkerSharedState {
                    transaction_depth: AtomicUsize::new(0),
                    cached_statements_size: AtomicUsize::new(0),
                    // note: must be fair because in `Command::UnlockDb` we unlock the mutex
                    // and then immediately try to relock it; an unfair mutex would immediately
                    // grant us the lock even if another task is waiting.
                    conn: Mutex::new(conn, true),
                    rollbacks_pending: AtomicUsize::new(0),
                    broken: AtomicBool::new(false),
                });
                let mut conn = shared.conn.try_lock().unwrap();

                if establish_tx
                    .send(Ok(Self {
                        command_tx: Some(command_tx),
                        shared: ManuallyDrop::new(Arc::clone(&shared)),
                        close_here: false,
                        busy_timeout: params.busy_timeout,
                    }))
                    .is_err()
                {
                    return;
                }

                // If COMMIT or ROLLBACK is processed but not acknowledged, there would be another
                // ROLLBACK sent when the `Transaction` drops. We need to ignore it otherwise we
                // would rollback an already completed transaction.
                let mut ignore_next_start_rollback = false;

                for (cmd, span) in command_rx {
                    let _guard = span.enter();
                    match cmd {
                        Command::Prepare { query, tx } => {
                            tx.send(prepare(&mut conn, query)).ok();

                            // This may issue an unnecessary write on failure,
                            // but it doesn't matter in the grand scheme of things.
                            update_cached_statements_size(
                                &conn,
                                &shared.cached_statements_size,
                            );
                        }
                        #[cfg(feature = "offline")]
                        Command::Describe { query, tx } => {
                            tx.send(crate::connection::describe::describe(&mut conn, query)).ok();
                        }
                        Command::Execute {
                            query,
                            arguments,
                            persistent,
                            tx,
                            limit
                        } => {
                            let iter = match execute::iter(&mut conn, query, arguments, persistent)
                            {
                                Ok(iter) => iter,
                                Err(e) => {
                                    tx.send(Err(e)).ok();
                                    continue;
                                }
                            };

                            match limit {
                                None => {
                                    for res in iter {
                                        let has_error = res.is_err();
                                        if tx.send(res).is_err() || has_error {
                                            break;
                                        }
                                    }
                                },
                                Some(limit) => {
                                    let mut iter = iter;
                                    let mut rows_returned = 0;

                                    while let Some(res) = iter.next() {
                                        if let Ok(ok) = &res {
                                            if ok.is_right() {
                                                rows_returned += 1;
                                                if rows_returned >= limit {
                                                    drop(iter);
                                                    let _ = tx.send(res);
                                                    break;
                                                }
                                            }
                                        }
                                        let has_error = res.is_err();
                                        if tx.send(res).is_err() || has_error {
                                            break;
                                        }
                                    }
                                },
                            }

                            update_cached_statements_size(&conn, &shared.cached_statements_size);
                        }
                        Command::Begin { tx, statement } => {
                            let depth = shared.transaction_depth.load(Ordering::Acquire);

                            let is_custom_statement = statement.is_some();
                            let statement = match statement {
                                // custom `BEGIN` statements are not allowed if
                                // we're already in a transaction (we need to
                                // issue a `SAVEPOINT` instead)
                                Some(_) if depth > 0 => {
                                    if tx.blocking_send(Err(Error::InvalidSavePointStatement)).is_err() {
                                        break;
                                    }
                                    continue;
                                },
                                Some(statement) => statement,
                                None => begin_ansi_transaction_sql(depth),
                            };
                            let res =
                                conn.handle
                                    .exec(statement.as_str())
                                    .and_then(|res| {
                                        if is_custom_statement && !conn.handle.in_transaction() {
                                            return Err(Error::BeginFailed)
                                        }

                                        shared.transaction_depth.fetch_add(1, Ordering::Release);

                                        Ok(res)
                                    });
                            let res_ok = res.is_ok();

                            if tx.blocking_send(res).is_err() && res_ok {
                                // The BEGIN was processed but not acknowledged. This means no
                                // `Transaction` was created and so there is no way to commit /
                                // rollback this transaction. We need to roll it back
                                // immediately otherwise it would remain started forever.
                                if let Err(error) = conn
                                    .handle
                                    .exec(rollback_ansi_transaction_sql(depth + 1).as_str())
                                    .map(|_| {
                                        shared.transaction_depth.fetch_sub(1, Ordering::Release);
                                    })
                                {
                                    // The rollback failed. To prevent leaving the connection
                                    // in an inconsistent state we shutdown this worker which
                                    // causes any subsequent operation on the connection to fail.
                                    tracing::error!(%error, "failed to rollback cancelled transaction");
                                    break;
                                }
                            }
                        }
                        Command::Commit { tx } => {
                            let depth = shared.transaction_depth.load(Ordering::Acquire);

                            let res = if depth > 0 {
                                conn.handle
                                    .exec(commit_ansi_transaction_sql(depth).as_str())
                                    .map(|_| {
                                        shared.transaction_depth.fetch_sub(1, Ordering::Release);
                                    })
                            } else {
                                Ok(())
                            };
                            let res_ok = res.is_ok();

                            if tx.blocking_send(res).is_err() && res_ok {
                                // The COMMIT was processed but not acknowledged. This means that
                                // the `Transaction` doesn't know it was committed and will try to
                                // rollback on drop. We need to ignore that rollback.
                                ignore_next_start_rollback = true;
                            }
                        }
                        Command::Rollback { tx } => {
                            if ignore_next_start_rollback && tx.is_none() {
                                ignore_next_start_rollback = false;
                                continue;
                            }

                            let depth = shared.transaction_depth.load(Ordering::Acquire);

                            let res = if depth > 0 {
                                conn.handle
                                    .exec(rollback_ansi_transaction_sql(depth).as_str())
                                    .map(|_| {
                                        shared.transaction_depth.fetch_sub(1, Ordering::Release);
                                    })
                            } else {
                                Ok(())
                            };

                            let res_ok = res.is_ok();

                            if let Some(tx) = tx {
                                if tx.blocking_send(res).is_err() && res_ok {
                                    // The ROLLBACK was processed but not acknowledged. This means
                                    // that the `Transaction` doesn't know it was rolled back and
                                    // will try to rollback again on drop. We need to ignore that
                                    // rollback.
                                    ignore_next_start_rollback = true;
                                }
                            }
                        }
                        #[cfg(feature = "deserialize")]
                        Command::Serialize { schema, tx } => {
                            tx.send(serialize(&mut conn, schema)).ok();
                        }
                        #[cfg(feature = "deserialize")]
                        Command::Deserialize { schema, data, read_only, tx } => {
                            tx.send(deserialize(&mut conn, schema, data, read_only)).ok();
                        }
                        Command::ClearCache { tx } => {
                            conn.statements.clear();
                            update_cached_statements_size(&conn, &shared.cached_statements_size);
                            tx.send(()).ok();
                        }
                        Command::UnlockDb => {
                            drop(conn);
                            conn = futures_executor::block_on(shared.conn.lock());
                        }
                        Command::Ping { tx } => {
                            tx.send(()).ok();
                        }
                        Command::Shutdown { tx } => {
                            // drop the connection references before sending confirmation
                            // and ending the command loop
                            drop(conn);
                            drop(shared);
                            let _ = tx.send(());
                            return;
                        }
                    }
                }
            })?;

        establish_rx.await.map_err(|_| Error::WorkerCrashed)?
    }

    pub(crate) async fn prepare(&mut self, query: SqlStr) -> Result<SqliteStatement, Error> {
        if self.command_tx.is_none() {
            let mut conn = lock_here(&self.shared).await?;
            let res = prepare(&mut conn, query);
            update_cached_statements_size(&conn, &self.shared.cached_statements_size);
            return res;
        }
        self.oneshot_cmd(|tx| Command::Prepare { query, tx })
            .await?
    }

    #[cfg(feature = "offline")]
    pub(crate) async fn describe(
        &mut self,
        query: SqlStr,
    ) -> Result<sqlx_core::describe::Describe<crate::Sqlite>, Error> {
        self.oneshot_cmd(|tx| Command::Describe { query, tx })
            .await?
    }

    pub(crate) async fn execute(
        &mut self,
        query: SqlStr,
        args: Option<SqliteArguments>,
        chan_size: usize,
        persistent: bool,
        limit: Option<usize>,
    ) -> Result<flume::Receiver<Result<Either<SqliteQueryResult, SqliteRow>, Error>>, Error> {
        let Some(command_tx) = &self.command_tx else {
            return self.execute_here(query, args, persistent, limit).await;
        };
        let (tx, rx) = flume::bounded(chan_size);

        command_tx
            .send_async((
                Command::Execute {
                    query,
                    arguments: args,
                    persistent,
                    tx,
                    limit,
                },
                Span::current(),
            ))
            .await
            .map_err(|_| Error::WorkerCrashed)?;

        Ok(rx)
    }

    pub(crate) async fn begin(&mut self, statement: Option<SqlStr>) -> Result<(), Error> {
        if self.command_tx.is_none() {
            return self.begin_here(statement).await;
        }
        self.oneshot_cmd_with_ack(|tx| Command::Begin { tx, statement })
            .await?
    }

    pub(crate) async fn commit(&mut self) -> Result<(), Error> {
        if self.command_tx.is_none() {
            // Never waits on a lock in WAL mode: the transaction holds what it needs.
            let conn = &mut *lock_here(&self.shared).await?;
            return end_transaction_here(conn, &self.shared, End::Commit);
        }
        self.oneshot_cmd_with_ack(|tx| Command::Commit { tx })
            .await?
    }

    pub(crate) async fn rollback(&mut self) -> Result<(), Error> {
        if self.command_tx.is_none() {
            let conn = &mut *lock_here(&self.shared).await?;
            return end_transaction_here(conn, &self.shared, End::Rollback);
        }
        self.oneshot_cmd_with_ack(|tx| Command::Rollback { tx: Some(tx) })
            .await?
    }

    pub(crate) fn start_rollback(&mut self) -> Result<(), Error> {
        let Some(command_tx) = &self.command_tx else {
            // A query that met a lock may still run on a blocking thread, its caller gone: then
            // that thread rolls back when it lets go of the lock, or whoever takes it next does
            // (the pool's ping, when the connection goes back).
            self.shared.rollbacks_pending.fetch_add(1, Ordering::SeqCst);
            roll_back_if_pending_and_free(&self.shared);
            return Ok(());
        };
        command_tx
            .send((Command::Rollback { tx: None }, Span::current()))
            .map_err(|_| Error::WorkerCrashed)
    }

    pub(crate) async fn ping(&mut self) -> Result<(), Error> {
        if self.command_tx.is_none() {
            // Waits for a query still running on a blocking thread and carries out a pending
            // rollback: the pool pings a connection before taking it back, so an idle connection
            // never holds a dropped transaction's locks.
            return lock_here(&self.shared).await.map(drop);
        }
        self.oneshot_cmd(|tx| Command::Ping { tx }).await
    }

    #[cfg(feature = "deserialize")]
    pub(crate) async fn deserialize(
        &mut self,
        schema: Option<SchemaName>,
        data: SqliteOwnedBuf,
        read_only: bool,
    ) -> Result<(), Error> {
        self.oneshot_cmd(|tx| Command::Deserialize {
            schema,
            data,
            read_only,
            tx,
        })
        .await?
    }

    #[cfg(feature = "deserialize")]
    pub(crate) async fn serialize(
        &mut self,
        schema: Option<SchemaName>,
    ) -> Result<SqliteOwnedBuf, Error> {
        self.oneshot_cmd(|tx| Command::Serialize { schema, tx })
            .await?
    }

    async fn oneshot_cmd<F, T>(&mut self, command: F) -> Result<T, Error>
    where
        F: FnOnce(oneshot::Sender<T>) -> Command,
    {
        let (tx, rx) = oneshot::channel();

        self.command_tx
            .as_ref()
            .ok_or(Error::WorkerCrashed)?
            .send_async((command(tx), Span::current()))
            .await
            .map_err(|_| Error::WorkerCrashed)?;

        rx.await.map_err(|_| Error::WorkerCrashed)
    }

    async fn oneshot_cmd_with_ack<F, T>(&mut self, command: F) -> Result<T, Error>
    where
        F: FnOnce(rendezvous_oneshot::Sender<T>) -> Command,
    {
        let (tx, rx) = rendezvous_oneshot::channel();

        self.command_tx
            .as_ref()
            .ok_or(Error::WorkerCrashed)?
            .send_async((command(tx), Span::current()))
            .await
            .map_err(|_| Error::WorkerCrashed)?;

        rx.recv().await.map_err(|_| Error::WorkerCrashed)
    }

    pub(crate) async fn clear_cache(&mut self) -> Result<(), Error> {
        if self.command_tx.is_none() {
            let mut conn = lock_here(&self.shared).await?;
            conn.statements.clear();
            update_cached_statements_size(&conn, &self.shared.cached_statements_size);
            return Ok(());
        }
        self.oneshot_cmd(|tx| Command::ClearCache { tx }).await
    }

    pub(crate) async fn unlock_db(&mut self) -> Result<MutexGuard<'_, ConnectionState>, Error> {
        let Some(command_tx) = &self.command_tx else {
            return lock_here(&self.shared).await;
        };
        let (guard, res) = futures_util::future::join(
            // we need to join the wait queue for the lock before we send the message
            self.shared.conn.lock(),
            command_tx
                .send_async((Command::UnlockDb, Span::current())),
        )
        .await;

        res.map_err(|_| Error::WorkerCrashed)?;

        Ok(guard)
    }

    /// Send a command to the worker to shut down the processing thread.
    ///
    /// A `WorkerCrashed` error may be returned if the thread has already stopped.
    pub(crate) fn shutdown(&mut self) -> impl Future<Output = Result<(), Error>> {
        let send_res = match &self.command_tx {
            // The connection closes when the worker drops, which the caller does before waiting.
            None => {
                self.close_here = true;
                Ok(None)
            }
            Some(command_tx) => {
                let (tx, rx) = oneshot::channel();
                command_tx
                    .send((Command::Shutdown { tx }, Span::current()))
                    .map(|()| Some(rx))
                    .map_err(|_| Error::WorkerCrashed)
            }
        };

        async move {
            match send_res? {
                None => Ok(()),
                // wait for the response
                Some(rx) => rx.await.map_err(|_| Error::WorkerCrashed),
            }
        }
    }

    /// robo-assets: runs a query on the calling thread, its rows (up to `limit`) read whole into
    /// the returned channel. A query whose first step meets another connection's lock has done
    /// nothing yet: it runs again on a blocking thread, which waits for the lock up to the busy
    /// timeout, so the caller's thread never sleeps in SQLite's busy handler. A lock met after
    /// the first step (by a later statement of a query of several) fails the query at once.
    async fn execute_here(
        &self,
        query: SqlStr,
        args: Option<SqliteArguments>,
        persistent: bool,
        limit: Option<usize>,
    ) -> Result<flume::Receiver<Result<Either<SqliteQueryResult, SqliteRow>, Error>>, Error> {
        let (tx, rx) = flume::unbounded();
        let mut conn = lock_here(&self.shared).await?;
        let mut iter = match execute::iter(&mut conn, query.clone(), args, persistent) {
            Ok(iter) => iter,
            Err(e) => {
                tx.send(Err(e)).ok();
                return Ok(rx);
            }
        };
        match iter.next() {
            Some(Err(e)) if is_busy(&e) => {
                let args = iter.take_args();
                drop(iter);
                drop(conn);
                let busy_timeout = self.busy_timeout;
                self.on_blocking_thread(move |conn, shared| {
                    set_busy_timeout(conn, busy_timeout)?;
                    send_rows(conn, shared, query, args, persistent, limit, tx);
                    // Back to not waiting; an error here leaves it waiting, which is still correct.
                    set_busy_timeout(conn, Duration::ZERO).ok();
                    Ok(())
                })
                .await?;
            }
            first => {
                send_iter(first, iter, limit, &tx);
                update_cached_statements_size(&conn, &self.shared.cached_statements_size);
            }
        }
        Ok(rx)
    }

    /// robo-assets: `BEGIN` on the calling thread; one that meets another connection's lock runs
    /// again on a blocking thread, which waits for it.
    async fn begin_here(&self, statement: Option<SqlStr>) -> Result<(), Error> {
        let mut conn = lock_here(&self.shared).await?;
        let depth = self.shared.transaction_depth.load(Ordering::Acquire);
        let is_custom_statement = statement.is_some();
        let statement = match statement {
            Some(_) if depth > 0 => return Err(Error::InvalidSavePointStatement),
            Some(statement) => statement,
            None => begin_ansi_transaction_sql(depth),
        };
        match begin_on(&mut conn, &self.shared, &statement, is_custom_statement) {
            Err(e) if is_busy(&e) => {}
            res => return res,
        }
        drop(conn);
        let busy_timeout = self.busy_timeout;
        self.on_blocking_thread(move |conn, shared| {
            set_busy_timeout(conn, busy_timeout)?;
            let res = begin_on(conn, shared, &statement, is_custom_statement);
            set_busy_timeout(conn, Duration::ZERO).ok();
            res
        })
        .await
    }

    /// robo-assets: runs `f` on tokio's blocking pool with the connection's lock, for a query
    /// that must wait for another connection's lock.
    ///
    /// Its caller may give up meanwhile (a timeout, a canceled task): if it has by the time the
    /// blocking thread holds the lock, `f` does not run, as a command dropped before it was sent
    /// would not, and a dropped transaction's rollback comes first. If `f` ran and its result
    /// finds nobody (a `BEGIN` that succeeded, say), the transaction it began is rolled back,
    /// as upstream's worker thread does with an unacknowledged `BEGIN`. A rollback still pending
    /// when the lock is let go is carried out then.
    async fn on_blocking_thread(
        &self,
        f: impl FnOnce(&mut ConnectionState, &WorkerSharedState) -> Result<(), Error> + Send + 'static,
    ) -> Result<(), Error> {
        /// Marks the call given up when the caller's future is dropped before it is answered.
        struct GivenUp(Arc<AtomicBool>, bool);
        impl Drop for GivenUp {
            fn drop(&mut self) {
                if self.1 {
                    self.0.store(true, Ordering::SeqCst);
                }
            }
        }
        let mut given_up = GivenUp(Arc::new(AtomicBool::new(false)), true);
        let (tx, rx) = rendezvous_oneshot::channel();
        let shared = Arc::clone(&self.shared);
        let depth_before = self.shared.transaction_depth.load(Ordering::Acquire);
        let caller_gone = Arc::clone(&given_up.0);
        // Not awaited: the caller waits on the acknowledgement, and may be gone.
        drop(sqlx_core::rt::spawn_blocking(move || {
            match futures_executor::block_on(lock_here(&shared)) {
                Err(e) => {
                    tx.blocking_send(Err(e)).ok();
                }
                Ok(_) if caller_gone.load(Ordering::SeqCst) => {}
                Ok(mut conn) => {
                    let res = f(&mut conn, &shared);
                    if tx.blocking_send(res).is_err()
                        && shared.transaction_depth.load(Ordering::Acquire) > depth_before
                    {
                        // Nobody will end the transaction `f` began.
                        let _ = end_transaction_here(&mut conn, &shared, End::Rollback);
                    }
                }
            }
            roll_back_if_pending_and_free(&shared);
        }));
        let res = rx.recv().await.map_err(|_| Error::WorkerCrashed)?;
        given_up.1 = false;
        res
    }
}

/// robo-assets: takes the connection's lock, then carries out the rollbacks dropped transactions
/// left pending.
async fn lock_here(shared: &WorkerSharedState) -> Result<MutexGuard<'_, ConnectionState>, Error> {
    let mut conn = shared.conn.lock().await;
    roll_back_if_pending(&mut conn, shared);
    if shared.broken.load(Ordering::Acquire) {
        return Err(Error::WorkerCrashed);
    }
    Ok(conn)
}

/// robo-assets: the rollbacks of transactions dropped while their connection's lock was held.
fn roll_back_if_pending(conn: &mut ConnectionState, shared: &WorkerSharedState) {
    for _ in 0..shared.rollbacks_pending.swap(0, Ordering::SeqCst) {
        if shared.transaction_depth.load(Ordering::Acquire) == 0 {
            break;
        }
        if end_transaction_here(conn, shared, End::Rollback).is_err() {
            break;
        }
    }
}

/// robo-assets: the pending rollbacks, if the lock is free; whoever holds it otherwise checks
/// again after letting go (both sides check after their own write, so one of them sees the
/// other's).
fn roll_back_if_pending_and_free(shared: &WorkerSharedState) {
    if shared.rollbacks_pending.load(Ordering::SeqCst) > 0 {
        if let Some(mut conn) = shared.conn.try_lock() {
            roll_back_if_pending(&mut conn, shared);
        }
    }
}

/// robo-assets: whether an error is a lock held by another connection, which waiting can end.
/// `SQLITE_BUSY_SNAPSHOT` is not: the snapshot is stale whatever the wait.
fn is_busy(e: &Error) -> bool {
    const SQLITE_BUSY: i32 = 5;
    const SQLITE_BUSY_SNAPSHOT: i32 = 517;
    let code = e
        .as_database_error()
        .and_then(|e| e.code())
        .and_then(|code| code.parse::<i32>().ok());
    code.is_some_and(|code| code & 0xff == SQLITE_BUSY && code != SQLITE_BUSY_SNAPSHOT)
}

/// robo-assets: how long SQLite's busy handler waits for a lock.
fn set_busy_timeout(conn: &mut ConnectionState, timeout: Duration) -> Result<(), Error> {
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: the handle is open for as long as `conn` lives.
    conn.handle
        .call_with_result(|db| unsafe { libsqlite3_sys::sqlite3_busy_timeout(db, ms) })
        .map_err(Error::from)
}

/// robo-assets: a `BEGIN` (or a custom one) on a locked connection.
fn begin_on(
    conn: &mut ConnectionState,
    shared: &WorkerSharedState,
    statement: &SqlStr,
    is_custom_statement: bool,
) -> Result<(), Error> {
    conn.handle.exec(statement.as_str())?;
    if is_custom_statement && !conn.handle.in_transaction() {
        return Err(Error::BeginFailed);
    }
    shared.transaction_depth.fetch_add(1, Ordering::Release);
    Ok(())
}

/// robo-assets: a whole query's results into `tx`, on a locked connection.
fn send_rows(
    conn: &mut ConnectionState,
    shared: &WorkerSharedState,
    query: SqlStr,
    args: Option<SqliteArguments>,
    persistent: bool,
    limit: Option<usize>,
    tx: flume::Sender<Result<Either<SqliteQueryResult, SqliteRow>, Error>>,
) {
    match execute::iter(conn, query, args, persistent) {
        Ok(mut iter) => send_iter(iter.next(), iter, limit, &tx),
        Err(e) => {
            tx.send(Err(e)).ok();
        }
    }
    update_cached_statements_size(conn, &shared.cached_statements_size);
}

/// robo-assets: the results of a query, its first already stepped, into `tx` up to `limit` rows
/// or the first error.
fn send_iter(
    first: Option<Result<Either<SqliteQueryResult, SqliteRow>, Error>>,
    iter: execute::ExecuteIter<'_>,
    limit: Option<usize>,
    tx: &flume::Sender<Result<Either<SqliteQueryResult, SqliteRow>, Error>>,
) {
    let Some(first) = first else {
        return;
    };
    let mut rows_returned = 0;
    for res in std::iter::once(first).chain(iter) {
        let last = match &res {
            Err(_) => true,
            Ok(Either::Right(_)) => {
                rows_returned += 1;
                limit.is_some_and(|limit| rows_returned >= limit)
            }
            Ok(Either::Left(_)) => false,
        };
        tx.send(res).ok();
        if last {
            break;
        }
    }
}

/// robo-assets: how a transaction ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Commit,
    Rollback,
}

/// robo-assets: a `COMMIT` or `ROLLBACK` (of a savepoint, when nested) on a locked connection.
/// A failed rollback leaves the connection broken, as it stops upstream's worker thread.
fn end_transaction_here(conn: &mut ConnectionState, shared: &WorkerSharedState, end: End) -> Result<(), Error> {
    let depth = shared.transaction_depth.load(Ordering::Acquire);
    if depth > 0 {
        let sql = match end {
            End::Commit => commit_ansi_transaction_sql(depth),
            End::Rollback => rollback_ansi_transaction_sql(depth),
        };
        if let Err(error) = conn.handle.exec(sql.as_str()) {
            if end == End::Rollback {
                tracing::error!(%error, "failed to roll back a transaction; the connection is closed");
                shared.broken.store(true, Ordering::Release);
            }
            return Err(error);
        }
        shared.transaction_depth.fetch_sub(1, Ordering::Release);
    }
    Ok(())
}

fn prepare(conn: &mut ConnectionState, query: SqlStr) -> Result<SqliteStatement, Error> {
    // prepare statement object (or checkout from cache)
    let statement = conn.statements.get(query.as_str(), true)?;

    let mut parameters = 0;
    let mut columns = None;
    let mut column_names = None;

    while let Some(statement) = statement.prepare_next(&mut conn.handle)? {
        parameters += statement.handle.bind_parameter_count();

        // the first non-empty statement is chosen as the statement we pull columns from
        if !statement.columns.is_empty() && columns.is_none() {
            columns = Some(Arc::clone(statement.columns));
            column_names = Some(Arc::clone(statement.column_names));
        }
    }

    Ok(SqliteStatement {
        sql: query,
        columns: columns.unwrap_or_default(),
        column_names: column_names.unwrap_or_default(),
        parameters,
    })
}

fn update_cached_statements_size(conn: &ConnectionState, size: &AtomicUsize) {
    size.store(conn.statements.len(), Ordering::Release);
}

// A oneshot channel where send completes only after the receiver receives the value.
mod rendezvous_oneshot {
    use super::oneshot::{self, Canceled};

    pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
        let (inner_tx, inner_rx) = oneshot::channel();
        (Sender { inner: inner_tx }, Receiver { inner: inner_rx })
    }

    pub struct Sender<T> {
        inner: oneshot::Sender<(T, oneshot::Sender<()>)>,
    }

    impl<T> Sender<T> {
        pub async fn send(self, value: T) -> Result<(), Canceled> {
            let (ack_tx, ack_rx) = oneshot::channel();
            self.inner.send((value, ack_tx)).map_err(|_| Canceled)?;
            ack_rx.await
        }

        pub fn blocking_send(self, value: T) -> Result<(), Canceled> {
            futures_executor::block_on(self.send(value))
        }
    }

    pub struct Receiver<T> {
        inner: oneshot::Receiver<(T, oneshot::Sender<()>)>,
    }

    impl<T> Receiver<T> {
        pub async fn recv(self) -> Result<T, Canceled> {
            let (value, ack_tx) = self.inner.await?;
            ack_tx.send(()).map_err(|_| Canceled)?;
            Ok(value)
        }
    }
}
