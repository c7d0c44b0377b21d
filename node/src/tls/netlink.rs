//! Whether a handshake daemon listens for the kernel's TLS handshake requests, asked of the
//! kernel over netlink.
//!
//! The kernel hands each RPC-with-TLS handshake to user space over the `handshake` generic
//! netlink family (net/handshake, Linux 6.5): it announces the request to the family's `tlshd`
//! multicast group in the network namespace of the NFS client's socket, and fails the request
//! at once when nobody has joined that group. So the question is asked the same way: the
//! family's group id (the generic netlink controller's GETFAMILY), then whether any generic
//! netlink socket of this namespace has joined it (a `sock_diag` dump of netlink sockets with
//! their groups, as `ss --netlink` reads them). The node plugin runs on the host network, the
//! namespace its mounts' sockets are made in.
#![allow(unsafe_code)] // socket(2), sendto(2), recv(2) and setsockopt(2) on netlink sockets

use std::{
    io,
    mem::size_of,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

/// The generic netlink family of the kernel's handshake upcall, and its daemon's group.
pub const FAMILY: &str = "handshake";
pub const GROUP: &str = "tlshd";

const NETLINK_GENERIC: i32 = 16;
const NETLINK_SOCK_DIAG: i32 = 4;
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const CTRL_ATTR_MCAST_GROUPS: u16 = 7;
const CTRL_ATTR_MCAST_GRP_NAME: u16 = 1;
const CTRL_ATTR_MCAST_GRP_ID: u16 = 2;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NDIAG_SHOW_GROUPS: u32 = 0x2;
const NETLINK_DIAG_GROUPS: u16 = 1;
/// An attribute's type without its nested and byte-order flags.
const NLA_TYPE_MASK: u16 = 0x3fff;
const NLMSG_HDRLEN: usize = 16;
const GENL_HDRLEN: usize = 4;
/// `struct netlink_diag_msg`.
const DIAG_MSG_LEN: usize = 28;

/// What the kernel says about the handshake upcall in this network namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upcall {
    /// A socket has joined the `tlshd` group: handshakes will be served.
    Listening,
    /// The family exists but nobody listens: every handshake fails.
    NoListener,
    /// The kernel has no `handshake` family (before 6.5, or built without it).
    NoFamily,
}

/// Asks the kernel; an error means it could not be asked (e.g. no `netlink_diag` module).
pub fn tlshd_upcall() -> io::Result<Upcall> {
    let Some(group) = group_id(FAMILY, GROUP)? else {
        return Ok(Upcall::NoFamily);
    };
    if group_has_member(NETLINK_GENERIC as u8, group)? {
        Ok(Upcall::Listening)
    } else {
        Ok(Upcall::NoListener)
    }
}

/// The id of multicast group `group` of generic netlink family `family`, `None` when the
/// kernel has no such family (or the family no such group).
fn group_id(family: &str, group: &str) -> io::Result<Option<u32>> {
    let socket = Socket::open(NETLINK_GENERIC)?;
    let mut payload = vec![CTRL_CMD_GETFAMILY, 1, 0, 0];
    push_attr(&mut payload, CTRL_ATTR_FAMILY_NAME, &nul_terminated(family));
    socket.send(&message(GENL_ID_CTRL, NLM_F_REQUEST, &payload))?;
    let reply = socket.recv()?;
    let mut found = None;
    for (kind, body) in messages(&reply) {
        match kind {
            NLMSG_ERROR => match error_code(body) {
                0 => {}
                code if code == -libc::ENOENT => return Ok(None),
                code => return Err(io::Error::from_raw_os_error(-code)),
            },
            GENL_ID_CTRL => {
                found = body
                    .get(GENL_HDRLEN..)
                    .and_then(|attrs| group_in(attrs, group));
            }
            _ => {}
        }
    }
    Ok(found)
}

/// Whether any netlink socket of `protocol` in this namespace has joined `group`.
fn group_has_member(protocol: u8, group: u32) -> io::Result<bool> {
    let socket = Socket::open(NETLINK_SOCK_DIAG)?;
    // struct netlink_diag_req: family, protocol, pad, inode, what to show, cookie.
    let mut req = vec![libc::AF_NETLINK as u8, protocol, 0, 0];
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&NDIAG_SHOW_GROUPS.to_ne_bytes());
    req.extend_from_slice(&[0xff; 8]);
    socket.send(&message(
        SOCK_DIAG_BY_FAMILY,
        NLM_F_REQUEST | NLM_F_DUMP,
        &req,
    ))?;
    let mut member = false;
    loop {
        let reply = socket.recv()?;
        for (kind, body) in messages(&reply) {
            match kind {
                NLMSG_DONE => return Ok(member),
                NLMSG_ERROR => {
                    let code = error_code(body);
                    return Err(io::Error::from_raw_os_error(-code));
                }
                SOCK_DIAG_BY_FAMILY => {
                    member |= body
                        .get(DIAG_MSG_LEN..)
                        .is_some_and(|attrs| joined(attrs, group));
                }
                _ => {}
            }
        }
        if reply.is_empty() {
            return Ok(member);
        }
    }
}

/// In a GETFAMILY reply's attributes: the id of the multicast group named `group`.
fn group_in(attrs: &[u8], group: &str) -> Option<u32> {
    let groups = attributes(attrs).find(|(kind, _)| *kind == CTRL_ATTR_MCAST_GROUPS)?;
    attributes(groups.1).find_map(|(_, entry)| {
        let mut name = None;
        let mut id = None;
        for (kind, value) in attributes(entry) {
            match kind {
                CTRL_ATTR_MCAST_GRP_NAME => name = Some(value),
                CTRL_ATTR_MCAST_GRP_ID => id = value.get(..4).map(u32_ne),
                _ => {}
            }
        }
        (name? == nul_terminated(group).as_slice()).then_some(id?)
    })
}

/// In one socket's diag attributes: whether its group bitmap has `group` (group n is bit n-1).
fn joined(attrs: &[u8], group: u32) -> bool {
    let Some(bit) = group.checked_sub(1) else {
        return false;
    };
    attributes(attrs)
        .filter(|(kind, _)| *kind == NETLINK_DIAG_GROUPS)
        .any(|(_, bitmap)| {
            // An array of unsigned longs: on a little-endian machine, bit n is in byte n/8.
            let word = (bit / 64) as usize * 8;
            let within = bit % 64;
            bitmap.get(word..word + 8).is_some_and(|w| {
                (u64::from_ne_bytes(w.try_into().unwrap_or([0; 8])) >> within) & 1 == 1
            })
        })
}

fn u32_ne(b: &[u8]) -> u32 {
    u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
}

fn nul_terminated(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn push_attr(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(align4(buf.len()), 0);
}

fn message(kind: u16, flags: u16, payload: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + payload.len();
    let mut m = Vec::with_capacity(align4(len));
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    m.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel
    m.extend_from_slice(payload);
    m.resize(align4(m.len()), 0);
    m
}

/// The messages in one datagram: (type, body after the header). A truncated one ends it.
fn messages(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32_ne(rest) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return None;
        }
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        let body = &rest[NLMSG_HDRLEN..len];
        rest = rest.get(align4(len)..).unwrap_or_default();
        Some((kind, body))
    })
}

/// Attributes (type without flags, value); a truncated one ends them.
fn attributes(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
        if len < 4 || len > rest.len() {
            return None;
        }
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK;
        let value = &rest[4..len];
        rest = rest.get(align4(len)..).unwrap_or_default();
        Some((kind, value))
    })
}

/// An NLMSG_ERROR body's code: 0 is an acknowledgement, else minus the errno.
fn error_code(body: &[u8]) -> i32 {
    body.get(..4)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(-libc::EPROTO)
}

/// A netlink socket to the kernel that gives up on a reply after two seconds.
struct Socket(OwnedFd);

impl Socket {
    fn open(protocol: i32) -> io::Result<Socket> {
        // SAFETY: socket(2) with constant arguments; the result is checked before it is owned.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a descriptor just made, which nothing else owns.
        let socket = Socket(unsafe { OwnedFd::from_raw_fd(fd) });
        let timeout = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        // SAFETY: the option's value is a timeval that outlives the call, with its size.
        let rc = unsafe {
            libc::setsockopt(
                socket.0.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(socket)
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: an all-zero sockaddr_nl is valid (port 0: the kernel).
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `msg` and `kernel` outlive the call, which is given their sizes.
        let sent = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// One datagram (a dump sends several).
    fn recv(&self) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; 32 * 1024];
        // SAFETY: the buffer outlives the call, which is given its length.
        let n = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        buf.truncate(n as usize);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(kind: u16, inner: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        push_attr(&mut v, kind | 0x8000, inner);
        v
    }

    /// A GETFAMILY reply's attributes for `handshake` with groups `none` (4) and `tlshd` (5).
    fn family_attrs() -> Vec<u8> {
        let mut attrs = Vec::new();
        push_attr(&mut attrs, CTRL_ATTR_FAMILY_NAME, b"handshake\0");
        let mut groups = Vec::new();
        for (i, (name, id)) in [("none", 4u32), ("tlshd", 5)].into_iter().enumerate() {
            let mut entry = Vec::new();
            push_attr(&mut entry, CTRL_ATTR_MCAST_GRP_ID, &id.to_ne_bytes());
            push_attr(&mut entry, CTRL_ATTR_MCAST_GRP_NAME, &nul_terminated(name));
            groups.extend(nested(i as u16 + 1, &entry));
        }
        attrs.extend(nested(CTRL_ATTR_MCAST_GROUPS, &groups));
        attrs
    }

    #[test]
    fn the_group_id_is_found_by_its_name_among_the_family_groups() {
        let attrs = family_attrs();
        assert_eq!(group_in(&attrs, "tlshd"), Some(5));
        assert_eq!(group_in(&attrs, "none"), Some(4));
        assert_eq!(group_in(&attrs, "tls"), None, "names match whole");
        assert_eq!(group_in(&attrs[..attrs.len() - 3], "tlshd"), None);
    }

    #[test]
    fn a_socket_has_joined_group_n_when_bit_n_minus_1_is_set() {
        let mut attrs = Vec::new();
        let bitmap: u64 = 1 << 4; // group 5
        push_attr(&mut attrs, 0, &[0; 16]); // meminfo, ignored
        push_attr(&mut attrs, NETLINK_DIAG_GROUPS, &bitmap.to_ne_bytes());
        assert!(joined(&attrs, 5));
        assert!(!joined(&attrs, 4));
        assert!(!joined(&attrs, 0));
        assert!(!joined(&attrs, 70), "beyond the bitmap");
        let mut wide = Vec::new();
        push_attr(
            &mut wide,
            NETLINK_DIAG_GROUPS,
            &[0u64.to_ne_bytes(), (1u64 << 5).to_ne_bytes()].concat(),
        );
        assert!(joined(&wide, 70));
    }

    #[test]
    fn messages_and_errors_are_read_from_one_datagram() {
        let mut datagram = message(GENL_ID_CTRL, 0, &[CTRL_CMD_GETFAMILY, 1, 0, 0]);
        datagram.extend(message(NLMSG_ERROR, 0, &(-libc::ENOENT).to_ne_bytes()));
        let got: Vec<(u16, Vec<u8>)> = messages(&datagram).map(|(k, b)| (k, b.to_vec())).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, GENL_ID_CTRL);
        assert_eq!(error_code(&got[1].1), -libc::ENOENT);
        assert_eq!(
            messages(&datagram[..18]).count(),
            0,
            "a truncated message ends them"
        );
    }

    /// This machine's kernel answers either way; the question itself must not fail.
    #[test]
    fn the_kernel_of_this_machine_answers_the_question() {
        match tlshd_upcall() {
            Ok(upcall) => println!("handshake upcall here: {upcall:?}"),
            Err(e) => panic!("asking the kernel failed: {e}"),
        }
    }
}
