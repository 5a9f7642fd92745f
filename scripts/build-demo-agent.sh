#!/usr/bin/env bash
# Builds demo/agent/agent.wasm from demo/agent/agent.c with Debian's clang, lld and
# wasi-libc (installs them when missing and running as root).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v clang >/dev/null || need+=(clang)
command -v wasm-ld >/dev/null || command -v wasm-ld-14 >/dev/null || need+=(lld)
[ -f /usr/lib/wasm32-wasi/libc.a ] || need+=(wasi-libc)
ls /usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1 || need+=(libclang-rt-14-dev-wasm32)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing ${need[*]}: install them (apt-get install ${need[*]})" >&2
    exit 1
  fi
  apt-get install -y -q "${need[@]}" >/dev/null
fi
out="${1:-demo/agent/agent.wasm}"
clang --target=wasm32-wasi --sysroot=/usr -isystem /usr/include/wasm32-wasi -L/usr/lib/wasm32-wasi \
  -O2 -mexec-model=reactor -Wl,--strip-all -o "$out" demo/agent/agent.c
echo "built $out ($(stat -c %s "$out") bytes)"
