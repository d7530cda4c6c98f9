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
  # tests/qemu_e2e.rs); the cloud kernel is only booted in QEMU, never on this machine
  qemu-system-x86 linux-image-cloud-amd64 cpio zstd ca-certificates
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
)
target=x86_64-unknown-linux-musl

die() { printf 'setup.sh: %s\n' "$*" >&2; exit 1; }

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
