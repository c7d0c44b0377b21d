//! Clients told at once that the NFS server moved: the connections recorded, and the tickle.
//!
//! When the host serving the cluster's address dies, each client's TCP connection to it is
//! left half-open: the client retransmits with a timeout that doubles each time (0.2, 0.4,
//! 0.8, ... s), so after a takeover that took 7 s it may wait until the retransmission at
//! about 12.6 s before it reaches the new host, learns from its reset that the connection is
//! gone and reconnects. The new host can shorten that wait to nothing: for each connection the
//! old host had, it sends the client an ACK that is out of its window (a "tickle", as CTDB
//! calls it). The client answers with an ACK carrying its real sequence numbers; the new
//! host's kernel has no such connection and answers that with a reset the client accepts, and
//! the client reconnects right away.
//!
//! The agent on the serving host records the established connections to the NFS port
//! ([`NFS_PORT`]) in `<stateDir>/nfs-connections` (on the replicated volume), rewritten when
//! the set changes and never emptied by a host that has none yet; after the address is up on
//! the new host, `rwxnfs tickle` sends the tickles ([`tickle`]).

use std::{
    collections::BTreeSet,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

/// The port NFS clients connect to (NFSv4 needs only this one).
pub const NFS_PORT: u16 = 2049;
/// The file under the state directory that holds the recorded connections.
pub const FILE: &str = "nfs-connections";
/// How often the serving agent looks at its connections.
pub const RECORD_PERIOD: Duration = Duration::from_secs(2);
/// Tickles sent for each connection (a lost one costs the client its backoff again).
const REPEATS: usize = 3;

/// One TCP connection to this host: `local` is the server's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Connection {
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// The established TCP connections whose local port is `port`, from the kernel's `tcp` and
/// `tcp6` tables of the calling thread's network namespace (kernel nfsd's sockets are there
/// too). `/proc/net` would be the process's, which a thread that joined another namespace
/// (as the tests' do) is not in.
pub fn established(port: u16) -> io::Result<BTreeSet<Connection>> {
    let mut found = BTreeSet::new();
    for table in ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"] {
        match std::fs::read_to_string(table) {
            Ok(text) => found.extend(parse_proc_net_tcp(&text, port)),
            // A kernel without IPv6 has no tcp6.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("reading {table}: {e}"))),
        }
    }
    Ok(found)
}

/// The established connections with local port `port` in one `/proc/net/tcp{,6}` table.
/// IPv4 clients of a dual-stack socket (`::ffff:a.b.c.d`) come out as IPv4.
fn parse_proc_net_tcp(text: &str, port: u16) -> Vec<Connection> {
    const ESTABLISHED: &str = "01";
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace().skip(1);
            let local = parse_endpoint(fields.next()?)?;
            let remote = parse_endpoint(fields.next()?)?;
            let state = fields.next()?;
            (state == ESTABLISHED && local.port() == port).then_some(Connection { local, remote })
        })
        .collect()
}

/// `0100007F:0801` (an IPv4 address as the kernel's 32-bit word in this machine's byte order)
/// or 32 hex digits (four such words), then the port in hex.
fn parse_endpoint(field: &str) -> Option<SocketAddr> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |hex: &str| u32::from_str_radix(hex, 16).ok().map(u32::to_ne_bytes);
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(addr)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                chunk.copy_from_slice(&word(addr.get(i * 8..i * 8 + 8)?)?);
            }
            let v6 = Ipv6Addr::from(bytes);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The file's text: one `local remote` pair a line.
pub fn render(connections: &BTreeSet<Connection>) -> String {
    let mut text =
        String::from("# NFS clients connected to this cluster's server (rwxnfs agent)\n");
    for c in connections {
        text.push_str(&format!("{} {}\n", c.local, c.remote));
    }
    text
}

/// The connections a file lists; lines that are not a pair of socket addresses are skipped.
pub fn parse(text: &str) -> Vec<Connection> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let local = parts.next()?.parse().ok()?;
            let remote = parts.next()?.parse().ok()?;
            Some(Connection { local, remote })
        })
        .collect()
}

/// Records this host's NFS connections under `state_dir` every [`RECORD_PERIOD`], for as
/// long as the returned task runs. The file is replaced (synced, so it survives this host's
/// crash on the replicated volume) only when the set changed and is not empty: an agent just
/// started on the new host, before its address is up, must not erase what the old host
/// recorded.
pub fn spawn_recorder(state_dir: PathBuf) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let path = state_dir.join(FILE);
        let mut last: Option<BTreeSet<Connection>> = None;
        let mut interval = tokio::time::interval(RECORD_PERIOD);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let (dir, path) = (state_dir.clone(), path.clone());
            let previous = last.clone();
            let recorded = tokio::task::spawn_blocking(move || record_once(&dir, &path, previous))
                .await
                .unwrap_or_else(|e| Err(io::Error::other(e.to_string())));
            match recorded {
                Ok(Some(now)) => last = Some(now),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "cannot record the NFS clients' connections"),
            }
        }
    })
}

/// One look: writes the file when the set is not empty and differs from `previous` (or from
/// the file, the first time), and returns the set written.
fn record_once(
    dir: &Path,
    path: &Path,
    previous: Option<BTreeSet<Connection>>,
) -> io::Result<Option<BTreeSet<Connection>>> {
    let now = established(NFS_PORT)?;
    if now.is_empty() {
        return Ok(None);
    }
    let unchanged = match previous {
        Some(previous) => previous == now,
        None => std::fs::read_to_string(path).is_ok_and(|text| text == render(&now)),
    };
    if !unchanged {
        crate::table::atomic_write(dir, path, render(&now).as_bytes())?;
        tracing::debug!(
            connections = now.len(),
            "recorded the NFS clients' connections"
        );
    }
    Ok(Some(now))
}

/// What [`tickle`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tickled {
    /// Connections tickled.
    pub sent: usize,
    /// Connections to an address this host does not have (not the cluster's address).
    pub not_here: usize,
    /// Connections whose tickle could not be sent, with the error.
    pub failed: Vec<(Connection, String)>,
}

/// Sends each connection's client [`REPEATS`] out-of-window ACKs from the connection's server
/// side, through a raw socket bound to that address (so needs CAP_NET_RAW). A connection whose
/// server address is not on this host is left alone.
pub fn tickle(connections: &[Connection]) -> Tickled {
    let mut report = Tickled::default();
    for c in connections {
        match send_tickles(c) {
            Ok(()) => report.sent += 1,
            Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => report.not_here += 1,
            Err(e) => report.failed.push((*c, e.to_string())),
        }
    }
    report
}

fn send_tickles(c: &Connection) -> io::Result<()> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let segment = ack_segment(c).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the two sides are of different address families",
        )
    })?;
    let domain = if c.local.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::RAW, Some(Protocol::TCP))?;
    socket.bind(&SockAddr::from(SocketAddr::new(c.local.ip(), 0)))?;
    // The port of a raw socket's destination must be 0 for IPv6 (it is the protocol there).
    let to = SockAddr::from(SocketAddr::new(c.remote.ip(), 0));
    for _ in 0..REPEATS {
        socket.send_to(&segment, &to)?;
    }
    Ok(())
}

/// A TCP segment from `c.local` to `c.remote`: ACK, sequence and acknowledgement 0 (out of any
/// window a real connection has), a small window, the checksum over the pseudo-header. None
/// when the two sides are of different address families.
fn ack_segment(c: &Connection) -> Option<[u8; 20]> {
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&c.local.port().to_be_bytes());
    tcp[2..4].copy_from_slice(&c.remote.port().to_be_bytes());
    // seq (4..8) and ack (8..12) stay 0.
    tcp[12] = 5 << 4; // header length: five 32-bit words
    tcp[13] = 0x10; // ACK
    tcp[14..16].copy_from_slice(&1024u16.to_be_bytes());
    let sum = checksum(&pseudo_header(c, tcp.len())?, &tcp);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    Some(tcp)
}

fn pseudo_header(c: &Connection, tcp_len: usize) -> Option<Vec<u8>> {
    const TCP: u8 = 6;
    let mut p = Vec::with_capacity(40);
    match (c.local.ip(), c.remote.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            p.extend_from_slice(&src.octets());
            p.extend_from_slice(&dst.octets());
            p.extend_from_slice(&[0, TCP]);
            p.extend_from_slice(&(tcp_len as u16).to_be_bytes());
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            p.extend_from_slice(&src.octets());
            p.extend_from_slice(&dst.octets());
            p.extend_from_slice(&(tcp_len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, TCP]);
        }
        _ => return None,
    }
    Some(p)
}

/// The Internet checksum (RFC 1071) of `a` then `b` (`a` of even length).
fn checksum(a: &[u8], b: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for part in [a, b] {
        let mut words = part.chunks(2);
        for w in &mut words {
            let word = if w.len() == 2 {
                u16::from_be_bytes([w[0], w[1]])
            } else {
                u16::from_be_bytes([w[0], 0])
            };
            sum += u32::from(word);
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_tables_give_the_established_connections_to_the_port() {
        // Captured shapes: a listener, two established clients (one on another port), a
        // TIME_WAIT, on a little-endian machine.
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0801 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 100 0 0 10 0
   1: 6400630A:0801 0200630A:03A5 01 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 20 4 30 10 -1
   2: 6400630A:0801 0300630A:0316 06 00000000:00000000 03:00000ABC 00000000     0        0 0 3 0000000000000000
   3: 0100007F:24CC 0100007F:A2B6 01 00000000:00000000 00:00000000 00000000     0        0 1234 1 0000000000000000 20 4 30 10 -1
";
        let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000FFFF00006400630A:0801 0000000000000000FFFF00000400630A:0320 01 00000000:00000000 00:00000000 00000000     0        0 99 1 0000000000000000 20 4 30 10 -1
   1: 0000000000000000000000000100000000:0801 00000000000000000000000001000000:B1C2 01 00000000:00000000 00:00000000 00000000     0        0 98 1 0000000000000000 20 4 30 10 -1
";
        if cfg!(target_endian = "little") {
            assert_eq!(
                parse_proc_net_tcp(v4, NFS_PORT),
                [Connection {
                    local: "10.99.0.100:2049".parse().unwrap(),
                    remote: "10.99.0.2:933".parse().unwrap(),
                }]
            );
            assert_eq!(
                parse_proc_net_tcp(v6, NFS_PORT),
                [Connection {
                    local: "10.99.0.100:2049".parse().unwrap(),
                    remote: "10.99.0.4:800".parse().unwrap(),
                }],
                "a v4-mapped client is IPv4; a malformed (34-digit) address is skipped"
            );
        }
    }

    #[test]
    fn the_file_lists_each_connection_and_reads_back_the_same() {
        let set: BTreeSet<Connection> = [
            ("10.99.0.100:2049", "10.99.0.3:700"),
            ("[fd00::64]:2049", "[fd00::3]:801"),
        ]
        .into_iter()
        .map(|(l, r)| Connection {
            local: l.parse().unwrap(),
            remote: r.parse().unwrap(),
        })
        .collect();
        let text = render(&set);
        assert_eq!(parse(&text), set.iter().copied().collect::<Vec<_>>());
        assert_eq!(parse("garbage\n1.2.3.4:5\n"), []);
    }

    #[test]
    fn a_tickle_is_an_out_of_window_ack_with_a_valid_checksum() {
        for (local, remote) in [
            ("10.99.0.100:2049", "10.99.0.3:933"),
            ("[fd00::64]:2049", "[fd00::3]:801"),
        ] {
            let c = Connection {
                local: local.parse().unwrap(),
                remote: remote.parse().unwrap(),
            };
            let seg = ack_segment(&c).unwrap();
            assert_eq!(u16::from_be_bytes([seg[0], seg[1]]), c.local.port());
            assert_eq!(u16::from_be_bytes([seg[2], seg[3]]), c.remote.port());
            assert_eq!(&seg[4..12], &[0; 8], "sequence and acknowledgement 0");
            assert_eq!(seg[13], 0x10, "ACK only");
            // A receiver's sum over the pseudo-header and the segment, checksum included, is 0.
            assert_eq!(
                checksum(&pseudo_header(&c, seg.len()).unwrap(), &seg),
                0,
                "{local}"
            );
        }
    }
}
