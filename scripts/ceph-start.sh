#!/usr/bin/env bash
# A throwaway single-node Ceph cluster for the RBD tests and benchmarks: one monitor, one OSD on the memstore object
# store (data in RAM, at most MEMSTORE_BYTES), no manager, pool size 1, everything on 127.0.0.1, run as plain
# processes under CEPH_DIR. Prints the ceph.conf path clients use; scripts/ceph-stop.sh stops it by PID.
#
# Env: CEPH_DIR (default /tmp/scsiport-ceph), CEPH_MON_PORT (default: a free port), MEMSTORE_BYTES (default 1 GiB),
#      CEPH_POOL (default "rbd", created and initialised for RBD).
# Needs: ceph-mon ceph-osd ceph-common (scripts/ceph-install.sh installs them).
set -euo pipefail
dir=${CEPH_DIR:-/tmp/scsiport-ceph}
run=$dir/run
conf=$dir/ceph.conf
pool=${CEPH_POOL:-rbd}
mem=${MEMSTORE_BYTES:-1073741824}
here=$(cd "$(dirname "$0")" && pwd)

if [ -d "$run" ]; then
  CEPH_DIR=$dir "$here/ceph-stop.sh" >/dev/null || true
  rm -rf "$run"
fi
mkdir -p "$run/log"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
port=${CEPH_MON_PORT:-$(free_port)}
fsid=$(cat /proc/sys/kernel/random/uuid)

cat >"$conf" <<CONF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$port
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
auth cluster required = none
auth service required = none
auth client required = none
osd objectstore = memstore
memstore device bytes = $mem
memstore page set = true
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
mon data avail warn = 2
mon data avail crit = 1
osd op num shards = 1
osd op num threads per shard = 2
run dir = $run
pid file = $run/\$name.pid
admin socket = $run/\$name.asok
log file = $run/log/\$name.log
mon cluster log file = $run/log/cluster.log
mon data = $run/\$name
osd data = $run/\$name
keyring = $run/keyring
[client]
admin socket =
log file = $run/log/client.log
CONF
export CEPH_CONF=$conf
ceph_() { timeout 30 ceph --connect-timeout 10 "$@"; }
started=$(date +%s)

ceph-authtool --create-keyring "$run/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$port]" "$run/monmap" >/dev/null
mkdir -p "$run/mon.a"
ceph-mon -i a --mkfs --monmap "$run/monmap" >>"$run/log/mon.a.out" 2>&1
ceph-mon -i a </dev/null >>"$run/log/mon.a.out" 2>&1
ceph_ mon stat >/dev/null

uuid=$(cat /proc/sys/kernel/random/uuid)
id=$(ceph_ osd new "$uuid")
mkdir -p "$run/osd.$id"
ceph-osd -i "$id" --mkfs --osd-uuid "$uuid" >>"$run/log/osd.$id.out" 2>&1
ceph-osd -i "$id" </dev/null >>"$run/log/osd.$id.out" 2>&1

for _ in $(seq 1 120); do
  ceph_ osd stat 2>/dev/null | grep -q '1 osds: 1 up.* 1 in' && break
  sleep 0.5
done
ceph_ osd stat | grep -q '1 osds: 1 up.* 1 in' || { echo "ceph-start: the OSD is not up after 60 s; logs in $run/log" >&2; exit 1; }
ceph_ osd pool create "$pool" 8 8 >/dev/null 2>&1
timeout 60 rbd pool init "$pool"
echo "ceph-start: cluster up in $(( $(date +%s) - started )) s, pool $pool, mon 127.0.0.1:$port" >&2
echo "$conf"
