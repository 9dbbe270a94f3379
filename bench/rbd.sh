#!/usr/bin/env bash
# scsiport serving an RBD image over NBD against qemu-nbd serving an RBD image (`rbd:pool/image`), on one throwaway
# single-node cluster (scripts/ceph-start.sh), with fio's nbd engine: 1 MiB sequential and 4 KiB random, read and
# write (bench/nbd-fio.sh). Rounds alternate between the two servers; each gets its own image of SIZE bytes.
# Prints each round's figures and, per workload, the mean ratio scsiport / qemu-nbd.
#
# qemu-nbd needs QEMU's RBD block module (Debian's qemu-block-extra), which would replace the machine's qemu-utils:
# like scripts/test.sh for iSCSI, Debian's matching qemu-utils and qemu-block-extra are unpacked, not installed,
# under target/qemu-iscsi and that qemu-nbd runs with its own module directory.
#
# env: ROUNDS (2), RUNTIME (seconds per workload, 10), SIZE (1G), SCSIPORT_BIN (target/release/scsiport)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-2}
size=${SIZE:-1G}
export RUNTIME=${RUNTIME:-10}
bin=${SCSIPORT_BIN:-target/release/scsiport}
qroot=$PWD/target/qemu-iscsi/root
# The RBD backend is a feature: build with it (incremental when the binary is current).
[ -n "${SCSIPORT_BIN:-}" ] || cargo build --release -p scsiport --features rbd
[ -f "$qroot/usr/lib/x86_64-linux-gnu/qemu/block-rbd.so" ] || {
  echo "no unpacked qemu-block-extra under $qroot: run scripts/test.sh once (it unpacks it)" >&2; exit 1; }
source bench/lib.sh

tmp=$(mktemp -d)
export CEPH_DIR=$tmp/ceph MEMSTORE_BYTES=${MEMSTORE_BYTES:-4294967296}
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  bash scripts/ceph-stop.sh
  rm -rf "$tmp"
}
trap cleanup EXIT
conf=$(bash scripts/ceph-start.sh)
bytes=$(numfmt --from=iec "${size%B}")
export CEPH_CONF=$conf
rbd create rbd/bench-qemu --size "$((bytes / 1048576))M" --image-feature layering

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
p_scsi=$(free_port); p_qemu=$(free_port)
cat >"$tmp/scsiport.toml" <<TOML
[memory]
size = "256MiB"
[[adapter]]
name = "scsi0"
[[adapter.disk]]
backend = "rbd"
pool = "rbd"
image = "bench-scsiport"
ceph_conf = "$conf"
size = "$bytes"
[nbd]
listen = "127.0.0.1:$p_scsi"
[iscsi]
enabled = false
TOML
"$bin" serve --config "$tmp/scsiport.toml" >"$tmp/scsiport.log" 2>&1 &
pids+=($!)
QEMU_MODULE_DIR=$qroot/usr/lib/x86_64-linux-gnu/qemu "$qroot/usr/bin/qemu-nbd" -f raw --cache=none --aio=threads \
  -x default -b 127.0.0.1 -p "$p_qemu" -t --shared=8 "rbd:rbd/bench-qemu:conf=$conf" >"$tmp/qemu.log" 2>&1 &
pids+=($!)
wait_port "$p_scsi" 300
wait_port "$p_qemu" 300

echo "machine: $(nproc) cores, loaded by whatever else runs now; ${rounds} alternating rounds of ${RUNTIME} s per workload"
for r in $(seq 1 "$rounds"); do
  LABEL="r$r scsiport" SIZE=$size bash bench/nbd-fio.sh "nbd://127.0.0.1:$p_scsi/default" | tee -a "$tmp/results"
  LABEL="r$r qemu-nbd" SIZE=$size bash bench/nbd-fio.sh "nbd://127.0.0.1:$p_qemu/default" | tee -a "$tmp/results"
done
python3 - "$tmp/results" <<'PY'
import sys, collections
acc = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) == 5 and f[2] != "workload":
        acc[f[2]][f[1]].append(float(f[3]))
print(f"{'workload':<20} {'scsiport MiB/s':>15} {'qemu-nbd MiB/s':>15} {'ratio':>7}")
for w, d in acc.items():
    s = sum(d["scsiport"]) / len(d["scsiport"]); q = sum(d["qemu-nbd"]) / len(d["qemu-nbd"])
    print(f"{w:<20} {s:15.1f} {q:15.1f} {s / q if q else float('nan'):7.2f}")
PY
