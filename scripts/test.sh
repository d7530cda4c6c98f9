#!/usr/bin/env bash
# Runs every check and test of zos-netboot. On a fresh Debian machine (as root) it first installs
# what it needs (scripts/setup.sh). Fails loudly on the first failure.
#   format + lint → unit tests → namespace-lab and QEMU integration tests → static musl release
#   build → a short fuzz run of every target
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==> %s\n' "$*"; }

step "set-up (packages, musl target)"
bash scripts/setup.sh

step "rustfmt"
cargo fmt --all -- --check

step "clippy"
cargo clippy --locked --all-targets -- -D warnings

step "tests (unit + namespace lab; lab tests print SKIP with a reason when not root)"
cargo test --locked -- --test-threads="${TEST_THREADS:-4}"

step "static musl release binary"
bash scripts/build.sh

step "fuzz smoke (every target ${FUZZ_SECS:-5}s from the committed seeds; scripts/fuzz.sh for longer runs)"
rustfmt --edition 2021 --check fuzz/fuzz_targets/*.rs
bash scripts/fuzz.sh "${FUZZ_SECS:-5}"
