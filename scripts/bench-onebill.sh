#!/usr/bin/env bash
# `materialize storage_bill --partition D`, upstream present: two binaries compared (BENCHMARKS.md).
#
#   scripts/bench-onebill.sh OLD NEW [ROUNDS]
#
# Seeds one store with the 24 hours and a first bill (with OLD), then, for each binary,
# callgrind's instruction count of one run on a fresh copy of that store (five each, alternating),
# and the wall time of ROUNDS runs each (default 150), the two alternating run by run in one
# store, with hyperfine's two orders after. Both binaries must accept the same store.
set -euo pipefail
old="$(realpath "$1")" new="$(realpath "$2")" rounds="${3:-150}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
args=(materialize storage_bill --partition 2025-12-15)
mkdir "$work/seed" && cd "$work/seed"
"$old" materialize storage_bill --partition 2025-12-15 --with-upstream >/dev/null
"$old" "${args[@]}" >/dev/null

echo "callgrind, instructions of one run on a fresh copy of the store:"
for i in 1 2 3 4 5; do
  for b in "$old" "$new"; do
    rm -rf "$work/run" && cp -a "$work/seed" "$work/run" && cd "$work/run"
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$b" "${args[@]}" >/dev/null 2>"$work/cg.err"
    echo "  $b $(grep -o 'refs: *[0-9,]*' "$work/cg.err" | tr -s ' ')"
  done
done

rm -rf "$work/run" && cp -a "$work/seed" "$work/run" && cd "$work/run"
echo "wall time, alternating run by run, $rounds rounds:"
python3 - "$rounds" "$old" "$new" "${args[@]}" <<'PY'
import statistics as st, subprocess, sys, time
rounds, bins, args = int(sys.argv[1]), sys.argv[2:4], sys.argv[4:]
times = {b: [] for b in bins}
for b in bins:
    for _ in range(3):
        subprocess.run([b, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
for i in range(rounds):
    for b in bins if i % 2 == 0 else bins[::-1]:
        start = time.perf_counter()
        subprocess.run([b, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times[b].append((time.perf_counter() - start) * 1e3)
for b in bins:
    x = times[b]
    q = st.quantiles(x, n=10)
    print(f"  {b}: median {st.median(x):.2f} ms, mean {st.mean(x):.2f} ± {st.stdev(x):.2f}, p10 {q[0]:.2f}, p90 {q[-1]:.2f}")
PY
hyperfine -N --warmup 3 -r 30 "$old ${args[*]}" "$new ${args[*]}"
hyperfine -N --warmup 3 -r 30 "$new ${args[*]}" "$old ${args[*]}"
