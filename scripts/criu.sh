#!/usr/bin/env bash
# Builds CRIU 4.2.1 from Debian's source (the orig tarball of the sid package, checked
# against its pinned SHA-256) once per machine, keeps the binary under ~/.cache/ate and
# prints its path. Older CRIU packages do not work on kernels >= 6.13 (vDSO layout) and
# >= 6.16 (socket options); see docs/sandboxes.md.
set -euo pipefail

version=4.2.1
sha256=29ec0ee09e296479fe7048c80980e8ef1d0684d0b0204c2b101dfea19f6725b9
url="http://deb.debian.org/debian/pool/main/c/criu/criu_${version}.orig.tar.xz"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/ate/criu-${version}"
bin="$cache/criu"

if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
deps=(build-essential pkg-config uuid-dev python3-protobuf libbsd-dev libcap-dev libnet1-dev
  libnftables-dev libnl-3-dev libprotobuf-c-dev libprotobuf-dev protobuf-c-compiler
  protobuf-compiler libgnutls28-dev curl xz-utils)
missing=()
for p in "${deps[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $sudo_cmd apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
curl -fsSL -o "$work/criu.tar.xz" "$url" >&2
echo "$sha256  $work/criu.tar.xz" | sha256sum -c --quiet - >&2
tar -C "$work" -xJf "$work/criu.tar.xz"
make -C "$work/criu-${version}" -j"$(nproc)" criu >"$work/build.log" 2>&1 || {
  tail -40 "$work/build.log" >&2
  exit 1
}
mkdir -p "$cache"
install -m 0755 "$work/criu-${version}/criu/criu" "$bin"
echo "$bin"
