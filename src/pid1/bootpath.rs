//! How this node was booted, as far as the initramfs can see it: the firmware (UEFI when the
//! kernel was started by UEFI: `/sys/firmware/efi` exists; BIOS otherwise) and where the kernel
//! came from: the network (a PXE/iPXE script added `BOOTIF=01-<mac>`, or an `ip=` line), a boot
//! loader on local media (GRUB and SYSLINUX add `BOOT_IMAGE=<kernel path>`), or nothing said
//! (the UEFI firmware started a unified kernel image, or the kernel was loaded directly).
//!
//! Under UEFI it also says whether Secure Boot was on: the firmware's `SecureBoot` EFI variable
//! (efivarfs, which PID 1 mounts when the kernel has not: [`mount_efivarfs`]); its data is one
//! byte after the 4-byte attributes, 1 = enforcing.
//!
//! [`decide`] is a pure function of [`Facts`] (unit-tested); [`Facts::read`] gathers them.
use std::fmt;
use std::path::Path;

/// What the boot path is decided from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// `/sys/firmware/efi` exists.
    pub efi: bool,
    /// The kernel command line (`/proc/cmdline`).
    pub cmdline: String,
    /// The `SecureBoot` EFI variable's file (attributes + data), when it could be read.
    pub secure_boot_var: Option<Vec<u8>>,
}

/// The global-variable GUID's `SecureBoot` in efivarfs.
pub const SECURE_BOOT_VAR: &str =
    "sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";

/// Secure Boot from the variable's file: 4 bytes of attributes, then 1 byte (1 = on).
pub fn secure_boot(var: &[u8]) -> Option<bool> {
    match var {
        [_, _, _, _, v, ..] => Some(*v == 1),
        _ => None,
    }
}

/// Mounts efivarfs on /sys/firmware/efi/efivars when the machine booted by UEFI and nothing is
/// mounted there yet (PID 1; the kernel does not mount it). Debian builds efivarfs as a module:
/// when the kernel does not know the file system (ENODEV), it is loaded from `modules_dir` and
/// the mount tried again. Errors are only returned: the boot path then says "Secure Boot
/// unknown".
pub fn mount_efivarfs(modules_dir: &Path) -> Result<(), String> {
    use nix::errno::Errno;
    use nix::mount::{mount, MsFlags};
    let dir = "/sys/firmware/efi/efivars";
    if !Path::new("/sys/firmware/efi").is_dir() || crate::pid1::early::is_mounted(dir) {
        return Ok(());
    }
    let try_mount = || {
        mount(
            Some("efivarfs"),
            dir,
            Some("efivarfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
    };
    match try_mount() {
        Err(Errno::ENODEV) => {
            crate::pid1::drivers::load_by_name(modules_dir, "efivarfs", "")
                .map_err(|e| format!("loading the efivarfs module: {e}"))?;
            try_mount()
        }
        other => other,
    }
    .map_err(|e| format!("mount efivarfs on {dir}: {e}"))
}

impl Facts {
    /// The facts of the running system under `root` (`/` as PID 1, after /proc and /sys are
    /// mounted).
    pub fn read(root: &Path) -> Facts {
        Facts {
            efi: root.join("sys/firmware/efi").is_dir(),
            cmdline: std::fs::read_to_string(root.join("proc/cmdline")).unwrap_or_default(),
            secure_boot_var: std::fs::read(root.join(SECURE_BOOT_VAR)).ok(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    Uefi,
    Bios,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A network boot program said so: `BOOTIF=` (its NIC's MAC, when readable) or `ip=`.
    Network { mac: Option<String>, hint: String },
    /// A boot loader on local media (`BOOT_IMAGE=`).
    Loader { image: String },
    /// No hint: UEFI started a unified kernel image (or a loader that says nothing did).
    UefiImage,
    /// No hint under BIOS: the kernel was loaded directly (QEMU -kernel, kexec, …).
    Direct,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootPath {
    pub firmware: Firmware,
    /// Under UEFI: whether Secure Boot was on (`None`: the variable could not be read).
    pub secure_boot: Option<bool>,
    pub source: Source,
}

/// `01-52-54-00-7a-00-01` (ARP type 1, Ethernet) → `52:54:00:7a:00:01`.
fn bootif_mac(v: &str) -> Option<String> {
    let rest = v.strip_prefix("01-")?;
    let bytes: Vec<&str> = rest.split('-').collect();
    let ok = bytes.len() == 6
        && bytes
            .iter()
            .all(|b| b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit()));
    ok.then(|| bytes.join(":").to_ascii_lowercase())
}

/// The boot path the facts show.
pub fn decide(facts: &Facts) -> BootPath {
    let firmware = if facts.efi {
        Firmware::Uefi
    } else {
        Firmware::Bios
    };
    let words = crate::cmdline::words(&facts.cmdline);
    let value = |key: &str| {
        words
            .iter()
            .rev()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_string)
    };
    let source = if let Some(b) = value("BOOTIF") {
        Source::Network {
            mac: bootif_mac(&b),
            hint: format!("BOOTIF={b}"),
        }
    } else if let Some(ip) = value("ip").filter(|v| !v.is_empty()) {
        Source::Network {
            mac: None,
            hint: format!("ip={ip}"),
        }
    } else if let Some(image) = value("BOOT_IMAGE") {
        Source::Loader { image }
    } else if facts.efi {
        Source::UefiImage
    } else {
        Source::Direct
    };
    let secure_boot = facts.secure_boot_var.as_deref().and_then(secure_boot);
    BootPath {
        firmware,
        secure_boot: if facts.efi { secure_boot } else { None },
        source,
    }
}

impl fmt::Display for BootPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fw = match self.firmware {
            Firmware::Uefi => "UEFI",
            Firmware::Bios => "BIOS",
        };
        write!(f, "boot path: {fw} firmware, ")?;
        if self.firmware == Firmware::Uefi {
            match self.secure_boot {
                Some(true) => write!(f, "Secure Boot on, ")?,
                Some(false) => write!(f, "Secure Boot off, ")?,
                None => write!(f, "Secure Boot unknown (no SecureBoot EFI variable), ")?,
            }
        }
        match &self.source {
            Source::Network {
                mac: Some(mac),
                hint,
            } => write!(f, "network boot through the NIC {mac} ({hint})"),
            Source::Network { mac: None, hint } => write!(f, "network boot ({hint})"),
            Source::Loader { image } => {
                write!(f, "local media: a boot loader started {image}")
            }
            Source::UefiImage => write!(
                f,
                "local media: the firmware started a unified kernel image (no boot loader or network hint)"
            ),
            Source::Direct => write!(
                f,
                "kernel loaded directly (no boot loader or network hint: QEMU -kernel, kexec, …)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(efi: bool, cmdline: &str) -> BootPath {
        decide(&Facts {
            efi,
            cmdline: cmdline.into(),
            secure_boot_var: efi.then(|| vec![6, 0, 0, 0, 0]),
        })
    }

    #[test]
    fn secure_boot_from_the_efi_variable() {
        assert_eq!(secure_boot(&[6, 0, 0, 0, 1]), Some(true));
        assert_eq!(secure_boot(&[6, 0, 0, 0, 0]), Some(false));
        assert_eq!(secure_boot(&[6, 0, 0]), None);
        let on = decide(&Facts {
            efi: true,
            cmdline: "BOOT_IMAGE=/zos/vmlinuz".into(),
            secure_boot_var: Some(vec![6, 0, 0, 0, 1]),
        });
        assert_eq!(on.secure_boot, Some(true));
        assert_eq!(
            on.to_string(),
            "boot path: UEFI firmware, Secure Boot on, local media: a boot loader started /zos/vmlinuz"
        );
        let unknown = decide(&Facts {
            efi: true,
            cmdline: String::new(),
            secure_boot_var: None,
        });
        assert!(unknown.to_string().starts_with(
            "boot path: UEFI firmware, Secure Boot unknown (no SecureBoot EFI variable), "
        ));
        // BIOS has no Secure Boot, whatever a stray file says.
        let bios = decide(&Facts {
            efi: false,
            cmdline: String::new(),
            secure_boot_var: Some(vec![6, 0, 0, 0, 1]),
        });
        assert_eq!(bios.secure_boot, None);
        assert!(!bios.to_string().contains("Secure Boot"));
    }

    #[test]
    fn ipxe_bootif_is_network_boot_with_the_nic() {
        let p = path(
            false,
            "initrd=initrd.img console=ttyS0 farmer_id=7 BOOTIF=01-52-54-00-7A-00-01\n",
        );
        assert_eq!(p.firmware, Firmware::Bios);
        assert_eq!(
            p.source,
            Source::Network {
                mac: Some("52:54:00:7a:00:01".into()),
                hint: "BOOTIF=01-52-54-00-7A-00-01".into()
            }
        );
        assert_eq!(
            p.to_string(),
            "boot path: BIOS firmware, network boot through the NIC 52:54:00:7a:00:01 \
             (BOOTIF=01-52-54-00-7A-00-01)"
        );
    }

    #[test]
    fn malformed_bootif_is_still_network_boot() {
        let p = path(true, "BOOTIF=52:54:00:7a:00:01");
        assert_eq!(p.firmware, Firmware::Uefi);
        assert!(matches!(p.source, Source::Network { mac: None, .. }));
        assert!(p
            .to_string()
            .contains("network boot (BOOTIF=52:54:00:7a:00:01)"));
    }

    #[test]
    fn ip_hint_is_network_boot() {
        let p = path(false, "ip=10.0.0.5::10.0.0.1:255.255.255.0:n1:eth0:none");
        assert!(
            matches!(p.source, Source::Network { mac: None, ref hint } if hint.starts_with("ip=10.0.0.5"))
        );
        // The network hint wins over a loader's BOOT_IMAGE (pxelinux sets both).
        let p = path(false, "BOOT_IMAGE=vmlinuz BOOTIF=01-aa-bb-cc-dd-ee-ff");
        assert!(matches!(p.source, Source::Network { .. }));
        // An empty ip= says nothing.
        assert_eq!(path(false, "ip=").source, Source::Direct);
    }

    #[test]
    fn boot_image_is_local_media_through_a_loader() {
        let p = path(false, "BOOT_IMAGE=/zos/vmlinuz console=ttyS0 farmer_id=7");
        assert_eq!(
            p.source,
            Source::Loader {
                image: "/zos/vmlinuz".into()
            }
        );
        assert_eq!(
            p.to_string(),
            "boot path: BIOS firmware, local media: a boot loader started /zos/vmlinuz"
        );
        assert_eq!(
            path(true, "BOOT_IMAGE=/zos/vmlinuz").firmware,
            Firmware::Uefi
        );
    }

    #[test]
    fn no_hint_depends_on_the_firmware() {
        assert_eq!(
            path(true, "console=ttyS0 farmer_id=7").source,
            Source::UefiImage
        );
        assert!(path(true, "")
            .to_string()
            .starts_with("boot path: UEFI firmware, Secure Boot off, local media: the firmware started a unified"));
        assert_eq!(path(false, "console=ttyS0").source, Source::Direct);
        // A key that merely ends like one is not it.
        assert_eq!(path(false, "XBOOTIF=01-aa").source, Source::Direct);
        assert_eq!(path(false, "zos.ip=1").source, Source::Direct);
    }

    #[test]
    fn facts_read_from_a_root() {
        let dir = std::env::temp_dir().join(format!("bootpath-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("proc")).unwrap();
        std::fs::write(dir.join("proc/cmdline"), "BOOTIF=01-52-54-00-7a-00-01\n").unwrap();
        let f = Facts::read(&dir);
        assert!(!f.efi);
        std::fs::create_dir_all(dir.join("sys/firmware/efi")).unwrap();
        std::fs::create_dir_all(dir.join("sys/firmware/efi/efivars")).unwrap();
        std::fs::write(dir.join(SECURE_BOOT_VAR), [6, 0, 0, 0, 1]).unwrap();
        let f = Facts::read(&dir);
        assert!(f.efi);
        assert_eq!(decide(&f).secure_boot, Some(true));
        assert!(matches!(
            decide(&f).source,
            Source::Network { mac: Some(_), .. }
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
