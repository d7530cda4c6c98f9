#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/*.rs: libFuzzer through cargo-fuzz) for a bounded
# time and prints executions, corpus size and crashes per target.
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      (default 60 s, all targets)
#
# Seeds are committed under fuzz/seeds/<target>/ and only read; what the fuzzer finds goes to a
# scratch corpus (fuzz/corpus/, not committed), crashes to fuzz/artifacts/<target>/. Every crash
# becomes a regression test next to the code it broke (see docs/fuzz.md). Needs cargo-fuzz and a
# nightly toolchain (libFuzzer's sanitizer flags); installs cargo-fuzz if missing, and says so
# and exits 0 if no nightly toolchain is there ("skipped", never a silent pass).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz.sh: SKIPPED: no nightly Rust toolchain here (cargo-fuzz needs one); nothing was fuzzed"
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz"
  cargo install cargo-fuzz --locked >/dev/null
fi

echo "==> building ${#targets[@]} fuzz targets (nightly, AddressSanitizer)"
(cd fuzz && cargo +nightly fuzz build -O)

mkdir -p /dev/shm/zos-fuzz
export ZOS_FUZZ_TMP=/dev/shm/zos-fuzz
results=()
failed=0
for t in "${targets[@]}"; do
  corpus="fuzz/corpus/$t"
  seeds="fuzz/seeds/$t"
  mkdir -p "$corpus" "$seeds" "fuzz/artifacts/$t"
  log=$(mktemp)
  echo "==> $t: ${secs}s"
  set +e
  (cd fuzz && timeout -k 10 $((secs + 120)) cargo +nightly fuzz run -O "$t" "../$corpus" "../$seeds" -- \
    -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=1024 -timeout=10) >"$log" 2>&1
  rc=$?
  set -e
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -n 1)
  crashes=$(find "fuzz/artifacts/$t" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
  size=$(find "$corpus" -type f | wc -l)
  if [ "$rc" -ne 0 ]; then
    failed=1
    grep -E "ERROR|panicked|SUMMARY|Test unit written" "$log" | head -n 8 | sed 's/^/    /'
  fi
  results+=("$(printf '%-14s %12s %8s %8s   %s' "$t" "${runs:-?}" "$size" "$crashes" "$([ "$rc" -eq 0 ] && echo ok || echo "FOUND (exit $rc)")")")
  rm -f "$log"
done
rm -rf /dev/shm/zos-fuzz
echo
printf '%-14s %12s %8s %8s   %s\n' target executions corpus crashes result
printf '%s\n' "${results[@]}"
exit "$failed"
