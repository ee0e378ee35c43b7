//! Puts the git commit the binary was built from into `--version`: `0.1.0 (commit a16296a1b2c3)`.
//!
//! From a source tarball (no `.git`, or no `git` program) the commit is `unknown`, unless the
//! build names it in `ROBO_ASSETS_BUILD_COMMIT` (as an image build that copies no `.git` can).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=ROBO_ASSETS_BUILD_COMMIT");
    let commit = std::env::var("ROBO_ASSETS_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]));
    // Build again when HEAD moves: HEAD itself, the branch it names, and packed refs.
    if commit.is_some() {
        for path in ["HEAD", "packed-refs"] {
            if let Some(p) = git(&["rev-parse", "--git-path", path]) {
                println!("cargo:rerun-if-changed={p}");
            }
        }
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
            && let Some(p) = git(&["rev-parse", "--git-path", &branch])
        {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    let version = std::env::var("CARGO_PKG_VERSION").expect("cargo sets CARGO_PKG_VERSION");
    let commit = commit.unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=ROBO_ASSETS_VERSION={version} (commit {commit})");
}
