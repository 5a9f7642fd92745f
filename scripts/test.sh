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

log "format"
cargo fmt --all -- --check

log "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "tests"
cargo test --workspace --locked --no-fail-fast
