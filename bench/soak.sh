#!/usr/bin/env bash
# Endurance runs against `scsiport serve`, on loopback only.
#
#   bench/soak.sh [soak]   iSCSI and NBD initiators at once for DURATION seconds: NBD fio jobs (random and sequential
#                          writes of 4 KiB-256 KiB, every block verified) on one disk, libiscsi's READ/WRITE tests
#                          and iscsi-perf random and sequential reads on another; every SAMPLE seconds the server's
#                          RSS, open fds, error counters and requests go to OUT/samples.csv. Ends with a summary and
#                          exit status 1 when any client failed, the server died, or a counter that only a fault can
#                          move did: NBD errors (fio asks for nothing that fails), verifier violations, request
#                          timeouts. The iSCSI error counter moves by design: libiscsi's tests include negative ones
#                          (reads past the end, bad fields), about 5,700 refused commands per run of its list.
#   bench/soak.sh churn    CYCLES (10000) iSCSI connect/login/READ/logout and NBD connect/READ/disconnect cycles
#                          (crates/scsiport/tests/churn.rs), fds and RSS before and after.
#
# env: DURATION (3600 s; 180 with CI set), SAMPLE (10 s), OUT (target/soak), SCSIPORT_BIN (built if unset),
#      CYCLES (churn, 10000).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

mode=${1:-soak}
if [ "$mode" = churn ]; then
  SCSIPORT_CHURN_CYCLES=${CYCLES:-10000} cargo test --release -p scsiport --test churn -- --nocapture 2>&1 |
    grep -E "cycles of|test result|panicked"
  exit "${PIPESTATUS[0]}"
fi

duration=${DURATION:-$([ -n "${CI:-}" ] && echo 180 || echo 3600)}
sample=${SAMPLE:-10}
out=${OUT:-$PWD/target/soak}
for t in fio iscsi-perf iscsi-test-cu curl; do
  command -v "$t" >/dev/null || { echo "$t is not installed" >&2; exit 1; }
done
bin=${SCSIPORT_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release -p scsiport >/dev/null
  bin=$PWD/target/release/scsiport
fi
rm -rf "$out" && mkdir -p "$out"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nbd=$(free_port); iscsi=$(free_port); metrics=$(free_port)
cat >"$out/scsiport.toml" <<EOF
[memory]
size = "256MiB"
[[adapter]]
name = "scsi0"
[[adapter.disk]]
target = 0
size = "512MiB"
path = "$out/iscsi.img"
[[adapter.disk]]
target = 1
size = "512MiB"
path = "$out/nbd.img"
[iscsi]
listen = "127.0.0.1:$iscsi"
[[iscsi_target]]
name = "iqn.2026-12.io.scsiport:soak"
luns = [{ lun = 0, disk = "scsi0:0:0" }]
[nbd]
listen = "127.0.0.1:$nbd"
[[nbd_export]]
name = "soak"
disk = "scsi0:1:0"
[control]
socket = "$out/control.sock"
[metrics]
listen = "127.0.0.1:$metrics"
EOF

"$bin" serve --config "$out/scsiport.toml" >"$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; kill $(jobs -p) 2>/dev/null || true' EXIT
wait_port "$nbd" 300
wait_port "$iscsi" 300
end=$(($(date +%s) + duration))
lun="iscsi://127.0.0.1:$iscsi/iqn.2026-12.io.scsiport:soak/0"

# A client loop: runs "$@" until the end time, counting runs and failures in OUT/NAME.{runs,fail}.
loop() {
  local name=$1; shift
  echo 0 >"$out/$name.runs"; echo 0 >"$out/$name.fail"
  while [ "$(date +%s)" -lt "$end" ]; do
    if "$@" >>"$out/$name.log" 2>&1; then :; else
      echo $(($(cat "$out/$name.fail") + 1)) >"$out/$name.fail"
      echo "--- failed at $(date -u +%T)" >>"$out/$name.log"
    fi
    echo $(($(cat "$out/$name.runs") + 1)) >"$out/$name.runs"
  done
}

nbd_rand() {
  timeout -k 5 600 fio --name=rand --ioengine=nbd --uri="nbd://127.0.0.1:$nbd/soak" --rw=randwrite \
    --bsrange=4k-256k --size=128m --iodepth=16 --verify=crc32c --do_verify=1 --verify_fatal=1 --randrepeat=0 --verify_state_save=0
}
nbd_seq() {
  timeout -k 5 600 fio --name=seq --ioengine=nbd --uri="nbd://127.0.0.1:$nbd/soak" --rw=write --offset=256m \
    --bs=1m --size=128m --iodepth=4 --verify=md5 --do_verify=1 --verify_fatal=1 --verify_state_save=0
}
iscsi_rw() {
  # libiscsi's own tests write patterns and read them back. tee appends: opening the log anew would truncate it.
  timeout -k 5 600 iscsi-test-cu --dataloss -t SCSI.Write10,SCSI.Read10,SCSI.Write16,SCSI.Read16,SCSI.WriteSame10 "$lun" |
    tee -a /dev/stderr | grep -q "FAILED" && return 1 || return 0
}
iscsi_reads() {
  # iscsi-perf overruns its -t when a second passes without a tick; timeout bounds it (124 counts as a run).
  local rc=0
  timeout -k 5 40 iscsi-perf -t 30 "$@" -i iqn.2026-12.test:soak-perf "$lun" || rc=$?
  [ $rc = 0 ] || [ $rc = 124 ]
}

loop nbd-rand nbd_rand &
loop nbd-seq nbd_seq &
loop iscsi-rw iscsi_rw &
loop iscsi-rand-read iscsi_reads -r &
loop iscsi-seq-read iscsi_reads &

metric() { curl -s "127.0.0.1:$metrics/metrics" | awk -v m="$1" '$1 ~ "^"m {s += $2} END {printf "%d", s}'; }
# The samples of one metric whose name and labels start with $1 (no regular expression), summed.
metric_f() { curl -s "127.0.0.1:$metrics/metrics" | awk -v m="$1" 'index($1, m) == 1 {s += $2} END {printf "%d", s}'; }
echo "seconds,rss_kib,fds,errors,reads,writes,sessions,nbd_connections,nbd_errors,violations,timeouts" >"$out/samples.csv"
start=$(date +%s)
while [ "$(date +%s)" -lt "$end" ] && kill -0 $server 2>/dev/null; do
  rss=$(awk '/VmRSS/ {print $2}' /proc/$server/status)
  fds=$(ls /proc/$server/fd | wc -l)
  echo "$(($(date +%s) - start)),$rss,$fds,$(metric scsiport_lu_errors_total),$(metric scsiport_lu_reads_total),$(metric scsiport_lu_writes_total),$(metric scsiport_iscsi_sessions),$(metric 'scsiport_connections_open'),$(metric_f 'scsiport_lu_errors_total{frontend="nbd"'),$(metric scsiport_adapter_verifier_violations_total),$(metric scsiport_adapter_timeouts_total)" >>"$out/samples.csv"
  sleep "$sample"
done
wait $(jobs -p | grep -v "^$server\$") 2>/dev/null || true
alive=yes; kill -0 $server 2>/dev/null || alive=no

fail=0
echo "soak: ${duration} s, server alive at the end: $alive"
for n in nbd-rand nbd-seq iscsi-rw iscsi-rand-read iscsi-seq-read; do
  printf '  %-16s runs %5s  failures %s\n' "$n" "$(cat "$out/$n.runs")" "$(cat "$out/$n.fail")"
  [ "$(cat "$out/$n.fail")" = 0 ] || fail=1
done
python3 - "$out/samples.csv" "$(cat "$out/iscsi-rw.runs")" <<'EOF' || fail=1
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
if len(rows) < 2:
    print("  too few samples"); sys.exit(1)
first, last = rows[len(rows) // 10 if len(rows) >= 10 else 0], rows[-1]
col = lambda k: [int(r[k]) for r in rows]
print(f"  samples {len(rows)}; RSS KiB after warm-up {first['rss_kib']} -> end {last['rss_kib']} (max {max(col('rss_kib'))}); "
      f"fds {first['fds']} -> {last['fds']} (max {max(col('fds'))})")
runs = max(int(sys.argv[2]), 1)
print(f"  requests: reads {last['reads']}, writes {last['writes']}; server error counter {first['errors']} -> "
      f"{last['errors']} (iSCSI refusals libiscsi's negative tests ask for: {int(last['errors']) / runs:.0f} per run "
      f"of its list)")
bad = {k: (rows[0][k], last[k]) for k in ("nbd_errors", "violations", "timeouts") if last[k] != rows[0][k]}
print(f"  NBD errors {last['nbd_errors']}, verifier violations {last['violations']}, timeouts {last['timeouts']}")
if bad:
    print(f"  moved, and only a fault moves them: {bad}")
    sys.exit(1)
EOF
[ "$alive" = yes ] || fail=1
echo "details: $out (samples.csv, *.log, server.log)"
exit $fail
