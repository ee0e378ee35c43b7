//! Test harness: run the binary in a fresh `ROBO_ASSETS_HOME`, read back what it stored.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, SqliteConnection};

/// "Now" for every CLI test, so partition ranges are stable.
pub const NOW: &str = "2026-01-15T12:00:00Z";

/// A fresh home directory and the binary.
pub struct Robo {
    pub dir: tempfile::TempDir,
}

/// What one invocation produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Robo {
    pub fn new() -> Robo {
        Robo { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_robo-assets"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("ROBO_ASSETS_HOME", self.home())
            .env("ROBO_ASSETS_NOW", NOW)
            .env("RUST_LOG", "warn")
            .env_remove("ROBO_ASSETS_LINEAGE_URL")
            .env_remove("DATABASE_URL")
            .env_remove("S3_BUCKET_NAME")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("GRAPH_API_URL")
            .env_remove("SEC_API_URL")
            .env_remove("SEC_USER_AGENT")
            .env_remove("SEC_RATE_LIMIT")
            .env_remove("SEC_COOL_DOWN_SECS");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[])
    }

    /// Runs with extra environment variables.
    pub fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out: Output = cmd.output().expect("binary runs");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
            stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
        }
    }

    /// Runs and asserts exit code 0.
    pub fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(run.code, 0, "robo-assets {args:?} failed:\n{}\n{}", run.stdout, run.stderr);
        run
    }

    pub async fn lineage_db(&self) -> SqliteConnection {
        connect(&self.home().join("lineage.db")).await
    }

    pub async fn app_db(&self) -> SqliteConnection {
        connect(&self.home().join("app.db")).await
    }
}

pub async fn connect(path: &Path) -> SqliteConnection {
    SqliteConnectOptions::new().filename(path).read_only(true).connect().await.expect("database opens")
}

/// insta settings that replace what changes between runs (ids, times, durations, versions,
/// temp paths) with placeholders.
pub fn settings(home: &Path) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.add_filter(&regex_escape(&home.display().to_string()), "[HOME]");
    settings.add_filter(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "[RUN_ID]");
    settings.add_filter(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|\+00:00)?", "[TIMESTAMP]");
    settings.add_filter(r"\d+(\.\d+)?(ns|µs|ms|s)\b", "[DURATION]");
    settings.add_filter(r"\b[0-9a-f]{12}\b", "[VERSION]");
    settings
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_alphanumeric() || c == '/' || c == '_' || c == '-' { c.to_string() } else { format!("\\{c}") })
        .collect()
}

/// Snapshots CLI output with [`settings`] applied: `robo_snapshot!(robo, "name", text)`.
#[macro_export]
macro_rules! robo_snapshot {
    ($robo:expr, $name:expr, $value:expr) => {{
        let settings = $crate::common::settings(&$robo.home());
        settings.bind(|| insta::assert_snapshot!($name, $value));
    }};
}

/// The data version of a stored Parquet file's bytes, as the worker's load check computes it
/// (blake3 of the content, provenance left out): "this file is the recorded output".
pub fn data_version(bytes: Vec<u8>) -> String {
    resources::parquet_io::decode(bytes::Bytes::from(bytes)).expect("a complete Parquet file").1
}
