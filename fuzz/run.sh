#!/usr/bin/env bash
# Builds the fuzz targets and runs each for SECONDS (default 600), one after the other:
#   fuzz/run.sh [SECONDS] [TARGET...]
# With no TARGET, every target in fuzz/fuzz_targets runs. Each run starts from the checked-in
# seeds in fuzz/corpus/<target> and keeps what it finds in a scratch corpus beside the build
# ($FUZZ_WORK_DIR, default <target dir>/fuzz-work), so the repository only changes when a seed
# is copied in on purpose. A crash, a panic, a timeout or a memory blow-up makes libFuzzer exit
# non-zero: the script stops there with that status, and the input is in
# <work>/artifacts/<target>/ (replay: fuzz/run.sh replay TARGET FILE).
#
# Built with `-s none` (no sanitizer): that needs no nightly flag, so stable rustc builds it.
# Environment: CARGO_TARGET_DIR (the build goes to its fuzz/ folder), FUZZ_WORK_DIR.
set -euo pipefail
cd "$(dirname "$0")"

target_dir="${CARGO_TARGET_DIR:-$PWD/../target}/fuzz"
work="${FUZZ_WORK_DIR:-$target_dir/fuzz-work}"
build=(cargo fuzz build -s none --target-dir "$target_dir")
binary_dir="$target_dir/x86_64-unknown-linux-gnu/release"

if [ "${1:-}" = replay ]; then
  target="$2" input="$3"
  "${build[@]}" "$target"
  exec "$binary_dir/$target" "$input"
fi

seconds="${1:-600}"
shift || true
if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for file in fuzz_targets/*.rs; do targets+=("$(basename "$file" .rs)"); done
fi

"${build[@]}"
for target in "${targets[@]}"; do
  mkdir -p "$work/corpus/$target" "$work/artifacts/$target"
  echo "== fuzz $target for ${seconds}s"
  # -timeout: one input running over 10 s is a hang; -rss_limit_mb: over 2 GB is a blow-up;
  # -max_len: inputs up to 64 KiB (bodies and files bigger than that add nothing new).
  status=0
  "$binary_dir/$target" "$work/corpus/$target" "corpus/$target" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -artifact_prefix="$work/artifacts/$target/" -print_final_stats=1 \
    >"$work/$target.log" 2>&1 || status=$?
  grep -E "^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)" \
    "$work/$target.log" || true
  if [ "$status" -ne 0 ]; then
    echo "fuzz target $target failed (exit $status); log: $work/$target.log"
    tail -n 40 "$work/$target.log"
    exit "$status"
  fi
done
echo "fuzz: ${#targets[@]} passed, 0 failed"
