#!/usr/bin/env bash
# Makes link/robo-assets.order, the functions placed first in the binary's code (build.rs): those
# that `--help`, `list`, `status` and a bill run, from callgrind's record of every instruction
# each ran in the shipped build, named by that build's linker map. Run it after a change that
# renames or adds many functions on these paths; a stale file only places fewer of them.
#
#   scripts/link-order.sh        (one release build, ~15 min; then the next build uses the file)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$root"
ROBO_ASSETS_LINK_MAP="$work/robo-assets.map" cargo build --release --locked --bin robo-assets
target="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
cp "$target/release/robo-assets" "$work/robo-assets"
mkdir "$work/home" && cd "$work/home"
n=0
for args in "--help" "list" "materialize storage_bill --partition 2025-12-15 --with-upstream" \
  "materialize storage_bill --partition 2025-12-15" "status storage_bill"; do
  n=$((n + 1))
  # shellcheck disable=SC2086 # the arguments split on purpose
  valgrind --tool=callgrind --dump-instr=yes --compress-strings=no --compress-pos=no \
    --callgrind-out-file="$work/cg.$n" "$work/robo-assets" $args >/dev/null 2>&1
done
python3 - "$work/robo-assets.map" "$work"/cg.* > "$root/link/robo-assets.order" <<'PY'
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
print(f"{len(seen)} functions, {len(order)} symbols", file=sys.stderr)
PY
echo "wrote link/robo-assets.order ($(wc -l < "$root/link/robo-assets.order") symbols)"
