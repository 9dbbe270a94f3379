#!/usr/bin/env bash
# The whole test suite: installs the interop peers the tests drive, checks formatting and lints, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tools the interop tests need, and the Debian packages that bring them.
need=(
  "iscsi-test-cu:libiscsi-bin"
  "iscsi-inq:libiscsi-bin"
  "iscsi-perf:libiscsi-bin"
  "tgtd:tgt"
  "fio:fio"
  "nbdinfo:libnbd-bin"
  "nbdcopy:libnbd-bin"
  "sg_inq:sg3-utils"
  "qemu-img:qemu-utils"
  "qemu-io:qemu-utils"
  "qemu-nbd:qemu-utils"
  "cc:gcc"
  "c++:g++"
)
missing=()
for n in "${need[@]}"; do
  command -v "${n%%:*}" >/dev/null 2>&1 || missing+=("${n#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "installing: ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

# Ceph for the RBD backend: librbd/librados to link against, and the monitor and OSD of the single-node cluster its
# tests run against (scripts/ceph-start.sh). No recommends: ~220 MB instead of a full Ceph install.
if ! command -v ceph-osd >/dev/null 2>&1 || ! command -v ceph-mon >/dev/null 2>&1 || ! command -v rbd >/dev/null 2>&1 \
  || [ ! -e /usr/include/rbd/librbd.h ] || [ ! -e /usr/include/rados/librados.h ]; then
  ceph_pkgs=(ceph-mon ceph-osd ceph-common librbd-dev librados-dev)
  echo "installing: ${ceph_pkgs[*]}"
  sudo_=(); [ "$(id -u)" = 0 ] || sudo_=(sudo)
  "${sudo_[@]}" apt-get update -qq
  "${sudo_[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${ceph_pkgs[@]}" >/dev/null
fi

# An iSCSI-capable qemu-img without replacing the machine's qemu-utils: Debian's qemu-utils and qemu-block-extra of
# one version, unpacked (not installed) under target/qemu-iscsi for the qemu-img iscsi:// test.
qdir="$PWD/target/qemu-iscsi"
if [ ! -f "$qdir/root/usr/lib/x86_64-linux-gnu/qemu/block-iscsi.so" ]; then
  fetch_qemu() {
    ver=$(apt-cache policy qemu-block-extra | awk '/Candidate:/ {print $2}')
    [ -n "$ver" ] && [ "$ver" != "(none)" ] || return 1
    rm -rf "$qdir" && mkdir -p "$qdir" && chmod 777 "$qdir"
    (cd "$qdir" && apt-get download -q "qemu-utils=$ver" "qemu-block-extra=$ver" >/dev/null 2>&1) || return 1
    for deb in "$qdir"/*.deb; do dpkg -x "$deb" "$qdir/root"; done
  }
  fetch_qemu || { apt-get update -qq && fetch_qemu; } || echo "could not unpack an iSCSI-capable qemu-img"
fi
export SCSIPORT_QEMU_ISCSI="$qdir"

# fio with its libiscsi engine (Debian's fio package is built without it), from Debian's own fio source, for the
# fio-over-iSCSI verify test; kept under target/fio-iscsi once built.
SCSIPORT_FIO_ISCSI=$(bash scripts/fio-iscsi.sh) || { echo "could not build fio with the libiscsi engine" >&2; exit 1; }
export SCSIPORT_FIO_ISCSI

cargo fmt --all -- --check
# The RBD backend is a feature (it links Ceph's client libraries, installed above): lint both builds, test with it.
cargo clippy --workspace --all-targets --release --features scsiport/rbd -- -D warnings
cargo clippy -p scsiport --all-targets --release -- -D warnings
# A throwaway Ceph cluster (1 monitor, 1 memstore OSD, 127.0.0.1) for the RBD tests, stopped by PID at exit.
export CEPH_DIR="${TMPDIR:-/tmp}/scsiport-ceph-$$"
trap 'bash scripts/ceph-stop.sh; rm -rf "$CEPH_DIR"' EXIT
SCSIPORT_CEPH_CONF=$(bash scripts/ceph-start.sh)
export SCSIPORT_CEPH_CONF

# Release mode: the data-path tests move hundreds of MiB through the DMA model.
cargo test --workspace --release --features scsiport/rbd -- --test-threads=2
# Miri over the HAL, whose system memory every layer shares (docs/memory.md); the nightly component installs itself.
if ! cargo +nightly miri --version >/dev/null 2>&1; then
  rustup component add miri rust-src --toolchain nightly ||
    rustup toolchain install nightly --profile minimal --component miri --component rust-src
fi
# parking_lot casts integers to pointers; that is its business, not a warning in every threaded test.
MIRIFLAGS="${MIRIFLAGS:-} -Zmiri-permissive-provenance" cargo +nightly miri test -p hal
