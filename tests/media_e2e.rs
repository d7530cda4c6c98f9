//! The boot media of scripts/build-media.sh, each booted for real in QEMU (TCG) on the firmware
//! it is meant for, through to zos-netboot's online summary and the hand-off into the tiny
//! next root (qemu/build-next-root.sh), which prints the state file and powers off:
//!
//! * `media_pxe_tftp`: QEMU's own iPXE option ROM (`-boot n`), the NIC on a tap in a router
//!   namespace where dnsmasq answers DHCP, hands iPXE (DHCP option 175) boot.ipxe and serves
//!   the kernel and initrd by TFTP; `media_pxe_http`: the same with boot.ipxe, vmlinuz and
//!   initrd.img over HTTP (busybox httpd). Both: the node's DHCP address is the one iPXE got
//!   (dnsmasq reserves it for the NIC's MAC) and the console says it was a network boot.
//! * `media_uefi_usb`, `media_uefi_iso`, `media_uefi_efi_fat`: OVMF boots usb.img (after the
//!   test changed the farmer id in the stick's grub.cfg: the edited id must be the one the node
//!   reports) and zos.iso through shim and Debian's signed GRUB, and the bare UKI on a FAT image;
//!   each says Secure Boot was off.
//! * Real machines (issue 15; the media carry Debian's full kernel): `machines_nic_*` boot the
//!   same usb.img (SeaBIOS) with each NIC model QEMU emulates (e1000, e1000e, rtl8139, vmxnet3,
//!   pcnet, ne2k_pci, virtio-net-pci, usb-net behind qemu-xhci): the console names the driver
//!   loaded for the NIC's id and the node is online with a lease; `machines_two_models` has two
//!   models in one VM; `machines_nic_without_driver` boots an image built `--without ne2k_pci`
//!   with an ne2k_pci and an e1000e NIC: the first is named with its id (console and state),
//!   no hang, online through the second; `machines_secure_boot_*`: OVMF with Secure Boot
//!   enforced and Microsoft's keys boots usb.img and zos.iso to online (the console says Secure
//!   Boot on, the kernel that it is enabled) and refuses the unsigned UKI (efi-fat.img).
//! * `media_bios_usb`, `media_bios_iso`: SeaBIOS boots usb.img and zos.iso.
//!
//! Every boot asserts the farm line with the farmer id given to build-media.sh (or the edited
//! one), the boot path line, the online summary, and the state printed by the next root.
//! The media are built once per test process into target/media-e2e/media; the boots run one at
//! a time (TCG is CPU-bound). Needs root (namespaces, taps), qemu-system-x86_64, ovmf, the
//! media tools and the cloud kernel (bash scripts/setup.sh); prints `SKIP <test>: <reason>`
//! otherwise (`ZOS_QEMU_REQUIRED=1`: fail instead). See tests/qemu/mod.rs.
mod qemu;

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use qemu::*;

const FARMER: &str = "4242";
const CMDLINE: &str = "farmer_id=4242 runmode=test version=v3 zos.probe=none zos.fetch=none";
const NEXT_PID1: &str = "NEXT-ROOT: init running as PID 1";
const MAC: &str = "52:54:00:7a:00:01";
/// What dnsmasq reserves for MAC in the PXE tests.
const RESERVED: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 50);
/// Upper bound on one media boot (QEMU is killed then).
const MEDIA_BOOT_SECS: u64 = 150;

/// One QEMU boot at a time in this process: TCG is CPU-bound and the machine has few CPUs.
static ONE_BOOT: Mutex<()> = Mutex::new(());

fn one_boot() -> std::sync::MutexGuard<'static, ()> {
    ONE_BOOT.lock().unwrap_or_else(|p| p.into_inner())
}

/// Root, QEMU, the cloud kernel (qemu::require), the media tools, and OVMF when `uefi`.
fn media_ready(t: &str, uefi: bool, tun: bool, tools: &[&str]) -> bool {
    let mut all = vec![
        "objcopy",
        "grub-mkimage",
        "mformat",
        "mcopy",
        "mtype",
        "sfdisk",
        "xorriso",
    ];
    all.extend_from_slice(tools);
    if !require(t, &Needs { tun, tools: &all }) {
        return false;
    }
    let files = [
        "/usr/lib/systemd/boot/efi/linuxx64.efi.stub",
        "/usr/lib/grub/i386-pc/boot.img",
        "/usr/lib/grub/x86_64-efi/linux.mod",
        "/usr/lib/ISOLINUX/isolinux.bin",
        "/usr/lib/syslinux/modules/bios/ldlinux.c32",
        "/usr/lib/shim/shimx64.efi.signed",
        "/usr/lib/shim/mmx64.efi.signed",
        "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
    ];
    if let Some(f) = files.iter().find(|f| !Path::new(f).is_file()) {
        return skip(
            t,
            &format!("needs {f} (systemd-boot-efi, grub-pc-bin, grub-efi-amd64-bin, isolinux, syslinux-common, shim-signed, grub-efi-amd64-signed: bash scripts/setup.sh)"),
        );
    }
    // The media's default kernel: Debian's full, signed one (every NIC driver).
    let full = fs::read_dir("/boot").ok().is_some_and(|d| {
        d.flatten().any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("vmlinuz-") && n.ends_with("-amd64") && !n.ends_with("-cloud-amd64")
        })
    });
    if !full {
        return skip(
            t,
            "needs Debian's full kernel /boot/vmlinuz-*-amd64 (apt-get install linux-image-amd64: bash scripts/setup.sh)",
        );
    }
    if uefi && ovmf().is_none() {
        return skip(
            t,
            "needs Debian's OVMF (/usr/share/OVMF/OVMF_CODE_4M.fd, OVMF_VARS_4M.fd: apt-get install ovmf)",
        );
    }
    true
}

fn media() -> PathBuf {
    build_media_once(CMDLINE).0
}

fn report(vm: &Vm, daemons: &[&Daemon]) -> String {
    let mut s = format!(
        "qemu: {}\nexit: {:?}, {:.1}s after start\n",
        vm.cmdline,
        vm.status,
        vm.started.elapsed().as_secs_f64()
    );
    for (m, t) in &vm.seen {
        s += &format!("  {:6.2}s  {m}\n", t.as_secs_f64());
    }
    s += "--- console\n";
    s += &vm.console_text();
    s += "--- qemu stderr\n";
    s += &vm.stderr_text();
    for d in daemons {
        s += &d.describe();
    }
    s
}

/// The markers whose first appearance is timed, and the end of a boot (the next root powers
/// off: QEMU exits).
const MARKERS: &[&str] = &[
    "zos-netboot: iPXE has",
    "zos-netboot: ",
    "farmer_id=",
    "boot path:",
    "online in",
    NEXT_PID1,
    "reboot: Power down",
];

/// Waits for the boot to end and checks what every media boot must show, in order: the farm
/// line with `farmer`, the boot path line containing `path`, the online summary, the hand-off
/// into the next root, and its printed state (online, the OOB NIC's IPv4 address in
/// `net`/`prefix`). Returns that address and the console.
fn check_boot(
    t: &str,
    vm: &mut Vm,
    daemons: &[&Daemon],
    farmer: &str,
    path: &str,
    net: Ipv4Addr,
    prefix: u8,
) -> (Ipv4Addr, String) {
    let status = vm.wait(MARKERS);
    let mut s = format!("{t}: QEMU start →");
    for (m, d) in &vm.seen {
        s += &format!("\n  {:6.2}s  {m}", d.as_secs_f64());
    }
    say(&s);
    let why = |msg: &str| format!("{t}: {msg}\n{}", report(vm, daemons));
    assert!(status.is_some(), "{}", why("QEMU did not exit in time"));
    let console = vm.console_text();
    let farm = format!("zos-netboot 0.1.0: farmer_id={farmer} runmode=test version=v3");
    let steps: &[&[Expect]] = &[
        &[Expect {
            what: "the farm settings (first line of zos-netboot)",
            any: &[&farm],
        }],
        &[Expect {
            what: "the boot path",
            any: &[path],
        }],
        &[Expect {
            what: "the summary table",
            any: &["NIC          ROLE"],
        }],
        &[Expect {
            what: "the online line",
            any: &["] online in "],
        }],
        &[Expect {
            what: "the next root",
            any: &[NEXT_PID1],
        }],
    ];
    match expect_in_order(&console, steps) {
        Ok(lines) => say(&format!("{t}: console\n  {}", lines.join("\n  "))),
        Err(e) => panic!("{}", why(&e)),
    }
    let state = printed_state(&console).unwrap_or_else(|e| panic!("{}", why(&e)));
    assert_eq!(
        state["online"],
        true,
        "{}",
        why("state: online is not true")
    );
    let addr = oob_ipv4_in(&state, net, prefix).unwrap_or_else(|| {
        panic!(
            "{}",
            why(&format!("state: no oob IPv4 address in {net}/{prefix}"))
        )
    });
    (addr, console)
}

/// A NIC on QEMU's user-mode network (DHCPv4 10.0.2.15, restrict=on: nothing leaves the VM),
/// without an option ROM (local media boots only).
fn user_nic() -> Vec<String> {
    vec![
        "-netdev".into(),
        "user,id=n1,restrict=on".into(),
        "-device".into(),
        format!("virtio-net-pci,netdev=n1,mac={MAC},romfile="),
    ]
}

fn local_boot(t: &str, dir: &TestDir, mut args: Vec<String>, farmer: &str, path: &str) {
    args.extend(user_nic());
    let _one = one_boot();
    let mut vm = Vm::start_qemu(None, dir, &args, MEDIA_BOOT_SECS);
    let (addr, _) = check_boot(
        t,
        &mut vm,
        &[],
        farmer,
        path,
        Ipv4Addr::new(10, 0, 2, 0),
        24,
    );
    say(&format!("{t}: online as {addr}"));
}

/// SeaBIOS (and the option ROMs it runs: iPXE, GRUB, ISOLINUX) print on the serial console
/// too when fw_cfg `etc/sercon-port` names its port (0x3f8, little-endian).
fn bios_serial(dir: &TestDir) -> Vec<String> {
    let f = dir.join("sercon-port.bin");
    fs::write(&f, [0xf8u8, 0x03]).expect("write sercon-port.bin");
    vec![
        "-fw_cfg".into(),
        format!("name=etc/sercon-port,file={}", f.display()),
    ]
}

/// The address dnsmasq acknowledged to iPXE (the DHCP transaction whose user class is iPXE),
/// from its `--log-dhcp` log.
fn ipxe_ack(log: &str) -> Option<Ipv4Addr> {
    let xid = log.lines().find_map(|l| {
        let (_, rest) = l.split_once("]: ")?;
        let (xid, what) = rest.split_once(' ')?;
        (what.trim() == "user class: iPXE").then(|| xid.to_string())
    })?;
    log.lines().find_map(|l| {
        let (_, rest) = l.split_once("]: ")?;
        let rest = rest.strip_prefix(&xid)?.trim_start();
        rest.strip_prefix("DHCPACK(")?
            .split_once(") ")?
            .1
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

fn disk(file: &Path) -> Vec<String> {
    vec![
        "-drive".into(),
        format!("file={},format=raw,if=virtio,snapshot=on", file.display()),
    ]
}

fn cdrom(file: &Path) -> Vec<String> {
    vec![
        "-drive".into(),
        format!("file={},format=raw,media=cdrom,readonly=on", file.display()),
    ]
}

const UEFI_UKI: &str =
    "boot path: UEFI firmware, Secure Boot off, local media: the firmware started a unified kernel image";
/// usb.img and zos.iso under UEFI: shim → signed GRUB → /zos/vmlinuz.
const UEFI_LOADER: &str =
    "boot path: UEFI firmware, Secure Boot off, local media: a boot loader started /zos/vmlinuz";
const BIOS_LOADER: &str =
    "boot path: BIOS firmware, local media: a boot loader started /zos/vmlinuz";

#[test]
fn media_bios_usb() {
    let t = "media_bios_usb";
    if !media_ready(t, false, false, &[]) {
        return;
    }
    let m = media();
    let dir = TestDir::new(t);
    let mut args = bios_serial(&dir);
    args.extend(disk(&m.join("usb.img")));
    local_boot(t, &dir, args, FARMER, BIOS_LOADER);
}

#[test]
fn media_bios_iso() {
    let t = "media_bios_iso";
    if !media_ready(t, false, false, &[]) {
        return;
    }
    let m = media();
    let dir = TestDir::new(t);
    let mut args = bios_serial(&dir);
    args.extend(cdrom(&m.join("zos.iso")));
    local_boot(t, &dir, args, FARMER, BIOS_LOADER);
}

/// The stick's command line is the first line of /boot/grub/grub.cfg on its FAT partition
/// (1 MiB into the image): the test changes the farmer id there, as a farmer would on a built
/// stick, and UEFI (shim → Debian's signed GRUB → the kernel with it) must boot with the new one.
#[test]
fn media_uefi_usb() {
    let t = "media_uefi_usb";
    if !media_ready(t, true, false, &[]) {
        return;
    }
    let m = media();
    let dir = TestDir::new(t);
    let stick = dir.join("usb.img");
    fs::copy(m.join("usb.img"), &stick).expect("copy usb.img");
    let fat = format!("{}@@1M", stick.display());
    let cfg = run_cmd(
        &[
            "env",
            "MTOOLS_SKIP_CHECK=1",
            "mtype",
            "-i",
            &fat,
            "::/boot/grub/grub.cfg",
        ],
        60,
    );
    let text = String::from_utf8_lossy(&cfg.stdout).into_owned();
    let first = text.lines().next().unwrap_or_default();
    assert!(
        cfg.status.success() && first.starts_with("set zos_cmdline=\"") && first.contains(CMDLINE),
        "grub.cfg on the stick does not start with the command line:\n{text}{}",
        String::from_utf8_lossy(&cfg.stderr)
    );
    let edited = text.replacen("farmer_id=4242", "farmer_id=4343", 1);
    let local = dir.join("grub.cfg");
    fs::write(&local, edited).unwrap();
    let put = run_cmd(
        &[
            "env",
            "MTOOLS_SKIP_CHECK=1",
            "mcopy",
            "-o",
            "-i",
            &fat,
            &local.to_string_lossy(),
            "::/boot/grub/grub.cfg",
        ],
        60,
    );
    assert!(
        put.status.success(),
        "mcopy: {}",
        String::from_utf8_lossy(&put.stderr)
    );
    let mut args = ovmf_args(&dir);
    args.extend(disk(&stick));
    local_boot(t, &dir, args, "4343", UEFI_LOADER);
}

#[test]
fn media_uefi_iso() {
    let t = "media_uefi_iso";
    if !media_ready(t, true, false, &[]) {
        return;
    }
    let m = media();
    let dir = TestDir::new(t);
    let mut args = ovmf_args(&dir);
    args.extend(cdrom(&m.join("zos.iso")));
    local_boot(t, &dir, args, FARMER, UEFI_LOADER);
}

#[test]
fn media_uefi_efi_fat() {
    let t = "media_uefi_efi_fat";
    if !media_ready(t, true, false, &[]) {
        return;
    }
    let m = media();
    let dir = TestDir::new(t);
    // efi-fat.img holds only \EFI\BOOT\BOOTX64.EFI, byte for byte zos-netboot.efi.
    let fat = format!("{}", m.join("efi-fat.img").display());
    let copy = dir.join("BOOTX64.EFI");
    let got = run_cmd(
        &[
            "env",
            "MTOOLS_SKIP_CHECK=1",
            "mcopy",
            "-i",
            &fat,
            "::/EFI/BOOT/BOOTX64.EFI",
            &copy.to_string_lossy(),
        ],
        60,
    );
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(
        sha256_file(&copy),
        sha256_file(&m.join("zos-netboot.efi")),
        "BOOTX64.EFI on efi-fat.img is not zos-netboot.efi"
    );
    let mut args = ovmf_args(&dir);
    args.extend(disk(&m.join("efi-fat.img")));
    local_boot(t, &dir, args, FARMER, UEFI_UKI);
}

// ------------------------------------------------------------------------------------------
// Network boot

enum Serve {
    Tftp,
    Http,
}

fn pxe(t: &str, serve: Serve) {
    let tools: &[&str] = &["dnsmasq"];
    if !media_ready(t, false, true, tools) {
        return;
    }
    let m = media();
    let dir = TestDir::new(t);
    // What the router serves: boot.ipxe, vmlinuz, initrd.img (copies readable by dnsmasq's
    // unprivileged TFTP server).
    let root = dir.join("boot");
    fs::create_dir_all(&root).unwrap();
    for f in ["boot.ipxe", "vmlinuz", "initrd.img"] {
        fs::copy(m.join(f), root.join(f)).unwrap_or_else(|e| panic!("copy {f}: {e}"));
    }
    run_ok(&["chmod", "-R", "a+rX", &dir.path.to_string_lossy()]);

    let r = Netns::new();
    r.tap("oob");
    r.ip(&["addr", "add", "10.77.0.1/24", "dev", "oob"]);
    let log = dir.join("dnsmasq.log");
    let boot = match serve {
        Serve::Tftp => "tag:ipxe,boot.ipxe".to_string(),
        Serve::Http => "tag:ipxe,http://10.77.0.1/boot.ipxe".to_string(),
    };
    let mut args: Vec<String> = vec![
        "--no-daemon".into(),
        "--conf-file=/dev/null".into(),
        "--no-hosts".into(),
        "--no-resolv".into(),
        "--bind-dynamic".into(),
        "--interface=oob".into(),
        "--no-ping".into(),
        "--port=0".into(),
        "--dhcp-range=10.77.0.100,10.77.0.200,255.255.255.0,1h".into(),
        format!("--dhcp-host={MAC},{RESERVED}"),
        "--dhcp-option=3,10.77.0.1".into(),
        "--dhcp-match=set:ipxe,175".into(),
        format!("--dhcp-boot={boot}"),
        format!("--dhcp-leasefile={}", dir.join("dnsmasq.leases").display()),
        "--pid-file=".into(),
        "--log-dhcp".into(),
        format!("--log-facility={}", log.display()),
    ];
    if let Serve::Tftp = serve {
        args.push("--enable-tftp".into());
        args.push(format!("--tftp-root={}", root.display()));
    }
    fs::write(dir.join("dnsmasq.leases"), "").unwrap();
    let mut dns = r.spawn("dnsmasq", "dnsmasq", &args, dir.join("dnsmasq.stderr"));
    dns.log = Some(log.clone());
    let ready = |d: &mut Daemon, what: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline && d.alive() {
            if what() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        false
    };
    assert!(
        ready(&mut dns, &|| fs::read_to_string(&log)
            .is_ok_and(|l| l.contains("DHCP, IP range"))),
        "dnsmasq did not start:\n{}",
        dns.describe()
    );
    let http = match serve {
        Serve::Http => {
            let hargs: Vec<String> = [
                "httpd",
                "-f",
                "-vv",
                "-p",
                "10.77.0.1:80",
                "-h",
                &root.to_string_lossy(),
            ]
            .map(String::from)
            .to_vec();
            let mut h = r.spawn("httpd", "busybox", &hargs, dir.join("httpd.stderr"));
            assert!(
                ready(&mut h, &|| r
                    .listening("t")
                    .iter()
                    .any(|s| s.ends_with(":80"))),
                "httpd did not start:\n{}",
                h.describe()
            );
            Some(h)
        }
        Serve::Tftp => None,
    };

    // QEMU's virtio NIC with its default option ROM (iPXE), booting from the network.
    let args: Vec<String> = [
        "-boot",
        "order=n",
        "-netdev",
        "tap,id=n1,ifname=oob,script=no,downscript=no",
        "-device",
        &format!("virtio-net-pci,netdev=n1,mac={MAC}"),
    ]
    .map(String::from)
    .to_vec();
    let args = [bios_serial(&dir), args].concat();
    let _one = one_boot();
    let mut vm = Vm::start_qemu(Some(&r), &dir, &args, MEDIA_BOOT_SECS);
    let mut daemons: Vec<&Daemon> = vec![&dns];
    if let Some(h) = &http {
        daemons.push(h);
    }
    let (addr, console) = check_boot(
        t,
        &mut vm,
        &daemons,
        FARMER,
        &format!("boot path: BIOS firmware, network boot through the NIC {MAC} (BOOTIF=01-52-54-00-7a-00-01)"),
        Ipv4Addr::new(10, 77, 0, 0),
        24,
    );
    let why = |msg: &str| format!("{t}: {msg}\n{}", report(&vm, &daemons));
    // What iPXE got, as boot.ipxe says it on the console: the node keeps that address.
    let ipxe: Option<Ipv4Addr> = console
        .lines()
        .find_map(|l| l.split("zos-netboot: iPXE has ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.parse().ok());
    let ipxe = ipxe.unwrap_or_else(|| {
        panic!(
            "{}",
            why("no `zos-netboot: iPXE has ADDR` line from boot.ipxe")
        )
    });
    let dlog = fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        ipxe_ack(&dlog),
        Some(ipxe),
        "{}",
        why("dnsmasq's DHCPACK to iPXE (user class iPXE) is not what boot.ipxe printed")
    );
    assert_eq!(
        ipxe,
        RESERVED,
        "{}",
        why("iPXE's address is not the reserved one")
    );
    assert_eq!(
        addr,
        ipxe,
        "{}",
        why("the node's address is not the one iPXE got")
    );
    // dnsmasq saw both clients: iPXE (option 175 → boot.ipxe) and zos-netboot, same address.
    let acks = dlog
        .lines()
        .filter(|l| l.contains(&format!("DHCPACK(oob) {RESERVED} {MAC}")))
        .count();
    assert!(
        acks >= 2,
        "{}",
        why(&format!(
            "want >= 2 DHCPACKs of {RESERVED} to {MAC}, saw {acks}"
        ))
    );
    match serve {
        Serve::Tftp => {
            for f in ["boot.ipxe", "vmlinuz", "initrd.img"] {
                assert!(
                    dlog.lines()
                        .any(|l| l.contains("sent ") && l.contains(&format!("/{f} to {RESERVED}"))),
                    "{}",
                    why(&format!("dnsmasq did not send {f} by TFTP"))
                );
            }
        }
        Serve::Http => {
            assert!(
                !dlog.contains("dnsmasq-tftp"),
                "{}",
                why("a TFTP transfer in the HTTP run")
            );
            let hlog = http
                .as_ref()
                .map(|h| fs::read_to_string(&h.stderr).unwrap_or_default())
                .unwrap_or_default();
            for f in ["boot.ipxe", "vmlinuz", "initrd.img"] {
                assert!(
                    hlog.lines().any(|l| l.contains(&format!("url:/{f}"))),
                    "{}",
                    why(&format!("httpd did not serve /{f}"))
                );
            }
        }
    }
    say(&format!(
        "{t}: iPXE got {ipxe}, the node is online as {addr}"
    ));
}

#[test]
fn media_pxe_tftp() {
    pxe("media_pxe_tftp", Serve::Tftp);
}

#[test]
fn media_pxe_http() {
    pxe("media_pxe_http", Serve::Http);
}

// ------------------------------------------------------------------------------------------
// Real machines (issue 15): every NIC model QEMU emulates, a NIC without a driver, Secure Boot

const BIOS_DIRECT: &str = "boot path: BIOS firmware, kernel loaded directly";
const SB_LOADER: &str =
    "boot path: UEFI firmware, Secure Boot on, local media: a boot loader started /zos/vmlinuz";

/// A NIC model: QEMU's device, the start of its modalias, the drivers that may take it (QEMU's
/// rtl8139 matches both 8139cp and 8139too; usb-net is CDC Ethernet and RNDIS).
struct Model {
    device: &'static str,
    modalias: &'static str,
    drivers: &'static [&'static str],
}

const MODELS: &[Model] = &[
    Model {
        device: "e1000",
        modalias: "pci:v00008086d0000100E",
        drivers: &["e1000"],
    },
    Model {
        device: "e1000e",
        modalias: "pci:v00008086d000010D3",
        drivers: &["e1000e"],
    },
    Model {
        device: "rtl8139",
        modalias: "pci:v000010ECd00008139",
        drivers: &["8139cp", "8139too"],
    },
    Model {
        device: "vmxnet3",
        modalias: "pci:v000015ADd000007B0",
        drivers: &["vmxnet3"],
    },
    Model {
        device: "pcnet",
        modalias: "pci:v00001022d00002000",
        drivers: &["pcnet32"],
    },
    Model {
        device: "ne2k_pci",
        modalias: "pci:v000010ECd00008029",
        drivers: &["ne2k_pci"],
    },
    Model {
        device: "virtio-net-pci",
        modalias: "virtio:d00000001",
        drivers: &["virtio_net"],
    },
    Model {
        device: "usb-net",
        modalias: "usb:v0525pA4A2",
        drivers: &["cdc_ether", "rndis_host"],
    },
];

fn model(device: &str) -> &'static Model {
    MODELS
        .iter()
        .find(|m| m.device == device)
        .expect("a model of MODELS")
}

/// `-netdev user` (restrict=on: nothing leaves the VM) + the model's device with `mac`; usb-net
/// sits behind an xHCI controller.
fn model_nic(m: &Model, id: &str, mac: &str) -> Vec<String> {
    let mut args = vec!["-netdev".into(), format!("user,id={id},restrict=on")];
    if m.device == "usb-net" {
        args.extend([
            "-device".into(),
            "qemu-xhci,id=xhci".into(),
            "-device".into(),
            format!("usb-net,netdev={id},mac={mac}"),
        ]);
    } else {
        args.extend([
            "-device".into(),
            format!("{},netdev={id},mac={mac},romfile=", m.device),
        ]);
    }
    args
}

/// The console line of the coldplug loading one of the model's drivers for it.
fn driver_line<'a>(console: &'a str, m: &Model) -> Option<&'a str> {
    console.lines().find(|l| {
        m.drivers
            .iter()
            .any(|d| l.contains(&format!("drivers: loaded {d} (for {}", m.modalias)))
    })
}

/// Boots `args` (firmware and medium, plus NICs) to online and returns the console and state.
fn machine_boot(
    t: &str,
    dir: &TestDir,
    args: Vec<String>,
    path: &str,
) -> (Ipv4Addr, String, serde_json::Value, f64) {
    let _one = one_boot();
    let mut vm = Vm::start_qemu(None, dir, &args, MEDIA_BOOT_SECS);
    let (addr, console) = check_boot(
        t,
        &mut vm,
        &[],
        FARMER,
        path,
        Ipv4Addr::new(10, 0, 2, 0),
        24,
    );
    let online = vm
        .seen
        .iter()
        .find(|(m, _)| m == "online in")
        .map_or(0.0, |(_, d)| d.as_secs_f64());
    let state = printed_state(&console).expect("checked by check_boot");
    (addr, console, state, online)
}

/// The same usb.img under SeaBIOS with one NIC of `device`: the console names its driver, the
/// node is online with a lease from QEMU's DHCP server.
fn nic_model(device: &str) {
    let t = &format!("machines_nic_{}", device.replace('-', "_"));
    if !media_ready(t, false, false, &[]) {
        return;
    }
    let m = media();
    let dir = TestDir::new(t);
    let mut args = bios_serial(&dir);
    args.extend(disk(&m.join("usb.img")));
    let nic = model(device);
    args.extend(model_nic(nic, "n1", MAC));
    let (addr, console, state, online) = machine_boot(t, &dir, args, BIOS_LOADER);
    let line = driver_line(&console, nic).unwrap_or_else(|| {
        panic!(
            "{t}: the console names none of {:?} loaded for {}:\n{console}",
            nic.drivers, nic.modalias
        )
    });
    assert!(
        state["machine"]["nics_without_driver"]
            .as_array()
            .is_some_and(|a| a.is_empty()),
        "{t}: state lists NICs without a driver: {}",
        state["machine"]
    );
    say(&format!(
        "{t}: {line}\n{t}: online as {addr}, QEMU start → online {online:.1}s"
    ));
}

#[test]
fn machines_nic_e1000() {
    nic_model("e1000");
}

#[test]
fn machines_nic_e1000e() {
    nic_model("e1000e");
}

#[test]
fn machines_nic_rtl8139() {
    nic_model("rtl8139");
}

#[test]
fn machines_nic_vmxnet3() {
    nic_model("vmxnet3");
}

#[test]
fn machines_nic_pcnet() {
    nic_model("pcnet");
}

#[test]
fn machines_nic_ne2k_pci() {
    nic_model("ne2k_pci");
}

#[test]
fn machines_nic_virtio_net_pci() {
    nic_model("virtio-net-pci");
}

#[test]
fn machines_nic_usb_net() {
    nic_model("usb-net");
}

/// The media's initramfs as build-initramfs.sh lays it out for a quick boot: every module a
/// `.ko.zst` whose contents are the kernel package's file byte for byte (its signature holds;
/// zos-netboot decompresses the few it loads), modules.dep naming the `.ko.zst` files, every
/// firmware file an `.xz` with a CRC32 check (the only check the kernel's xz loader knows),
/// and the firmware map still naming the files without `.xz` (as the kernel asks for them).
/// The boots (virtio above, Secure Boot below) load these modules.
#[test]
fn machines_initrd_layout() {
    let t = "machines_initrd_layout";
    if !media_ready(t, false, false, &["zstd", "xz", "cpio"]) {
        return;
    }
    let m = media();
    let dir = TestDir::new(t);
    let initrd = m.join("initrd.img").to_string_lossy().into_owned();
    let unpacked = dir.join("root");
    fs::create_dir_all(&unpacked).unwrap();
    let sh = |script: &str| {
        let out = run_cmd(&["bash", "-c", script, "sh", &initrd], 300);
        assert!(
            out.status.success(),
            "{t}: `{script}` failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    sh(&format!(
        "set -o pipefail; zstd -dc \"$1\" | (cd '{}' && cpio -idm --quiet 'lib/*' 'etc/zos/*')",
        unpacked.display()
    ));
    let files = |sub: &str| -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut todo = vec![unpacked.join(sub)];
        while let Some(d) = todo.pop() {
            for e in fs::read_dir(&d).unwrap_or_else(|e| panic!("{t}: {}: {e}", d.display())) {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    todo.push(e.path());
                } else {
                    found.push(e.path());
                }
            }
        }
        found.sort();
        found
    };
    let kdirs: Vec<_> = fs::read_dir(unpacked.join("lib/modules"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(kdirs.len(), 1, "{t}: {kdirs:?}");
    let kdir = &kdirs[0];
    let kver = kdir.file_name().unwrap().to_string_lossy().into_owned();
    let modules: Vec<_> = files(&format!("lib/modules/{kver}/kernel"));
    assert!(modules.len() > 100, "{t}: only {} modules", modules.len());
    let plain: Vec<_> = modules
        .iter()
        .filter(|p| !p.to_string_lossy().ends_with(".ko.zst"))
        .collect();
    assert!(
        plain.is_empty(),
        "{t}: modules not stored as .ko.zst: {plain:?}"
    );
    let dep = fs::read_to_string(kdir.join("modules.dep")).unwrap();
    assert!(
        dep.lines()
            .flat_map(|l| l.split([':', ' ']))
            .filter(|w| !w.is_empty())
            .all(|w| w.ends_with(".ko.zst")),
        "{t}: modules.dep names files that are not .ko.zst:\n{dep}"
    );
    assert!(
        dep.contains("kernel/drivers/net/virtio_net.ko.zst:"),
        "{t}: no virtio_net in modules.dep"
    );
    // The packed module is the package's file, signature and all.
    let packed = kdir.join("kernel/drivers/net/virtio_net.ko.zst");
    let image = run_cmd(&["zstd", "-dc", &packed.to_string_lossy()], 60).stdout;
    let original = format!("/lib/modules/{kver}/kernel/drivers/net/virtio_net.ko");
    match fs::read(&original) {
        Ok(bytes) => assert!(
            image == bytes,
            "{t}: {packed:?} is not {original} byte for byte"
        ),
        Err(e) => say(&format!("{t}: {original}: {e}; byte comparison skipped")),
    }
    assert!(
        image.ends_with(b"~Module signature appended~\n"),
        "{t}: the module lost its signature"
    );

    let firmware = files("lib/firmware");
    assert!(
        firmware.len() > 10,
        "{t}: only {} firmware files",
        firmware.len()
    );
    let list: Vec<String> = firmware
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let not_xz: Vec<_> = list.iter().filter(|p| !p.ends_with(".xz")).collect();
    assert!(
        not_xz.is_empty(),
        "{t}: firmware not stored as .xz: {not_xz:?}"
    );
    let mut argv = vec!["xz", "--robot", "--list"];
    argv.extend(list.iter().map(String::as_str));
    let robot = run_cmd(&argv, 120);
    assert!(robot.status.success(), "{t}: xz --list failed");
    let robot = String::from_utf8_lossy(&robot.stdout).into_owned();
    let checks: Vec<&str> = robot
        .lines()
        .filter(|l| l.starts_with("file\t"))
        .map(|l| l.split('\t').nth(6).unwrap_or("?"))
        .collect();
    assert_eq!(checks.len(), list.len(), "{t}: xz --list:\n{robot}");
    assert!(
        checks.iter().all(|c| *c == "CRC32"),
        "{t}: a firmware file without a CRC32 check (the kernel refuses others): {checks:?}"
    );
    let map = fs::read_to_string(unpacked.join("etc/zos/firmware.map")).unwrap();
    assert!(
        map.lines()
            .all(|l| !l.split(' ').next().unwrap_or("").ends_with(".xz")),
        "{t}: the firmware map names .xz files:\n{map}"
    );
    say(&format!(
        "{t}: {} modules (.ko.zst), {} firmware files (.xz, CRC32)",
        modules.len(),
        firmware.len()
    ));
}

/// Two models in one VM (e1000e first, so the OOB one, and rtl8139), each on its own QEMU
/// network: both drivers named, both NICs in the state, online.
#[test]
fn machines_two_models() {
    let t = "machines_two_models";
    if !media_ready(t, false, false, &[]) {
        return;
    }
    let m = media();
    let dir = TestDir::new(t);
    let mut args = bios_serial(&dir);
    args.extend(disk(&m.join("usb.img")));
    let (a, b) = (model("e1000e"), model("rtl8139"));
    let mac2 = "52:54:00:7a:00:02";
    args.extend(model_nic(a, "n1", MAC));
    args.extend(model_nic(b, "n2", mac2));
    let (addr, console, state, _) = machine_boot(t, &dir, args, BIOS_LOADER);
    for nic in [a, b] {
        assert!(
            driver_line(&console, nic).is_some(),
            "{t}: no driver line for {}:\n{console}",
            nic.device
        );
    }
    let macs: Vec<&str> = state["interfaces"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["mac"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        macs.contains(&MAC) && macs.contains(&mac2),
        "{t}: state interfaces {macs:?} lack {MAC} or {mac2}"
    );
    say(&format!("{t}: both NICs found, online as {addr}"));
}

/// An image built `--without ne2k_pci` (gzip: quicker to build), booted directly with an
/// ne2k_pci and an e1000e NIC: the console names the first with its id and class, the state
/// lists it, and the node is online through the second.
#[test]
fn machines_nic_without_driver() {
    let t = "machines_nic_without_driver";
    if !media_ready(t, false, false, &[]) {
        return;
    }
    let m = media();
    let dir = TestDir::new(t);
    let image = dir.join("initrd-without-ne2k.img");
    let bin = m
        .parent()
        .and_then(|p| p.parent())
        .expect("target/media-e2e/media")
        .join("x86_64-unknown-linux-musl/release/zos-netboot");
    let next_root = m.parent().expect("target/media-e2e").join("next-root");
    let kver = {
        let out = run_cmd(&["file", "-bL", &m.join("vmlinuz").to_string_lossy()], 30);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split_once("version ")
            .and_then(|(_, v)| v.split_whitespace().next())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("{t}: no version in `file vmlinuz`: {text}"))
    };
    let built = run_cmd(
        &[
            "bash",
            &format!("{REPO}/scripts/build-initramfs.sh"),
            "--out",
            &image.to_string_lossy(),
            "--kernel-version",
            &kver,
            "--bin",
            &bin.to_string_lossy(),
            "--next-root",
            &next_root.to_string_lossy(),
            "--without",
            "ne2k_pci",
            "--compress",
            "gzip",
            // gzip makes it larger than the media's zstd image, whose budget is what counts.
            "--budget",
            "0",
        ],
        600,
    );
    assert!(
        built.status.success(),
        "{t}: build-initramfs.sh --without ne2k_pci failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let mut args: Vec<String> = vec![
        "-kernel".into(),
        m.join("vmlinuz").to_string_lossy().into_owned(),
        "-initrd".into(),
        image.to_string_lossy().into_owned(),
        "-append".into(),
        format!("console=ttyS0,115200 {CMDLINE}"),
    ];
    let mac2 = "52:54:00:7a:00:02";
    args.extend(model_nic(model("e1000e"), "n1", MAC));
    args.extend(model_nic(model("ne2k_pci"), "n2", mac2));
    let (addr, console, state, _) = machine_boot(t, &dir, args, BIOS_DIRECT);
    let want = "no driver in this image for PCI 10ec:8029 (Ethernet controller) at 0000:";
    assert!(
        console.contains(want),
        "{t}: the console does not say `{want}`:\n{console}"
    );
    assert!(
        driver_line(&console, model("e1000e")).is_some(),
        "{t}: e1000e not loaded"
    );
    let missing = &state["machine"]["nics_without_driver"];
    assert_eq!(
        missing.as_array().map(|a| a.len()),
        Some(1),
        "{t}: state: {missing}"
    );
    assert_eq!(missing[0]["id"], "10ec:8029", "{t}: state: {missing}");
    assert_eq!(missing[0]["bus"], "PCI");
    assert_eq!(missing[0]["modules"], serde_json::json!([]));
    say(&format!(
        "{t}: named the ne2k_pci card, online as {addr} through e1000e"
    ));
}

/// OVMF with Secure Boot enforced and Microsoft's keys enrolled (Debian's ovmf:
/// OVMF_CODE_4M.secboot.fd + OVMF_VARS_4M.ms.fd, SMM on, the flash's secure property).
fn secure_boot_args(dir: &TestDir) -> Option<Vec<String>> {
    let code = Path::new("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd");
    let vars = Path::new("/usr/share/OVMF/OVMF_VARS_4M.ms.fd");
    if !code.is_file() || !vars.is_file() {
        return None;
    }
    let copy = dir.join("OVMF_VARS.ms.fd");
    fs::copy(vars, &copy).unwrap_or_else(|e| panic!("copy {}: {e}", vars.display()));
    Some(vec![
        "-machine".into(),
        "smm=on".into(),
        "-global".into(),
        "driver=cfi.pflash01,property=secure,value=on".into(),
        "-drive".into(),
        format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={}",
            code.display()
        ),
        "-drive".into(),
        format!("if=pflash,format=raw,unit=1,file={}", copy.display()),
    ])
}

fn secure_boot(t: &str, medium: Vec<String>) {
    if !media_ready(t, true, false, &[]) {
        return;
    }
    let dir = TestDir::new(t);
    let Some(mut args) = secure_boot_args(&dir) else {
        skip(
            t,
            "needs /usr/share/OVMF/OVMF_CODE_4M.secboot.fd and OVMF_VARS_4M.ms.fd (apt-get install ovmf)",
        );
        return;
    };
    args.extend(medium);
    args.extend(model_nic(model("virtio-net-pci"), "n1", MAC));
    let (addr, console, state, online) = machine_boot(t, &dir, args, SB_LOADER);
    assert!(
        console.contains("Secure boot enabled"),
        "{t}: the kernel did not log `Secure boot enabled`:\n{console}"
    );
    assert_eq!(state["machine"]["secure_boot"], true, "{t}: state");
    say(&format!(
        "{t}: Secure Boot on, online as {addr}, QEMU start → online {online:.1}s"
    ));
}

#[test]
fn machines_secure_boot_usb() {
    secure_boot("machines_secure_boot_usb", disk(&media().join("usb.img")));
}

#[test]
fn machines_secure_boot_iso() {
    secure_boot("machines_secure_boot_iso", cdrom(&media().join("zos.iso")));
}

/// The bare UKI is not signed: the Secure Boot firmware must refuse to start it (OVMF says
/// `Access Denied` for the boot option), and zos-netboot never runs.
#[test]
fn machines_secure_boot_refuses_the_unsigned_uki() {
    let t = "machines_secure_boot_refuses_the_unsigned_uki";
    if !media_ready(t, true, false, &[]) {
        return;
    }
    let m = media();
    let dir = TestDir::new(t);
    let Some(mut args) = secure_boot_args(&dir) else {
        skip(t, "needs OVMF_CODE_4M.secboot.fd and OVMF_VARS_4M.ms.fd");
        return;
    };
    args.extend(disk(&m.join("efi-fat.img")));
    let _one = one_boot();
    let mut vm = Vm::start_qemu(None, &dir, &args, 90);
    let refused = vm.wait_for("Access Denied", 1, std::time::Duration::from_secs(80));
    let console = vm.console_text();
    drop(vm);
    assert!(
        refused,
        "{t}: OVMF did not say `Access Denied` for the unsigned UKI:\n{console}"
    );
    assert!(
        !console.contains("zos-netboot 0.1.0"),
        "{t}: zos-netboot ran under Secure Boot from an unsigned image:\n{console}"
    );
    let line = console
        .lines()
        .find(|l| l.contains("Access Denied"))
        .unwrap_or_default();
    say(&format!("{t}: refused: {}", line.trim()));
}
