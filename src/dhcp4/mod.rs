//! DHCPv4: a sans-IO client (`client`), its socket driver (`socket`) and the code that applies a
//! lease to the kernel (`apply`).
pub mod apply;
pub mod client;
pub mod driver;
pub mod socket;
