#!/usr/bin/env bash
# Builds the zos-netboot boot initramfs: a reproducible, compressed newc cpio archive.
#
#   scripts/build-initramfs.sh --out FILE [--kernel-version VER] [--bin PATH] [--next-root DIR]
#                              [--ca PEM] [--compress zstd|gzip] [--check-reproducible]
#
# The archive holds only:
#   /init                               the static zos-netboot binary (--bin; default
#                                       target/x86_64-unknown-linux-musl/release/zos-netboot,
#                                       built with scripts/build.sh when missing)
#   /dev /proc /sys /run /tmp /etc /newroot   empty directories, plus /dev/console (char 5,1)
#   /lib/modules/VER/                   the modules of initramfs/modules.list and their
#                                       dependencies (from that kernel's modules.dep), with
#                                       modules.dep, modules.alias, modules.softdep and
#                                       modules.order filtered to them, and modules.builtin
#   /etc/ssl/certs/ca-certificates.crt  from the ca-certificates package
#   /next-root/                         the tree of --next-root DIR, when given
#   /etc/zos/ca.pem                     --ca PEM, when given: an extra CA to trust for the hub
#                                       (boot with zos.ca=/etc/zos/ca.pem), e.g. a test grid's
#
# VER defaults to the newest *-cloud-amd64 under /lib/modules (Debian's linux-image-cloud-amd64,
# the kernel qemu/run.sh boots). Same inputs give the same bytes: names sorted, uid/gid 0, every
# mtime = SOURCE_DATE_EPOCH (default: the last git commit's time), inode numbers renumbered,
# `gzip -n` / single-threaded zstd. --check-reproducible builds twice from scratch and fails
# unless both archives have the same sha256. Prints the archive's size.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
self="$repo/scripts/build-initramfs.sh"

die() { printf 'build-initramfs.sh: %s\n' "$*" >&2; exit 1; }
note() { printf '  %s\n' "$*" >&2; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$self"; }

out='' kver='' bin='' next_root='' ca='' compress=zstd check=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=${2:?--out needs a FILE}; shift 2 ;;
    --out=*) out=${1#*=}; shift ;;
    --kernel-version) kver=${2:?--kernel-version needs a VER}; shift 2 ;;
    --kernel-version=*) kver=${1#*=}; shift ;;
    --bin) bin=${2:?--bin needs a PATH}; shift 2 ;;
    --bin=*) bin=${1#*=}; shift ;;
    --next-root) next_root=${2:?--next-root needs a DIR}; shift 2 ;;
    --next-root=*) next_root=${1#*=}; shift ;;
    --ca) ca=${2:?--ca needs a PEM file}; shift 2 ;;
    --ca=*) ca=${1#*=}; shift ;;
    --compress) compress=${2:?--compress needs gzip or zstd}; shift 2 ;;
    --compress=*) compress=${1#*=}; shift ;;
    --check-reproducible) check=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[ -n "$out" ] || { usage >&2; die "--out FILE is required"; }
case "$compress" in gzip | zstd) ;; *) die "--compress must be gzip or zstd, not $compress" ;; esac
for tool in cpio find sort awk sha256sum "$compress"; do
  command -v "$tool" >/dev/null || die "$tool is missing (bash scripts/setup.sh installs it)"
done

# Everything that decides the bytes is resolved here, once, so that the two builds of
# --check-reproducible see the same inputs.
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git -C "$repo" log -1 --format=%ct 2>/dev/null || true)
  [ -n "$SOURCE_DATE_EPOCH" ] || SOURCE_DATE_EPOCH=0
fi
case "$SOURCE_DATE_EPOCH" in '' | *[!0-9]*) die "SOURCE_DATE_EPOCH must be a number" ;; esac
export SOURCE_DATE_EPOCH

if [ -z "$kver" ]; then
  kver=$(find /lib/modules -mindepth 1 -maxdepth 1 -name '*-cloud-amd64' -printf '%f\n' 2>/dev/null |
    sort -V | tail -n 1)
  [ -n "$kver" ] || die "no /lib/modules/*-cloud-amd64 (apt-get install linux-image-cloud-amd64, or pass --kernel-version)"
fi
moddir=/lib/modules/$kver
[ -f "$moddir/modules.dep" ] || die "$moddir/modules.dep is missing (is the kernel $kver installed?)"

if [ -z "$bin" ]; then
  bin="$repo/target/x86_64-unknown-linux-musl/release/zos-netboot"
  if [ ! -e "$bin" ]; then
    echo "build-initramfs.sh: $bin is missing, building it (scripts/build.sh)" >&2
    timeout 1800 bash "$repo/scripts/build.sh" >&2 || die "scripts/build.sh failed"
  fi
fi
{ [ -f "$bin" ] && [ -x "$bin" ]; } || die "--bin $bin is not an executable file"
bin=$(realpath "$bin")
if [ -n "$next_root" ]; then
  [ -d "$next_root" ] || die "--next-root $next_root is not a directory"
  next_root=$(realpath "$next_root")
fi
if [ -n "$ca" ]; then
  grep -q "BEGIN CERTIFICATE" "$ca" 2>/dev/null || die "--ca $ca is not a PEM certificate file"
  ca=$(realpath "$ca")
fi
certs=/etc/ssl/certs/ca-certificates.crt
[ -s "$certs" ] || die "$certs is missing (apt-get install ca-certificates)"
modlist="$repo/initramfs/modules.list"
[ -f "$modlist" ] || die "$modlist is missing"

sha() { sha256sum "$1" | awk '{ print $1 }'; }

if [ "$check" = 1 ]; then
  tmpd=$(mktemp -d "${TMPDIR:-/tmp}/zos-initramfs-check.XXXXXX")
  trap 'rm -rf "$tmpd"' EXIT
  args=(--kernel-version "$kver" --bin "$bin" --compress "$compress")
  [ -z "$next_root" ] || args+=(--next-root "$next_root")
  [ -z "$ca" ] || args+=(--ca "$ca")
  bash "$self" "${args[@]}" --out "$tmpd/a" >/dev/null 2>"$tmpd/a.log" || { cat "$tmpd/a.log" >&2; die "first build failed"; }
  bash "$self" "${args[@]}" --out "$tmpd/b" >/dev/null 2>"$tmpd/b.log" || { cat "$tmpd/b.log" >&2; die "second build failed"; }
  a=$(sha "$tmpd/a") b=$(sha "$tmpd/b")
  if [ "$a" != "$b" ]; then
    echo "build-initramfs.sh: NOT reproducible: $a vs $b; differences in the file lists:" >&2
    for x in a b; do "$compress" -dc <"$tmpd/$x" | cpio -itv --quiet >"$tmpd/$x.lst" 2>/dev/null || true; done
    diff "$tmpd/a.lst" "$tmpd/b.lst" >&2 || true
    exit 1
  fi
  echo "reproducible: two builds from scratch are identical, sha256 $a"
  mkdir -p "$(dirname "$out")"
  cp "$tmpd/a" "$out.tmp.$$" && mv -f "$out.tmp.$$" "$out"
  cat "$tmpd/a.log" >&2
  size=$(stat -c %s "$out")
  awk -v f="$out" -v s="$size" -v c="$compress" 'BEGIN { printf "%s: %d bytes (%.2f MiB, %s)\n", f, s, s / 1048576, c }'
  exit 0
fi

stage=$(mktemp -d "${TMPDIR:-/tmp}/zos-initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT
umask 022
root="$stage/root"
mkdir -p "$root"/{dev,proc,sys,run,tmp,etc/ssl/certs,newroot,lib/modules/"$kver"}
chmod 1777 "$root/tmp"
cp "$bin" "$root/init"
chmod 0755 "$root/init"
cp "$certs" "$root/etc/ssl/certs/ca-certificates.crt"
chmod 0644 "$root/etc/ssl/certs/ca-certificates.crt"

# --- modules: the closure of modules.list over modules.dep -----------------------------------
# modules.dep lines are "kernel/path/name.ko: dep.ko dep.ko"; a module's name is its file name
# without .ko[.xz|.zst|.gz], with '-' read as '_'.
awk -v listfile="$modlist" -v builtin="$moddir/modules.builtin" -v sel="$stage/modules.sel" \
  -v notes="$stage/modules.notes" '
  function modname(path,   n) {
    n = path; sub(/.*\//, "", n); sub(/\.ko(\.(xz|zst|gz))?$/, "", n); gsub(/-/, "_", n); return n
  }
  BEGIN {
    while ((getline line < builtin) > 0) isbuiltin[modname(line)] = 1
    n = 0
    while ((getline line < listfile) > 0) {
      sub(/#.*/, "", line); gsub(/[ \t\r]/, "", line)
      if (line == "") continue
      opt = sub(/\?$/, "", line)
      want[++n] = line; optional[n] = opt
    }
  }
  {
    p = $1; sub(/:$/, "", p)
    path[modname(p)] = p
    deps[p] = ""
    for (i = 2; i <= NF; i++) deps[p] = deps[p] " " $i
  }
  END {
    bad = 0
    for (i = 1; i <= n; i++) {
      m = want[i]; gsub(/-/, "_", m)
      if (m in path) { queue[++q] = path[m]; continue }
      if (m in isbuiltin) { print "built in: " want[i] > notes; continue }
      if (optional[i]) { print "absent (optional): " want[i] > notes; continue }
      print "required module " want[i] " is neither in modules.dep nor built in" > "/dev/stderr"
      bad = 1
    }
    if (bad) exit 1
    for (h = 1; h <= q; h++) {
      p = queue[h]
      if (p in seen) continue
      seen[p] = 1
      print p > sel
      k = split(deps[p], d, " ")
      for (j = 1; j <= k; j++) {
        if (!(d[j] in deps)) { print "modules.dep names " d[j] " but has no line for it" > "/dev/stderr"; exit 1 }
        queue[++q] = d[j]
      }
    }
  }' "$moddir/modules.dep" || die "resolving initramfs/modules.list against $moddir/modules.dep failed"
[ -s "$stage/modules.sel" ] || die "no module selected"

kdir="$root/lib/modules/$kver"
while IFS= read -r rel; do
  mkdir -p "$kdir/$(dirname "$rel")"
  cp "$moddir/$rel" "$kdir/$rel"
  chmod 0644 "$kdir/$rel"
done <"$stage/modules.sel"
# The kernel's own index files, filtered to the selected modules (same lines, same order).
awk -v sel="$stage/modules.sel" 'BEGIN { while ((getline l < sel) > 0) keep[l] = 1 }
  { p = $1; sub(/:$/, "", p); if (p in keep) print }' "$moddir/modules.dep" >"$kdir/modules.dep"
awk -v sel="$stage/modules.sel" 'BEGIN { while ((getline l < sel) > 0) keep[l] = 1 }
  $0 in keep' "$moddir/modules.order" >"$kdir/modules.order" 2>/dev/null || : >"$kdir/modules.order"
names() { awk '{ n = $0; sub(/.*\//, "", n); sub(/\.ko(\.(xz|zst|gz))?$/, "", n); gsub(/-/, "_", n); print n }' "$stage/modules.sel"; }
names >"$stage/modules.names"
awk -v sel="$stage/modules.names" 'BEGIN { while ((getline l < sel) > 0) keep[l] = 1 }
  /^alias / { n = $NF; gsub(/-/, "_", n); if (n in keep) print }' "$moddir/modules.alias" >"$kdir/modules.alias"
if [ -f "$moddir/modules.softdep" ]; then
  awk -v sel="$stage/modules.names" 'BEGIN { while ((getline l < sel) > 0) keep[l] = 1 }
    /^softdep / { n = $2; gsub(/-/, "_", n); if (n in keep) print }' "$moddir/modules.softdep" >"$kdir/modules.softdep"
fi
cp "$moddir/modules.builtin" "$kdir/modules.builtin"
chmod 0644 "$kdir"/modules.*

if [ -n "$ca" ]; then
  mkdir -p "$root/etc/zos"
  cp "$ca" "$root/etc/zos/ca.pem"
  chmod 0644 "$root/etc/zos/ca.pem"
fi

# --- the next root ---------------------------------------------------------------------------
if [ -n "$next_root" ]; then
  mkdir "$root/next-root"
  cp -a "$next_root/." "$root/next-root/"
fi

# --- normalise and archive -------------------------------------------------------------------
# Owner, permissions (no group/other write) and times are taken from the staging tree: make
# them independent of who built it, the umask and the sources' checkout times.
chmod -R u+rwX,go+rX,go-w "$root"
chmod 1777 "$root/tmp"
[ ! -d "$root/next-root/tmp" ] || chmod 1777 "$root/next-root/tmp"
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
(cd "$root" && find . -mindepth 1 -printf '%P\0' | LC_ALL=C sort -z |
  cpio --null --create --format=newc --reproducible --owner=0:0 --quiet) >"$stage/archive.cpio"

# /dev/console (char 5,1, 0600) as a second, hand-written newc archive: cpio can only archive
# device nodes that exist, and making one needs root. The kernel unpacks concatenated archives
# in order (so /dev exists by then); a fresh rootfs has no /dev/console without it.
newc() { # NAME MODE RDEVMAJOR RDEVMINOR INO
  local name=$1 namesize=$((${#1} + 1)) pad
  printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
    "$5" "$2" 0 0 1 "$SOURCE_DATE_EPOCH" 0 0 0 "$3" "$4" "$namesize" 0
  printf '%s\0' "$name"
  pad=$(((4 - (110 + namesize) % 4) % 4))
  [ "$pad" -eq 0 ] || head -c "$pad" /dev/zero
}
{
  newc dev/console $((0020000 | 0600)) 5 1 1
  newc 'TRAILER!!!' 0 0 0 0
} >>"$stage/archive.cpio"

case "$compress" in
  gzip) gzip -n -9 -c "$stage/archive.cpio" >"$stage/archive.img" ;;
  zstd) zstd -q -19 -T1 --no-progress -c "$stage/archive.cpio" >"$stage/archive.img" ;;
esac
mkdir -p "$(dirname "$out")"
cp "$stage/archive.img" "$out.tmp.$$"
mv -f "$out.tmp.$$" "$out"

# --- report ----------------------------------------------------------------------------------
bytes() { du -sb "$1" | awk '{ print $1 }'; }
nmods=$(grep -c . "$stage/modules.sel")
{
  echo "build-initramfs.sh: kernel $kver, SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH"
  note "/init          $(stat -c %s "$root/init") bytes  ($bin)"
  note "modules        $(bytes "$kdir") bytes, $nmods files: $(names | sort | tr '\n' ' ')"
  [ ! -s "$stage/modules.notes" ] || while IFS= read -r l; do note "  $l"; done <"$stage/modules.notes"
  note "certificates   $(stat -c %s "$root/etc/ssl/certs/ca-certificates.crt") bytes"
  [ -z "$ca" ] || note "/etc/zos/ca.pem $(stat -c %s "$root/etc/zos/ca.pem") bytes  ($ca)"
  [ -z "$next_root" ] || note "next-root      $(bytes "$root/next-root") bytes  ($next_root)"
  note "cpio           $(stat -c %s "$stage/archive.cpio") bytes uncompressed"
} >&2
size=$(stat -c %s "$out")
awk -v f="$out" -v s="$size" -v c="$compress" 'BEGIN { printf "%s: %d bytes (%.2f MiB, %s)\n", f, s, s / 1048576, c }'
