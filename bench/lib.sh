# Shell functions the bench scripts share; each script sources this file.

# wait_port PORT [TRIES]: wait until something listens on 127.0.0.1:PORT, checking every 0.1 s (100 tries by default).
wait_port() {
    for _ in $(seq 1 "${2:-100}"); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$1" >&2
    return 1
}

# stop_tgtd CONTROL_PORT PID: tgtd ignores SIGTERM while it serves targets (PEERS.md), so its targets are deleted
# first and then it is killed.
stop_tgtd() {
    tgtadm -C "$1" --op delete --mode system >/dev/null 2>&1 || true
    kill -9 "$2" 2>/dev/null || true
}

# tgt_export CONTROL_PORT IMAGE: the running tgtd exports IMAGE as LUN 1 of target iqn.2026-11.io.peer:tgt to every
# initiator (LUN 0 of a tgtd target is its controller).
tgt_export() {
    tgtadm -C "$1" --lld iscsi --op new --mode target --tid 1 -T iqn.2026-11.io.peer:tgt
    tgtadm -C "$1" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b "$2"
    tgtadm -C "$1" --lld iscsi --op bind --mode target --tid 1 -I ALL
}
