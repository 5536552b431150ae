#!/usr/bin/env bash
# Runs every fuzz target in turn for a fixed time (docs/fuzzing.md), one at a time and at low
# priority. Usage, from the repository root:
#   fuzz/run-all.sh [SECONDS_PER_TARGET] [TARGET...]      (default 600 s, every target)
# Needs `cargo install cargo-fuzz` and a nightly toolchain. Each target's corpus grows in
# fuzz/corpus/<target> (not committed), seeded from fuzz/seeds/<target>; crash inputs land in
# fuzz/artifacts/<target>/ (copy them to fuzz/regressions/<target>/ once fixed). The log of each
# run is fuzz/logs/<target>.log; its last `#N ... cov: ... ft: ...` line gives the figures.
# libFuzzer runs in fork mode with crashes, timeouts and OOMs ignored, so one run finds them
# all instead of stopping at the first.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-600}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(onnx_import tensor_pb npy ir_text target_toml noise_toml program stream npz stream_text)
fi
max_len() {
  case "$1" in
    onnx_import | ir_text) echo 65536 ;;
    program | stream | stream_text) echo 32768 ;;
    *) echo 4096 ;;
  esac
}
mkdir -p fuzz/logs
# NO_BUILD=1 runs the binaries already built (e.g. while a rebuild is under way).
bin=fuzz/target/x86_64-unknown-linux-gnu/release
if [ "${NO_BUILD:-0}" != 1 ]; then
  cargo +nightly fuzz build >/dev/null 2>&1 || cargo +nightly fuzz build
fi
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  echo "== $t: ${secs}s, started $(date -u +%H:%M:%S)"
  nice -n 19 "$bin/$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -artifact_prefix="fuzz/artifacts/$t/" \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -max_len="$(max_len "$t")" \
    -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 -print_final_stats=1 \
    >"fuzz/logs/$t.log" 2>&1 || echo "   (exit status $?)"
  grep -E '^#[0-9]+' "fuzz/logs/$t.log" | tail -1 || true
  ls "fuzz/artifacts/$t" 2>/dev/null | sed 's/^/   artifact: /' || true
done
