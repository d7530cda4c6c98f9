//! What this machine's hardware needed and the image did not have, for the console and the
//! state file: NICs no driver took (from the coldplug, [`crate::pid1::drivers::NoDriver`]) and firmware
//! files a driver asked the kernel for and the kernel did not find in /lib/firmware.
//!
//! The kernel loads firmware by itself from /lib/firmware (no udev; Debian's kernels have no
//! user-mode helper fallback) and says in its log when a file is not there:
//! `r8169 0000:02:00.0: Direct firmware load for rtl_nic/rtl8168h-2.fw failed with error -2`
//! (Debian's kernels also log `firmware: failed to load rtl_nic/rtl8168h-2.fw (-2)`). The image
//! builder (scripts/build-initramfs.sh) writes /etc/zos/firmware.map: every firmware file the
//! image's modules name, with the Debian package that has it. [`firmware_failures`] and
//! [`FirmwareMap`] are pure; [`read_kmsg`] is the thin reader of /dev/kmsg.
use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::pid1::drivers::NoDriver;

/// Where scripts/build-initramfs.sh puts the firmware map in the image.
pub const FIRMWARE_MAP: &str = "/etc/zos/firmware.map";

/// The machine's part of the state file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineRecord {
    /// The console's boot-path line.
    pub boot_path: String,
    /// Secure Boot as the UEFI firmware reported it (`SecureBoot` EFI variable); `None` under
    /// BIOS or when it could not be read.
    pub secure_boot: Option<bool>,
    /// Modules the coldplug loaded, in order.
    pub modules_loaded: Vec<String>,
    /// `module: error` for every module that failed to load.
    pub modules_failed: Vec<String>,
    pub nics_without_driver: Vec<NoDriver>,
    pub firmware_missing: Vec<MissingFirmware>,
}

/// A firmware file a driver asked for and the kernel did not find.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingFirmware {
    /// Relative to /lib/firmware: `rtl_nic/rtl8168h-2.fw`.
    pub file: String,
    /// The driver that asked (`r8169`), when the kernel said.
    pub driver: Option<String>,
    /// Its device (`0000:02:00.0`), when the kernel said.
    pub device: Option<String>,
    /// The Debian package that has the file (`firmware-realtek`), when the image builder knew one.
    pub package: Option<String>,
}

impl MissingFirmware {
    /// The console line: the file, who wanted it, and where to get it.
    pub fn line(&self) -> String {
        let who = match (&self.driver, &self.device) {
            (Some(d), Some(dev)) => format!(" for {d} ({dev})"),
            (Some(d), None) => format!(" for {d}"),
            _ => String::new(),
        };
        let fix = match &self.package {
            Some(p) => format!(
                "it is in Debian's {p} package (non-free-firmware), which this image was built without"
            ),
            None => "no Debian firmware package known to the image builder has it".to_string(),
        };
        format!(
            "FIRMWARE MISSING: /lib/firmware/{}{who}: {fix}; the NIC may not work — report it with this line",
            self.file
        )
    }
}

/// `/etc/zos/firmware.map`: `<file> <package>` lines, `-` for "no package known".
#[derive(Debug, Clone, Default)]
pub struct FirmwareMap {
    packages: HashMap<String, Option<String>>,
}

impl FirmwareMap {
    pub fn parse(text: &str) -> Self {
        let packages = text
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let file = words.next()?;
                if file.starts_with('#') {
                    return None;
                }
                let package = words.next().filter(|p| *p != "-").map(str::to_string);
                Some((file.to_string(), package))
            })
            .collect();
        FirmwareMap { packages }
    }

    /// The package that has `file` (also found under a `.zst`/`.xz` name).
    pub fn package(&self, file: &str) -> Option<String> {
        let base = file
            .strip_suffix(".zst")
            .or_else(|| file.strip_suffix(".xz"))
            .unwrap_or(file);
        self.packages.get(base).cloned().flatten()
    }
}

/// The firmware failures in kernel log messages (the text after `;` of a /dev/kmsg record, or a
/// dmesg line), each file once, in order: `(driver, device, file)`.
pub fn firmware_failures<'a>(
    messages: impl IntoIterator<Item = &'a str>,
) -> Vec<(Option<String>, Option<String>, String)> {
    let mut found: Vec<(Option<String>, Option<String>, String)> = Vec::new();
    for msg in messages {
        let msg = msg.trim_end();
        let file = if let Some(i) = msg.find("Direct firmware load for ") {
            msg[i + "Direct firmware load for ".len()..]
                .split_once(" failed with error ")
                .map(|(f, _)| f)
        } else if let Some(i) = msg.find("firmware: failed to load ") {
            msg[i + "firmware: failed to load ".len()..]
                .split_whitespace()
                .next()
        } else {
            None
        };
        let Some(file) = file.filter(|f| !f.is_empty()) else {
            continue;
        };
        // dev_warn's prefix: "<driver> <device>: ".
        let (driver, device) = match msg.split_once(": ") {
            Some((prefix, _)) => match prefix.split_once(' ') {
                Some((drv, dev)) if !drv.contains(':') && !dev.contains(' ') => {
                    (Some(drv.to_string()), Some(dev.to_string()))
                }
                _ => (None, None),
            },
            None => (None, None),
        };
        match found.iter_mut().find(|(_, _, f)| f == file) {
            // The same file twice: keep the line that names the driver.
            Some(entry) if entry.0.is_none() && driver.is_some() => {
                *entry = (driver, device, file.to_string())
            }
            Some(_) => {}
            None => found.push((driver, device, file.to_string())),
        }
    }
    found
}

/// The missing firmware the kernel log shows, each with its package from `map`.
pub fn missing_firmware<'a>(
    messages: impl IntoIterator<Item = &'a str>,
    map: &FirmwareMap,
) -> Vec<MissingFirmware> {
    firmware_failures(messages)
        .into_iter()
        .map(|(driver, device, file)| MissingFirmware {
            package: map.package(&file),
            file,
            driver,
            device,
        })
        .collect()
}

/// The messages of every record in the kernel's log buffer (/dev/kmsg, read without blocking
/// until its end). Empty when it cannot be read (not PID 1, no /dev).
pub fn read_kmsg(path: &Path) -> Vec<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(mut f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
    else {
        return Vec::new();
    };
    let mut messages = Vec::new();
    // One record per read; a record is at most about 8 KiB (PRINTK_MESSAGE_MAX).
    let mut buf = vec![0u8; 16 * 1024];
    for _ in 0..100_000 {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let record = String::from_utf8_lossy(&buf[..n]);
                // "<prio>,<seq>,<usec>,<flags>[,…];<message>\n" then " KEY=value" lines.
                let first = record.lines().next().unwrap_or_default();
                if let Some((_, message)) = first.split_once(';') {
                    messages.push(message.to_string());
                }
            }
            // EPIPE: records were overwritten while reading; the next read goes on.
            Err(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => continue,
            Err(_) => break,
        }
    }
    messages
}

/// The missing firmware of the running system: /dev/kmsg against the image's firmware map.
pub fn missing_firmware_now(root: &Path) -> Vec<MissingFirmware> {
    let map = FirmwareMap::parse(
        &std::fs::read_to_string(root.join(FIRMWARE_MAP.trim_start_matches('/')))
            .unwrap_or_default(),
    );
    let messages = read_kmsg(&root.join("dev/kmsg"));
    missing_firmware(messages.iter().map(String::as_str), &map)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = "\
rtl_nic/rtl8168h-2.fw firmware-realtek
bnx2x/bnx2x-e2-7.13.21.0.fw firmware-bnx2x
intel/ice/ddp/ice.pkg firmware-misc-nonfree
3com/3C359.bin -
";

    #[test]
    fn kernel_log_lines_name_the_file_and_driver() {
        let log = [
            "r8169 0000:02:00.0: Direct firmware load for rtl_nic/rtl8168h-2.fw failed with error -2",
            "r8169 0000:02:00.0: firmware: failed to load rtl_nic/rtl8168h-2.fw (-2)",
            "r8169 0000:02:00.0 eth0: unable to load firmware patch rtl_nic/rtl8168h-2.fw (-2)",
            "firmware: failed to load 3com/3C359.bin (-2)",
            "e1000e: Intel(R) PRO/1000 Network Driver",
            "ice 0000:81:00.0: Direct firmware load for intel/ice/ddp/ice-0000000000000000.pkg failed with error -2",
        ];
        let got = firmware_failures(log);
        assert_eq!(
            got,
            [
                (
                    Some("r8169".into()),
                    Some("0000:02:00.0".into()),
                    "rtl_nic/rtl8168h-2.fw".into()
                ),
                (None, None, "3com/3C359.bin".into()),
                (
                    Some("ice".into()),
                    Some("0000:81:00.0".into()),
                    "intel/ice/ddp/ice-0000000000000000.pkg".into()
                ),
            ]
        );
    }

    #[test]
    fn missing_firmware_names_the_debian_package() {
        let map = FirmwareMap::parse(MAP);
        let missing = missing_firmware(
            [
                "r8169 0000:02:00.0: Direct firmware load for rtl_nic/rtl8168h-2.fw failed with error -2",
                "firmware: failed to load 3com/3C359.bin (-2)",
            ],
            &map,
        );
        assert_eq!(missing[0].package.as_deref(), Some("firmware-realtek"));
        assert_eq!(
            missing[0].line(),
            "FIRMWARE MISSING: /lib/firmware/rtl_nic/rtl8168h-2.fw for r8169 (0000:02:00.0): it is in \
             Debian's firmware-realtek package (non-free-firmware), which this image was built without; \
             the NIC may not work — report it with this line"
        );
        assert_eq!(missing[1].package, None);
        assert!(missing[1]
            .line()
            .contains("no Debian firmware package known to the image builder has it"));
        assert_eq!(
            map.package("bnx2x/bnx2x-e2-7.13.21.0.fw.zst").as_deref(),
            Some("firmware-bnx2x")
        );
        assert_eq!(map.package("nothing.bin"), None);
    }

    #[test]
    fn nothing_missing_in_a_clean_log() {
        let map = FirmwareMap::parse("");
        assert!(missing_firmware(["r8169 0000:02:00.0 eth0: RTL8168h/8111h"], &map).is_empty());
        // A malformed line names no file.
        assert!(firmware_failures(["Direct firmware load for  failed with error -2"]).is_empty());
    }

    #[test]
    fn kmsg_missing_file_reads_as_empty() {
        assert!(read_kmsg(Path::new("/nonexistent/kmsg")).is_empty());
    }

    #[test]
    fn record_round_trips_through_json() {
        let r = MachineRecord {
            boot_path: "boot path: UEFI firmware (Secure Boot on), …".into(),
            secure_boot: Some(true),
            modules_loaded: vec!["e1000e".into()],
            modules_failed: vec![],
            nics_without_driver: vec![NoDriver {
                bus: "PCI".into(),
                id: "8086:15f3".into(),
                class: "Ethernet controller".into(),
                address: "0000:00:04.0".into(),
                modules: vec![],
            }],
            firmware_missing: vec![],
        };
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["nics_without_driver"][0]["id"], "8086:15f3");
        assert_eq!(json["secure_boot"], true);
        let back: MachineRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
    }
}
