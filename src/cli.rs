//! The command line, as clap types only. Doc comments are the help text.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// robo-assets: an asset-centric materialization engine with a lineage store.
///
/// Every job is an asset: a named, versioned, usually partitioned piece of data with declared
/// upstream dependencies. The lineage store records every materialization, so robo-assets can
/// say what is missing, stale or late, and why.
#[derive(Debug, Parser)]
#[command(name = "robo-assets", version = env!("ROBO_ASSETS_VERSION"), propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// A configuration file of settings (the keys are under "Settings" below) [default:
    /// ./robo-assets.toml, else $ROBO_ASSETS_HOME/robo-assets.toml]. Flags and environment
    /// variables win over it.
    #[arg(long, global = true, value_name = "FILE", env = "ROBO_ASSETS_CONFIG", hide_env_values = true)]
    pub config: Option<std::path::PathBuf>,
}

/// The headings `--help` groups the commands under, and the commands of each, in order. A
/// command missing here (a project's own) is listed under the project's heading.
pub const COMMAND_GROUPS: &[(&str, &[&str])] = &[
    ("Run", &["materialize", "backfill", "submit", "worker"]),
    ("Inspect", &["list", "status", "why", "lineage", "history", "path", "checks", "runs", "requests", "ui"]),
    ("Automate", &["daemon", "dev", "schedules", "sensors", "ticks", "simulate"]),
    ("Operate", &["partitions", "pools", "wipe", "repair", "prune", "migrate", "demo", "completions", "help"]),
];

/// The about of the `help` subcommand clap adds when it builds a command (the `--help` snapshot
/// shows it, so a clap that words it differently fails that test).
const CLAP_HELP_ABOUT: &str = "Print this message or the help of the given subcommand(s)";

/// `--help` with the commands grouped under [`COMMAND_GROUPS`]' headings (clap lists
/// subcommands under one heading only), the project's own commands after them, then the options
/// and the settings: each one's flag, environment variable and key in `robo-assets.toml`, never
/// its value.
pub fn grouped_help(command: clap::Command, project: &str, settings: &[crate::config::Setting]) -> clap::Command {
    // Read from the command as declared: cloning and building the whole tree to read names and
    // abouts cost 2.8 million instructions on every start (BENCHMARKS.md). Building only adds
    // clap's own `help` subcommand, listed here with clap's text.
    let mut subcommands: Vec<(&str, String)> = command
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| (c.get_name(), c.get_about().map(ToString::to_string).unwrap_or_default()))
        .collect();
    if !command.is_disable_help_subcommand_set() && command.has_subcommands() {
        subcommands.push(("help", CLAP_HELP_ABOUT.to_owned()));
    }
    let width = subcommands.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    let line = |(name, about): &(&str, String)| format!("  {name:width$}  {about}\n");
    let mut text = String::new();
    for (heading, names) in COMMAND_GROUPS {
        text.push_str(&format!("{heading}:\n"));
        for name in *names {
            if let Some(c) = subcommands.iter().find(|(n, _)| n == name) {
                text.push_str(&line(c));
            }
        }
        text.push('\n');
    }
    let others: Vec<_> =
        subcommands.iter().filter(|(n, _)| !COMMAND_GROUPS.iter().any(|(_, names)| names.contains(n))).collect();
    if !others.is_empty() {
        text.push_str(&format!("{project} commands:\n"));
        for c in others {
            text.push_str(&line(c));
        }
        text.push('\n');
    }
    let mut after = String::from(
        "Settings (a flag, else the environment variable, else the key in robo-assets.toml; --help never shows a value):\n",
    );
    for s in settings {
        let key = s.key();
        let secret = if s.secret { " (secret)" } else { "" };
        after.push_str(&format!("  --{} <VALUE>  [env: {}] [toml: {key}]{secret}\n", key.replace('_', "-"), s.name));
        after.push_str(&format!("          {}\n", s.help));
    }
    after.push_str(
        "Read from the environment only: RUST_LOG (log filter), NO_COLOR, ROBO_ASSETS_FAILPOINT (crash tests), \
         the AWS credential chain (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE, …)\n",
    );
    let template = format!(
        "{{before-help}}{{about-with-newline}}\n{{usage-heading}} {{usage}}\n\n{text}Options:\n{{options}}\n\n{after}"
    );
    command.help_template(template)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List assets: groups, partitions, dependencies and code versions.
    List(ListArgs),
    /// Materialize a selection of assets for a partition or a range.
    Materialize(MaterializeArgs),
    /// Show which partitions are materialized, failed, in progress or missing.
    Status(StatusArgs),
    /// Show the materializations of an asset, newest first.
    History(HistoryArgs),
    /// Print where a partition's current output lives: a local file path, or s3://bucket/key.
    ///
    /// Alone on a line, for other tools: `duckdb -c "FROM '$(robo-assets path storage_bill -p
    /// 2025-12-15)'"`. Exits 2 when the partition has no output (never materialized, or an
    /// asset that records metadata only).
    Path(PathArgs),
    /// List runs, or show one run and its event log.
    Runs(RunsArgs),
    /// Show what an asset (or one partition of it) was built from, and what reads it.
    Lineage(LineageArgs),
    /// Apply pending lineage-store migrations (every command also does this on start).
    Migrate,
    /// Request a materialization through the queue; workers carry it out.
    Submit(SubmitArgs),
    /// Claim requests from the queue and run them until Ctrl-C (run many, on many machines).
    Worker(WorkerArgs),
    /// List, show or cancel materialization requests.
    Requests(RequestsArgs),
    /// Show or set concurrency pools: at most LIMIT running steps of a pool across all workers.
    Pools(PoolsArgs),
    /// Backfill a selection over a partition range: persisted, resumable, in dependency order.
    ///
    /// `backfill SELECTION --from A --to B` plans the cells (per asset, across hourly, daily and
    /// monthly partitions), persists the backfill and runs it here with progress; workers on
    /// the same lineage store help. Then `backfill list|status|cancel|resume|retry-failed`.
    Backfill(BackfillArgs),
    /// Demo data: `demo seed` creates the labeled demo tenants, plans, subscriptions and graphs
    /// in the app database (`DATABASE_URL`) if it has no tenants yet.
    Demo(DemoArgs),
    /// Show asset check results (e.g. credit_health's ledger checks), newest first.
    Checks(HistoryArgs),
    /// List or add the keys of a dynamic partitions definition (e.g. `subscriptions`).
    Partitions(PartitionsArgs),
    /// Evaluate schedules and sensors and request materializations (and, by default, run them
    /// in this process); Ctrl-C stops cleanly.
    Daemon(DaemonArgs),
    /// List schedules with their next tick, or start / stop one.
    Schedules(InstigatorArgs),
    /// List sensors with their cursor, start / stop one, or show / set / clear its cursor.
    Sensors(InstigatorArgs),
    /// A schedule's or sensor's ticks: what each requested, or why not.
    Ticks(TicksArgs),
    /// Replay schedules and sensors over a time range on a virtual clock, against the current
    /// store, and print what would be requested and why (nothing is written).
    Simulate(SimulateArgs),
    /// Why a partition is fresh, stale or missing, traced to its root causes.
    ///
    /// Stale causes (code version, dependencies, changed inputs) are followed hop by hop to the
    /// leaf partitions that changed; then the latest evaluations of its automation condition.
    Why(WhyArgs),
    /// Forget partitions of an asset in the lineage store (needs --yes).
    ///
    /// Removes their current state and check results and hides their materializations from
    /// history (they stay in the store for lineage); outputs and ledger entries stay.
    /// Materializations that read them become stale.
    Wipe(WipeArgs),
    /// Serve the read-only web view of the lineage store: asset graph, partitions, runs,
    /// backfills, automation and the queue (prints its URL; Ctrl-C stops it).
    Ui(UiArgs),
    /// Daemon, an in-process worker and the web view in one process, like `dagster dev`
    /// (Ctrl-C stops all three).
    Dev(DevArgs),
    /// Recompute every partition's staleness from scratch and fix any wrong count.
    ///
    /// Staleness is maintained as materializations are recorded; this checks it.
    Repair,
    /// Delete finished history older than an age: run events, finished requests and their
    /// edges, old ticks, delivered OpenLineage events and sent alerts.
    ///
    /// Lineage is never deleted: materializations, their inputs, runs, partition state, check
    /// results, backfills and their requests stay. `--dry-run` counts without deleting. The
    /// daemon does the same every hour when ROBO_ASSETS_RETENTION is set.
    Prune(PruneArgs),
    /// Print a shell completion script: `robo-assets completions bash > ~/.local/share/bash-completion/completions/robo-assets`.
    ///
    /// zsh: `robo-assets completions zsh > ~/.zfunc/_robo-assets` (with `fpath+=~/.zfunc` before
    /// `compinit`); fish: `robo-assets completions fish > ~/.config/fish/completions/robo-assets.fish`.
    Completions(CompletionsArgs),
}

impl Command {
    /// Whether the command runs steps, serves, or runs the project's code (its resources,
    /// sensors, demo seed): it then runs on a worker thread per core, the rest on the calling
    /// thread (`project::runtime`). A match without a catch-all, so a new command is placed on
    /// purpose.
    pub fn runs_project_code(&self) -> bool {
        match self {
            Command::Materialize(_)
            | Command::Worker(_)
            | Command::Daemon(_)
            | Command::Dev(_)
            | Command::Ui(_)
            | Command::Simulate(_)
            | Command::Demo(_) => true,
            Command::Backfill(args) => match &args.command {
                None | Some(BackfillCommand::Resume { .. } | BackfillCommand::RetryFailed { .. }) => true,
                Some(
                    BackfillCommand::List { .. } | BackfillCommand::Status { .. } | BackfillCommand::Cancel { .. },
                ) => false,
            },
            Command::List(_)
            | Command::Status(_)
            | Command::History(_)
            | Command::Path(_)
            | Command::Runs(_)
            | Command::Lineage(_)
            | Command::Migrate
            | Command::Submit(_)
            | Command::Requests(_)
            | Command::Pools(_)
            | Command::Checks(_)
            | Command::Partitions(_)
            | Command::Schedules(_)
            | Command::Sensors(_)
            | Command::Ticks(_)
            | Command::Why(_)
            | Command::Wipe(_)
            | Command::Repair
            | Command::Prune(_)
            | Command::Completions(_) => false,
        }
    }
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct UiArgs {
    /// Address to listen on. Loopback by default; any other address serves the lineage store
    /// to the network without authentication (a warning says so).
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub bind: std::net::SocketAddr,
}

#[derive(Debug, Args)]
pub struct DevArgs {
    #[command(flatten)]
    pub ui: UiArgs,
    /// Seconds between daemon evaluations.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub interval_secs: u64,
    /// Steps at once for the in-process worker.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Delete what finished longer ago than this: a whole number of days or hours (30d, 12h).
    #[arg(long, value_name = "AGE", value_parser = engine::retention::parse_age)]
    pub older_than: chrono::Duration,
    /// Count what would be deleted, and delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WipeArgs {
    /// The asset.
    pub asset: String,
    #[command(flatten)]
    pub partitions: PartitionArgs,
    /// Wipe for real; without it nothing is wiped, the command says what would be and exits 2.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct WhyArgs {
    /// The asset.
    pub asset: String,
    /// The partition.
    #[arg(long, short = 'p')]
    pub partition: Option<String>,
    /// At most this many condition evaluations, newest first.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub limit: i64,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Evaluate once at the current time, run what was requested, and exit.
    #[arg(long)]
    pub once: bool,
    /// Seconds between evaluations.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub interval_secs: u64,
    /// Only request; leave the running to `robo-assets worker` processes.
    #[arg(long)]
    pub no_worker: bool,
    /// Steps at once for the in-process worker.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Serve Prometheus metrics at http://ADDR/metrics: HOST:PORT, or a port alone for loopback
    /// (e.g. 9464). Off unless given.
    #[arg(long, value_name = "ADDR", value_parser = crate::metrics::parse_bind)]
    pub metrics_bind: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub struct InstigatorArgs {
    #[command(subcommand)]
    pub command: Option<InstigatorCommand>,
    /// Print the list as JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum InstigatorCommand {
    /// List them (the default).
    List,
    /// Let the daemon evaluate it.
    Start {
        /// Its name.
        name: String,
    },
    /// Stop evaluating it (its ticks stay).
    Stop {
        /// Its name.
        name: String,
    },
    /// A sensor's cursor: show it, or set / clear it.
    Cursor {
        /// The sensor.
        name: String,
        /// A new cursor.
        #[arg(long, conflicts_with = "clear")]
        set: Option<String>,
        /// Forget the cursor (the next evaluation starts over).
        #[arg(long)]
        clear: bool,
    },
}

#[derive(Debug, Args)]
pub struct TicksArgs {
    /// The schedule or sensor.
    pub name: String,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub limit: i64,
    /// Only ticks before this tick id in time order (the `next_cursor` of the previous page).
    #[arg(long)]
    pub before: Option<i64>,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Start of the range (RFC 3339, or a date: 2026-01-01 = its midnight UTC), exclusive.
    #[arg(long)]
    pub from: String,
    /// End of the range, inclusive.
    #[arg(long)]
    pub to: String,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct PartitionsArgs {
    #[command(subcommand)]
    pub command: Option<PartitionsCommand>,
    /// A dynamic definition's name: `partitions NAME` lists its keys, as `partitions list NAME`.
    pub name: Option<String>,
    /// Print JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum PartitionsCommand {
    /// The keys of a dynamic definition, in the order they were added.
    List {
        /// The definition's name (see `robo-assets list`).
        name: String,
    },
    /// Add keys to a dynamic definition (keys that exist are left alone).
    Add {
        /// The definition's name.
        name: String,
        /// The keys.
        #[arg(required = true)]
        keys: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(subcommand)]
    pub command: DemoCommand,
}

#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Seed the app database with the demo data set (a no-op if it has tenants).
    Seed,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BackfillArgs {
    #[command(subcommand)]
    pub command: Option<BackfillCommand>,
    #[command(flatten)]
    pub launch: BackfillLaunchArgs,
}

#[derive(Debug, Args)]
pub struct BackfillLaunchArgs {
    /// What to backfill (the selection syntax of `materialize`; +NAME includes upstream).
    #[arg(required = true)]
    pub selection: Option<String>,
    /// First partition of the range (inclusive).
    #[arg(long, required = true)]
    pub from: Option<String>,
    /// Last partition of the range (inclusive).
    #[arg(long, required = true)]
    pub to: Option<String>,
    /// Fixes one dimension of multi-dimensional partitions (repeatable): the range runs over the
    /// time dimension with realm=123 only; every realm when omitted.
    #[arg(long = "dim", value_name = "NAME=KEY", value_parser = parse_dim)]
    pub dims: Vec<String>,
    /// Which cells to run: missing (no materialization), failed (latest attempt failed), stale
    /// (missing, or code or inputs changed since), all.
    #[arg(long, default_value = "missing", value_parser = backfill_policy())]
    pub policy: lineage::BackfillPolicy,
    /// Print the plan (cells per asset as ranges, and what the policy skips) and exit.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub run: BackfillRunArgs,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct BackfillRunArgs {
    /// Run at most this many cells at once in this process.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Only persist and submit: `robo-assets worker` processes carry it out.
    #[arg(long)]
    pub detach: bool,
}

/// The backfill policies by their stored names, listed in `--help`.
fn backfill_policy() -> impl clap::builder::TypedValueParser<Value = lineage::BackfillPolicy> {
    use clap::builder::TypedValueParser as _;
    use strum::VariantNames as _;
    clap::builder::PossibleValuesParser::new(lineage::BackfillPolicy::VARIANTS)
        .map(|name: String| name.parse().expect("a listed policy parses"))
}

#[derive(Debug, Subcommand)]
pub enum BackfillCommand {
    /// List backfills, newest first.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=100_000))]
        limit: i64,
        /// Only backfills older than this backfill id (the `next_cursor` of the previous page).
        #[arg(long)]
        before: Option<String>,
        /// Print JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Per-asset counts (done, running, queued, failed, skipped) and the failed cells with their error.
    Status {
        /// The backfill id (`bf-…`): whole, or a unique beginning or end of it (`backfill list` prints its last 8 digits).
        id: String,
        /// Print JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Stop a backfill: no new cells start, running ones are asked to stop; it ends canceled.
    Cancel {
        /// The backfill id (`bf-…`): whole, or a unique beginning or end of it (`backfill list` prints its last 8 digits).
        id: String,
    },
    /// Continue a backfill after a crash or a cancel: cells already done are not redone.
    Resume {
        /// The backfill id (`bf-…`): whole, or a unique beginning or end of it (`backfill list` prints its last 8 digits).
        id: String,
        #[command(flatten)]
        run: BackfillRunArgs,
    },
    /// Run again only the failed cells and the cells downstream of them.
    RetryFailed {
        /// The backfill id (`bf-…`): whole, or a unique beginning or end of it (`backfill list` prints its last 8 digits).
        id: String,
        #[command(flatten)]
        run: BackfillRunArgs,
    },
}

#[derive(Debug, Args)]
pub struct PoolsArgs {
    #[command(subcommand)]
    pub command: Option<PoolsCommand>,
    /// Print JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum PoolsCommand {
    /// List pools with their limits and what runs now (the default).
    List,
    /// Set a pool's limit (e.g. `pools set graph_api 4`).
    Set {
        /// The pool, as assets declare it.
        name: String,
        /// Running steps at most, across all workers.
        #[arg(value_parser = clap::value_parser!(i64).range(1..=100_000))]
        limit: i64,
    },
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// What to materialize (the selection syntax of `materialize`).
    pub selection: String,
    #[command(flatten)]
    pub partitions: PartitionArgs,
    /// Also request upstream partitions that are missing.
    #[arg(long)]
    pub with_upstream: bool,
    /// Idempotency key (1 to 255 characters, stored as `user:KEY`): it names this selection;
    /// submitting the same selection with it again returns the first run, another selection is
    /// refused.
    #[arg(long)]
    pub key: Option<String>,
    /// Follow the run to its end, with progress; exit like `materialize`.
    #[arg(long)]
    pub wait: bool,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Requests in flight at most.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Lease length in seconds (renewed every third of it while a step runs).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(3..=3600))]
    pub lease_secs: u64,
    /// Serve Prometheus metrics at http://ADDR/metrics: HOST:PORT, or a port alone for loopback
    /// (e.g. 9464). Off unless given.
    #[arg(long, value_name = "ADDR", value_parser = crate::metrics::parse_bind)]
    pub metrics_bind: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub struct RequestsArgs {
    #[command(subcommand)]
    pub command: Option<RequestsCommand>,
    /// Only requests of this run.
    #[arg(long)]
    pub run: Option<String>,
    /// Only requests in this state: blocked, available, running, succeeded, failed, canceled, upstream_failed.
    #[arg(long)]
    pub state: Option<String>,
    /// At most this many requests.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub limit: i64,
    /// Only requests older than this request id (the `next_cursor` of the previous page).
    #[arg(long)]
    pub before: Option<String>,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum RequestsCommand {
    /// List requests (the default).
    List,
    /// Show one request.
    Show {
        /// The request id: whole, or a unique beginning or end of it (`requests` prints its last 8 digits).
        id: String,
    },
    /// Cancel a request: at once if waiting (with what depends on it), by asking its worker if running.
    Cancel {
        /// The request id: whole, or a unique beginning or end of it (`requests` prints its last 8 digits).
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Which partitions: one key, or an inclusive range.
#[derive(Debug, Clone, Args)]
pub struct PartitionArgs {
    /// One partition key: 2025-12-15 (daily), 2025-12-15T02:00 (hourly), 2025-12 (monthly).
    #[arg(long, short = 'p', conflicts_with_all = ["from", "to"])]
    pub partition: Option<String>,
    /// First partition of a range (inclusive); needs --to.
    #[arg(long, requires = "to")]
    pub from: Option<String>,
    /// Last partition of a range (inclusive); needs --from.
    #[arg(long, requires = "from")]
    pub to: Option<String>,
    /// Fixes one dimension of multi-dimensional partitions (repeatable): --dim realm=123 with
    /// --partition 2025-12 is `month=2025-12|realm=123`; with --from/--to the range runs over the
    /// time dimension for that realm only (every realm when omitted).
    #[arg(long = "dim", value_name = "NAME=KEY", value_parser = parse_dim)]
    pub dims: Vec<String>,
}

/// A `--dim NAME=KEY`.
fn parse_dim(s: &str) -> Result<String, String> {
    match s.split_once('=') {
        Some((name, key)) if !name.is_empty() && !key.is_empty() && !s.contains('|') => Ok(s.to_owned()),
        _ => Err(format!("{s:?} is not NAME=KEY (e.g. realm=123)")),
    }
}

#[derive(Debug, Args)]
pub struct MaterializeArgs {
    /// What to materialize: NAME, +NAME (with upstream), NAME+ (with downstream), N+NAME,
    /// group:G, tag:K=V, * ; a comma means union.
    pub selection: String,
    #[command(flatten)]
    pub partitions: PartitionArgs,
    /// Also materialize upstream partitions that are missing.
    #[arg(long)]
    pub with_upstream: bool,
    /// Only partitions that are missing or stale (code version changed, dependencies changed, an
    /// input's data version differs from the one read, or an input is re-run now); fresh ones
    /// are skipped.
    #[arg(long, conflicts_with = "with_upstream")]
    pub stale: bool,
    /// Print the plan and exit without running anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Run at most this many steps at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Print the run's outcome as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Which assets (default: all).
    #[arg(default_value = "*")]
    pub selection: String,
    #[command(flatten)]
    pub partitions: PartitionArgs,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The asset.
    pub asset: String,
    /// Only this partition.
    #[arg(long, short = 'p')]
    pub partition: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub limit: i64,
    /// Only those older than this id (the `next_cursor` of the previous page).
    #[arg(long)]
    pub before: Option<i64>,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PathArgs {
    /// The asset.
    pub asset: String,
    /// The partition (required for a partitioned asset).
    #[arg(long, short = 'p')]
    pub partition: Option<String>,
    /// Print JSON on stdout (asset, partition, path, uri, materialization_id, data_version, run_id).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub command: Option<RunsCommand>,
    /// Only runs with this status: queued, running, succeeded, failed, canceled.
    #[arg(long)]
    pub status: Option<String>,
    /// At most this many runs.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub limit: i64,
    /// Only runs older than this run id (the `next_cursor` of the previous page).
    #[arg(long)]
    pub before: Option<String>,
    /// Only runs asked for by this trigger: manual, schedule, sensor, backfill, …
    #[arg(long)]
    pub trigger: Option<String>,
    /// Only runs with a step of this asset.
    #[arg(long)]
    pub asset: Option<String>,
    /// Only runs created at or after this time (RFC 3339, or a date: 2026-01-01).
    #[arg(long)]
    pub since: Option<String>,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Show one run: its steps, materializations and event log.
    Show {
        /// The run id: whole, or a unique beginning or end of it (`runs` prints its last 8 digits).
        run_id: String,
        /// Print JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Print one run's event log, with the messages its steps logged (`ctx.log`).
    Logs {
        /// The run id: whole, or a unique beginning or end of it (`runs` prints its last 8 digits).
        run_id: String,
        /// Only the events of this asset's steps.
        #[arg(long)]
        asset: Option<String>,
        /// Print JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LineageFormat {
    /// An indented tree.
    Tree,
    /// JSON.
    Json,
    /// Graphviz DOT (`| dot -Tsvg > lineage.svg`).
    Dot,
    /// A Mermaid flowchart (renders in GitHub and most wikis).
    Mermaid,
    /// An SVG picture of the asset graph, each asset coloured by its partitions' status
    /// (`> lineage.svg`, open in a browser).
    Svg,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct LineageArgs {
    #[command(subcommand)]
    pub command: Option<LineageCommand>,
    #[command(flatten)]
    pub show: LineageShowArgs,
}

#[derive(Debug, Subcommand)]
pub enum LineageCommand {
    /// Write lineage events as NDJSON on stdout, oldest first.
    ///
    /// `--openlineage`: one OpenLineage 2-0-2 RunEvent per line (the events the daemon delivers
    /// to OPENLINEAGE_URL, delivered or not), for Marquez, DataHub or a file.
    Export(LineageExportArgs),
}

#[derive(Debug, Args)]
pub struct LineageExportArgs {
    /// Write OpenLineage RunEvents (the only format there is; required, so a later format is
    /// never a silent change).
    #[arg(long, required = true)]
    pub openlineage: bool,
    /// Only events at or after this time (RFC 3339, `2025-12-15`, or a duration ago: `24h`,
    /// `7d`).
    #[arg(long, value_parser = parse_since)]
    pub since: Option<Since>,
}

/// The lower bound of `lineage export --since`.
#[derive(Debug, Clone, Copy)]
pub enum Since {
    /// A time.
    At(chrono::DateTime<chrono::Utc>),
    /// This long before now.
    Ago(chrono::Duration),
}

fn parse_since(s: &str) -> Result<Since, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(Since::At(t.with_timezone(&chrono::Utc)));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(Since::At(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc()));
    }
    let unit = s.chars().last().unwrap_or(' ');
    let n: Option<i64> = s[..s.len().saturating_sub(1)].parse().ok().filter(|n| *n >= 0);
    let ago = match (n, unit) {
        (Some(n), 'm') => chrono::Duration::try_minutes(n),
        (Some(n), 'h') => chrono::Duration::try_hours(n),
        (Some(n), 'd') => chrono::Duration::try_days(n),
        _ => None,
    };
    ago.map(Since::Ago).ok_or_else(|| {
        format!("{s:?} is not a time: use RFC 3339 (2025-12-15T00:00:00Z), a date (2025-12-15) or a duration ago (30m, 24h, 7d)")
    })
}

#[derive(Debug, Args)]
pub struct LineageShowArgs {
    /// The asset.
    #[arg(required = true)]
    pub asset: Option<String>,
    /// Show the lineage of this partition's current materialization (versions read).
    #[arg(long, short = 'p')]
    pub partition: Option<String>,
    /// How many levels upstream to show.
    #[arg(long, default_value_t = 3)]
    pub upstream: usize,
    /// How many levels downstream to show.
    #[arg(long, default_value_t = 1)]
    pub downstream: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = LineageFormat::Tree)]
    pub format: LineageFormat,
    /// With --partition: every downstream materialization that read this version, directly or
    /// through others, and whether each is still current.
    #[arg(long, requires = "partition")]
    pub impact: bool,
}
