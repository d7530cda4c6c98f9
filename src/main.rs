//! zos-netboot: gets a 0-OS node onto the network from its initramfs.
mod cmdline;
mod dhcp4;
mod links;
mod net;
mod report;
mod retry;
mod state;

fn main() {
    std::process::exit(0);
}
