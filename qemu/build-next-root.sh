#!/usr/bin/env bash
# Builds the tiny next root the QEMU tests hand off to:
#
#   qemu/build-next-root.sh DIR
#
# DIR gets qemu/next-root/ (its /sbin/init prints NEXT-ROOT: lines and the handed-over state
# file, then powers off), a static /bin/busybox with the applet links init uses, and the empty
# mount points /proc /sys /dev /run /tmp. DIR must not exist, be empty, or be an earlier build
# of this script (then it is replaced). Pass DIR to scripts/build-initramfs.sh --next-root.
set -euo pipefail

die() { printf 'build-next-root.sh: %s\n' "$*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: qemu/build-next-root.sh DIR"
dir=$1
src="$(cd "$(dirname "$0")" && pwd)/next-root"
applets=(sh cat echo ls mount umount grep sleep sync poweroff reboot ip ps dmesg uname)

busybox=${BUSYBOX:-$(command -v busybox || true)}
[ -n "$busybox" ] || die "busybox is missing (apt-get install busybox-static)"
busybox=$(realpath "$busybox")
if command -v file >/dev/null; then
  case "$(file -bL "$busybox")" in
    *"statically linked"* | *"static-pie linked"*) ;;
    *) die "$busybox is not statically linked (apt-get install busybox-static)" ;;
  esac
fi

if [ -e "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
  { [ -x "$dir/bin/busybox" ] && [ -f "$dir/sbin/init" ]; } ||
    die "$dir exists, is not empty and is not a next root built by this script"
  rm -rf "${dir:?}"/* "${dir:?}"/.[!.]* 2>/dev/null || true
fi
mkdir -p "$dir"
umask 022
cp -a "$src/." "$dir/"
mkdir -p "$dir"/{bin,sbin,proc,sys,dev,run,tmp,etc,root}
cp "$busybox" "$dir/bin/busybox"
chmod 0755 "$dir/bin/busybox" "$dir/sbin/init"
for a in "${applets[@]}"; do
  ln -sf busybox "$dir/bin/$a"
done
echo "next root: $dir ($(du -sb "$dir" | awk '{ print $1 }') bytes)"
