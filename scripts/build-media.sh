#!/usr/bin/env bash
# Builds the boot media a farmer starts a ZOS node from, out of one kernel and our initramfs.
#
#   scripts/build-media.sh --out DIR [--cmdline "farmer_id=N runmode=prod version=v3 …"]
#                          [--kernel PATH [--kernel-version VER]] [--initrd FILE]
#                          [--bin PATH] [--next-root DIR] [--ca PEM] [--no-check]
#
#   --out DIR          where the media go (created; files of an earlier build are replaced)
#   --cmdline ARGS     the farm's kernel command line (farmer id, runmode, version, zos.* keys);
#                      console=tty0 console=ttyS0,115200 is put in front unless ARGS name a
#                      console= themselves (the last console= is where zos-netboot writes)
#   --without MODULE   passed to build-initramfs.sh (repeatable): an image without that driver
#   --zstd-level N     passed to build-initramfs.sh (default 19; 12 is ten times faster)
#   --kernel PATH      default: the newest /boot/vmlinuz-*-amd64 that is not a cloud kernel
#                      (Debian's signed linux-image-amd64: every NIC driver, Secure Boot);
#                      /boot/vmlinuz-*-cloud-amd64 makes small images for virtual machines
#   --kernel-version   the modules' version for the initramfs (default: from vmlinuz-VER)
#   --initrd FILE      use this initramfs instead of building one with
#                      scripts/build-initramfs.sh (--bin, --next-root, --ca are passed to it)
#   --no-check         build once (default: build everything twice from scratch and fail
#                      unless both builds are byte-identical)
#
# DIR receives:
#   vmlinuz, initrd.img   the kernel and the initramfs
#   boot.ipxe             #!ipxe script: loads vmlinuz and initrd.img by URLs relative to itself
#                         (works over TFTP and HTTP alike) with the command line
#   zos-netboot.efi       unified kernel image: systemd's EFI stub + kernel + initrd + command
#                         line (objcopy onto linuxx64.efi.stub)
#   usb.img               MBR disk image, one FAT EFI system partition; boots under BIOS (GRUB
#                         from grub-pc-bin) and UEFI with or without Secure Boot (Debian's
#                         signed chain: shim-signed's shimx64 as \EFI\BOOT\BOOTX64.EFI →
#                         grub-efi-amd64-signed's grubx64 → the signed kernel), both reading the
#                         command line from the first line of /boot/grub/grub.cfg and booting
#                         /zos/vmlinuz + /zos/initrd.img
#   zos.iso               El Torito: BIOS (isolinux) and UEFI (a FAT image with the same signed
#                         shim + GRUB, which read the ISO's /boot/grub/grub.cfg); also bootable
#                         when dd'd (isohybrid)
#   efi-fat.img           a FAT image holding only \EFI\BOOT\BOOTX64.EFI = the UKI (unsigned:
#                         machines without Secure Boot, or sign it: docs/media.md)
#   nic-ids.txt           the NICs the initramfs has a driver for (PCI/USB vendor:device)
#   SHA256SUMS, SIZES     checksums; one line per artifact with its size
#
# Same inputs → same bytes: SOURCE_DATE_EPOCH (default: the last commit's time) for every
# timestamp, fixed FAT serials and MBR disk id, sorted cpio (build-initramfs.sh). Without
# --no-check the whole build runs twice and the two SHA256SUMS must match.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
self="$repo/scripts/build-media.sh"

die() { printf 'build-media.sh: %s\n' "$*" >&2; exit 1; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$self"; }

out='' cmdline='' kernel='' kver='' initrd='' bin='' next_root='' ca='' check=1
without=() level=19
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=${2:?--out needs a DIR}; shift 2 ;;
    --cmdline) cmdline=${2?--cmdline needs ARGS}; shift 2 ;;
    --kernel) kernel=${2:?--kernel needs a PATH}; shift 2 ;;
    --kernel-version) kver=${2:?--kernel-version needs VER}; shift 2 ;;
    --initrd) initrd=${2:?--initrd needs a FILE}; shift 2 ;;
    --bin) bin=${2:?--bin needs a PATH}; shift 2 ;;
    --next-root) next_root=${2:?--next-root needs a DIR}; shift 2 ;;
    --ca) ca=${2:?--ca needs a PEM}; shift 2 ;;
    --no-check) check=0; shift ;;
    --without) without+=("${2:?--without needs a MODULE}"); shift 2 ;;
    --zstd-level) level=${2:?--zstd-level needs N}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[ -n "$out" ] || { usage >&2; die "--out DIR is required"; }
case "$cmdline" in *'"'* | *"'"* | *'\'* | *'$'* | *'`'* | *';'* | *$'\n'*)
  die "--cmdline must not contain quotes, backslashes, \$, \` , ; or newlines" ;;
esac

stub=/usr/lib/systemd/boot/efi/linuxx64.efi.stub
grub_pc=/usr/lib/grub/i386-pc
grub_efi=/usr/lib/grub/x86_64-efi
isolinux=/usr/lib/ISOLINUX/isolinux.bin
isohdpfx=/usr/lib/ISOLINUX/isohdpfx.bin
ldlinux=/usr/lib/syslinux/modules/bios/ldlinux.c32
shim=/usr/lib/shim/shimx64.efi.signed
mokmanager=/usr/lib/shim/mmx64.efi.signed
grub_signed=/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed
for tool in objcopy grub-mkimage mformat mcopy mmd sfdisk xorriso sha256sum timeout; do
  command -v "$tool" >/dev/null || die "$tool is missing (bash scripts/setup.sh installs it)"
done
for f in "$stub" "$grub_pc/boot.img" "$grub_efi/linux.mod" "$isolinux" "$isohdpfx" "$ldlinux" \
  "$shim" "$mokmanager" "$grub_signed"; do
  [ -f "$f" ] || die "$f is missing (bash scripts/setup.sh: systemd-boot-efi, grub-pc-bin, grub-efi-amd64-bin, isolinux, syslinux-common, shim-signed, grub-efi-amd64-signed)"
done

# Everything that decides the bytes is resolved once, so both builds of the check see it.
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git -C "$repo" log -1 --format=%ct 2>/dev/null || true)
  [ -n "$SOURCE_DATE_EPOCH" ] || SOURCE_DATE_EPOCH=0
fi
case "$SOURCE_DATE_EPOCH" in '' | *[!0-9]*) die "SOURCE_DATE_EPOCH must be a number" ;; esac
export SOURCE_DATE_EPOCH

if [ -z "$kernel" ]; then
  kernel=$(find /boot -maxdepth 1 -name 'vmlinuz-*-amd64' ! -name '*-cloud-amd64' 2>/dev/null | sort -V | tail -n 1)
  [ -n "$kernel" ] || die "no /boot/vmlinuz-*-amd64 (apt-get install linux-image-amd64) and no --kernel"
fi
[ -r "$kernel" ] || die "kernel $kernel is not readable"
kernel=$(realpath "$kernel")
if [ -z "$kver" ] && [ -z "$initrd" ]; then
  kver=$(basename "$kernel")
  kver=${kver#vmlinuz-}
  [ -f "/lib/modules/$kver/modules.dep" ] || die "no /lib/modules/$kver for $kernel: pass --kernel-version VER (or --initrd FILE)"
fi

case "$cmdline" in *console=*) full_cmdline=$cmdline ;; *) full_cmdline="console=tty0 console=ttyS0,115200${cmdline:+ $cmdline}" ;; esac
# What the consoles say while the media load: the farm settings in the command line.
farm=$(printf '%s\n' $cmdline | grep -E '^(farmer_id|runmode|version)=' | tr '\n' ' ' | sed 's/ $//' || true)
[ -n "$farm" ] || farm="no farmer_id/runmode/version on the command line"

stage=$(mktemp -d "${TMPDIR:-/tmp}/zos-media.XXXXXX")
trap 'rm -rf "$stage"' EXIT

# --- the initramfs, once (build-initramfs.sh checks its own reproducibility) ---------------------
if [ -z "$initrd" ]; then
  args=(--out "$stage/initrd.img" --kernel-version "$kver" --nic-ids "$stage/nic-ids.txt" --zstd-level "$level")
  for m in "${without[@]}"; do args+=(--without "$m"); done
  [ -z "$bin" ] || args+=(--bin "$bin")
  [ -z "$next_root" ] || args+=(--next-root "$next_root")
  [ -z "$ca" ] || args+=(--ca "$ca")
  timeout 1800 bash "$repo/scripts/build-initramfs.sh" "${args[@]}" >&2 || die "build-initramfs.sh failed"
  initrd="$stage/initrd.img"
fi
[ -s "$initrd" ] || die "initrd $initrd is empty or missing"
initrd=$(realpath "$initrd")
if [ ! -s "$stage/nic-ids.txt" ]; then
  # A given --initrd: its list from its own modules.alias.
  { zstd -dc "$initrd" 2>/dev/null || gzip -dc "$initrd" 2>/dev/null || true; } |
    cpio -i --quiet --to-stdout '*/modules.alias' 2>/dev/null |
    awk 'BEGIN { print "# NICs with a driver in this initramfs: bus vendor:device module" }
      /^alias pci:v0000[0-9A-F][0-9A-F][0-9A-F][0-9A-F]d0000[0-9A-F][0-9A-F][0-9A-F][0-9A-F]/ {
        printf "pci %s:%s %s\n", tolower(substr($2, 10, 4)), tolower(substr($2, 19, 4)), $3 }
      /^alias usb:v[0-9A-F][0-9A-F][0-9A-F][0-9A-F]p[0-9A-F][0-9A-F][0-9A-F][0-9A-F]/ {
        printf "usb %s:%s %s\n", tolower(substr($2, 6, 4)), tolower(substr($2, 11, 4)), $3 }' |
    LC_ALL=C sort -u >"$stage/nic-ids.txt"
fi

# All FAT images: fixed volume serial, label and geometry; files keep their SOURCE_DATE_EPOCH
# mtime (mcopy -m), and mtools stamps new directories with SOURCE_DATE_EPOCH too.
export MTOOLS_SKIP_CHECK=1 MTOOLSRC=/dev/null

# fat_image FILE SIZE_KIB SERIAL LABEL [OFFSET]: an empty FAT file system.
fat_image() {
  local f=$1 kib=$2 serial=$3 label=$4
  rm -f "$f"
  truncate -s "${kib}K" "$f"
  timeout 60 mformat -i "$f" -N "$serial" -v "$label" -h 64 -s 32 -T $((kib * 2)) :: ||
    die "mformat $f failed"
}

# fat_put IMAGE SRC DEST (DEST a ::/path; parent directories are made).
fat_put() {
  local img=$1 src=$2 dest=$3 d=''
  local dir=${dest#::}
  dir=$(dirname "$dir")
  local IFS=/
  for part in $dir; do
    [ -n "$part" ] || continue
    d="$d/$part"
    timeout 60 mmd -D s -i "$img" "::$d" 2>/dev/null || true
  done
  unset IFS
  timeout 120 mcopy -m -o -i "$img" "$src" "$dest" || die "mcopy $src → $img$dest failed"
}

# le32 N: N as 4 little-endian bytes (printf escapes).
le32() { printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24 & 255)); }

# pe_pin_timestamp FILE: objcopy stamps a PE file's COFF header with the current time (binutils
# 2.40 ignores SOURCE_DATE_EPOCH there): write SOURCE_DATE_EPOCH instead, and zero the optional
# header's checksum that covered it (UEFI does not check it; 0 means "none").
pe_pin_timestamp() {
  local f=$1 pe
  pe=$(od -An -t u4 -j 60 -N 4 "$f" | tr -d ' ')
  [ "$(od -An -c -j "$pe" -N 2 "$f" | tr -d ' ')" = PE ] || die "$f: no PE header at $pe"
  printf "$(le32 "$SOURCE_DATE_EPOCH")" | dd of="$f" bs=1 seek=$((pe + 8)) conv=notrunc status=none
  printf "$(le32 0)" | dd of="$f" bs=1 seek=$((pe + 24 + 64)) conv=notrunc status=none
}

mib_of() { echo $((($(stat -c %s "$1") + 1048575) / 1048576)); }

# signed_chain FAT: shim as the removable-media boot path, GRUB and MokManager beside it, and the
# signed GRUB's \EFI\debian\grub.cfg.
signed_chain() {
  fat_put "$1" "$w/fat/shimx64.efi" ::/EFI/BOOT/BOOTX64.EFI
  fat_put "$1" "$w/fat/grubx64.efi" ::/EFI/BOOT/grubx64.efi
  fat_put "$1" "$w/fat/mmx64.efi" ::/EFI/BOOT/mmx64.efi
  fat_put "$1" "$w/fat/debian-grub.cfg" ::/EFI/debian/grub.cfg
}

# build DIR: every artifact into DIR.
build() {
  local d=$1
  mkdir -p "$d"
  local w="$d/.work"
  rm -rf "$w"
  mkdir -p "$w"
  cp "$kernel" "$d/vmlinuz"
  cp "$initrd" "$d/initrd.img"
  cp "$stage/nic-ids.txt" "$d/nic-ids.txt"
  chmod 0644 "$d/vmlinuz" "$d/initrd.img" "$d/nic-ids.txt"

  # --- boot.ipxe ------------------------------------------------------------------------------
  # Relative URLs: iPXE resolves them against the script's own URL (tftp:// or http://).
  # BOOTIF= is the PXE convention for "booted from the network through this NIC";
  # initrd=initrd.img is needed when iPXE is itself an EFI program.
  cat >"$d/boot.ipxe" <<EOF
#!ipxe
# ZOS network boot (zos-netboot), made by scripts/build-media.sh.
echo zos-netboot: network boot of ZOS: $farm
echo zos-netboot: iPXE has \${net0/ip} (MAC \${net0/mac})
echo zos-netboot: loading vmlinuz and initrd.img from next to this script
:retry
kernel vmlinuz initrd=initrd.img $full_cmdline BOOTIF=01-\${net0/mac:hexhyp} || goto failed
initrd initrd.img || goto failed
echo zos-netboot: booting the kernel
boot || goto failed
:failed
echo zos-netboot: loading failed; retrying in 5 seconds
sleep 5 || prompt --timeout 5000 waiting ||
goto retry
EOF

  # --- the unified kernel image ---------------------------------------------------------------
  # systemd-stub's sections, at VMAs above the stub's own image (environment-notes.md).
  printf 'ID=zos\nNAME="ZOS (zos-netboot)"\nPRETTY_NAME="ZOS network boot"\n' >"$w/osrel"
  printf '%s' "$full_cmdline" >"$w/cmdline"
  timeout 120 objcopy \
    --add-section .osrel="$w/osrel" --change-section-vma .osrel=0x20000 \
    --add-section .cmdline="$w/cmdline" --change-section-vma .cmdline=0x30000 \
    --add-section .linux="$d/vmlinuz" --change-section-vma .linux=0x2000000 \
    --add-section .initrd="$d/initrd.img" --change-section-vma .initrd=0x3000000 \
    "$stub" "$d/zos-netboot.efi" || die "objcopy (the UKI) failed"
  pe_pin_timestamp "$d/zos-netboot.efi"
  chmod 0644 "$d/zos-netboot.efi"

  # Inputs for the FAT images, with the build's timestamp (mcopy -m keeps it).
  mkdir -p "$w/fat"
  cp "$d/zos-netboot.efi" "$w/fat/BOOTX64.EFI"
  cp "$d/zos-netboot.efi" "$w/fat/zos-netboot.efi"
  cp "$d/vmlinuz" "$w/fat/vmlinuz"
  cp "$d/initrd.img" "$w/fat/initrd.img"

  # --- efi-fat.img: the bare UKI as \EFI\BOOT\BOOTX64.EFI ---------------------------------------
  local kib=$((($(mib_of "$d/zos-netboot.efi") + 2) * 1024))
  # --- GRUB, both firmwares ---------------------------------------------------------------------
  local mods_common="part_msdos fat normal configfile echo test linux"
  timeout 120 grub-mkimage -O i386-pc -o "$w/core.img" -p '(hd0,msdos1)/boot/grub' \
    biosdisk $mods_common serial terminal || die "grub-mkimage i386-pc failed"
  # UEFI: Debian's signed chain, so that Secure Boot machines boot it too. shim (signed by
  # Microsoft's UEFI CA) starts grubx64.efi from its own directory (signed by Debian, verified
  # by shim), which reads \EFI\debian\grub.cfg (its built-in prefix); that one finds the medium
  # and reads the one /boot/grub/grub.cfg. GRUB's `linux` has shim verify the kernel (Debian's
  # signed vmlinuz); the initrd is not verified. mmx64.efi: MokManager, which shim starts when
  # a farmer enrolls a key.
  cp "$shim" "$w/fat/shimx64.efi"
  cp "$grub_signed" "$w/fat/grubx64.efi"
  cp "$mokmanager" "$w/fat/mmx64.efi"
  cat >"$w/fat/debian-grub.cfg" <<'EOF'
# Debian's signed GRUB reads this file (\EFI\debian\grub.cfg). The command line is in
# /boot/grub/grub.cfg of this medium, not here.
search --no-floppy --file --set=root /zos/zos-netboot.medium
set prefix=($root)/boot/grub
configfile ($root)/boot/grub/grub.cfg
EOF
  [ "$(stat -c %s "$w/core.img")" -lt $((2047 * 512)) ] || die "GRUB core.img does not fit before the partition"
  cat >"$w/fat/grub.cfg" <<EOF
set zos_cmdline="$full_cmdline"
# ^ The kernel command line of this medium (farmer_id, runmode, version, zos.* keys): edit the
#   line above, nothing else. BIOS and UEFI (Secure Boot or not) boot /zos/vmlinuz (Debian's
#   signed kernel) + /zos/initrd.img with it.
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=1
set default=0
echo "zos-netboot: ZOS from local media: \$zos_cmdline"
menuentry "ZOS (zos-netboot)" {
  echo "zos-netboot: \$grub_platform: loading /zos/vmlinuz and /zos/initrd.img"
  linux /zos/vmlinuz \$zos_cmdline
  initrd /zos/initrd.img
}
EOF
  printf 'zos-netboot boot medium: GRUB finds its grub.cfg by this file\n' >"$w/fat/zos-netboot.medium"
  # isolinux (the ISO under BIOS).
  cat >"$w/isolinux.cfg" <<EOF
SERIAL 0 115200
SAY zos-netboot: ZOS from the ISO: $farm
DEFAULT zos
PROMPT 0
TIMEOUT 10
LABEL zos
  LINUX /zos/vmlinuz
  INITRD /zos/initrd.img
  APPEND $full_cmdline
EOF
  find "$w" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  fat_image "$w/efi-fat.img" "$kib" 5A4F5301 ZOSEFI
  fat_put "$w/efi-fat.img" "$w/fat/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
  mv "$w/efi-fat.img" "$d/efi-fat.img"

  # --- usb.img ----------------------------------------------------------------------------------
  local payload=$((($(stat -c %s "$d/vmlinuz") + $(stat -c %s "$d/initrd.img") + \
    $(stat -c %s "$w/fat/grubx64.efi") + $(stat -c %s "$w/fat/shimx64.efi") + \
    $(stat -c %s "$w/fat/mmx64.efi")) / 1048576))
  local part_mib=$((payload + payload / 8 + 8))
  fat_image "$w/esp.img" $((part_mib * 1024)) 5A4F5302 ZOSBOOT
  signed_chain "$w/esp.img"
  fat_put "$w/esp.img" "$w/fat/zos-netboot.medium" ::/zos/zos-netboot.medium
  fat_put "$w/esp.img" "$w/fat/grub.cfg" ::/boot/grub/grub.cfg
  fat_put "$w/esp.img" "$w/fat/vmlinuz" ::/zos/vmlinuz
  fat_put "$w/esp.img" "$w/fat/initrd.img" ::/zos/initrd.img
  local img="$w/usb.img"
  rm -f "$img"
  truncate -s $(((part_mib + 1) * 1048576)) "$img"
  printf 'label: dos\nlabel-id: 0x5a4f5300\nunit: sectors\n\nstart=2048, size=%d, type=ef, bootable\n' \
    $((part_mib * 2048)) | timeout 60 sfdisk --no-reread --no-tell-kernel -q "$img" >/dev/null ||
    die "sfdisk $img failed"
  # GRUB's boot sector: its code only (the first 440 bytes; the partition table stays), then
  # core.img from sector 1 (its first sector's block list points at the sectors that follow).
  dd if="$grub_pc/boot.img" of="$img" bs=440 count=1 conv=notrunc status=none
  dd if="$w/core.img" of="$img" bs=512 seek=1 conv=notrunc status=none
  dd if="$w/esp.img" of="$img" bs=1M seek=1 conv=notrunc status=none
  mv "$img" "$d/usb.img"

  # --- zos.iso ----------------------------------------------------------------------------------
  mkdir -p "$w/iso/zos" "$w/iso/isolinux" "$w/iso/EFI/BOOT"
  cp "$d/vmlinuz" "$d/initrd.img" "$w/iso/zos/"
  cp "$isolinux" "$ldlinux" "$w/isolinux.cfg" "$w/iso/isolinux/"
  cp "$d/zos-netboot.efi" "$w/iso/EFI/BOOT/BOOTX64.EFI"
  mkdir -p "$w/iso/boot/grub"
  cp "$w/fat/grub.cfg" "$w/iso/boot/grub/grub.cfg"
  cp "$w/fat/zos-netboot.medium" "$w/iso/zos/"
  # The El Torito EFI image: only the signed chain; GRUB reads the ISO's /boot/grub/grub.cfg.
  local efikib=$(((($(stat -c %s "$w/fat/grubx64.efi") + $(stat -c %s "$w/fat/shimx64.efi") + \
    $(stat -c %s "$w/fat/mmx64.efi")) / 1048576 + 2) * 1024))
  fat_image "$w/iso/isolinux/efiboot.img" "$efikib" 5A4F5303 ZOSISOEFI
  signed_chain "$w/iso/isolinux/efiboot.img"
  chmod -R u+rwX,go+rX,go-w "$w/iso"
  find "$w/iso" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  rm -f "$d/zos.iso"
  timeout 300 xorriso -no_rc -abort_on FAILURE -report_about WARNING -as mkisofs \
    -o "$d/zos.iso" -V ZOS -J -R -iso-level 3 \
    --modification-date="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d%H%M%S00)" \
    -isohybrid-mbr "$isohdpfx" \
    -b isolinux/isolinux.bin -c isolinux/boot.cat -no-emul-boot -boot-load-size 4 -boot-info-table \
    -eltorito-alt-boot -e isolinux/efiboot.img -no-emul-boot -isohybrid-gpt-basdat \
    "$w/iso" >"$w/xorriso.log" 2>&1 || { cat "$w/xorriso.log" >&2; die "xorriso failed"; }

  rm -rf "$w"
  (cd "$d" && sha256sum vmlinuz initrd.img boot.ipxe zos-netboot.efi usb.img zos.iso efi-fat.img nic-ids.txt >SHA256SUMS)
  (cd "$d" && for f in vmlinuz initrd.img boot.ipxe zos-netboot.efi usb.img zos.iso efi-fat.img; do
    s=$(stat -c %s "$f")
    awk -v f="$f" -v s="$s" 'BEGIN { printf "%-16s %10d bytes  %7.2f MiB\n", f, s, s / 1048576 }'
  done >SIZES)
}

if [ "$check" = 1 ]; then
  build "$stage/a"
  build "$stage/b"
  if ! cmp -s "$stage/a/SHA256SUMS" "$stage/b/SHA256SUMS"; then
    echo "build-media.sh: NOT reproducible: two builds from the same inputs differ:" >&2
    diff "$stage/a/SHA256SUMS" "$stage/b/SHA256SUMS" >&2 || true
    exit 1
  fi
  built="$stage/a"
else
  build "$stage/a"
  built="$stage/a"
fi
mkdir -p "$out"
for f in vmlinuz initrd.img boot.ipxe zos-netboot.efi usb.img zos.iso efi-fat.img nic-ids.txt SHA256SUMS SIZES; do
  mv -f "$built/$f" "$out/$f"
done
echo "build-media.sh: $out (command line: $full_cmdline)"
[ "$check" = 0 ] || echo "reproducible: two builds from scratch are identical"
cat "$out/SIZES"
