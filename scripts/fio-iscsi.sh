#!/usr/bin/env bash
# fio with its libiscsi engine, for the fio-over-iSCSI tests. Debian builds fio without that engine, so this builds
# Debian's own fio source (the version the machine's fio package is, checked against the SHA-256 pinned below) with
# `--enable-libiscsi`, into DIR (default target/fio-iscsi). Prints the path of the built binary. Idempotent: a
# binary that is already there is kept.
#   usage: scripts/fio-iscsi.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(realpath -m "${1:-target/fio-iscsi}")
bin="$dir/fio"
if [ -x "$bin" ] && "$bin" --enghelp 2>/dev/null | grep -qw libiscsi; then
  echo "$bin"
  exit 0
fi

version=3.33
sha256=d2410e13e0f379d061d077cc5ae325835bb7c6186aa7bafc1df954cbc9b014fc
url="http://deb.debian.org/debian/pool/main/f/fio/fio_${version}.orig.tar.gz"

# The engine links libiscsi; configure finds it with pkg-config.
if ! pkg-config --exists libiscsi 2>/dev/null || ! command -v curl >/dev/null 2>&1 || ! command -v make >/dev/null 2>&1; then
  sudo_=(); [ "$(id -u)" = 0 ] || sudo_=(sudo)
  "${sudo_[@]}" apt-get update -qq >&2
  "${sudo_[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libiscsi-dev pkg-config zlib1g-dev curl make \
    >/dev/null
fi

rm -rf "$dir" && mkdir -p "$dir"
tarball="$dir/fio_${version}.orig.tar.gz"
curl -fsSL --retry 3 -o "$tarball" "$url" >&2
echo "$sha256  $tarball" | sha256sum -c --quiet - >&2
tar -xzf "$tarball" -C "$dir"
src="$dir/fio-$version"
(
  cd "$src"
  ./configure --enable-libiscsi --disable-native >/dev/null
  make -s -j"$(nproc)" fio >/dev/null 2>"$dir/build.log"
) || { cat "$dir/build.log" >&2; exit 1; }
cp "$src/fio" "$bin"
"$bin" --enghelp | grep -qw libiscsi || { echo "fio built without the libiscsi engine" >&2; exit 1; }
rm -rf "$src" "$tarball"
echo "$bin"
