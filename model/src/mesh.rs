//! The network traffic a backend's volumes and control calls use, so that service-mesh
//! proxies can be told to leave exactly that alone.
//!
//! Kernel NFS from a `hostNetwork` node plugin never passes a sidecar; what a mesh can break is
//! the controller's connection to the agent (and, for the subdir backend, to the NFS server)
//! when the controller pod is injected or enrolled in ambient mode. [`traffic`] derives the
//! ports and addresses; [`controller_pod_annotations`] turns them into Istio's settings.

use std::{collections::BTreeSet, fmt::Write as _, net::IpAddr};

/// How clients talk NFS to a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NfsProtocol {
    /// NFSv4.1 and later: one TCP connection to 2049, callbacks on the same connection.
    V41Plus,
    /// NFSv4.0: 2049, and the server opens a callback connection back to the client.
    V40,
    /// NFSv3: 2049 plus the portmapper, mountd and (unless locking is local) lockd/statd.
    V3 {
        local_locks: bool,
        mountd_port: Option<u16>,
    },
}

/// What a backend's traffic depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendTraffic {
    /// The addresses clients mount from (the VIPs).
    pub servers: Vec<IpAddr>,
    /// The agent's address and port, when the controller reaches it over TCP.
    pub agent: Option<(IpAddr, u16)>,
    pub protocol: NfsProtocol,
    /// `port=` from the mount options, when NFS does not use 2049.
    pub nfs_port: Option<u16>,
}

/// Ports (TCP unless noted) and addresses a backend's traffic uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub tcp_ports: BTreeSet<u16>,
    pub udp_ports: BTreeSet<u16>,
    /// Addresses as /32 (or /128) ranges.
    pub ranges: BTreeSet<String>,
    /// Things a port list cannot express.
    pub notes: Vec<String>,
}

pub const NFS_PORT: u16 = 2049;
pub const PORTMAPPER_PORT: u16 = 111;
/// mountd's port when it is pinned the usual way (`mountd --port 20048`).
pub const DEFAULT_MOUNTD_PORT: u16 = 20048;

fn range(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}/32"),
        IpAddr::V6(a) => format!("{a}/128"),
    }
}

/// Derives the traffic of one backend.
pub fn traffic(backend: &BackendTraffic) -> Traffic {
    let mut t = Traffic::default();
    t.tcp_ports.insert(backend.nfs_port.unwrap_or(NFS_PORT));
    for server in &backend.servers {
        t.ranges.insert(range(*server));
    }
    if let Some((addr, port)) = backend.agent {
        t.tcp_ports.insert(port);
        t.ranges.insert(range(addr));
    }
    match backend.protocol {
        NfsProtocol::V41Plus => {}
        NfsProtocol::V40 => t.notes.push(
            "NFSv4.0 servers call clients back on a connection they open; prefer vers=4.1 or later"
                .into(),
        ),
        NfsProtocol::V3 {
            local_locks,
            mountd_port,
        } => {
            let mountd = mountd_port.unwrap_or(DEFAULT_MOUNTD_PORT);
            t.tcp_ports.extend([PORTMAPPER_PORT, mountd]);
            t.udp_ports.insert(PORTMAPPER_PORT);
            if !local_locks {
                t.notes.push(
                    "NFSv3 locking uses lockd and statd on ports the portmapper hands out; mount with nolock or local_lock=all, or pin them on the server".into(),
                );
            }
        }
    }
    t
}

/// Merges the traffic of several backends.
pub fn merge(all: impl IntoIterator<Item = Traffic>) -> Traffic {
    let mut out = Traffic::default();
    for t in all {
        out.tcp_ports.extend(t.tcp_ports);
        out.udp_ports.extend(t.udp_ports);
        out.ranges.extend(t.ranges);
        for n in t.notes {
            if !out.notes.contains(&n) {
                out.notes.push(n);
            }
        }
    }
    out
}

impl Traffic {
    /// The value of `traffic.sidecar.istio.io/excludeOutboundPorts`: the TCP ports, comma
    /// separated (what Istio's injector passes to its rule generator as `-o`).
    pub fn excluded_ports(&self) -> String {
        join(&self.tcp_ports)
    }

    /// The value of `traffic.sidecar.istio.io/excludeOutboundIPRanges` (`-x`).
    pub fn excluded_ranges(&self) -> String {
        join(&self.ranges)
    }
}

fn join<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The pod annotations and labels (YAML) that keep Istio away from this traffic in the
/// controller's pod: excluded outbound ports and ranges for sidecars, the app held until the
/// proxy is up, and ambient mode off for the driver's pods.
pub fn controller_pod_annotations(t: &Traffic) -> String {
    let mut y =
        String::from("metadata:\n  labels:\n    istio.io/dataplane-mode: none\n  annotations:\n");
    let _ = writeln!(
        y,
        "    traffic.sidecar.istio.io/excludeOutboundPorts: \"{}\"",
        t.excluded_ports()
    );
    if !t.ranges.is_empty() {
        let _ = writeln!(
            y,
            "    traffic.sidecar.istio.io/excludeOutboundIPRanges: \"{}\"",
            t.excluded_ranges()
        );
    }
    y.push_str("    proxy.istio.io/config: '{\"holdApplicationUntilProxyStarts\": true}'\n");
    for note in &t.notes {
        let _ = writeln!(y, "# note: {note}");
    }
    y
}

/// The node plugin runs on the host network: no sidecar, no ambient enrolment.
pub const NODE_POD_LABELS: &str = "metadata:\n  labels:\n    sidecar.istio.io/inject: \"false\"\n    istio.io/dataplane-mode: none\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn ha(protocol: NfsProtocol) -> BackendTraffic {
        BackendTraffic {
            servers: vec!["192.168.222.25".parse().unwrap()],
            agent: Some(("192.168.222.25".parse().unwrap(), 9820)),
            protocol,
            nfs_port: None,
        }
    }

    #[test]
    fn nfsv41_needs_2049_the_agent_and_the_vip() {
        let t = traffic(&ha(NfsProtocol::V41Plus));
        assert_eq!(t.tcp_ports, BTreeSet::from([2049, 9820]));
        assert_eq!(t.ranges, BTreeSet::from(["192.168.222.25/32".to_string()]));
        assert!(t.notes.is_empty());
    }

    #[test]
    fn nfsv3_adds_the_portmapper_and_mountd_and_warns_about_locks() {
        let t = traffic(&ha(NfsProtocol::V3 {
            local_locks: false,
            mountd_port: Some(892),
        }));
        assert_eq!(t.tcp_ports, BTreeSet::from([111, 892, 2049, 9820]));
        assert_eq!(t.udp_ports, BTreeSet::from([111]));
        assert_eq!(t.notes.len(), 1);
        let quiet = traffic(&ha(NfsProtocol::V3 {
            local_locks: true,
            mountd_port: None,
        }));
        assert!(quiet.tcp_ports.contains(&DEFAULT_MOUNTD_PORT) && quiet.notes.is_empty());
    }

    #[test]
    fn nfsv40_notes_callbacks_and_a_custom_port_replaces_2049() {
        let mut b = ha(NfsProtocol::V40);
        b.nfs_port = Some(12049);
        let t = traffic(&b);
        assert!(t.tcp_ports.contains(&12049) && !t.tcp_ports.contains(&2049));
        assert!(t.notes[0].contains("call clients back"));
    }

    #[test]
    fn annotations_list_the_merged_ports_and_ranges() {
        let mut other = ha(NfsProtocol::V41Plus);
        other.servers = vec!["fd00::25".parse().unwrap()];
        other.agent = None;
        let t = merge([traffic(&ha(NfsProtocol::V41Plus)), traffic(&other)]);
        let y = controller_pod_annotations(&t);
        assert!(y.contains("excludeOutboundPorts: \"2049,9820\""), "{y}");
        assert!(
            y.contains("excludeOutboundIPRanges: \"192.168.222.25/32,fd00::25/128\""),
            "{y}"
        );
        assert!(y.contains("holdApplicationUntilProxyStarts"));
        assert!(y.contains("istio.io/dataplane-mode: none"));
    }
}
