#!/bin/sh
# Linker for the static musl binary (.cargo/config.toml): the usual `cc` driver, but with the
# LLVM linker that ships with the Rust toolchain (rust-lld, through its gcc-ld shim) so that
# identical code folding (--icf=all) can merge the many identical monomorphised functions:
# ~35 KB of the 3 MiB budget. Falls back to plain `cc` (GNU ld) when the shim is missing.
gcc_ld="$(rustc --print sysroot 2>/dev/null)/lib/rustlib/x86_64-unknown-linux-gnu/bin/gcc-ld"
if [ -x "$gcc_ld/ld.lld" ]; then
  exec cc -B"$gcc_ld" -fuse-ld=lld -Wl,--icf=all "$@"
fi
echo "musl-link.sh: no rust-lld in the toolchain ($gcc_ld); linking with GNU ld (larger binary)" >&2
exec cc "$@"
