#!/usr/bin/env python3
"""Several binaries, or one binary under several environments, alternating run by run.

    scripts/bench-alternate.py ROUNDS SEED "ARGS" SPEC...

Each run gets a fresh copy of the store directory SEED (copied before the clock starts) and
runs there, so every run meets the same store: a bill of a day not yet billed, say, rather than
the same bill again. A SPEC is a binary, optionally with environment variables before a `|` and
its own seed after an `@`: `/tmp/new/robo-assets`, `XRT=ct;XB=1|/tmp/new/robo-assets` (`;`
between variables), `/tmp/old/robo-assets@/tmp/seed-old`. Give each spec once (a copy of a
binary under another path to run it twice). The caller's `ROBO_ASSETS_*` and `DATABASE_URL`
are not passed on, so every run uses the copy's embedded stores. The order of the specs is
reversed every other round.
Prints, per spec, the median and mean wall time and the median user and system CPU time and
minor page faults (from `wait4`; the forked child's few faults before its `exec` are counted
too, the same for every spec). Used for BENCHMARKS.md's issue 17 figures:

    # a store with the 24 hours of 2025-12-15 and the day before billed
    cd "$(mktemp -d)" && $B materialize storage_bill -p 2025-12-14 --with-upstream \\
        && $B backfill usage_snapshot --from 2025-12-15T00:00 --to 2025-12-15T23:00
    scripts/bench-alternate.py 80 "$PWD" "materialize storage_bill --partition 2025-12-15" $OLD $NEW
"""
import os
import shutil
import statistics as st
import subprocess
import sys
import tempfile
import time


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    rounds, seed, args, specs = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(), sys.argv[4:]
    if len(set(specs)) != len(specs):
        sys.exit("give each spec once")
    work = tempfile.mkdtemp()
    run_dir = os.path.join(work, "run")
    devnull = os.open(os.devnull, os.O_WRONLY)

    def once(spec):
        envs, _, rest = spec.rpartition("|")
        binary, _, own_seed = rest.partition("@")
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROBO_ASSETS_") and k != "DATABASE_URL"}
        for kv in filter(None, envs.split(";")):
            key, _, value = kv.partition("=")
            env[key] = value
        shutil.rmtree(run_dir, ignore_errors=True)
        subprocess.run(["cp", "-a", own_seed or seed, run_dir], check=True)
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            try:
                os.chdir(run_dir)
                os.dup2(devnull, 1)
                os.dup2(devnull, 2)
                os.execve(binary, [binary, *args], env)
            finally:
                os._exit(127)  # never the parent's cleanup
        _, status, usage = os.wait4(pid, 0)
        wall = (time.perf_counter() - start) * 1e3
        if status != 0:
            sys.exit(f"{spec} {' '.join(args)}: exit status {status}")
        return wall, usage.ru_utime * 1e3, usage.ru_stime * 1e3, usage.ru_minflt

    try:
        for spec in specs:
            once(spec)
            once(spec)
        results = {spec: [] for spec in specs}
        for i in range(rounds):
            for spec in specs if i % 2 == 0 else specs[::-1]:
                results[spec].append(once(spec))
        for spec, runs in results.items():
            col = [[r[k] for r in runs] for k in range(4)]
            print(
                f"{spec}: wall median {st.median(col[0]):.2f} ms, mean {st.mean(col[0]):.2f} | "
                f"user {st.median(col[1]):.2f} ms, sys {st.median(col[2]):.2f} ms | faults {st.median(col[3]):.0f}"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
