#!/usr/bin/env bash
# The whole test suite of ate, from a fresh machine: installs what the tests need, checks
# formatting and lints, and runs every test (unit, property, store conformance, end to end).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (a Rust toolchain, 1.95 or newer)" >&2
  exit 1
fi

# Real servers the store tests start on free ports: redis-server and PostgreSQL.
need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need_apt+=(postgresql)
fi
# The C demo agent is built for wasm32-wasi with Debian's clang, lld and wasi-libc.
command -v clang >/dev/null 2>&1 || need_apt+=(clang)
command -v wasm-ld >/dev/null 2>&1 || need_apt+=(lld)
[ -f /usr/lib/wasm32-wasi/libc.a ] || need_apt+=(wasi-libc)
ls /usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1 \
  || need_apt+=(libclang-rt-14-dev-wasm32)
# The process sandbox class: runc runs actors, iproute2 gives each its network namespace,
# Debian's python3 runs the Python demo agent.
command -v runc >/dev/null 2>&1 || need_apt+=(runc)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
[ -x /usr/bin/python3 ] || need_apt+=(python3)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
  # The packages start system-wide servers on the default ports; the tests run their own.
  $sudo_cmd service redis-server stop >/dev/null 2>&1 || true
  $sudo_cmd service postgresql stop >/dev/null 2>&1 || true
fi

# PostgreSQL refuses to run as root: the tests then run it as the postgres user.
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --no-create-home postgres
fi

# Full snapshots of process actors: CRIU 4.2 built from Debian's source once per machine
# (older packages fail on this kernel), used by the nodes the tests start.
if [ "$(id -u)" -eq 0 ]; then
  log "criu"
  ATE_CRIU="$(scripts/criu.sh)"
  export ATE_CRIU
  "$ATE_CRIU" check
fi

log "demo agent (C -> wasm32-wasi)"
scripts/build-demo-agent.sh

# One build from scratch: incremental artifacts would only take disk (gigabytes of it).
export CARGO_INCREMENTAL=0

log "format"
cargo fmt --all -- --check

log "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "tests"
cargo test --workspace --locked --no-fail-fast

# Fuzz the parsers of untrusted input for a bounded time (ATE_FUZZ_SECONDS each, default 20).
scripts/fuzz.sh
