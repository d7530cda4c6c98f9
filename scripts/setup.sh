#!/usr/bin/env bash
# Installs what building zos-netboot and its namespace lab need on a fresh Debian machine (as
# root): the DHCP servers/clients the lab and the benchmark use, nftables, musl-tools and the
# x86_64 musl Rust target. Idempotent and quiet: it prints only when it installs something, and
# fails loudly (with apt's/rustup's output) when that fails.
set -euo pipefail

packages=(
  dnsmasq-base radvd busybox-static isc-dhcp-client dhcpcd-base
  iproute2 nftables musl-tools jq procps
  # boot image and QEMU end-to-end tests (scripts/build-initramfs.sh, qemu/run.sh,
  # tests/qemu_e2e.rs; xz: the initramfs's firmware files); the cloud kernel is only booted in QEMU, never on this machine
  qemu-system-x86 linux-image-cloud-amd64 cpio zstd xz-utils ca-certificates
  # the test grid (tests/grid/grid.py: HTTPS, ed25519) and the benchmarks' packet timing
  python3 python3-cryptography openssl curl tcpdump ndisc6 file
  # boot media (scripts/build-media.sh, tests/media_e2e.rs): systemd's EFI stub for the UKI,
  # GRUB for usb.img (BIOS and UEFI), isolinux + xorriso for zos.iso, mtools/sfdisk for the
  # FAT images and the partition table, objcopy, OVMF (UEFI in QEMU)
  systemd-boot-efi grub-pc-bin grub-efi-amd64-bin isolinux syslinux-common xorriso mtools
  fdisk binutils ovmf
  # flists: a real Redis answers GET as 0-db does (tests/flist.rs, tests/flist_chain_lab.rs,
  # tests/flist_qemu_e2e.rs); tar for the v1 .flist; python3-snappy for the blocks
  # tests/grid/flistgen.py makes
  redis-server tar python3-snappy
  # real machines (issue 15): the full Debian kernel (every Ethernet driver) is the media's
  # default, the NIC firmware from the non-free-firmware component (enabled below), and the
  # signed Secure Boot chain: shim (Microsoft-signed) → GRUB (Debian-signed) → the signed
  # kernel; sbsigntool to sign the bare UKI with a farmer's own keys (docs/media.md)
  linux-image-amd64 shim-signed grub-efi-amd64-signed sbsigntool
  firmware-misc-nonfree firmware-realtek firmware-bnx2 firmware-bnx2x firmware-netxen
  firmware-qlogic firmware-myricom firmware-netronome firmware-cavium firmware-linux-free
)
target=x86_64-unknown-linux-musl

die() { printf 'setup.sh: %s\n' "$*" >&2; exit 1; }

# The NIC firmware packages live in Debian's non-free-firmware component (bookworm and later).
# Add it to every Debian source that lacks it: deb822 (/etc/apt/sources.list.d/*.sources, the
# default since bookworm) and the classic one-line format (/etc/apt/sources.list, *.list). Only
# entries of deb.debian.org / security.debian.org style archives that list `main` are changed.
enable_non_free_firmware() {
  local changed=0 f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    if awk '/^Components:/ && / main( |$)/ && !/non-free-firmware/ { found = 1 } END { exit !found }' "$f"; then
      [ "$(id -u)" -eq 0 ] || die "$f lacks the non-free-firmware component; run as root"
      sed -i -E '/^Components:/ { / main( |$)/ { /non-free-firmware/! s/$/ non-free-firmware/ } }' "$f"
      echo "setup.sh: added non-free-firmware to $f"
      changed=1
    fi
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    if grep -Eq '^[[:space:]]*deb(-src)?[[:space:]].*debian.*[[:space:]]main([[:space:]]|$)' "$f" &&
      grep -E '^[[:space:]]*deb(-src)?[[:space:]].*debian.*[[:space:]]main([[:space:]]|$)' "$f" | grep -vq non-free-firmware; then
      [ "$(id -u)" -eq 0 ] || die "$f lacks the non-free-firmware component; run as root"
      sed -i -E '/^[[:space:]]*deb(-src)?[[:space:]].*debian.*[[:space:]]main([[:space:]]|$)/ { /non-free-firmware/! s/[[:space:]]*$/ non-free-firmware/ }' "$f"
      echo "setup.sh: added non-free-firmware to $f"
      changed=1
    fi
  done
  [ "$changed" = 0 ] || echo "setup.sh: apt-get update follows"
}
enable_non_free_firmware

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || die "missing packages (${missing[*]}); run as root: apt-get install ${missing[*]}"
  command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get"
  echo "setup.sh: installing ${missing[*]}"
  log=$(mktemp)
  trap 'rm -f "$log"' EXIT
  export DEBIAN_FRONTEND=noninteractive
  if ! {
    apt-get -o DPkg::Lock::Timeout=300 update -q &&
      apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${missing[@]}"
  } >"$log" 2>&1; then
    cat "$log" >&2
    die "apt-get failed installing ${missing[*]}"
  fi
fi

if command -v rustup >/dev/null; then
  if ! rustup target list --installed 2>/dev/null | grep -x -- "$target" >/dev/null; then
    echo "setup.sh: adding Rust target $target"
    out=$(rustup target add "$target" 2>&1) || { printf '%s\n' "$out" >&2; die "rustup target add $target failed"; }
  fi
else
  sysroot=$(rustc --print sysroot 2>/dev/null || true)
  if [ -z "$sysroot" ] || [ ! -d "$sysroot/lib/rustlib/$target" ]; then
    die "no rustup to add the $target target, and rustc does not have it"
  fi
fi
