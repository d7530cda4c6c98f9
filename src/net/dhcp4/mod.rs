//! DHCPv4: a sans-IO client (`client`), its socket driver (`socket`), the code that applies a
//! lease to the kernel (`apply`), and the DISCOVER survey behind `zos.bond=auto` (`survey`).
pub mod apply;
pub mod client;
pub mod driver;
pub mod socket;
pub mod survey;
