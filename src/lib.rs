//! zos-netboot: gets a 0-OS node onto the network from its initramfs.
//!
//! The tree reads like the boot, floor by floor:
//! - `config`: the kernel command line and the CLI resolved once into the settings every stage
//!   takes, with one layout of state paths.
//! - `pid1/`: what only PID 1 does (early mounts, coldplug, boot path, switch_root hand-off).
//! - `net/`: links, bonds and VLANs, DHCPv4 and SLAAC (sans-IO cores with thin drivers), probes
//!   and the classification, tied together by the sans-IO node core (`net::node`) that both the
//!   boot's network stage (`net::run`) and `keep` drive.
//! - `fetch/`: the fetch stage (clock, manifest, hubs, downloads, install).
//! - `register`: the node's identity and its registration.
//! - `state` (the typed hand-over) and `console` (what the farmer reads).
//! - `boot` sequences the stages; `keep` runs in the full OS and holds the lease the boot handed
//!   over. `main.rs` is only the command line.
//!
//! A library as well as a binary so that the fuzz targets (`fuzz/`) reach the parsers.
pub mod boot;
pub mod clock;
pub mod clock_trust;
pub mod cmdline;
pub mod config;
pub mod console;
pub mod fetch;
pub mod hostsafety;
pub mod http1;
pub mod keep;
pub mod net;
pub mod pid1;
pub mod register;
pub mod retry;
pub mod state;
pub mod sys;
pub mod tempfile;
pub mod url;
