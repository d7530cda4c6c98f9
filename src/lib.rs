//! zos-netboot: gets a 0-OS node onto the network from its initramfs.
//!
//! The source reads like the boot: `cmdline` (settings) → `drivers` → `links` (NICs, carrier)
//! → `dhcp4` (lease) and `slaac` → `net` (the stage that ties them, with `probe` and
//! `classify`) → `state`/`report` (what the next stage and the farmer see) → `provision`
//! (clock, manifest, artifacts) → `register` → `handoff`. `boot` sequences the stages;
//! `keep` runs in the full OS and holds the lease the boot handed over. `main.rs` is only the
//! command line.
//!
//! A library as well as a binary so that the fuzz targets (`fuzz/`) reach the parsers.
pub mod boot;
pub mod bootpath;
pub mod classify;
pub mod clock;
pub mod cmdline;
pub mod dhcp4;
pub mod drivers;
pub mod early;
pub mod fetch;
pub mod handoff;
pub mod keep;
pub mod links;
pub mod machine;
pub mod net;
pub mod probe;
pub mod provision;
pub mod register;
pub mod report;
pub mod retry;
pub mod slaac;
pub mod state;
pub mod sys;
pub mod topology;
