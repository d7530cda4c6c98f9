#!/usr/bin/env bash
# Runs every check and test of zos-netboot. On a fresh Debian machine (as root) it first installs
# what it needs (scripts/setup.sh). Fails loudly on the first failure.
#   format + lint → unit tests → namespace-lab and QEMU integration tests → static musl release
#   build → a short fuzz run of every target
#
# A lab or QEMU test that cannot run here (not root, no QEMU) fails the run: a skipped test
# proves nothing. `--allow-skips` lets them print SKIP with the reason instead, for a
# workstation without root.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  --allow-skips) export ZOS_LAB_REQUIRED=0 ZOS_QEMU_REQUIRED=0 ;;
  "") export ZOS_LAB_REQUIRED="${ZOS_LAB_REQUIRED:-1}" ZOS_QEMU_REQUIRED="${ZOS_QEMU_REQUIRED:-1}" ;;
  *) echo "usage: scripts/test.sh [--allow-skips]" >&2; exit 2 ;;
esac
step() { printf '\n==> %s\n' "$*"; }

step "set-up (packages, musl target)"
bash scripts/setup.sh

step "rustfmt"
cargo fmt --all -- --check

step "clippy"
cargo clippy --locked --all-targets -- -D warnings

step "tests (unit + namespace lab + QEMU; a skip fails unless --allow-skips)"
cargo test --locked --no-fail-fast -- --test-threads="${TEST_THREADS:-4}"

step "static musl release binary"
bash scripts/build.sh

step "fuzz smoke (every target ${FUZZ_SECS:-5}s from the committed seeds; scripts/fuzz.sh for longer runs)"
rustfmt --edition 2021 --check fuzz/fuzz_targets/*.rs
bash scripts/fuzz.sh "${FUZZ_SECS:-5}"
