//! [`Project`]: a deployment's definitions and resources, and the entry point that runs the whole
//! command line on them.

use std::any::Any;
use std::collections::BTreeSet;
use std::future::Future;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches};
use engine::automation::{Automation, AutomationError};
use engine::{AssetDef, Clock, Definitions};
use resources::ObjectStore;

use crate::cli::{Cli, LogFormat};
use crate::config::Setting;
use crate::{ExitStatus, UserError, user_error};

/// The resource key every project has bound: the object store outputs go to (a local folder, or
/// the S3 bucket of `S3_BUCKET_NAME`), as `Arc<dyn ObjectStore>`.
pub const OBJECT_STORE: &str = "object_store";

/// What a resource factory can use when it builds a resource for a command that runs assets.
#[derive(Clone)]
pub struct Setup {
    /// The state directory (`ROBO_ASSETS_HOME`, default `./.robo-assets`).
    pub home: PathBuf,
    /// The injected clock (`ROBO_ASSETS_NOW` pins it).
    pub clock: Arc<dyn Clock>,
    /// Where outputs go; also bound as [`OBJECT_STORE`].
    pub objects: Arc<dyn ObjectStore>,
    /// The lineage store (a project command adds dynamic partitions through it, say).
    pub store: Arc<dyn lineage::LineageStore>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Builds one resource, when a command needs resources (so configuration is read then).
type Factory = Box<dyn Fn(Setup) -> BoxFuture<anyhow::Result<Arc<dyn Any + Send + Sync>>> + Send + Sync>;

/// A resource key and how to build what it is bound to.
pub(crate) struct Binding {
    pub(crate) key: &'static str,
    pub(crate) make: Factory,
}

/// Seeds a project's demo data (`demo seed`); returns what it did, for people.
pub(crate) type Seeder = Box<dyn Fn(Setup) -> BoxFuture<anyhow::Result<String>> + Send + Sync>;

/// Runs a project's own command (`qbo connect REALM …`) with what resource factories get and
/// the command's parsed arguments.
pub(crate) type CommandRunner = Box<dyn Fn(Setup, clap::ArgMatches) -> BoxFuture<anyhow::Result<()>> + Send + Sync>;

/// A deployment: its asset definitions, schedules and sensors, and the resources its assets ask
/// for by key. [`Project::main`] validates it and runs the whole `robo-assets` command line on
/// it.
///
/// Bad definitions are refused at start-up, before any command runs, with exit code 2 and a
/// message naming the assets and keys involved: a dependency cycle, an unknown dependency, a
/// duplicate key, an incompatible partition mapping, a schedule or condition naming an unknown
/// asset, or a resource key an asset requires (`.requires(key)`) that nothing binds.
#[must_use = "a project does nothing until .main() runs it"]
pub struct Project {
    name: &'static str,
    assets: Vec<AssetDef>,
    automation: Box<dyn FnOnce() -> Result<Automation, AutomationError>>,
    bindings: Vec<Binding>,
    checks: Vec<Box<dyn FnOnce() -> anyhow::Result<()>>>,
    demo: Option<Seeder>,
    commands: Vec<(clap::Command, CommandRunner)>,
    settings: Vec<Setting>,
}

/// A project, validated: what every command runs on.
pub(crate) struct Deployment {
    pub(crate) defs: Definitions,
    pub(crate) automation: Automation,
    pub(crate) bindings: Vec<Binding>,
    pub(crate) demo: Option<Seeder>,
    pub(crate) commands: Vec<(String, CommandRunner)>,
}

impl Project {
    /// A project with no assets yet; `name` is the command name shown in `--help`.
    pub fn new(name: &'static str) -> Project {
        Project {
            name,
            assets: Vec::new(),
            automation: Box::new(|| Ok(Automation::default())),
            bindings: Vec::new(),
            checks: Vec::new(),
            demo: None,
            commands: Vec::new(),
            settings: crate::config::ENGINE_SETTINGS.to_vec(),
        }
    }

    /// A setting the project's resources read (`DATABASE_URL`): its flag, environment variable
    /// and `robo-assets.toml` key are documented in `--help` and accepted; read it with
    /// [`setting`](crate::setting). `help` says what it means and its default.
    pub fn setting(mut self, name: &'static str, help: &'static str) -> Project {
        self.settings.push(Setting { name, help, secret: false });
        self
    }

    /// A [`setting`](Project::setting) that is a credential, or a URL that can hold one.
    pub fn secret_setting(mut self, name: &'static str, help: &'static str) -> Project {
        self.settings.push(Setting { name, help, secret: true });
        self
    }

    /// Adds asset definitions.
    pub fn assets(mut self, assets: impl IntoIterator<Item = AssetDef>) -> Project {
        self.assets.extend(assets);
        self
    }

    /// Its schedules, sensors and declarative conditions, built at start-up (an error refuses
    /// the project with exit code 2).
    pub fn automation(mut self, build: impl FnOnce() -> Result<Automation, AutomationError> + 'static) -> Project {
        self.automation = Box::new(build);
        self
    }

    /// Binds `key` to `value` (e.g. an `Arc<dyn MyClient>`), handed to every compute function
    /// that asks for it with `ctx.resource::<T>(key)`.
    pub fn resource<T: Any + Send + Sync + Clone>(self, key: &'static str, value: T) -> Project {
        self.resource_with(key, move |_setup| {
            let value = value.clone();
            async move { Ok(value) }
        })
    }

    /// Binds `key` to what `make` builds from the [`Setup`] when a command runs assets (opening
    /// a database, reading its configuration); an error ends the command.
    pub fn resource_with<T, F, Fut>(mut self, key: &'static str, make: F) -> Project
    where
        T: Any + Send + Sync,
        F: Fn(Setup) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
    {
        let make = Arc::new(make);
        self.bindings.push(Binding {
            key,
            make: Box::new(move |setup| {
                let make = make.clone();
                Box::pin(async move { Ok(Arc::new(make(setup).await?) as Arc<dyn Any + Send + Sync>) })
            }),
        });
        self
    }

    /// A check run at start-up, before any command (configuration read from the environment,
    /// say): an error refuses to start; a [`user_error`] exits with code 2.
    pub fn check(mut self, check: impl FnOnce() -> anyhow::Result<()> + 'static) -> Project {
        self.checks.push(Box::new(check));
        self
    }

    /// The project's demo data, created by `demo seed`; `seed` returns what it did.
    pub fn demo<F, Fut>(mut self, seed: F) -> Project
    where
        F: Fn(Setup) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<String>> + Send + 'static,
    {
        self.demo = Some(Box::new(move |setup| Box::pin(seed(setup))));
        self
    }

    /// A command of the project's own beside the built-in ones (`robo-assets qbo connect
    /// REALM --refresh-token …`): `command` is its clap definition (its name must not be a
    /// built-in command's), `run` gets what resource factories get and the parsed arguments. A
    /// [`user_error`] exits with code 2, like the built-in commands' bad input.
    ///
    /// A name that is already a command's (built in, or another project command) makes
    /// [`Project::main`] panic: commands are code, and the first run shows it.
    pub fn command<F, Fut>(mut self, command: clap::Command, run: F) -> Project
    where
        F: Fn(Setup, clap::ArgMatches) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        // A name already taken panics in `main`, which builds the command line
        // anyway: checking here built the whole tree once per project command (1.1 M
        // instructions of every start for two).
        self.commands.push((command, Box::new(move |setup, matches| Box::pin(run(setup, matches)))));
        self
    }

    /// Parses the command line, validates the project and runs the command; returns the exit
    /// code (0 success, 1 a run failed, 2 bad input or definitions, 130 canceled).
    pub fn main(self) -> ExitCode {
        exit_quietly_on_broken_pipe();
        let mut parser = self.command_line();
        let matches = parser.get_matches_mut();
        // The command tree is not dropped: it lives as long as the process, and freeing it cost
        // every start 0.2 M instructions (BENCHMARKS.md).
        std::mem::forget(parser);
        let json = wants_json(&matches);
        if let Some(("completions", sub)) = matches.subcommand()
            && let Some(shell) = sub.get_one::<clap_complete::Shell>("shell")
        {
            // Made again rather than cloned before parsing: the clone cost every start a million
            // instructions (BENCHMARKS.md), and completions want an unparsed command.
            clap_complete::generate(*shell, &mut self.command_line(), self.name, &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        let given = self
            .settings
            .iter()
            .filter_map(|s| matches.get_one::<String>(s.name).map(|v| (s.name, v.clone())))
            .collect();
        let file = matches.get_one::<PathBuf>("config").map(PathBuf::as_path);
        if let Err(err) = crate::config::resolve(&self.settings, given, file) {
            return exit_code(Err(err), json);
        }
        // The runtime is never shut down: every command awaits its own work, and a shutdown at
        // exit only wakes the worker threads to stop as the process ends (BENCHMARKS.md).
        if let Some((name, sub)) = matches.subcommand()
            && self.commands.iter().any(|(c, _)| c.get_name() == name)
        {
            // A project's own command runs the project's code: a worker thread per core.
            let runtime = std::mem::ManuallyDrop::new(runtime(true));
            let format = matches.get_one::<LogFormat>("log_format").copied().unwrap_or(LogFormat::Text);
            init_tracing(format);
            let (name, sub) = (name.to_owned(), sub.clone());
            let code = exit_code(
                runtime
                    .block_on(async move { crate::commands::run_project_command(&name, sub, self.validate()?).await }),
                json,
            );
            resources::object_store::wait_for_local_writes(std::time::Duration::from_secs(10));
            return code;
        }
        let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        let runtime = std::mem::ManuallyDrop::new(runtime(cli.command.runs_project_code()));
        init_tracing(cli.log_format);
        let code = exit_code(runtime.block_on(async move { crate::commands::run(cli, self.validate()?).await }), json);
        resources::object_store::wait_for_local_writes(std::time::Duration::from_secs(10));
        code
    }

    /// The command line: the built-in commands, the project's settings as hidden flags and its
    /// own commands.
    ///
    /// # Panics
    /// If a project command's name is already a command's.
    fn command_line(&self) -> clap::Command {
        let mut command = Cli::command().name(self.name).bin_name(self.name);
        for s in &self.settings {
            // Settings live as long as the process: leaking the flag's name is how clap takes one.
            let long: &'static str = Box::leak(s.key().replace('_', "-").into_boxed_str());
            command = command.arg(
                clap::Arg::new(s.name).long(long).env(s.name).hide_env_values(true).hide(true).value_name("VALUE"),
            );
        }
        for (c, _) in &self.commands {
            let name = c.get_name();
            assert!(
                command.find_subcommand(name).is_none(),
                "project command {name:?} is already a command (a built-in one or another of the project's)"
            );
            command = command.subcommand(c.clone());
        }
        crate::cli::grouped_help(command, self.name, &self.settings)
    }

    /// Checks everything that can be checked before a command runs.
    fn validate(self) -> anyhow::Result<Deployment> {
        let defs = Definitions::new(self.assets).map_err(|e| user_error(format!("invalid asset definitions: {e}")))?;
        let automation = (self.automation)().map_err(|e| user_error(format!("invalid automation definitions: {e}")))?;
        check_automation(&defs, &automation)?;
        let bound: BTreeSet<&str> = self.bindings.iter().map(|b| b.key).chain([OBJECT_STORE]).collect();
        let unbound: Vec<String> = defs
            .graph()
            .assets()
            .iter()
            .flat_map(|a| a.required_resources.iter().map(move |k| (a, k)))
            .filter(|(_, key)| !bound.contains(key.as_str()))
            .map(|(a, key)| format!("asset {} requires resource {key:?}, which nothing binds", a.key))
            .collect();
        if !unbound.is_empty() {
            return Err(user_error(format!(
                "invalid resource bindings: {} (bound: {})",
                unbound.join("; "),
                bound.iter().copied().collect::<Vec<_>>().join(", ")
            )));
        }
        for check in self.checks {
            check()?;
        }
        let commands = self.commands.into_iter().map(|(c, run)| (c.get_name().to_owned(), run)).collect();
        Ok(Deployment { defs, automation, bindings: self.bindings, demo: self.demo, commands })
    }
}

/// Schedules select existing assets; conditions name existing assets.
fn check_automation(defs: &Definitions, automation: &Automation) -> anyhow::Result<()> {
    let graph = defs.graph();
    let mut problems = Vec::new();
    for s in &automation.schedules {
        if let Err(e) = engine::selection::resolve(graph, &s.selection) {
            problems.push(format!("schedule {}: {e}", s.name));
        }
    }
    for (asset, condition) in &automation.conditions {
        if let Err(e) = graph.lookup(asset) {
            problems.push(format!("{} condition: {e}", condition.name()));
        }
    }
    match problems.is_empty() {
        true => Ok(()),
        false => Err(user_error(format!("invalid automation definitions: {}", problems.join("; ")))),
    }
}

/// The runtime a command runs on: tokio's multi-threaded one, a worker thread per core, for a
/// command that runs steps, serves or runs the project's code ([`Command::runs_project_code`]);
/// its steps compute in parallel, and code that blocks its thread leaves the rest (the leases'
/// renewals among them) running. Every other command runs none of the project's resources,
/// sensors or seed, and runs on a current-thread runtime: no worker threads to start, and no
/// wake-ups between them (`list` 6.20 → 5.66 ms, `status` 6.46 → 5.96 ms; BENCHMARKS.md). Blocking work goes to tokio's
/// blocking pool on either.
///
/// [`Command::runs_project_code`]: crate::cli::Command::runs_project_code
fn runtime(multi_threaded: bool) -> tokio::runtime::Runtime {
    let mut builder = if multi_threaded {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().build().expect("tokio runtime starts")
}

/// Whether the command line asked for JSON (`--json` on the command or a subcommand).
fn wants_json(matches: &clap::ArgMatches) -> bool {
    let mut m = matches;
    loop {
        if matches!(m.try_get_one::<bool>("json"), Ok(Some(true)))
            || matches!(m.try_get_one::<crate::cli::LineageFormat>("format"), Ok(Some(crate::cli::LineageFormat::Json)))
        {
            return true;
        }
        match m.subcommand() {
            Some((_, sub)) => m = sub,
            None => return false,
        }
    }
}

/// Prints an error's chain (with `--json`, also as `{"error": {"kind", "message"}}` on stdout,
/// the shape `/api/v1` answers with) and maps how a command ended to its exit code.
fn exit_code(result: anyhow::Result<ExitStatus>, json: bool) -> ExitCode {
    match result {
        Ok(ExitStatus::Success) => ExitCode::SUCCESS,
        Ok(ExitStatus::Failure) => ExitCode::from(1),
        Ok(ExitStatus::Canceled) => ExitCode::from(130),
        Err(err) => {
            let user = err.downcast_ref::<UserError>().is_some();
            // A message that echoes a huge argument is cut: what was wrong fits on a screen.
            let mut message = chain(err.as_ref());
            if user && let Some(note) = crate::config::file_note(&message) {
                message.push_str(&note);
            }
            let chars = message.chars().count();
            if chars > 2_000 {
                message = format!("{}… ({chars} characters in all)", message.chars().take(2_000).collect::<String>());
            }
            eprintln!("error: {message}");
            if json {
                let kind = if user { "invalid_input" } else { "internal" };
                println!("{}", serde_json::json!({ "error": { "kind": kind, "message": message } }));
            }
            ExitCode::from(if user { 2 } else { 1 })
        }
    }
}

/// An error and its causes, `: `-separated like `{:#}`, with each cause once: sqlx (and others)
/// put their source's text into their own message, which `{:#}` would print a second time.
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = String::new();
    for cause in std::iter::successors(Some(err), |e| e.source()) {
        let text = cause.to_string();
        if message.ends_with(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("warn,robo_assets=info,engine=info,lineage=info,resources=info,assets=info")
    });
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_timer(LogTime::new());
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).with_target(false).init(),
    }
}

/// Log lines' timestamps: the engine's clock, so a pinned `ROBO_ASSETS_NOW` shows in the log as
/// it does in what the commands record (a line stamped with the wall clock next to ticks of
/// another day reads as a bug); the wall clock otherwise.
struct LogTime(Arc<dyn Clock>);

impl LogTime {
    /// Read after the settings are resolved; a value that does not parse is refused with its
    /// reason when the command loads its configuration, and logs take the wall clock meanwhile.
    fn new() -> LogTime {
        let pinned = crate::config::setting("ROBO_ASSETS_NOW")
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok())
            .map(|t| t.with_timezone(&chrono::Utc));
        LogTime(match pinned {
            Some(now) => Arc::new(engine::FixedClock(now)),
            None => Arc::new(engine::SystemClock),
        })
    }
}

impl tracing_subscriber::fmt::time::FormatTime for LogTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(w, "{}", self.0.now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    }
}

/// `robo-assets … | head` closes stdout early: end quietly, as a Unix tool does on SIGPIPE,
/// instead of printing a panic (Rust ignores SIGPIPE, so `println!` panics on a closed pipe).
fn exit_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_command(project: Project, name: &'static str) -> Project {
        project.command(clap::Command::new(name).about("a project command"), |_, _| async { Ok(()) })
    }

    #[test]
    fn project_commands_join_the_command_line() {
        let project = with_command(Project::new("robo-assets"), "qbo");
        let line = project.command_line();
        assert!(line.find_subcommand("qbo").is_some());
        assert!(line.find_subcommand("materialize").is_some());
    }

    /// The commands that run steps, serve or run the project's code get a worker thread per
    /// core; the others a current-thread runtime.
    #[test]
    fn commands_that_run_project_code_get_a_thread_per_core_and_the_rest_a_current_thread_runtime() {
        let runs_code = |args: &[&str]| {
            <Cli as clap::Parser>::try_parse_from([&["robo-assets"], args].concat())
                .unwrap()
                .command
                .runs_project_code()
        };
        for args in [
            &["materialize", "storage_bill", "--partition", "2025-12-15"][..],
            &["backfill", "+storage_bill", "--from", "2025-12-01", "--to", "2025-12-31"],
            &["backfill", "resume", "bf-1"],
            &["backfill", "retry-failed", "bf-1"],
            &["worker"],
            &["daemon"],
            &["dev"],
            &["ui"],
            &["simulate", "--from", "2025-12-01T00:00:00Z", "--to", "2025-12-02T00:00:00Z"],
            &["demo", "seed"],
        ] {
            assert!(runs_code(args), "{args:?}");
        }
        for args in [
            &["list"][..],
            &["status", "storage_bill"],
            &["backfill", "list"],
            &["backfill", "status", "bf-1"],
            &["backfill", "cancel", "bf-1"],
            &["runs"],
            &["submit", "storage_bill", "--partition", "2025-12-15"],
            &["prune", "--older-than", "30d"],
        ] {
            assert!(!runs_code(args), "{args:?}");
        }
    }

    #[test]
    #[should_panic(expected = "project command \"list\" is already a command")]
    fn a_project_command_named_like_a_built_in_one_panics() {
        with_command(Project::new("robo-assets"), "list").command_line();
    }

    #[test]
    #[should_panic(expected = "project command \"qbo\" is already a command")]
    fn two_project_commands_of_one_name_panic() {
        with_command(with_command(Project::new("robo-assets"), "qbo"), "qbo").command_line();
    }
}
