#!/usr/bin/env bash
# Fuzzes ate's parsers of untrusted input (fuzz/fuzz_targets) for a bounded time each and
# fails on any crash, hang or runaway allocation.
#
#   scripts/fuzz.sh                 every target, ATE_FUZZ_SECONDS (default 20) each
#   scripts/fuzz.sh names manifest  only these targets
#   ATE_FUZZ_SECONDS=0              skips fuzzing (libFuzzer would take 0 as "forever")
#
# Works on stable Rust: the targets are built with plain `cargo build` and the coverage
# instrumentation flags cargo-fuzz would pass with `--sanitizer none` (no nightly, nothing
# to install). Each run starts from a copy of the seed corpus in fuzz/corpus/<target>, so
# inputs found here never land in the repository; a crashing input is kept in
# fuzz/artifacts/<target>/ (ignored by git) and the command that replays it is printed.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

seconds="${ATE_FUZZ_SECONDS:-20}"
case "$seconds" in
  '' | *[!0-9]*)
    echo "ATE_FUZZ_SECONDS must be a whole number of seconds, not ${seconds:?}" >&2
    exit 2
    ;;
esac
if [ "$seconds" -eq 0 ]; then
  echo "ATE_FUZZ_SECONDS=0: fuzzing skipped"
  exit 0
fi
all_targets=(selectors names host_path manifest snapshot_manifest)
if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=("${all_targets[@]}")
fi

host="$(rustc -vV | sed -n 's/^host: //p')"
target_dir="fuzz/target"
# `--target` keeps these flags off build scripts and proc macros, which must not be
# instrumented (they are not linked with libFuzzer).
rustflags=(
  -Cpasses=sancov-module
  -Cllvm-args=-sanitizer-coverage-level=4
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
  -Cllvm-args=-sanitizer-coverage-pc-table
  -Cllvm-args=-sanitizer-coverage-trace-compares
  -Cllvm-args=-sanitizer-coverage-stack-depth
  -Cllvm-args=-simplifycfg-branch-fold-threshold=0
  --cfg fuzzing
)

started=$SECONDS
log "building fuzz targets (${targets[*]})"
if ! env -u CARGO_ENCODED_RUSTFLAGS RUSTFLAGS="${rustflags[*]} ${RUSTFLAGS:-}" \
  cargo build --manifest-path fuzz/Cargo.toml --release --locked \
  --target "$host" --target-dir "$target_dir" --bins; then
  echo "building the fuzz targets failed; if fuzz/Cargo.lock is out of date (a crate's" \
    "dependencies changed), refresh it: cargo update --manifest-path fuzz/Cargo.toml --workspace" >&2
  exit 1
fi
built=$SECONDS
echo "built in $((built - started)) s"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=()
for t in "${targets[@]}"; do
  bin="$target_dir/$host/release/$t"
  if [ ! -x "$bin" ]; then
    echo "no fuzz target named $t (have: ${all_targets[*]})" >&2
    exit 2
  fi
  log "fuzzing $t for ${seconds} s"
  mkdir -p "$work/$t" "fuzz/artifacts/$t"
  if [ -d "fuzz/corpus/$t" ]; then
    cp -R "fuzz/corpus/$t/." "$work/$t/"
  fi
  # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: runaway allocations
  # are findings too.
  if ! "$bin" "$work/$t" \
    -max_total_time="$seconds" \
    -timeout=10 \
    -rss_limit_mb=2048 \
    -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$t/"; then
    failed+=("$t")
    echo "fuzz target $t failed; replay the input above with: $bin <artifact>" >&2
  fi
done

echo
echo "fuzzing took $((SECONDS - started)) s (build $((built - started)) s)"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz targets with findings: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
