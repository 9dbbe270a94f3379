#!/usr/bin/env bash
# What the trace costs. `scsiport trace` runs the exercise workload (write a pattern over a RAM disk through the class
# driver, port, miniport, HBA model and 8237, read it back, verify every byte) in three configurations, on the same
# workload (size, block, seed, placement, one worker):
#
#   compiled-out  port built with the `no-trace` feature: the engine never reaches a trace call (the baseline);
#   off           the normal build, trace calls compiled in, no recorder (how scsiport ships);
#   on            the normal build, every event recorded in memory (nothing written to disk).
#
# Three measures, each compared between configurations on the same workload:
#
# 1. Instructions executed by the whole process (valgrind cachegrind's `I refs`, no cache simulation), IR_ROUNDS runs
#    of each configuration on IR_SIZE. This is the measure the verdict uses: it does not depend on what else the
#    machine is doing, and repeated runs agree within a few hundredths of a percent.
# 2. CPU time (user + system) of the process and 3. the workload's wall time as the command reports it, over ROUNDS
#    interleaved rounds (compiled-out, off, on, compiled-out, ...) on SIZE, as medians of the per-round ratios. On a
#    shared machine both swing by tens of percent from run to run (the workload mostly waits: every SRB crosses
#    threads), so they are printed for reference only.
#
# The script fails when off / compiled-out reaches 1.02 in instructions (in CPU time when valgrind is missing).
#
# Environment: IR_ROUNDS (default 3), IR_SIZE (default 16MiB), ROUNDS (default 5; 0 skips them), SIZE (default
# 512MiB), BLOCK (default 64KiB), EXTRA (more `scsiport trace` flags, e.g. "--passthrough --placement scattered"),
# TARGET (cargo target dir, default target/trace-overhead).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
SIZE=${SIZE:-512MiB}
IR_ROUNDS=${IR_ROUNDS:-3}
IR_SIZE=${IR_SIZE:-16MiB}
BLOCK=${BLOCK:-64KiB}
EXTRA=${EXTRA:-}
TARGET=${TARGET:-target/trace-overhead}
BIN_DIR=$(mktemp -d)
trap 'rm -rf "$BIN_DIR"' EXIT

cargo build --release -j 2 -p scsiport --target-dir "$TARGET" >&2
cp "$TARGET/release/scsiport" "$BIN_DIR/traced"
cargo build --release -j 2 -p scsiport --features port/no-trace --target-dir "$TARGET" >&2
cp "$TARGET/release/scsiport" "$BIN_DIR/untraced"

python3 - "$BIN_DIR" "$ROUNDS" "$SIZE" "$BLOCK" "$EXTRA" "$IR_ROUNDS" "$IR_SIZE" <<'PY'
import json, re, resource, shutil, statistics, subprocess, sys

bin_dir, rounds, size, block, extra = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5].split()
ir_rounds, ir_size = int(sys.argv[6]), sys.argv[7]
configs = [("compiled-out", "untraced", ["--off"]), ("off", "traced", ["--off"]), ("on", "traced", [])]


def command(binary, flags, size):
    return [f"{bin_dir}/{binary}", "trace", "--json", "--size", size, "--block", block, "--workers", "1",
            "--placement", "contiguous", *extra, *flags]


def instructions(binary, flags):
    """Instructions the whole process executed (cachegrind, no cache simulation)."""
    p = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
                        *command(binary, flags, ir_size)], check=True, capture_output=True, text=True)
    r = json.loads(p.stdout)
    assert r["verified"] and r["violations"] == 0, r
    return int(re.search(r"I\s+refs:\s+([\d,]+)", p.stderr).group(1).replace(",", ""))


verdict = None
if shutil.which("valgrind"):
    ir = {name: [] for name, _, _ in configs}
    for i in range(ir_rounds):
        for name, binary, flags in configs:
            ir[name].append(instructions(binary, flags))
        print(f"instructions, round {i + 1}/{ir_rounds}: " + ", ".join(f"{n} {ir[n][-1]:,}" for n, _, _ in configs),
              file=sys.stderr)
    med = {n: statistics.median(v) for n, v in ir.items()}
    spread = max((max(v) - min(v)) / min(v) for v in ir.values())
    print(f"instructions executed, `scsiport trace --size {ir_size} --block {block} --workers 1 {' '.join(extra)}`"
          f" (median of {ir_rounds}; runs of one configuration differ by at most {100 * spread:.3f}%)")
    for n, _, _ in configs:
        print(f"  {n:13} {med[n]:,.0f}")
    verdict = med["off"] / med["compiled-out"]
    print(f"off / compiled-out: {verdict:.5f}  (must stay under 1.02)")
    print(f"on / off:           {med['on'] / med['off']:.5f}")
else:
    print("valgrind is missing: instructions not counted; the verdict falls back to CPU time", file=sys.stderr)


def run(binary, flags):
    """One workload: (wall seconds of the workload, CPU seconds of the whole process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(command(binary, flags, size), check=True, capture_output=True, text=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = json.loads(out)
    assert r["verified"] and r["violations"] == 0, r
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return r["seconds"], cpu


if rounds == 0:
    sys.exit(0 if verdict is not None and verdict < 1.02 else 1)
run("untraced", ["--off"])  # warm-up: page cache, CPU frequency
res = {name: [] for name, _, _ in configs}
for i in range(rounds):
    for name, binary, flags in configs:
        res[name].append(run(binary, flags))
    print(f"round {i + 1}/{rounds}: " + ", ".join(
        f"{n} {res[n][-1][0]:.3f} s wall {res[n][-1][1]:.3f} s CPU" for n, _, _ in configs), file=sys.stderr)


def paired(a, b, k):
    """Median of the per-round ratios a/b (the runs of a round are adjacent in time, so drift in load cancels)."""
    return statistics.median(x[k] / y[k] for x, y in zip(res[a], res[b]))


print(f"for reference, {rounds} interleaved rounds of `scsiport trace --size {size} --block {block} --workers 1"
      f" {' '.join(extra)}` (noisy on a shared machine)")
for n, _, _ in configs:
    wall = statistics.median(x[0] for x in res[n])
    cpu = statistics.median(x[1] for x in res[n])
    print(f"  {n:13} workload {wall:.4f} s wall, process {cpu:.4f} s CPU (medians)")
off_cpu, off_wall = paired("off", "compiled-out", 1), paired("off", "compiled-out", 0)
print(f"  off / compiled-out: CPU {off_cpu:.4f}, wall {off_wall:.4f}")
print(f"  on / off:           CPU {paired('on', 'off', 1):.4f}, wall {paired('on', 'off', 0):.4f}")
verdict = off_cpu if verdict is None else verdict
sys.exit(0 if verdict < 1.02 else 1)
PY
