//! How this node was booted, as far as the initramfs can see it: the firmware (UEFI when the
//! kernel was started by UEFI: `/sys/firmware/efi` exists; BIOS otherwise) and where the kernel
//! came from: the network (a PXE/iPXE script added `BOOTIF=01-<mac>`, or an `ip=` line), a boot
//! loader on local media (GRUB and SYSLINUX add `BOOT_IMAGE=<kernel path>`), or nothing said
//! (the UEFI firmware started a unified kernel image, or the kernel was loaded directly).
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
}

impl Facts {
    /// The facts of the running system under `root` (`/` as PID 1, after /proc and /sys are
    /// mounted).
    pub fn read(root: &Path) -> Facts {
        Facts {
            efi: root.join("sys/firmware/efi").is_dir(),
            cmdline: std::fs::read_to_string(root.join("proc/cmdline")).unwrap_or_default(),
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
    BootPath { firmware, source }
}

impl fmt::Display for BootPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fw = match self.firmware {
            Firmware::Uefi => "UEFI",
            Firmware::Bios => "BIOS",
        };
        write!(f, "boot path: {fw} firmware, ")?;
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
        })
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
            .starts_with("boot path: UEFI firmware, local media: the firmware started a unified"));
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
        let f = Facts::read(&dir);
        assert!(f.efi);
        assert!(matches!(
            decide(&f).source,
            Source::Network { mac: Some(_), .. }
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
