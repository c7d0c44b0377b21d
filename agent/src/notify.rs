//! Telling systemd how the agent is doing, over `$NOTIFY_SOCKET` (the sd_notify protocol: one
//! datagram of `KEY=value` lines). Only where systemd asked for it (a unit with
//! `Type=notify`); anywhere else this does nothing.
//!
//! `READY=1` is sent once the first reconcile has put every recorded export back, so that
//! the unit started after the agent (kernel nfsd, in the HA promoter's order) never serves
//! before the exports it must serve are in place.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `message` to the socket systemd named, if it named one. Failures are logged, never
/// fatal: the agent works the same without systemd.
pub fn notify(message: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&socket.to_string_lossy(), message) {
        tracing::warn!(socket = %socket.to_string_lossy(), error = %e, "cannot notify systemd");
    }
}

fn send(socket: &str, message: &str) -> std::io::Result<()> {
    let address = match socket.strip_prefix('@') {
        // An abstract socket (Linux): systemd's usual choice.
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())?
        }
        None => SocketAddr::from_pathname(socket)?,
    };
    UnixDatagram::unbound()?.send_to_addr(message.as_bytes(), &address)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_message_reaches_the_socket_systemd_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let receiver = UnixDatagram::bind(&path).unwrap();
        send(&path.display().to_string(), "READY=1\nSTATUS=reconciled").unwrap();
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=reconciled");
    }

    #[test]
    fn an_abstract_socket_is_reached_too() {
        let name = format!("rwxnfs-notify-test-{}", std::process::id());
        use std::os::linux::net::SocketAddrExt;
        let receiver =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        send(&format!("@{name}"), "READY=1").unwrap();
        let mut buf = [0u8; 16];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
