#!/usr/bin/env bash
# Runs every check and test of zos-netboot. On a fresh Debian machine (as root) it first installs
# what it needs (scripts/setup.sh). Fails loudly on the first failure.
#   format + lint → unit tests → namespace-lab integration tests → static musl release build
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
