//! The one unsafe corner the socket drivers share: socket options nix has no wrapper for
//! (SO_ATTACH_FILTER, PACKET_AUXDATA, ICMP6_FILTER, IPV6_RECVHOPLIMIT…).
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::libc;

/// `setsockopt(fd, level, name, val, sizeof val)`.
pub fn setsockopt_raw<T>(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    val: &T,
) -> io::Result<()> {
    let len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `val` points to `len` readable bytes for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(val).cast(),
            len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
