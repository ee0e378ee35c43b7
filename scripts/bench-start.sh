#!/usr/bin/env bash
# Process start, `--help` and `list`: two binaries compared (BENCHMARKS.md, issue 17).
#
#   scripts/bench-start.sh OLD NEW [RUNS]
#
# For each binary: its size, the loader's relative relocations and `.data.rel.ro` (the pages the
# loader writes at every start), `--help`'s page faults, and callgrind's instruction counts of
# `--help` and `list`; then hyperfine of both commands, the two binaries interleaved, in both
# orders (default 300 runs each). `list` runs in one fresh home, created by OLD.
set -euo pipefail
old="$(realpath "$1")" new="$(realpath "$2")" runs="${3:-300}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export ROBO_ASSETS_HOME="$work/home"
cd "$work"
"$old" list >/dev/null
for b in "$old" "$new"; do
  relocs=$(readelf -r "$b" | grep -c R_X86_64_RELATIVE || true)
  relro=$(size -A "$b" | awk '$1 == ".data.rel.ro" { print $2 }')
  faults=$( { /usr/bin/time -f %R "$b" --help >/dev/null; } 2>&1 )
  help=$(valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$b" --help 2>&1 >/dev/null | grep -o 'refs: *[0-9,]*' | tr -s ' ')
  list=$(valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$b" list 2>&1 >/dev/null | grep -o 'refs: *[0-9,]*' | tr -s ' ')
  echo "$b: $(stat -c %s "$b") bytes, $relocs relative relocations, .data.rel.ro $relro bytes, --help $faults page faults, --help $help, list $list"
done
hyperfine -N --warmup 20 --runs "$runs" "$old --help" "$new --help" "$old list" "$new list"
hyperfine -N --warmup 20 --runs "$runs" "$new --help" "$old --help" "$new list" "$old list"
