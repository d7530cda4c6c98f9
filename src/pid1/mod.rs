//! What only PID 1 does: early mounts and the reaper, coldplug of NIC drivers, the boot path
//! (how the machine booted), and the hand-off into the next root.
pub mod bootpath;
pub mod drivers;
pub mod early;
pub mod handoff;
pub mod machine;
