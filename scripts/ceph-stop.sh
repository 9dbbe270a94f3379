#!/usr/bin/env bash
# Stop the cluster scripts/ceph-start.sh started in CEPH_DIR: only the PIDs in its pid files, each checked to still be
# a ceph-mon or ceph-osd before it is signalled. OSDs first (an OSD without its monitor waits for a shutdown ack).
# CEPH_STOP_SIGNAL=KILL skips the graceful shutdown (the data is thrown away anyway).
dir=${CEPH_DIR:-/tmp/scsiport-ceph}
run=$dir/run
sig=${CEPH_STOP_SIGNAL:-TERM}
shopt -s nullglob
stopped=0

live() { [ -r "/proc/$1/status" ] && ! grep -q '^State:.*zombie' "/proc/$1/status" 2>/dev/null; }

stop() {
  local pids=() f pid
  for f in "$@"; do
    pid=$(cat "$f" 2>/dev/null)
    rm -f "$f"
    [ -n "$pid" ] || continue
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qE '^(/usr/bin/)?ceph-(mon|osd|mgr) ' || continue
    kill -"$sig" "$pid" 2>/dev/null && pids+=("$pid") && stopped=$((stopped + 1))
  done
  for _ in $(seq 1 100); do
    local any=0
    for pid in "${pids[@]}"; do live "$pid" && any=1; done
    [ $any = 0 ] && return
    sleep 0.1
  done
  for pid in "${pids[@]}"; do live "$pid" && kill -KILL "$pid"; done
}

stop "$run"/osd.*.pid
stop "$run"/mgr.*.pid "$run"/mon.*.pid
echo "ceph-stop: stopped $stopped daemon(s)" >&2
