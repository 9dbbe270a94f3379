#!/usr/bin/env bash
# One run, same machine, same image size: scsiport serve against its peers.
#   NBD  : qemu-nbd (raw file, --cache=writeback) vs scsiport (file-backed disk, through
#          class driver -> port -> HBA model -> 8237 DMA model), fio nbd engine:
#          1 MiB QD8 sequential read and write, 4 KiB QD32 random read and write; iperf3, one
#          TCP stream over loopback, in the same rounds.
#   iSCSI: tgtd (raw file LUN 1) vs scsiport (pass-through SRBs, LUN 0): iscsi-perf for 1 MiB
#          QD8 sequential and 4 KiB QD32 random reads, the iscsi-load example of crates/iscsi
#          for the same two shapes as writes.
#
# Two cases, each with fresh images and freshly started servers:
#   filled     : every disk starts sparse and is filled through its own server's front end
#                with the same 1 GiB of random data (`qemu-img convert -n` over NBD or iSCSI),
#                as a user fills a disk; the scsiport disk compared with qemu-nbd is filled over
#                NBD, the one compared with tgtd over iSCSI.
#   precreated : the random data is written into the image files before any server starts
#                (`head -c` into one file, `cp` to the others).
# Per case and protocol: a warm-up (2 s of 1 MiB reads on each server), then ROUNDS rounds of
# the read workloads, then ROUNDS rounds of the write workloads (the writes rewrite the disk, so
# every read round reads the data as the case left it). Peer and scsiport alternate which goes
# first from round to round. Each figure is the median of its rounds with the lowest and
# highest round beside it, and the server's CPU time (user + system, from /proc/PID/stat) per
# GiB it moved.
#
# usage: bench/peers.sh            env: SIZE (default 1G), RUNTIME (s per workload, default 5),
#                                       ROUNDS (default 3), FILL_ROUNDS (fills of each server in the filled
#                                       case, order alternating, default 3), ONLY (nbd or iscsi: run only that half),
#                                       CASES (default "filled precreated"),
#                                       SCSIPORT_BIN (a built scsiport to use instead of building one),
#                                       OUT (logs and raw results, default /tmp/scsiport-peers),
#                                       CARGO_TARGET_DIR (where the release build goes)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
root="$(cd "$here/.." && pwd)"
size=${SIZE:-1G}
runtime=${RUNTIME:-5}
rounds=${ROUNDS:-3}
fill_rounds=${FILL_ROUNDS:-3}
only=${ONLY:-}
cases=${CASES:-filled precreated}
case "$only" in ""|nbd|iscsi) ;; *) echo "ONLY must be nbd or iscsi" >&2; exit 2 ;; esac
for c in $cases; do
    case "$c" in filled|precreated) ;; *) echo "CASES holds filled and/or precreated" >&2; exit 2 ;; esac
done
run_nbd() { [ "$only" != iscsi ]; }
run_iscsi() { [ "$only" != nbd ]; }
out=${OUT:-/tmp/scsiport-peers}
qnbd_port=10910
sp_nbd_port=10911
iperf_port=10912
tgt_port=3261
tgt_ctl=7
sp_iscsi_port=3262
sp_iqn=iqn.2026-11.io.scsiport:default
tgt_iqn=iqn.2026-11.io.peer:tgt
bytes=$(numfmt --from=iec "$size")
ncases=$(wc -w <<<"$cases")
# The whole run, release build excluded: per case and protocol 4 workloads x 2 servers x ROUNDS
# (+ iperf3), fills and warm-ups; generous, a hung tool is what it bounds.
budget=$((ncases * 2 * (rounds * runtime * 14 + fill_rounds * 2 * 60 + 240) + 300))

need() { # command package
    command -v "$1" >/dev/null 2>&1 && return 0
    echo "installing $2 (for $1)" >&2
    if [ -z "${apt_updated:-}" ]; then apt-get update -qq >/dev/null; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}
need python3 python3
need qemu-img qemu-utils
if run_nbd; then
    need fio fio
    need qemu-nbd qemu-utils
    need iperf3 iperf3
fi
if run_iscsi; then
    need tgtd tgt
    need iscsi-perf libiscsi-bin
fi

# qemu-img with the iscsi:// protocol. Debian ships it in qemu-block-extra, which must match the
# installed qemu-utils exactly; installing it may replace a newer qemu-utils with the
# distribution's older one (PEERS.md). So when the installed qemu-img has no iscsi driver, the
# distribution's qemu-utils and qemu-block-extra are unpacked into a private directory and that
# qemu-img runs with QEMU_MODULE_DIR pointing at its own modules; the system stays as it is.
qemu_img_iscsi=(qemu-img)
if run_iscsi && ! qemu-img --help | grep -q '^Supported formats:.* iscsi '; then
    priv=${QEMU_ISCSI_DIR:-/var/cache/scsiport-bench/qemu-iscsi}
    if [ ! -x "$priv/usr/bin/qemu-img" ] || [ ! -e "$priv/usr/lib/x86_64-linux-gnu/qemu/block-iscsi.so" ]; then
        echo "unpacking the distribution's qemu-img with its iscsi driver into $priv" >&2
        if [ -z "${apt_updated:-}" ]; then apt-get update -qq >/dev/null; apt_updated=1; fi
        ver=$(apt-cache policy qemu-block-extra | sed -n 's/^ *Candidate: //p')
        rm -rf "$priv.dl" && mkdir -p "$priv.dl" "$priv"
        (cd "$priv.dl" && apt-get download -qq "qemu-block-extra=$ver" "qemu-utils=$ver" 2>/dev/null)
        for d in "$priv.dl"/*.deb; do dpkg-deb -x "$d" "$priv"; done
        rm -rf "$priv.dl"
    fi
    qemu_img_iscsi=(env "QEMU_MODULE_DIR=$priv/usr/lib/x86_64-linux-gnu/qemu" "$priv/usr/bin/qemu-img")
    "${qemu_img_iscsi[@]}" --help | grep -q '^Supported formats:.* iscsi ' ||
        { echo "no qemu-img with the iscsi protocol" >&2; exit 1; }
fi

target_dir=${CARGO_TARGET_DIR:-$root/target}
if [ -n "${SCSIPORT_BIN:-}" ]; then
    bin=$SCSIPORT_BIN
    (cd "$root" && CARGO_TARGET_DIR="$target_dir" cargo build -q --release -j2 -p iscsi --example iscsi-load)
else
    echo "building scsiport (release) in $target_dir" >&2
    (cd "$root" && CARGO_TARGET_DIR="$target_dir" cargo build -q --release -j2 -p scsiport -p iscsi --example iscsi-load)
    bin="$target_dir/release/scsiport"
fi
load="$target_dir/release/examples/iscsi-load"

rm -rf "$out"
mkdir -p "$out"
results="$out/results.tsv"
: >"$results"
hz=$(getconf CLK_TCK)
pids=()
tgt_pid=""
watchdog=""
stop_servers() {
    if [ -n "$tgt_pid" ]; then
        stop_tgtd "$tgt_ctl" "$tgt_pid"
        wait "$tgt_pid" 2>/dev/null || true
        tgt_pid=""
    fi
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    pids=()
    rm -f "$out"/*.img
}
cleanup() {
    stop_servers
    if [ -n "$watchdog" ]; then
        pkill -P "$watchdog" 2>/dev/null || true
        kill "$watchdog" 2>/dev/null || true
    fi
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 124' TERM INT
# The whole run is bounded: a watchdog ends this script (and so its trap) if it hangs.
( sleep "$budget"; echo "peers.sh: over ${budget}s, stopping" >&2; kill -TERM $$ ) 2>/dev/null &
watchdog=$!

# cpu PID: the process's user + system time so far, all its threads, in clock ticks.
cpu() {
    local s
    s=$(<"/proc/$1/stat")
    s=${s##*) }
    # after "pid (comm) ": state is field 3, utime 14, stime 15 -> words 12 and 13 here
    awk '{print $12 + $13}' <<<"$s"
}

# record CASE PROTO WORKLOAD SERVER ROUND UNIT RATE BYTES CPU_TICKS
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$results"; }

# fio_run URI NAME RW BS DEPTH LOGBASE: prints "rate bytes" (rate in MiB/s for 1M, IOPS for 4k).
fio_run() {
    local uri=$1 name=$2 rw=$3 bs=$4 depth=$5 log=$6
    timeout -k 5 $((runtime + 60)) fio --name="$name" --ioengine=nbd --uri="$uri" \
        --rw="$rw" --bs="$bs" --iodepth="$depth" --size="$size" \
        --runtime="$runtime" --time_based --group_reporting \
        --output-format=json >"$log.raw" 2>"$log.err" || { echo "fio failed: $log" >&2; cat "$log.err" >&2; return 1; }
    sed -n '/^{/,$p' "$log.raw" >"$log.json"
    python3 - "$log.json" "$rw" "$bs" <<'PY'
import json, sys
job = json.load(open(sys.argv[1]))["jobs"][0]
side = job["write" if "write" in sys.argv[2] else "read"]
rate = side["bw_bytes"] / (1 << 20) if sys.argv[3] == "1M" else side["iops"]
print(f"{rate:.1f} {side['io_bytes']}")
PY
}

# iscsi_run URL NAME LOGBASE: prints "rate bytes" for the iSCSI workload NAME.
iscsi_run() {
    local url=$1 name=$2 log=$3 bs args=()
    case "$name" in
        seq-read-1M-qd8) bs=1048576; args=(perf -m 8 -b 2048 -t "$runtime") ;;
        rand-read-4k-qd32) bs=4096; args=(perf -m 32 -b 8 -r -t "$runtime") ;;
        seq-write-1M-qd8) bs=1048576; args=(load --rw write --bs 1048576 --qd 8) ;;
        rand-write-4k-qd32) bs=4096; args=(load --rw write --bs 4096 --qd 32 --random) ;;
    esac
    local ops
    if [ "${args[0]}" = perf ]; then
        # iscsi-perf ends with "iops average N (M MB/s)", written with carriage returns.
        timeout $((runtime + 30)) iscsi-perf "${args[@]:1}" "$url" >"$log" 2>&1 || true
        ops=$(tr '\r' '\n' <"$log" | sed -nE 's/.*iops average ([0-9.]+) \(.*/\1/p' | tail -1)
        ops=$(python3 -c "print(float('${ops:-0}') * $runtime)")
    else
        # iscsi-load ends with "ops N errors 0 iops X MB/s Y".
        timeout $((runtime + 30)) "$load" --url "$url" "${args[@]:1}" --secs "$runtime" --span "$bytes" \
            >"$log" 2>&1 || true
        ops=$(sed -nE 's/^ops ([0-9]+) errors 0 iops .*/\1/p' "$log" | tail -1)
    fi
    python3 -c "
ops = float('${ops:-0}'); b = ops * $bs
print(f'{(b / (1 << 20) if $bs == 1048576 else ops) / $runtime:.1f} {b:.0f}')"
}

# measure CASE PROTO WORKLOAD SERVER PID ROUND TARGET: one run of WORKLOAD against one server.
measure() {
    local cs=$1 proto=$2 w=$3 server=$4 pid=$5 r=$6 target=$7 c0 c1 res unit log
    log="$out/$cs-$proto-$server-$w-$r"
    c0=$(cpu "$pid")
    if [ "$proto" = nbd ]; then
        local rw bs depth
        case "$w" in
            seq-read-1M-qd8) rw=read bs=1M depth=8 ;;
            seq-write-1M-qd8) rw=write bs=1M depth=8 ;;
            rand-read-4k-qd32) rw=randread bs=4k depth=32 ;;
            rand-write-4k-qd32) rw=randwrite bs=4k depth=32 ;;
        esac
        res=$(fio_run "$target" "$w" "$rw" "$bs" "$depth" "$log")
    else
        res=$(iscsi_run "$target" "$w" "$log")
    fi
    c1=$(cpu "$pid")
    case "$w" in *-1M-*) unit=MiB/s ;; *) unit=IOPS ;; esac
    record "$cs" "$proto" "$w" "$server" "$r" "$unit" ${res% *} ${res#* } $((c1 - c0))
}

iperf_run() { # CASE ROUND: one client run against the phase's iperf3 server
    timeout $((runtime + 30)) iperf3 -c 127.0.0.1 -p "$iperf_port" -t "$runtime" -J >"$out/iperf3-$1-$2.json" || true
    python3 - "$out/iperf3-$1-$2.json" <<'PY' | while read -r rate b; do record "$1" nbd iperf3-1-stream iperf3 "$2" MiB/s "$rate" "$b" 0; done
import json, sys
s = json.load(open(sys.argv[1]))["end"]["sum_received"]
print(f"{s['bits_per_second'] / 8 / (1 << 20):.1f} {s['bytes']}")
PY
}

# phase CASE PROTO: fresh images and servers, fill (filled case), warm-up, rounds.
phase() {
    local cs=$1 proto=$2 peer peer_pid sp_pid peer_target sp_target
    echo "== $cs, $proto" >&2
    if [ "$cs" = precreated ]; then
        cp "$out/src.img" "$out/scsiport.img"
        cp "$out/src.img" "$out/peer.img"
    else
        truncate -s "$size" "$out/scsiport.img" "$out/peer.img"
    fi
    if [ "$proto" = nbd ]; then
        peer=qemu-nbd
        qemu-nbd -f raw -x default -b 127.0.0.1 -p "$qnbd_port" -t --cache=writeback "$out/peer.img" \
            >"$out/qemu-nbd-$cs.log" 2>&1 &
        peer_pid=$!
        pids+=("$peer_pid")
        "$bin" serve --disk-path "$out/scsiport.img" --disk-size "${size}iB" --no-iscsi \
            --nbd-listen "127.0.0.1:$sp_nbd_port" >"$out/scsiport-$cs-nbd.log" 2>&1 &
        sp_pid=$!
        pids+=("$sp_pid")
        wait_port "$qnbd_port" 200
        wait_port "$sp_nbd_port" 200
        iperf3 -s -B 127.0.0.1 -p "$iperf_port" >"$out/iperf3-server-$cs.log" 2>&1 &
        pids+=($!)
        wait_port "$iperf_port" 200
        peer_target="nbd://127.0.0.1:$qnbd_port/default"
        sp_target="nbd://127.0.0.1:$sp_nbd_port/default"
    else
        peer=tgtd
        tgtd -f -C "$tgt_ctl" --iscsi portal=127.0.0.1:$tgt_port >"$out/tgtd-$cs.log" 2>&1 &
        tgt_pid=$!
        peer_pid=$tgt_pid
        "$bin" serve --disk-path "$out/scsiport.img" --disk-size "${size}iB" --no-nbd \
            --iscsi-listen "127.0.0.1:$sp_iscsi_port" >"$out/scsiport-$cs-iscsi.log" 2>&1 &
        sp_pid=$!
        pids+=("$sp_pid")
        wait_port "$tgt_port" 200
        tgt_export "$tgt_ctl" "$out/peer.img"
        wait_port "$sp_iscsi_port" 200
        peer_target="iscsi://127.0.0.1:$tgt_port/$tgt_iqn/1"
        sp_target="iscsi://127.0.0.1:$sp_iscsi_port/$sp_iqn/0"
    fi
    if [ "$cs" = filled ]; then
        local img=(qemu-img) fr pair
        [ "$proto" = iscsi ] && img=("${qemu_img_iscsi[@]}")
        # FILL_ROUNDS fills of each server, the order alternating as in the workload rounds: the first fill of a run
        # costs either server several times what a later one does, and single fills spread widely (bench/README.md,
        # "What a fill sends and what it costs"), so one fill in a fixed order decides little. Before every fill but
        # the first the image is emptied (truncated to 0 and back, with the server running: neither server caches
        # data); before every fill dirty data is written back, so none runs during another's writeback.
        for fr in $(seq 1 "$fill_rounds"); do
            pair=("$peer:$peer_target:$peer_pid" "scsiport:$sp_target:$sp_pid")
            [ $((fr % 2)) = 0 ] && pair=("${pair[1]}" "${pair[0]}")
            for s in "${pair[@]}"; do
                local name=${s%%:*} rest=${s#*:} t0 t1 c0 c1 image
                local t=${rest%:*} pid=${rest##*:}
                image="$out/scsiport.img"
                [ "$name" = scsiport ] || image="$out/peer.img"
                if [ "$fr" -gt 1 ]; then
                    truncate -s 0 "$image"
                    truncate -s "$size" "$image"
                fi
                sync
                c0=$(cpu "$pid")
                t0=$(date +%s.%N)
                timeout 600 "${img[@]}" convert -n -f raw -O raw "$out/src.img" "$t" \
                    >"$out/fill-$cs-$proto-$name-$fr.log" 2>&1 ||
                    { echo "filling $name through $proto failed:" >&2; cat "$out/fill-$cs-$proto-$name-$fr.log" >&2; return 1; }
                t1=$(date +%s.%N)
                c1=$(cpu "$pid")
                record "$cs" "$proto" fill-qemu-img "$name" "$fr" MiB/s \
                    "$(python3 -c "print(f'{$bytes / (1 << 20) / ($t1 - $t0):.1f}')")" "$bytes" $((c1 - c0))
            done
        done
        # What each server wrote is the same data.
        cmp "$out/src.img" "$out/peer.img" && cmp "$out/src.img" "$out/scsiport.img" ||
            { echo "a filled image differs from the source" >&2; return 1; }
    fi
    # How the data sits in the page cache now: the folio sizes decide what a buffered read of it costs.
    python3 "$here/folio-sizes.py" "$out/peer.img" "$out/scsiport.img" |
        sed "s|^$out/peer.img:|$cs $proto $peer:|; s|^$out/scsiport.img:|$cs $proto scsiport:|" >>"$out/folios.txt" || echo "folio sizes need root (/proc/kpageflags)" >&2
    # Warm-up: 2 s of 1 MiB reads on each; nothing is recorded.
    local saved=$runtime
    runtime=2
    if [ "$proto" = nbd ]; then
        fio_run "$peer_target" warmup read 1M 8 "$out/warmup-$cs-$peer" >/dev/null
        fio_run "$sp_target" warmup read 1M 8 "$out/warmup-$cs-scsiport" >/dev/null
    else
        iscsi_run "$peer_target" seq-read-1M-qd8 "$out/warmup-$cs-$peer.log" >/dev/null
        iscsi_run "$sp_target" seq-read-1M-qd8 "$out/warmup-$cs-scsiport.log" >/dev/null
    fi
    runtime=$saved
    local group w r
    for group in "seq-read-1M-qd8 rand-read-4k-qd32" "seq-write-1M-qd8 rand-write-4k-qd32"; do
        for r in $(seq 1 "$rounds"); do
            echo "   round $r of $rounds: $group" >&2
            for w in $group; do
                if [ $((r % 2)) = 1 ]; then
                    measure "$cs" "$proto" "$w" "$peer" "$peer_pid" "$r" "$peer_target"
                    measure "$cs" "$proto" "$w" scsiport "$sp_pid" "$r" "$sp_target"
                else
                    measure "$cs" "$proto" "$w" scsiport "$sp_pid" "$r" "$sp_target"
                    measure "$cs" "$proto" "$w" "$peer" "$peer_pid" "$r" "$peer_target"
                fi
            done
            if [ "$proto" = nbd ] && [ "$group" != "${group#seq-read}" ]; then iperf_run "$cs" "$r"; fi
        done
    done
    stop_servers
}

echo "writing ${size} of random data into the source image" >&2
head -c "$size" /dev/urandom >"$out/src.img.keep"
for cs in $cases; do
    for proto in nbd iscsi; do
        if [ "$proto" = nbd ] && ! run_nbd; then continue; fi
        if [ "$proto" = iscsi ] && ! run_iscsi; then continue; fi
        ln -f "$out/src.img.keep" "$out/src.img"
        phase "$cs" "$proto"
    done
done
rm -f "$out/src.img.keep" "$out/src.img"

echo "page-cache folios of each image before the first round (bench/folio-sizes.py):"
cat "$out/folios.txt"

python3 - "$results" "$rounds" "$hz" <<'PY'
import sys
from statistics import median
path, rounds, hz = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]
data = {}  # (case, proto, workload) -> server -> [(rate, bytes, ticks)]
order = []
for cs, proto, w, server, r, unit, rate, b, ticks in rows:
    key = (cs, proto, w, unit)
    if key not in data:
        data[key] = {}
        order.append(key)
    data[key].setdefault(server, []).append((float(rate), float(b), int(ticks)))

def fig(v):
    rates = [x for x, _, _ in v]
    return median(rates), min(rates), max(rates)

def cpu_per_gib(v):
    b = sum(x for _, x, _ in v)
    t = sum(x for _, _, x in v)
    return t * 1000 / hz / (b / (1 << 30)) if b else float("nan")

print(f"median of {rounds} alternating rounds [lowest-highest]; cpu: server CPU ms per GiB moved; "
      "ratio: scsiport / peer (of the medians), then the lowest and highest ratio of one round")
print(f"{'case':<10} {'workload':<24} {'unit':<5} {'peer':<8} {'peer fig.':>24} {'cpu':>6} "
      f"{'scsiport':>24} {'cpu':>6} {'ratio':>6} {'rounds':>11}")
iperf = {}
for key in order:
    cs, proto, w, unit = key
    servers = data[key]
    if w.startswith("iperf3"):
        iperf[cs] = fig(servers["iperf3"])
        print(f"{cs:<10} {'loopback 1 TCP stream':<24} {unit:<5} {'iperf3':<8} "
              f"{iperf[cs][0]:>9.1f} [{iperf[cs][1]:.0f}-{iperf[cs][2]:.0f}]")
        continue
    peer = next(s for s in servers if s != "scsiport")
    p, s = servers[peer], servers.get("scsiport", [])
    if not s:
        continue
    pf, sf = fig(p), fig(s)
    each = [y[0] / x[0] for x, y in zip(p, s) if x[0]]
    spread = f"{min(each):.2f}-{max(each):.2f}x" if len(each) > 1 else ""
    pc = f"{pf[0]:.1f} [{pf[1]:.0f}-{pf[2]:.0f}]"
    sc = f"{sf[0]:.1f} [{sf[1]:.0f}-{sf[2]:.0f}]"
    ratio = sf[0] / pf[0] if pf[0] else float("nan")
    print(f"{cs:<10} {proto.upper() + ' ' + w:<24} {unit:<5} {peer:<8} {pc:>24} {cpu_per_gib(p):>6.0f} "
          f"{sc:>24} {cpu_per_gib(s):>6.0f} {ratio:>5.2f}x {spread:>11}")
for cs, (m, _, _) in iperf.items():
    key = (cs, "nbd", "seq-read-1M-qd8", "MiB/s")
    if key in data and "scsiport" in data[key]:
        s = fig(data[key]["scsiport"])[0]
        print(f"{cs}: scsiport NBD 1 MiB QD8 sequential read = {s / m:.2f} of one loopback TCP stream (iperf3, same rounds)")
PY
