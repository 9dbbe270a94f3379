#!/usr/bin/env bash
# One run, same machine, same image size: scsiport serve against its peers.
#   NBD  : qemu-nbd (raw file, --cache=writeback) vs scsiport (file-backed disk, through
#          class driver -> port -> HBA model -> 8237 DMA model), fio nbd engine:
#          1 MiB QD8 sequential read and write, 4 KiB QD32 random read and write.
#   iSCSI: tgtd (raw file LUN 1) vs scsiport (pass-through SRBs, LUN 0), iscsi-perf:
#          1 MiB reads and writes with 8 in flight, 4 KiB random reads and writes with 32
#          in flight (bench/iscsi-perf.sh).
# Prints one table: workload, peer figure, scsiport figure, ratio (scsiport / peer). Peer and
# scsiport alternate, ROUNDS times over, and each figure is the mean of its rounds: on a
# shared 2-core machine a single pass swings by tens of percent.
#
# usage: bench/peers.sh            env: SIZE (default 1G), RUNTIME (s per workload, default 6),
#                                       ROUNDS (default 2), ONLY (nbd or iscsi: run only that half),
#                                       SCSIPORT_BIN (a built scsiport to use instead of building one),
#                                       OUT (logs and raw JSON, default /tmp/scsiport-peers),
#                                       CARGO_TARGET_DIR (where the release build goes)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
root="$(cd "$here/.." && pwd)"
size=${SIZE:-1G}
runtime=${RUNTIME:-6}
rounds=${ROUNDS:-2}
only=${ONLY:-}
case "$only" in ""|nbd|iscsi) ;; *) echo "ONLY must be nbd or iscsi" >&2; exit 2 ;; esac
run_nbd() { [ "$only" != iscsi ]; }
run_iscsi() { [ "$only" != nbd ]; }
out=${OUT:-/tmp/scsiport-peers}
qnbd_port=10910
sp_nbd_port=10911
tgt_port=3261
tgt_ctl=7
sp_iscsi_port=3262
budget=$((rounds * runtime * 30 + 600)) # the whole run, release build excluded

need() { # command package
    command -v "$1" >/dev/null 2>&1 && return 0
    echo "installing $2 (for $1)" >&2
    if [ -z "${apt_updated:-}" ]; then apt-get update -qq >/dev/null; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}
need python3 python3
if run_nbd; then
    need fio fio
    need qemu-nbd qemu-utils
fi
if run_iscsi; then
    need tgtd tgt
    need iscsi-perf libiscsi-bin
fi

if [ -n "${SCSIPORT_BIN:-}" ]; then
    bin=$SCSIPORT_BIN
else
    target_dir=${CARGO_TARGET_DIR:-$root/target}
    echo "building scsiport (release) in $target_dir" >&2
    (cd "$root" && CARGO_TARGET_DIR="$target_dir" cargo build -q --release -j2 -p scsiport)
    bin="$target_dir/release/scsiport"
fi

rm -rf "$out"
mkdir -p "$out"
pids=()
tgt_pid=""
cleanup() {
    if [ -n "$tgt_pid" ]; then
        stop_tgtd "$tgt_ctl" "$tgt_pid"
    fi
    pkill -P "$watchdog" 2>/dev/null || true
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}" $tgt_pid; do
        for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -f "$out"/*.img
}
trap cleanup EXIT
trap 'exit 124' TERM INT
watchdog=""
# The whole run is bounded: a watchdog ends this script (and so its trap) if it hangs.
( sleep "$budget"; echo "peers.sh: over ${budget}s, stopping" >&2; kill -TERM $$ ) 2>/dev/null &
watchdog=$!
pids+=("$watchdog")


# The same random data in every image, written (and so in the page cache) before any
# server starts: reads then move real data. On sparse images qemu-nbd answers reads of
# holes with NBD_REPLY_TYPE_OFFSET_HOLE chunks (no payload) and every server's reads of
# holes cost the kernel a page clear, which measures hole handling instead of the data path.
echo "writing ${size} of random data into the images" >&2
head -c "$size" /dev/urandom >"$out/scsiport.img"
if run_nbd; then cp "$out/scsiport.img" "$out/qemu.img"; fi
if run_iscsi; then cp "$out/scsiport.img" "$out/tgt.img"; fi

if run_nbd; then
    qemu-nbd -f raw -x default -b 127.0.0.1 -p "$qnbd_port" -t --cache=writeback "$out/qemu.img" \
        >"$out/qemu-nbd.log" 2>&1 &
    pids+=($!)
fi
"$bin" serve --disk-path "$out/scsiport.img" --disk-size "${size}iB" \
    --nbd-listen "127.0.0.1:$sp_nbd_port" --iscsi-listen "127.0.0.1:$sp_iscsi_port" >"$out/scsiport.log" 2>&1 &
pids+=($!)
wait_port "$sp_nbd_port" 200
wait_port "$sp_iscsi_port" 200
if run_nbd; then wait_port "$qnbd_port" 200; fi
if run_iscsi; then
    tgtd -f -C "$tgt_ctl" --iscsi portal=127.0.0.1:$tgt_port >"$out/tgtd.log" 2>&1 &
    tgt_pid=$!
    wait_port "$tgt_port" 200
    tgt_export "$tgt_ctl" "$out/tgt.img"
fi

# nbd-fio.sh prints "LABEL workload MiB/s IOPS" for the four fio workloads; iscsi-perf.sh runs
# each of its workloads against scsiport and then tgtd and prints both with the ratio.
for r in $(seq 1 "$rounds"); do
    echo "round $r of $rounds" >&2
    if run_nbd; then
        RUNTIME=$runtime SIZE=$size LABEL=qemu-nbd FIO_JSON_DIR="$out/fio-qemu-$r" \
            "$here/nbd-fio.sh" "nbd://127.0.0.1:$qnbd_port/default" >>"$out/nbd-qemu.txt"
        RUNTIME=$runtime SIZE=$size LABEL=scsiport FIO_JSON_DIR="$out/fio-scsiport-$r" \
            "$here/nbd-fio.sh" "nbd://127.0.0.1:$sp_nbd_port/default" >>"$out/nbd-scsiport.txt"
    fi
    if run_iscsi; then
        OUT="$out/iscsi-$r" "$here/iscsi-perf.sh" --secs "$runtime" --size "$size" \
            --ours-url "iscsi://127.0.0.1:$sp_iscsi_port/iqn.2026-11.io.scsiport:default/0" \
            --peer-url "iscsi://127.0.0.1:$tgt_port/iqn.2026-11.io.peer:tgt/1" >>"$out/iscsi.txt"
    fi
done

python3 - "$out" "$rounds" <<'PY'
import os
import sys
from statistics import mean
out, rounds = sys.argv[1], sys.argv[2]

def lines(path):
    return open(path) if os.path.exists(path) else []

def nbd(path):
    rows = {}
    for line in lines(path):
        f = line.split()
        if len(f) == 4 and f[0] in ("qemu-nbd", "scsiport") and f[2] != "MiB/s":
            rows.setdefault(f[1], []).append((float(f[2]), float(f[3])))
    return rows

# Each row: name, unit, peer, [(peer figure, scsiport figure) per round].
table = []
q, s = nbd(f"{out}/nbd-qemu.txt"), nbd(f"{out}/nbd-scsiport.txt")
for name, col, unit in (("seq-read-1M-qd8", 0, "MiB/s"), ("seq-write-1M-qd8", 0, "MiB/s"),
                        ("rand-read-4k-qd32", 1, "IOPS"), ("rand-write-4k-qd32", 1, "IOPS")):
    if name in q and name in s:
        table.append((f"NBD {name}", unit, "qemu-nbd", [(p[col], o[col]) for p, o in zip(q[name], s[name])]))
iscsi = {}
for line in lines(f"{out}/iscsi.txt"):
    f = line.split()
    # iscsi-perf.sh: workload ours UNIT tgtd UNIT ratio
    if len(f) == 6 and f[0] != "workload":
        iscsi.setdefault((f[0], f[2]), []).append((float(f[3]), float(f[1])))
for (name, unit), v in iscsi.items():
    table.append((f"iSCSI {name}", unit, "tgtd", v))
print(f"mean of {rounds} alternating rounds; last column: lowest and highest ratio of a single round")
print(f"{'workload':<28} {'unit':<6} {'peer':<9} {'peer fig.':>11} {'scsiport':>11} {'ratio':>7}  {'rounds':>11}")
for name, unit, peer, v in table:
    p, o = mean(x for x, _ in v), mean(y for _, y in v)
    ratio = o / p if p else float("nan")
    each = [y / x for x, y in v if x]
    spread = f"{min(each):.2f}-{max(each):.2f}x" if each else ""
    print(f"{name:<28} {unit:<6} {peer:<9} {p:>11.1f} {o:>11.1f} {ratio:>6.2f}x  {spread:>11}")
PY
