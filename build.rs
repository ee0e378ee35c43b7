//! Puts the git commit the binary was built from into `--version`: `0.1.0 (commit a16296a1b2c3)`.
//!
//! From a source tarball (no `.git`, or no `git` program) the commit is `unknown`, unless the
//! build names it in `ROBO_ASSETS_BUILD_COMMIT` (as an image build that copies no `.git` can).
//!
//! And lays out the binary's code: the functions a command runs first, laid out together
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

/// The functions `--help`, `list`, `status` and a bill run, laid out together at the start of the
/// code instead of scattered through its 26 MB: each page of code a process touches first costs
/// it a page fault. The linker takes them from `link/robo-assets.order`, made by
/// `scripts/link-order.sh` from the release build's linker map; a name it does not find (a
/// function renamed since the file was made) is skipped. Only where the linker is rust-lld: the
/// default of rustup's toolchains for `x86_64-unknown-linux-gnu` since Rust 1.90, and the only
/// linker here that reads the file; a build with a linker of its own (`RUSTC_LINKER`,
/// `-C linker…`, `-fuse-ld`) links without it. `ROBO_ASSETS_LINK_MAP=FILE` also writes the map.
fn link_order() {
    println!("cargo:rerun-if-env-changed=ROBO_ASSETS_LINK_MAP");
    println!("cargo:rerun-if-changed=link/robo-assets.order");
    let var = |key: &str| std::env::var(key).unwrap_or_default();
    let flags = var("CARGO_ENCODED_RUSTFLAGS");
    let own_linker = std::env::var_os("RUSTC_LINKER").is_some()
        || ["linker", "link-self-contained", "fuse-ld"].iter().any(|f| flags.contains(f));
    if var("TARGET") != "x86_64-unknown-linux-gnu" || own_linker || !rust_lld_ships() {
        return;
    }
    let dir = var("CARGO_MANIFEST_DIR");
    let order = std::path::Path::new(&dir).join("link/robo-assets.order");
    if order.exists() {
        made_with_this_rustc(&order);
        link_arg(&format!("--symbol-ordering-file={}", order.display()));
        link_arg("--no-warn-symbol-ordering");
    }
    if let Ok(map) = std::env::var("ROBO_ASSETS_LINK_MAP")
        && !map.is_empty()
    {
        link_arg(&format!("-Map={map}"));
        // Symbols as the ordering file names them.
        link_arg("--no-demangle");
    }
}

/// One argument for the linker itself, whole (`-Wl,` would split a path at its commas).
fn link_arg(arg: &str) {
    println!("cargo:rustc-link-arg-bin=robo-assets=-Xlinker");
    println!("cargo:rustc-link-arg-bin=robo-assets={arg}");
}

/// Whether the toolchain has the rust-lld it links with by default.
fn rust_lld_ships() -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let Some(sysroot) = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .and_then(|o| (o.status.success()).then(|| String::from_utf8_lossy(&o.stdout).trim().to_owned()))
    else {
        return false;
    };
    std::path::Path::new(&sysroot).join("lib/rustlib/x86_64-unknown-linux-gnu/bin/gcc-ld/ld.lld").exists()
}

/// The Rust names in the order carry hashes of the compiler's version: a release build with
/// another rustc finds only the C functions, and says how to make the file again.
fn made_with_this_rustc(order: &std::path::Path) {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let this = Command::new(rustc).arg("-V").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let made = std::fs::read_to_string(order)
        .ok()
        .and_then(|text| text.lines().next().and_then(|l| l.strip_prefix("# ")).map(str::to_owned));
    if let (Ok(this), Some(made)) = (this, made)
        && this != made
        && std::env::var("PROFILE").as_deref() == Ok("release")
    {
        println!(
            "cargo:warning=link/robo-assets.order was made with {made}, this build uses {this}: \
             run scripts/link-order.sh to lay the code out for it"
        );
    }
}
