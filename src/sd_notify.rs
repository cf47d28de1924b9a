//! systemd's readiness protocol, so `Type=notify` units know when sluice is
//! really up (listeners bound, destinations started), when a reload runs and
//! when it is stopping: one datagram to `$NOTIFY_SOCKET` per change, nothing
//! at all when the variable is unset (not under systemd). The protocol is a
//! few lines; libsystemd is not needed for it.

/// Send `state` (`READY=1`, `RELOADING=1`, `STOPPING=1`, `STATUS=...`,
/// newline-separated) to the service manager, if there is one. A failure
/// is logged, never fatal: sluice runs the same without a manager.
pub fn notify(state: &str) {
    #[cfg(target_os = "linux")]
    {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return;
        };
        if let Err(e) = send(&path, state) {
            tracing::warn!(error = %e, socket = ?path, "cannot notify the service manager");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = state;
}

#[cfg(target_os = "linux")]
fn send(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    // `@name` is a socket in the abstract namespace.
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(path)?,
    };
    socket.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

/// `RELOADING=1` with the monotonic time systemd 253+ asks for.
pub fn reloading() {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let usec = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000;
    notify(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
}
