#!/usr/bin/env bash
# Makes link/robo-assets.order, the symbols placed first in the binary's code (build.rs): those
# that `--help`, `list`, `status` and a bill run, from callgrind's record of every instruction
# each ran in the shipped build, named by that build's linker map. Run it after a change that
# renames or adds many functions on these paths; a stale file only places fewer of them.
#
#   scripts/link-order.sh        (one release build, ~15 min; then the next build uses the file)
set -euo pipefail
for tool in valgrind python3; do
  command -v "$tool" >/dev/null || { echo "link-order: $tool is needed" >&2; exit 1; }
done
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$root"
ROBO_ASSETS_LINK_MAP="$work/robo-assets.map" cargo build --release --locked --bin robo-assets
[ -s "$work/robo-assets.map" ] || { echo "link-order: no linker map (rust-lld on x86_64-unknown-linux-gnu only)" >&2; exit 1; }
target="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
cp "$target/release/robo-assets" "$work/robo-assets"
mkdir "$work/home" && cd "$work/home"
n=0
for args in "--help" "list" "materialize storage_bill --partition 2025-12-15 --with-upstream" \
  "materialize storage_bill --partition 2025-12-15" "status storage_bill"; do
  n=$((n + 1))
  # The embedded defaults in a fresh home, whatever this shell's settings name.
  # shellcheck disable=SC2086 # the arguments split on purpose
  if ! env -i PATH="$PATH" HOME="$work/home" valgrind --tool=callgrind --dump-instr=yes --compress-strings=no \
    --compress-pos=no --callgrind-out-file="$work/cg.$n" "$work/robo-assets" $args >/dev/null 2>"$work/cg.$n.err"; then
    echo "link-order: robo-assets $args failed:" >&2
    cat "$work/cg.$n.err" >&2
    exit 1
  fi
done
{
  # The compiler's version first: the Rust names carry hashes of it (build.rs compares).
  echo "# $(rustc -V)"
  python3 - "$work/robo-assets.map" "$work"/cg.[0-9] <<'PY'
import bisect, re, sys
# The linker map (lld): VMA LMA Size Align, then an output section, an input section
# (file:(section)) or a symbol, each indented one level deeper.
line = re.compile(r"^\s*([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+ (\s*)(.*)$")
starts, sections, section = [], [], None
for text in open(sys.argv[1], errors="replace"):
    m = line.match(text)
    if not m:
        continue
    vma, size, depth, rest = int(m[1], 16), int(m[2], 16), len(m[3]), m[4]
    if depth == 8 and rest.endswith(")") and ":(.text" in rest:
        section = [vma, vma + size, []]
        starts.append(vma)
        sections.append(section)
    elif depth == 16 and section is not None and section[0] <= vma < section[1]:
        section[2].append(rest)
    elif depth <= 8:
        section = None
seen, order = set(), []
for path in sys.argv[2:]:
    # callgrind: every instruction run, as "0xADDRESS line cost", under "ob=" the object.
    ours, run = False, set()
    for text in open(path, errors="replace"):
        if text.startswith("ob="):
            ours = text.rstrip().endswith("/robo-assets")
        elif ours and text.startswith("0x"):
            run.add(int(text.split(None, 1)[0], 16))
    for address in sorted(run):
        i = bisect.bisect_right(starts, address) - 1
        if i >= 0 and address < sections[i][1] and i not in seen:
            seen.add(i)
            order.extend(sections[i][2])
print("\n".join(order))
print(f"{len(seen)} sections of code, {len(order)} symbols", file=sys.stderr)
PY
} > "$work/order"
[ "$(wc -l < "$work/order")" -gt 100 ] || { echo "link-order: too few symbols found" >&2; exit 1; }
mv "$work/order" "$root/link/robo-assets.order"
echo "wrote link/robo-assets.order ($(($(wc -l < "$root/link/robo-assets.order") - 1)) symbols)"
