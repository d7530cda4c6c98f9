#!/usr/bin/env bash
# Builds the static x86_64 musl release binary that goes into the initramfs, checks that it is
# statically linked, and prints its size. Output: target/x86_64-unknown-linux-musl/release/zos-netboot
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-musl
rustup target list --installed 2>/dev/null | grep -qx "$target" || rustup target add "$target"
cargo build --release --locked --target "$target"
bin="target/$target/release/zos-netboot"
desc=$(file -b "$bin" 2>/dev/null || true)
case "$desc" in
  *"static-pie linked"*|*"statically linked"*) ;;
  "") echo "build.sh: 'file' is missing; cannot confirm static linking" >&2 ;;
  *) echo "build.sh: $bin is not statically linked: $desc" >&2; exit 1 ;;
esac
size=$(stat -c %s "$bin")
awk -v b="$bin" -v s="$size" -v d="$desc" 'BEGIN { printf "%s: %d bytes (%.2f MiB)\n  %s\n", b, s, s / 1048576, d }'
limit=$((4 * 1024 * 1024))
if [ "$size" -gt "$limit" ]; then
  echo "build.sh: binary is over the 4 MiB budget" >&2
  exit 1
fi
