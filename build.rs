//! Puts the git commit the binary was built from into `--version`: `0.1.0 (commit a16296a1b2c3)`.
//!
//! From a source tarball (no `.git`, or no `git` program) the commit is `unknown`, unless the
//! build names it in `ROBO_ASSETS_BUILD_COMMIT` (as an image build that copies no `.git` can).
//!
//! And lays out the binary's code: the functions a command runs first, side by side
//! (`link/robo-assets.order`, made by `scripts/link-order.sh`; BENCHMARKS.md).

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
    link_order();
}

/// The functions `--help`, `list` and a bill run, placed together at the start of the code
/// instead of scattered through its 26 MB: each page of code a process touches first costs it a
/// page fault. The linker (rust-lld, the default on x86_64 Linux since Rust 1.90) takes them
/// from `link/robo-assets.order`; a name it does not find (a function renamed since the file
/// was made) is skipped. `ROBO_ASSETS_LINK_MAP=FILE` also writes the linker's map, from which
/// `scripts/link-order.sh` makes the file again.
fn link_order() {
    println!("cargo:rerun-if-env-changed=ROBO_ASSETS_LINK_MAP");
    println!("cargo:rerun-if-changed=link/robo-assets.order");
    let target = |key: &str| std::env::var(key).unwrap_or_default();
    if target("CARGO_CFG_TARGET_ARCH") != "x86_64" || target("CARGO_CFG_TARGET_OS") != "linux" {
        return;
    }
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let order = std::path::Path::new(&dir).join("link/robo-assets.order");
    if order.exists() {
        println!("cargo:rustc-link-arg-bin=robo-assets=-Wl,--symbol-ordering-file={}", order.display());
        println!("cargo:rustc-link-arg-bin=robo-assets=-Wl,--no-warn-symbol-ordering");
    }
    if let Ok(map) = std::env::var("ROBO_ASSETS_LINK_MAP")
        && !map.is_empty()
    {
        println!("cargo:rustc-link-arg-bin=robo-assets=-Wl,-Map={map}");
        // Symbols as the ordering file names them.
        println!("cargo:rustc-link-arg-bin=robo-assets=-Wl,--no-demangle");
    }
}
