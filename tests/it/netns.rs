//! Machines cut off mid-step: `robo-assets worker` processes each in a network namespace of its
//! own, reaching PostgreSQL over a veth pair through a TCP forwarder in this test process
//! (PostgreSQL listens on 127.0.0.1 only). Cutting a worker's link (`ip link set … down` on the
//! host side, a pulled cable: its packets are dropped, nothing is refused) while it holds leases
//! must cost nothing but time: the other worker reclaims its requests once the lease expires, each
//! cell ends materialized once, and the cut-off worker's late completion is refused by the fence.
//!
//! The namespaces, links and addresses are made and removed by each test, with names unique to
//! the run. They need root and `ip`: without them the tests skip with the reason, and fail when
//! `CI` is set.

use std::io::{BufRead as _, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgConnection;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::common::Robo;
use crate::crashpoints;
use crate::postgres::{TestDb, stop_workers, wait_for_success};

/// Runs `ip args…`, returning its error output when it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`ip {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Runs `ip args…` and panics when it fails (the set-up was possible a moment ago).
fn ip_ok(args: &[&str]) {
    ip(args).unwrap_or_else(|e| panic!("{e}"));
}

/// One machine: a network namespace joined to the host by a veth pair on a /30 of its own.
/// Dropping it (also while a test panics) removes the pair and the namespace.
struct Machine {
    ns: String,
    host_if: String,
    /// The host side's address: where the forwarder listens for this machine.
    host_addr: Ipv4Addr,
}

impl Machine {
    /// Creates namespace `{tag}{i}` with `10.a.b.(4i+2)/30`, the host side `10.a.b.(4i+1)`.
    fn create(tag: &str, i: u8, subnet: (u8, u8)) -> Result<Machine, String> {
        let ns = format!("{tag}n{i}");
        let (host_if, ns_if) = (format!("{tag}h{i}"), format!("{tag}p{i}"));
        let host_addr = Ipv4Addr::new(10, subnet.0, subnet.1, 4 * i + 1);
        let ns_addr = Ipv4Addr::new(10, subnet.0, subnet.1, 4 * i + 2);
        ip(&["netns", "add", &ns])?;
        // From here on, Drop cleans up whatever was made.
        let machine = Machine { ns, host_if, host_addr };
        ip(&["link", "add", &machine.host_if, "type", "veth", "peer", "name", &ns_if])?;
        ip(&["link", "set", &ns_if, "netns", &machine.ns])?;
        ip(&["addr", "add", &format!("{host_addr}/30"), "dev", &machine.host_if])?;
        ip(&["link", "set", &machine.host_if, "up"])?;
        let in_ns = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &machine.ns, "ip"];
            all.extend_from_slice(args);
            ip(&all)
        };
        in_ns(&["addr", "add", &format!("{ns_addr}/30"), "dev", &ns_if])?;
        in_ns(&["link", "set", &ns_if, "up"])?;
        in_ns(&["link", "set", "lo", "up"])?;
        Ok(machine)
    }

    /// Pulls the cable: the host side goes down, so the machine's packets are dropped.
    fn cut(&self) {
        ip_ok(&["link", "set", &self.host_if, "down"]);
    }

    /// Plugs it back in.
    fn restore(&self) {
        ip_ok(&["link", "set", &self.host_if, "up"]);
    }

    /// `command` (a `robo-assets` invocation from [`Robo::command`]) run inside the namespace,
    /// with the same arguments, environment and directory.
    fn command(&self, command: &Command) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns]).arg(command.get_program()).args(command.get_args());
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        if let Some(dir) = command.get_current_dir() {
            cmd.current_dir(dir);
        }
        cmd
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        // Deleting one end of a veth pair deletes both.
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.ns]);
    }
}

/// Two machines (or one) with unique names and a random private subnet, or the reason they
/// cannot be made here: a skip, or a failure under `CI`.
fn machines(n: u8) -> Option<Vec<Machine>> {
    let reason = if Command::new("ip").arg("-V").output().is_err() {
        Some("`ip` (iproute2) is not installed".to_owned())
    } else {
        None
    };
    let made = match reason {
        Some(reason) => Err(reason),
        None => {
            // Interface names have at most 15 bytes: `ra` + 6 hex digits + a letter + the index.
            let tag = format!("ra{:06x}", fastrand::u32(..0x100_0000));
            let subnet = (fastrand::u8(64..128), fastrand::u8(..));
            (0..n).map(|i| Machine::create(&tag, i, subnet)).collect::<Result<Vec<_>, _>>()
        }
    };
    match made {
        Ok(machines) => Some(machines),
        Err(e) => {
            assert!(std::env::var_os("CI").is_none(), "network namespaces are required when CI is set: {e}");
            eprintln!("skipped: cannot make network namespaces (needs root and iproute2): {e}");
            None
        }
    }
}

/// A TCP forwarder: a listener on each machine's host-side address, each connection piped to
/// PostgreSQL. Dropping it (its `JoinSet`) closes the listeners and every forwarded connection.
struct Forwarder {
    _tasks: JoinSet<()>,
}

impl Forwarder {
    /// Listens on every `addrs` (an ephemeral port each) and forwards to `upstream`.
    async fn start(addrs: &[Ipv4Addr], upstream: (String, u16)) -> (Forwarder, Vec<SocketAddr>) {
        let mut tasks = JoinSet::new();
        let mut bound = Vec::new();
        for addr in addrs {
            let listener = TcpListener::bind((*addr, 0)).await.expect("forwarder binds on the host side");
            bound.push(listener.local_addr().unwrap());
            let upstream = upstream.clone();
            tasks.spawn(async move {
                let mut connections = JoinSet::new();
                loop {
                    let Ok((mut client, _)) = listener.accept().await else { continue };
                    let upstream = upstream.clone();
                    connections.spawn(async move {
                        if let Ok(mut server) = TcpStream::connect((upstream.0.as_str(), upstream.1)).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    while connections.try_join_next().is_some() {}
                }
            });
        }
        (Forwarder { _tasks: tasks }, bound)
    }
}

/// A worker process, its stderr collected as it runs; killed on drop if a test panics first.
struct Worker {
    child: Option<Child>,
    stderr: Arc<Mutex<String>>,
}

impl Worker {
    fn spawn(mut cmd: Command) -> Worker {
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("worker starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        Worker { child: Some(child), stderr }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn is_running(&mut self) -> bool {
        self.child.as_mut().unwrap().try_wait().unwrap().is_none()
    }

    /// Ctrl-C, and the checks of [`stop_workers`]: it stops cleanly.
    fn stop(mut self) {
        stop_workers(vec![self.child.take().unwrap()]);
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Running requests of usage_snapshot whose lease owner is like `$1`.
const HELD: &str = "SELECT count(*) FROM materialization_requests WHERE state = 'running' \
                    AND asset_key = 'usage_snapshot' AND lease_owner LIKE $1";

/// The `LIKE` pattern of the lease owner (worker id `host/pid-space:pid:random`) of process `pid`.
fn owned_by(pid: u32) -> String {
    format!("%:{pid}:%")
}

/// Waits until [`HELD`] counts at least `n` requests held by owners like `owner`.
async fn wait_until_held(conn: &mut PgConnection, what: &str, owner: &str, n: i64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got: i64 = sqlx::query_scalar(HELD).bind(owner).fetch_one(&mut *conn).await.unwrap();
        if got >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {got} < {n} after {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The worker id (lease owner) of the process `pid`.
async fn owner_of(conn: &mut PgConnection, pid: u32) -> String {
    sqlx::query_scalar("SELECT DISTINCT lease_owner FROM materialization_requests WHERE lease_owner LIKE $1")
        .bind(owned_by(pid))
        .fetch_one(conn)
        .await
        .unwrap()
}

/// Whether a session of `application` has a transaction open on the server: its client was cut
/// between two statements of a transaction, so its row locks stay until it comes back.
async fn transaction_open(conn: &mut PgConnection, application: &str) -> bool {
    sqlx::query_scalar(
        "SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = $1 AND xact_start IS NOT NULL",
    )
    .bind(application)
    .fetch_one(conn)
    .await
    .unwrap()
}

/// Cuts `machine` while its worker (process `pid`, sessions named `application`) holds `n`
/// running requests and is between transactions; a cut that catches it inside one (a
/// heartbeat's two statements) is undone and tried again.
async fn cut_while_holding(conn: &mut PgConnection, machine: &Machine, application: &str, pid: u32, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        wait_until_held(conn, "requests held by the worker to cut", &owned_by(pid), n, Duration::from_secs(60)).await;
        machine.cut();
        // A statement that reached the server before the cut finishes; then anything still
        // open is a transaction waiting for the client.
        tokio::time::sleep(Duration::from_millis(300)).await;
        if !transaction_open(conn, application).await {
            return;
        }
        machine.restore();
        assert!(Instant::now() < deadline, "never caught the worker between transactions");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Scenario A: two workers on two machines share a backfill; one is cut off while it holds
/// leases. The other reclaims them after the lease and finishes the backfill, every cell once,
/// the ledger as an uninterrupted run's. Restored, the cut-off worker's completions are refused
/// by the fence (it logs so, nothing is recorded twice), and it goes on claiming new work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cut_off_mid_step_loses_its_leases_to_the_other_and_its_late_completion_is_fenced() {
    let Some(machines) = machines(2) else { return };
    let Some(db) = TestDb::create().await else { return };
    let (forwarder, addrs) = Forwarder::start(&[machines[0].host_addr, machines[1].host_addr], db.server()).await;
    let robo = Robo::new();
    let local = [("ROBO_ASSETS_LINEAGE_URL", db.url.as_str())];
    let launched = robo.run_with(
        &["backfill", "+storage_bill", "--from", "2025-12-01", "--to", "2025-12-02", "--detach", "--json"],
        &local,
    );
    assert_eq!(launched.code, 0, "{}", launched.stderr);
    let launched: serde_json::Value = serde_json::from_str(&launched.stdout).unwrap();
    assert_eq!(launched["cells"], 50, "48 hours and 2 bills");
    let run_id = launched["run_id"].as_str().unwrap().to_owned();

    // Each step holds the (dev) Graph API for a second, so leases are held when the link goes.
    let worker = |i: usize, name: &str| {
        let (host, port) = (addrs[i].ip().to_string(), addrs[i].port());
        let url = format!("{}?application_name={name}", db.url_at(&host, port));
        let mut cmd = robo.command(&["worker", "--concurrency", "4", "--lease-secs", "3"]);
        cmd.env("ROBO_ASSETS_LINEAGE_URL", url).env("ROBO_ASSETS_DEV_LATENCY_MS", "1000");
        Worker::spawn(machines[i].command(&cmd))
    };
    let mut cut_off = worker(0, "netns-a");
    let other = worker(1, "netns-b");
    let mut conn = db.connect().await;
    // Both claim: then the first is cut off holding four hours (with attempts to spare).
    wait_until_held(&mut conn, "the other worker claims", &owned_by(other.pid()), 1, Duration::from_secs(60)).await;
    cut_while_holding(&mut conn, &machines[0], "netns-a", cut_off.pid(), 4).await;
    let owner = owner_of(&mut conn, cut_off.pid()).await;
    let lost: Vec<(String, String)> = sqlx::query_as(
        "SELECT id, partition_key FROM materialization_requests WHERE lease_owner = $1 AND state = 'running' ORDER BY id",
    )
    .bind(&owner)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    // Four, unless a completion committed in the instant before the cut.
    assert!(!lost.is_empty(), "it held requests when it was cut off");

    // The other worker takes the four back once their lease expires, and finishes everything.
    wait_for_success(&mut conn, &run_id, Duration::from_secs(180)).await;
    for (id, partition) in &lost {
        let (state, attempt): (String, i64) =
            sqlx::query_as("SELECT state, attempt FROM materialization_requests WHERE id = $1")
                .bind(id)
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!((state.as_str(), attempt), ("succeeded", 2), "{partition}: reclaimed, run as attempt 2");
    }
    let expired: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM run_events WHERE kind = 'step_retried' AND message LIKE '%lease expired (worker ' || $1 || ')%'",
    )
    .bind(&owner)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(expired, lost.len() as i64, "each request it held was reclaimed for its expired lease");
    assert!(cut_off.is_running(), "the cut-off worker is still running, waiting for the network");

    // Plugged back in: its results for the four are refused by the fence. Unless the cut made a
    // store call fail outright: a connection opened during the cut meets "No route to host" once
    // the host's address stops resolving (a long cut on a slow machine). Then its worker loop
    // restarted and abandoned the steps it held, the other way a cut-off worker may end them;
    // what it recorded is checked below either way, and that it carries on after.
    machines[0].restore();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let stderr = cut_off.stderr();
        if stderr.matches("Lease lost before completion; result discarded.").count() >= lost.len() {
            for (_, partition) in &lost {
                assert!(stderr.contains(&format!("partition={partition}")), "{partition}:\n{stderr}");
            }
            break;
        }
        if stderr.contains("Lineage store failed; restarting the worker loop.") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cut-off worker neither reported its fenced completions nor restarted its loop:\n{stderr}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The store: every cell once (what an uninterrupted run leaves), nothing left running, and
    // the bills' ledger equal to the uninterrupted run's.
    let cells: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT asset_key, partition_key, count(*) FROM materializations GROUP BY asset_key, partition_key \
         ORDER BY asset_key, partition_key",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let clean = crashpoints::clean_backfill();
    crashpoints::assert_bills_in_ledger(&clean).await;
    assert_eq!(cells, crashpoints::cells(&clean).await, "one materialization per cell, as an uninterrupted run");
    let (running, open): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM materialization_requests WHERE state IN ('blocked', 'available', 'running')), \
                (SELECT count(*) FROM asset_partitions WHERE last_attempt_status = 'running')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((running, open), (0, 0), "no request waiting or running, no partition running");
    assert_eq!(crashpoints::ledger(&robo).await, crashpoints::ledger(&clean).await);

    // It carries on: with the other worker stopped, it alone carries out new work.
    other.stop();
    let submitted = robo.run_with(
        &["submit", "usage_snapshot", "--from", "2025-12-03T00:00", "--to", "2025-12-03T03:00", "--json"],
        &local,
    );
    assert_eq!(submitted.code, 0, "{}", submitted.stderr);
    let next: serde_json::Value = serde_json::from_str(&submitted.stdout).unwrap();
    // Nothing else runs: the run can only succeed through the restored worker.
    wait_for_success(&mut conn, next["run_id"].as_str().unwrap(), Duration::from_secs(120)).await;
    let (materialized, attempts): (i64, i64) =
        sqlx::query_as("SELECT count(*), max(attempt) FROM materializations WHERE run_id = $1")
            .bind(next["run_id"].as_str().unwrap())
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!((materialized, attempts), (4, 1), "the restored worker ran the four new requests, once each");
    eprintln!("the cut-off worker's log:\n{}", cut_off.stderr());
    cut_off.stop();
    drop(conn);
    drop(forwarder);
    drop(machines);
    db.drop_db().await;
}

/// Scenario B: a worker loses PostgreSQL for 10 s in the middle of a backfill (its link down),
/// comes back and finishes it: every cell once, nothing left running, the worker still up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_loses_postgres_for_ten_seconds_comes_back_and_finishes() {
    let Some(machines) = machines(1) else { return };
    let Some(db) = TestDb::create().await else { return };
    let (forwarder, addrs) = Forwarder::start(&[machines[0].host_addr], db.server()).await;
    let robo = Robo::new();
    let local = [("ROBO_ASSETS_LINEAGE_URL", db.url.as_str())];
    let launched = robo.run_with(
        &["backfill", "usage_snapshot", "--from", "2025-12-01T00:00", "--to", "2025-12-01T23:00", "--detach", "--json"],
        &local,
    );
    assert_eq!(launched.code, 0, "{}", launched.stderr);
    let launched: serde_json::Value = serde_json::from_str(&launched.stdout).unwrap();
    let run_id = launched["run_id"].as_str().unwrap().to_owned();

    let url = db.url_at(&addrs[0].ip().to_string(), addrs[0].port());
    let mut cmd = robo.command(&["worker", "--concurrency", "4", "--lease-secs", "3"]);
    cmd.env("ROBO_ASSETS_LINEAGE_URL", url).env("ROBO_ASSETS_DEV_LATENCY_MS", "500");
    let mut worker = Worker::spawn(machines[0].command(&cmd));
    let mut conn = db.connect().await;
    wait_until_held(&mut conn, "the worker claims", "%", 1, Duration::from_secs(60)).await;
    machines[0].cut();
    tokio::time::sleep(Duration::from_secs(10)).await;
    machines[0].restore();

    wait_for_success(&mut conn, &run_id, Duration::from_secs(180)).await;
    let (total, distinct, running): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM materializations), (SELECT count(DISTINCT partition_key) FROM materializations), \
                (SELECT count(*) FROM asset_partitions WHERE last_attempt_status = 'running')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((total, distinct, running), (24, 24, 0), "every hour once, nothing left running");
    assert!(worker.is_running(), "the worker rode out the outage:\n{}", worker.stderr());
    worker.stop();
    drop(conn);
    drop(forwarder);
    drop(machines);
    db.drop_db().await;
}
