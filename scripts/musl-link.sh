#!/bin/sh
# Linker for the static musl binary (.cargo/config.toml): the usual `cc` driver, but with the
# LLVM linker that ships with the Rust toolchain (rust-lld, through its gcc-ld shim) so that
# identical code folding (--icf=all) can merge the many identical monomorphised functions:
# ~35 KB of the 3 MiB budget. Falls back to plain `cc` (GNU ld) when the shim is missing.
gcc_ld="$(rustc --print sysroot 2>/dev/null)/lib/rustlib/x86_64-unknown-linux-gnu/bin/gcc-ld"
#
# It also drops the unwind tables (.eh_frame, 316 KB, and its index): with panic=abort nothing
# unwinds, and the panic hook (src/early.rs) prints no backtrace; std's default hook, asked for
# one with RUST_BACKTRACE, finds an empty index and prints an empty backtrace (checked: removing
# only .eh_frame and keeping its index makes that walk crash).
out=''
prev=''
for a in "$@"; do
  [ "$prev" = "-o" ] && out=$a
  prev=$a
done
if [ -x "$gcc_ld/ld.lld" ]; then
  cc -B"$gcc_ld" -fuse-ld=lld -Wl,--icf=all "$@" || exit
  if [ -n "$out" ] && command -v objcopy >/dev/null; then
    objcopy --remove-section .eh_frame --remove-section .eh_frame_hdr "$out"
  fi
  exit 0
fi
echo "musl-link.sh: no rust-lld in the toolchain ($gcc_ld); linking with GNU ld (larger binary)" >&2
exec cc "$@"
