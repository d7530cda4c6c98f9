#!/usr/bin/env bash
# Builds the zos-netboot boot initramfs: a reproducible, compressed newc cpio archive.
#
#   scripts/build-initramfs.sh --out FILE [--kernel-version VER] [--bin PATH] [--next-root DIR]
#                              [--ca PEM] [--compress zstd|gzip|none] [--check-reproducible]
#                              [--without MODULE]... [--nic-ids FILE] [--budget MIB]
#                              [--zstd-level N] [--modules zst|ko] [--firmware xz|plain]
#
# The archive holds only:
#   /init                               the static zos-netboot binary (--bin; default
#                                       target/x86_64-unknown-linux-musl/release/zos-netboot,
#                                       built with scripts/build.sh when missing)
#   /dev /proc /sys /run /tmp /etc /newroot   empty directories, plus /dev/console (char 5,1)
#   /lib/modules/VER/                   the modules of initramfs/modules.list (names, and
#                                       directories such as kernel/drivers/net/ethernet/) and
#                                       their dependencies (from that kernel's modules.dep),
#                                       with modules.dep, modules.alias, modules.softdep and
#                                       modules.order filtered to them, and modules.builtin;
#                                       --without MODULE (repeatable) leaves one out (a test
#                                       image for a NIC without a driver). Each module is
#                                       stored as NAME.ko.zst (--modules zst, the default: the
#                                       package's file byte for byte inside, so its signature
#                                       holds; zos-netboot decompresses the few it loads) or as
#                                       the plain .ko (--modules ko)
#   /lib/firmware/…                     every firmware file those modules name (`modinfo -F
#                                       firmware`) that this machine has (Debian's firmware-*
#                                       packages), symlinks resolved; stored as FILE.xz
#                                       (--firmware xz, the default: xz --check=crc32, which the
#                                       kernel decompresses itself when a driver asks for the
#                                       file, CONFIG_FW_LOADER_COMPRESS_XZ) or as is (plain)
#   /etc/zos/firmware.map               `<file> <package>` for every firmware file the modules
#                                       name: the installed Debian package that has it (from
#                                       dpkg's file lists), `-` when none does; zos-netboot
#                                       names the package when the kernel misses a file
#   /etc/ssl/certs/ca-certificates.crt  from the ca-certificates package
#   /next-root/                         the tree of --next-root DIR, when given
#   /etc/zos/ca.pem                     --ca PEM, when given: an extra CA to trust for the hub
#                                       (boot with zos.ca=/etc/zos/ca.pem), e.g. a test grid's
#
# VER defaults to the newest *-amd64 under /lib/modules that is not a cloud kernel (Debian's
# linux-image-amd64: every NIC driver), else the newest *-cloud-amd64 (linux-image-cloud-amd64,
# virtio and cloud NICs only, for small virtual images). --nic-ids FILE writes the NICs the image
# has a driver for (PCI and USB vendor:device from modules.alias; see docs/media.md).
# --budget MIB fails the build when the compressed archive is larger (default 24; 0: no limit).
# --zstd-level N: 19 by default, for the archive and the modules (12 builds much faster for a few
# % more bytes; the tests use it). --compress none leaves the archive itself uncompressed (its
# modules and firmware are compressed one by one; docs/media.md "Full kernel or cloud kernel"). Same inputs give the same bytes: names sorted, uid/gid 0, every
# mtime = SOURCE_DATE_EPOCH (default: the last git commit's time), inode numbers renumbered,
# `gzip -n` / single-threaded zstd. --check-reproducible builds twice from scratch and fails
# unless both archives have the same sha256. Prints the archive's size.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
self="$repo/scripts/build-initramfs.sh"

die() { printf 'build-initramfs.sh: %s\n' "$*" >&2; exit 1; }
note() { printf '  %s\n' "$*" >&2; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$self"; }

out='' kver='' bin='' next_root='' ca='' compress=zstd check=0 nic_ids='' budget=24 level=19
modfmt=zst fwfmt=xz
without=()
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
    --without) without+=("${2:?--without needs a MODULE}"); shift 2 ;;
    --without=*) without+=("${1#*=}"); shift ;;
    --nic-ids) nic_ids=${2:?--nic-ids needs a FILE}; shift 2 ;;
    --nic-ids=*) nic_ids=${1#*=}; shift ;;
    --budget) budget=${2:?--budget needs MIB}; shift 2 ;;
    --budget=*) budget=${1#*=}; shift ;;
    --zstd-level) level=${2:?--zstd-level needs N}; shift 2 ;;
    --modules) modfmt=${2:?--modules needs zst or ko}; shift 2 ;;
    --firmware) fwfmt=${2:?--firmware needs xz or plain}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[ -n "$out" ] || { usage >&2; die "--out FILE is required"; }
case "$compress" in gzip | zstd | none) ;; *) die "--compress must be gzip, zstd or none, not $compress" ;; esac
case "$modfmt" in zst | ko) ;; *) die "--modules must be zst or ko, not $modfmt" ;; esac
case "$fwfmt" in xz | plain) ;; *) die "--firmware must be xz or plain, not $fwfmt" ;; esac
tools=(cpio find sort awk sha256sum xargs)
[ "$compress" = none ] || tools+=("$compress")
[ "$modfmt" = ko ] || tools+=(zstd)
[ "$fwfmt" = plain ] || tools+=(xz)
for tool in "${tools[@]}"; do
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

case "$budget" in '' | *[!0-9]*) die "--budget must be a number of MiB" ;; esac
case "$level" in '' | *[!0-9]*) die "--zstd-level must be a number (1-19)" ;; esac
if [ -z "$kver" ]; then
  kver=$(find /lib/modules -mindepth 1 -maxdepth 1 -name '*-amd64' ! -name '*-cloud-amd64' \
    -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)
  [ -n "$kver" ] || kver=$(find /lib/modules -mindepth 1 -maxdepth 1 -name '*-cloud-amd64' \
    -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)
  [ -n "$kver" ] || die "no /lib/modules/*-amd64 (apt-get install linux-image-amd64, or pass --kernel-version)"
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
  args=(--kernel-version "$kver" --bin "$bin" --compress "$compress" --budget "$budget" --zstd-level "$level"
    --modules "$modfmt" --firmware "$fwfmt")
  for m in "${without[@]}"; do args+=(--without "$m"); done
  [ -z "$nic_ids" ] || args+=(--nic-ids "$tmpd/nic-ids")
  [ -z "$next_root" ] || args+=(--next-root "$next_root")
  [ -z "$ca" ] || args+=(--ca "$ca")
  bash "$self" "${args[@]}" --out "$tmpd/a" >/dev/null 2>"$tmpd/a.log" || { cat "$tmpd/a.log" >&2; die "first build failed"; }
  bash "$self" "${args[@]}" --out "$tmpd/b" >/dev/null 2>"$tmpd/b.log" || { cat "$tmpd/b.log" >&2; die "second build failed"; }
  a=$(sha "$tmpd/a") b=$(sha "$tmpd/b")
  if [ "$a" != "$b" ]; then
    echo "build-initramfs.sh: NOT reproducible: $a vs $b; differences in the file lists:" >&2
    for x in a b; do
      case "$compress" in none) cat "$tmpd/$x" ;; *) "$compress" -dc <"$tmpd/$x" ;; esac |
        cpio -itv --quiet >"$tmpd/$x.lst" 2>/dev/null || true
    done
    diff "$tmpd/a.lst" "$tmpd/b.lst" >&2 || true
    exit 1
  fi
  echo "reproducible: two builds from scratch are identical, sha256 $a"
  mkdir -p "$(dirname "$out")"
  cp "$tmpd/a" "$out.tmp.$$" && mv -f "$out.tmp.$$" "$out"
  [ -z "$nic_ids" ] || cp "$tmpd/nic-ids" "$nic_ids"
  cat "$tmpd/a.log" >&2
  size=$(stat -c %s "$out")
  awk -v f="$out" -v s="$size" -v c="$compress" 'BEGIN { printf "%s: %d bytes (%.2f MiB, %s)\n", f, s, s / 1048576, c }'
  exit 0
fi

stage=$(mktemp -d "${TMPDIR:-/tmp}/zos-initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT
umask 022
root="$stage/root"
mkdir -p "$root"/{dev,proc,sys,run,tmp,etc/ssl/certs,newroot,lib/modules/"$kver",lib/firmware}
chmod 1777 "$root/tmp"
cp "$bin" "$root/init"
chmod 0755 "$root/init"
cp "$certs" "$root/etc/ssl/certs/ca-certificates.crt"
chmod 0644 "$root/etc/ssl/certs/ca-certificates.crt"

# --- modules: the closure of modules.list over modules.dep -----------------------------------
# modules.dep lines are "kernel/path/name.ko: dep.ko dep.ko"; a module's name is its file name
# without .ko[.xz|.zst|.gz], with '-' read as '_'.
printf '%s\n' "${without[@]}" >"$stage/without"
awk -v listfile="$modlist" -v builtin="$moddir/modules.builtin" -v sel="$stage/modules.sel" \
  -v notes="$stage/modules.notes" -v withoutfile="$stage/without" '
  function modname(path,   n) {
    n = path; sub(/.*\//, "", n); sub(/\.ko(\.(xz|zst|gz))?$/, "", n); gsub(/-/, "_", n); return n
  }
  BEGIN {
    while ((getline line < builtin) > 0) isbuiltin[modname(line)] = 1
    n = 0
    while ((getline line < listfile) > 0) {
      sub(/#.*/, "", line); gsub(/[ \t\r]/, "", line)
      if (line == "") continue
      if (line ~ /\/$/) { dirs[++nd] = line; continue }
      opt = sub(/\?$/, "", line)
      want[++n] = line; optional[n] = opt
    }
    while ((getline line < withoutfile) > 0) if (line != "") { gsub(/-/, "_", line); without[line] = 1 }
  }
  {
    p = $1; sub(/:$/, "", p)
    path[modname(p)] = p
    order[++np] = p
    deps[p] = ""
    for (i = 2; i <= NF; i++) deps[p] = deps[p] " " $i
  }
  END {
    bad = 0
    for (i = 1; i <= nd; i++) {
      k = 0
      for (j = 1; j <= np; j++)
        if (index(order[j], dirs[i]) == 1 && !(modname(order[j]) in without)) { queue[++q] = order[j]; k++ }
      print dirs[i] ": " k " modules" > notes
    }
    for (m in without) if (!(m in path)) { print "--without " m ": no such module in modules.dep" > "/dev/stderr"; bad = 1 }
    for (i = 1; i <= n; i++) {
      m = want[i]; gsub(/-/, "_", m)
      if (m in without) { print "left out (--without): " want[i] > notes; continue }
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
        if (modname(d[j]) in without) { print "--without " modname(d[j]) ": " p " needs it" > "/dev/stderr"; exit 1 }
        queue[++q] = d[j]
      }
    }
  }' "$moddir/modules.dep" || die "resolving initramfs/modules.list against $moddir/modules.dep failed"
[ -s "$stage/modules.sel" ] || die "no module selected"

kdir="$root/lib/modules/$kver"
# Compressing the files one by one, in parallel, gives the same bytes as in sequence.
jobs=$(nproc 2>/dev/null || echo 1)
while IFS= read -r rel; do
  mkdir -p "$kdir/$(dirname "$rel")"
  cp "$moddir/$rel" "$kdir/$rel"
  chmod 0644 "$kdir/$rel"
done <"$stage/modules.sel"
# --modules zst: NAME.ko → NAME.ko.zst (a module the kernel package ships compressed already
# stays as it is), and the paths in modules.dep and modules.order follow.
suffix=''
if [ "$modfmt" = zst ]; then
  suffix=.zst
  grep '\.ko$' "$stage/modules.sel" | sed "s|^|$kdir/|" | tr '\n' '\0' |
    xargs -0 -r -n 8 -P "$jobs" zstd -q "-$level" -T1 --no-progress --rm ||
    die "zstd of the modules failed"
fi
# The kernel's own index files, filtered to the selected modules (same lines, same order).
awk -v sel="$stage/modules.sel" -v sfx="$suffix" '
  function z(p) { return p ~ /\.ko$/ ? p sfx : p }
  BEGIN { while ((getline l < sel) > 0) keep[l] = 1 }
  { p = $1; sub(/:$/, "", p); if (!(p in keep)) next
    line = z(p) ":"; for (i = 2; i <= NF; i++) line = line " " z($i); print line }' \
  "$moddir/modules.dep" >"$kdir/modules.dep"
awk -v sel="$stage/modules.sel" -v sfx="$suffix" 'BEGIN { while ((getline l < sel) > 0) keep[l] = 1 }
  $0 in keep { print ($0 ~ /\.ko$/ ? $0 sfx : $0) }' "$moddir/modules.order" >"$kdir/modules.order" 2>/dev/null ||
  : >"$kdir/modules.order"
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

# --- firmware: what the selected modules name, from this machine's /lib/firmware -------------
# The kernel loads it by itself from /lib/firmware (no udev, no user helper). The map names,
# for every file a module asks for, the installed Debian package that has it (dpkg's file
# lists of firmware-* packages), so that zos-netboot can say which package a missing file is in.
while IFS= read -r rel; do
  timeout 30 modinfo -F firmware "$moddir/$rel" 2>/dev/null || die "modinfo $moddir/$rel failed"
done <"$stage/modules.sel" | LC_ALL=C sort -u >"$stage/firmware.named"
for l in /var/lib/dpkg/info/firmware-*.list; do
  [ -f "$l" ] || continue
  pkg=$(basename "$l" .list)
  pkg=${pkg%%:*}
  awk -v pkg="$pkg" 'sub(/^\/(usr\/)?lib\/firmware\//, "") { print $0 " " pkg }' "$l"
done | LC_ALL=C sort -u -k1,1 >"$stage/firmware.packages"
fw_in=0 fw_missing=0
mkdir -p "$root/etc/zos"
: >"$root/etc/zos/firmware.map"
while IFS= read -r f; do
  [ -n "$f" ] || continue
  pkg=$(awk -v f="$f" '$1 == f { print $2; exit }' "$stage/firmware.packages")
  printf '%s %s\n' "$f" "${pkg:--}" >>"$root/etc/zos/firmware.map"
  src=''
  # Debian's 6.1 kernels decompress .xz firmware themselves (FW_LOADER_COMPRESS_XZ), not .zst.
  for c in "/lib/firmware/$f" "/lib/firmware/$f.xz"; do
    if [ -e "$c" ]; then src=$c; break; fi
  done
  if [ -n "$src" ]; then
    mkdir -p "$root/lib/firmware/$(dirname "$f")"
    cp -L "$src" "$root/lib/firmware/${src#/lib/firmware/}"
    [ "$src" = "/lib/firmware/$f.xz" ] || printf '%s\0' "$root/lib/firmware/$f" >>"$stage/firmware.plain"
    fw_in=$((fw_in + 1))
  else
    fw_missing=$((fw_missing + 1))
    printf '%s (%s)\n' "$f" "${pkg:-in no installed Debian package}" >>"$stage/firmware.absent"
  fi
done <"$stage/firmware.named"
# --firmware xz: FILE → FILE.xz, which the kernel decompresses itself on request
# (CONFIG_FW_LOADER_COMPRESS_XZ; its decoder checks CRC32 only, hence --check=crc32, and an
# 8 MiB dictionary bounds what it allocates for the largest files).
if [ "$fwfmt" = xz ] && [ -s "$stage/firmware.plain" ]; then
  xargs -0 -r -n 8 -P "$jobs" xz -q -T1 --check=crc32 --lzma2=preset=9e,dict=8MiB <"$stage/firmware.plain" ||
    die "xz of the firmware failed"
fi

# --- the NIC ids this image has a driver for -------------------------------------------------
# From the filtered modules.alias: PCI `pci:v0000VVVVd0000DDDD…` and USB `usb:vVVVVpPPPP…`
# with concrete ids; class-based matches (CDC Ethernet, RNDIS, any vendor's device of a class)
# are listed as patterns.
if [ -n "$nic_ids" ]; then
  # Not NICs: the USB host controllers' own aliases.
  awk '/^kernel\/drivers\/usb\// { n = $0; sub(/.*\//, "", n); sub(/\.ko.*/, "", n); gsub(/-/, "_", n); print n }' \
    "$stage/modules.sel" >"$stage/not-nics"
  {
    echo "# NICs with a driver in this initramfs (kernel $kver): bus vendor:device module"
    echo "# Check a machine: lspci -nn (PCI) / lsusb (USB) ids against this list; README.md."
    awk -v skip="$stage/not-nics" 'BEGIN { while ((getline l < skip) > 0) no[l] = 1 } $3 in no { next }
         /^alias pci:v0000[0-9A-F][0-9A-F][0-9A-F][0-9A-F]d0000[0-9A-F][0-9A-F][0-9A-F][0-9A-F]/ {
           printf "pci %s:%s %s\n", tolower(substr($2, 10, 4)), tolower(substr($2, 19, 4)), $3 }
         /^alias usb:v[0-9A-F][0-9A-F][0-9A-F][0-9A-F]p[0-9A-F][0-9A-F][0-9A-F][0-9A-F]/ {
           printf "usb %s:%s %s\n", tolower(substr($2, 6, 4)), tolower(substr($2, 11, 4)), $3 }' \
      "$kdir/modules.alias" | LC_ALL=C sort -u
    echo "# matched by pattern (a vendor's whole range, or a device class):"
    awk -v skip="$stage/not-nics" 'BEGIN { while ((getline l < skip) > 0) no[l] = 1 } $3 in no { next }
         /^alias (pci|usb):/ &&
         !/^alias pci:v0000[0-9A-F][0-9A-F][0-9A-F][0-9A-F]d0000[0-9A-F][0-9A-F][0-9A-F][0-9A-F]/ &&
         !/^alias usb:v[0-9A-F][0-9A-F][0-9A-F][0-9A-F]p[0-9A-F][0-9A-F][0-9A-F][0-9A-F]/ {
           print "pattern " $2 " " $3 }' "$kdir/modules.alias" | LC_ALL=C sort -u
  } >"$stage/nic-ids"
fi

if [ -n "$ca" ]; then
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
  zstd) zstd -q "-$level" -T1 --no-progress -c "$stage/archive.cpio" >"$stage/archive.img" ;;
  none) cp "$stage/archive.cpio" "$stage/archive.img" ;;
esac
size=$(stat -c %s "$stage/archive.img")
if [ "$budget" -gt 0 ] && [ "$size" -gt $((budget * 1048576)) ]; then
  die "the archive is $size bytes, over the budget of $budget MiB (--budget; docs/media.md)"
fi
mkdir -p "$(dirname "$out")"
cp "$stage/archive.img" "$out.tmp.$$"
mv -f "$out.tmp.$$" "$out"
[ -z "$nic_ids" ] || { mkdir -p "$(dirname "$nic_ids")"; cp "$stage/nic-ids" "$nic_ids"; }

# --- report ----------------------------------------------------------------------------------
bytes() { du -sb "$1" | awk '{ print $1 }'; }
nmods=$(grep -c . "$stage/modules.sel")
{
  echo "build-initramfs.sh: kernel $kver, SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH"
  note "/init          $(stat -c %s "$root/init") bytes  ($bin)"
  note "modules        $(bytes "$kdir") bytes, $nmods files: $(names | sort | tr '\n' ' ')"
  [ ! -s "$stage/modules.notes" ] || while IFS= read -r l; do note "  $l"; done <"$stage/modules.notes"
  note "firmware       $(bytes "$root/lib/firmware") bytes, $fw_in of $(grep -c . "$stage/firmware.named" || true) files the modules name; not on this machine: $fw_missing"
  [ ! -s "$stage/firmware.absent" ] || while IFS= read -r l; do note "  absent: $l"; done <"$stage/firmware.absent"
  note "certificates   $(stat -c %s "$root/etc/ssl/certs/ca-certificates.crt") bytes"
  [ -z "$ca" ] || note "/etc/zos/ca.pem $(stat -c %s "$root/etc/zos/ca.pem") bytes  ($ca)"
  [ -z "$next_root" ] || note "next-root      $(bytes "$root/next-root") bytes  ($next_root)"
  note "cpio           $(stat -c %s "$stage/archive.cpio") bytes uncompressed"
} >&2
awk -v f="$out" -v s="$size" -v c="$compress" -v b="$budget" 'BEGIN {
  printf "%s: %d bytes (%.2f MiB, %s; budget %s MiB)\n", f, s, s / 1048576, c, b }'
