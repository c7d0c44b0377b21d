//! The traffic a controller configuration's backends use, for service-mesh exclusions: the
//! port facts come from `rwxnfs_model::mesh`, the configuration from the controller crate, and
//! the analysis of what a pod must exclude lives here, beside the checks that use it (the
//! doctor, the controller's self-check, `rwxnfs mesh annotations`).

use std::net::IpAddr;

use rwxnfs_model::mesh::{self, BackendTraffic, NfsProtocol, Traffic};
use rwxnfs_server::Endpoint;

use rwxnfs_controller::ControllerConfig;

/// The merged ports and addresses of every backend when mounted with `protocol`, and a note for
/// each agent whose address is a name (its addresses cannot be excluded by range from here).
pub fn from_config(config: &ControllerConfig, protocol: NfsProtocol) -> (Traffic, Vec<String>) {
    let mut unresolved = Vec::new();
    let merged = mesh::merge(config.backends.iter().map(|b| {
        // A subdir backend's controller speaks NFSv3 to the server itself (portmapper,
        // mountd, nfs), whatever version the nodes mount with.
        if let Some(subdir) = &b.subdir {
            return mesh::traffic(&BackendTraffic {
                servers: vec![subdir.server],
                agent: None,
                protocol: NfsProtocol::V3 {
                    local_locks: true,
                    mountd_port: subdir.mount_port,
                },
                nfs_port: subdir.nfs_port,
            });
        }
        let Some(agent) = &b.agent else {
            return Traffic::default();
        };
        let agent = match agent.endpoint.parse::<Endpoint>() {
            Ok(Endpoint::Tcp(addr)) => match agent_address(&addr) {
                Some(agent) => Some(agent),
                None => {
                    unresolved.push(format!(
                        "backend {}: agent address {addr:?} is a name; exclude its addresses by hand",
                        b.name
                    ));
                    None
                }
            },
            _ => None,
        };
        mesh::traffic(&BackendTraffic {
            servers: b.server.into_iter().collect(),
            agent,
            protocol,
            nfs_port: None,
        })
    }));
    (merged, unresolved)
}

fn agent_address(addr: &str) -> Option<(IpAddr, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let ip = host.trim_matches(['[', ']']).parse().ok()?;
    Some((ip, port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn tcp_agents_and_servers_become_ports_and_ranges_and_names_become_notes() {
        let config = ControllerConfig::parse(
            "backends:\n  - name: a\n    agent: {endpoint: \"tcp://192.168.222.25:9820\", tls: {ca: /a, cert: /b, key: /c}}\n    server: 192.168.222.26\n  - name: b\n    agent: {endpoint: \"tcp://agent.example:9821\", tls: {ca: /a, cert: /b, key: /c}}\n",
            Path::new("controller.yaml"),
        )
        .unwrap();
        let (t, notes) = from_config(&config, NfsProtocol::V41Plus);
        assert_eq!(
            t.tcp_ports.iter().copied().collect::<Vec<_>>(),
            [2049, 9820]
        );
        assert_eq!(
            t.ranges.iter().cloned().collect::<Vec<_>>(),
            ["192.168.222.25/32", "192.168.222.26/32"]
        );
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("agent.example"));
    }

    #[test]
    fn a_subdir_backend_is_nfsv3_from_the_controller_to_its_server() {
        let config = ControllerConfig::parse(
            "backends:\n  - name: nas\n    subdir: {server: 10.0.0.5, share: /k8s, mountPort: 20048}\n",
            Path::new("controller.yaml"),
        )
        .unwrap();
        let (t, _) = from_config(&config, NfsProtocol::V41Plus);
        assert_eq!(
            t.tcp_ports.iter().copied().collect::<Vec<_>>(),
            [111, 2049, 20048]
        );
        assert!(t.ranges.contains("10.0.0.5/32"), "{t:?}");
    }
}
