//! A network partition between the controller and the agent, in the middle of CreateVolume and
//! ControllerPublishVolume.
//!
//! The NFS host is a network namespace with NFS-Ganesha and `rwxnfs agent` (mutual TLS on
//! TCP); the controller runs in another, joined to it by a veth link, and serves CSI on a Unix
//! socket this test calls as a sidecar would. The partition is iptables rules in the NFS
//! host's namespace that drop the agent's traffic (dropped, not refused: no reset, no ICMP,
//! the controller's packets go unanswered):
//!
//! - **both ways**: the request never reaches the agent;
//! - **replies only**: the request reaches the agent, which carries it out, and its reply is
//!   lost. This is the partition in the middle of the call.
//!
//! Each call must end within its bound (the backend's `timeoutSeconds` and a margin) with
//! `UNAVAILABLE` or `DEADLINE_EXCEEDED`. After the partition heals, the sidecar's retry of the
//! same request must succeed, and leave exactly one export per volume, with the access list the
//! calls asked for, and Ganesha exporting exactly the agent's table.
#![allow(clippy::unwrap_used)]

use std::{
    path::Path,
    time::{Duration, Instant},
};

use rwxnfs_agent::exporter::Exporter;
use rwxnfs_proto::{
    agent::{self as pb, agent_client::AgentClient},
    csi::{self, controller_client::ControllerClient},
};
use rwxnfs_server::Endpoint;
use rwxnfs_testbed::{
    GaneshaServer, Netns, Pki, Process, require, spawn_serving, vm::mount_capability,
};
use tonic::{Code, transport::Channel};

const MIB: i64 = 1 << 20;
/// The backend's limit for one agent call (`timeoutSeconds`).
const AGENT_TIMEOUT: Duration = Duration::from_secs(5);
/// What a CSI call through a partition may take: the agent call's limit, and a margin for a
/// busy machine.
const CALL_BOUND: Duration = Duration::from_secs(15);
/// How long the sidecar's retries may take after the partition heals.
const RETRY_BUDGET: Duration = Duration::from_secs(60);
const NODES: [(&str, &str); 2] = [("node-a", "10.0.0.1"), ("node-b", "10.0.0.2")];

struct Stack {
    host: GaneshaServer,
    _controller_ns: Netns,
    _agent: Process,
    _controller: Process,
    csi: ControllerClient<Channel>,
    /// The agent's own view, over its Unix socket (not through the partition).
    agent: AgentClient<Channel>,
}

impl Stack {
    async fn start(dir: &Path) -> Self {
        require(&["iptables"]);
        let state = dir.join("state");
        std::fs::create_dir_all(dir.join("exports")).unwrap();
        let host = GaneshaServer::with_conf_dir(dir, "part", &state.join("ganesha"));
        let controller_ns = Netns::new("ctl");
        // The NFS host's side is .1, the controller's .2.
        let link = host.netns.link(&controller_ns, 61);

        let pki = Pki::new("rwxnfs partition test CA");
        let tls = dir.join("tls");
        std::fs::create_dir_all(&tls).unwrap();
        let write = |name: &str, text: &str| {
            std::fs::write(tls.join(name), text).unwrap();
            tls.join(name).display().to_string()
        };
        let ca = write("ca.pem", &pki.ca_pem);
        let (cert, key) = pki.issue("rwxnfs-agent");
        let (agent_cert, agent_key) = (write("agent.pem", &cert), write("agent.key", &key));
        let (cert, key) = pki.issue("rwxnfs-controller");
        let (ctl_cert, ctl_key) = (write("ctl.pem", &cert), write("ctl.key", &key));

        std::fs::write(
            dir.join("agent.yaml"),
            format!(
                "exportRoot: {}\nstateDir: {}\nquota: none\n\
                 nfsServer: {{kind: ganesha, dbusAddress: \"{}\", dbusNamePrefix: part}}\n\
                 serverAddresses: [{server}]\n\
                 listen: [\"tcp://{server}:9820\", \"unix://{}\"]\n\
                 tls: {{ca: {ca}, cert: {agent_cert}, key: {agent_key}, allowedClientNames: [rwxnfs-controller]}}\n",
                dir.join("exports").display(),
                state.display(),
                host.bus.address(),
                dir.join("agent.sock").display(),
                server = link.server,
            ),
        )
        .unwrap();
        let nodes: String = NODES
            .iter()
            .map(|(node, address)| format!("  {node}: [{address}]\n"))
            .collect();
        std::fs::write(
            dir.join("controller.yaml"),
            format!(
                "backends:\n  - name: part\n    agent:\n      endpoint: tcp://{}:9820\n      \
                 timeoutSeconds: {}\n      tls: {{ca: {ca}, cert: {ctl_cert}, key: {ctl_key}, serverName: rwxnfs-agent}}\n\
                 nodes:\n{nodes}",
                link.server,
                AGENT_TIMEOUT.as_secs(),
            ),
        )
        .unwrap();

        let agent_config = dir.join("agent.yaml").display().to_string();
        let agent = spawn_serving(
            dir,
            "agent",
            host.netns.command(env!("CARGO_BIN_EXE_rwxnfs")),
            &["agent", "--config", &agent_config],
        );
        let controller_config = dir.join("controller.yaml").display().to_string();
        let endpoint = format!("unix://{}", dir.join("controller.sock").display());
        let controller = spawn_serving(
            dir,
            "controller",
            controller_ns.command(env!("CARGO_BIN_EXE_rwxnfs")),
            &[
                "controller",
                "--config",
                &controller_config,
                "--endpoint",
                &endpoint,
            ],
        );
        let csi = ControllerClient::new(
            Endpoint::Unix(dir.join("controller.sock"))
                .connect()
                .await
                .unwrap(),
        );
        let agent_client = AgentClient::new(
            Endpoint::Unix(dir.join("agent.sock"))
                .connect()
                .await
                .unwrap(),
        );
        Self {
            host,
            _controller_ns: controller_ns,
            _agent: agent,
            _controller: controller,
            csi,
            agent: agent_client,
        }
    }

    /// Drops the agent's TCP traffic in the NFS host's namespace: its replies, and with
    /// `both` the requests too.
    fn partition(&self, both: bool) {
        if both {
            self.iptables(&["-A", "INPUT", "-p", "tcp", "--dport", "9820", "-j", "DROP"]);
        }
        self.iptables(&["-A", "OUTPUT", "-p", "tcp", "--sport", "9820", "-j", "DROP"]);
    }

    fn heal(&self) {
        self.iptables(&["-F", "INPUT"]);
        self.iptables(&["-F", "OUTPUT"]);
    }

    fn iptables(&self, args: &[&str]) {
        let out = self
            .host
            .netns
            .command("iptables")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "iptables {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// One call through the controller that succeeds (retried while the controller's channel
    /// to the agent reconnects): the channel is connected afterwards.
    async fn warm(&self) {
        retried("a call that connects the controller to the agent", || {
            let mut csi = self.csi.clone();
            async move { csi.create_volume(create_request("pvc-before")).await }
        })
        .await;
    }

    async fn export(&self, name: &str) -> Option<pb::Export> {
        match self
            .agent
            .clone()
            .get_export(pb::GetExportRequest { name: name.into() })
            .await
        {
            Ok(r) => r.into_inner().export,
            Err(s) if s.code() == Code::NotFound => None,
            Err(s) => panic!("GetExport {name}: {s}"),
        }
    }

    async fn exports(&self) -> Vec<pb::Export> {
        self.agent
            .clone()
            .list_exports(pb::ListExportsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .exports
    }
}

fn create_request(name: &str) -> csi::CreateVolumeRequest {
    csi::CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(csi::CapacityRange {
            required_bytes: 8 * MIB,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![mount_capability(false)],
        ..Default::default()
    }
}

fn publish_request(volume_id: &str, node: &str) -> csi::ControllerPublishVolumeRequest {
    csi::ControllerPublishVolumeRequest {
        volume_id: volume_id.into(),
        node_id: node.into(),
        volume_capability: Some(mount_capability(false)),
        ..Default::default()
    }
}

/// A call through the partition: it must fail, within its bound, with a code a sidecar
/// retries.
async fn fails_in_bound<T: std::fmt::Debug>(
    what: &str,
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Duration {
    let started = Instant::now();
    let result = tokio::time::timeout(CALL_BOUND * 2, call)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {:?}", CALL_BOUND * 2));
    let took = started.elapsed();
    let status = result.expect_err(&format!("{what} succeeded through a partition"));
    assert!(
        matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded),
        "{what}: {status}"
    );
    assert!(took <= CALL_BOUND, "{what} took {took:?}: {status}");
    println!("  {what}: {:?} after {took:.1?}", status.code());
    took
}

/// The sidecar's retry after the partition healed: the same request until it succeeds.
async fn retried<T, Fut>(what: &str, mut call: impl FnMut() -> Fut) -> (T, Duration)
where
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        match call().await {
            Ok(r) => {
                let took = started.elapsed();
                println!("  {what}: ok in {took:.1?} ({attempts} attempts)");
                return (r.into_inner(), took);
            }
            Err(s) if matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded) => {
                assert!(
                    started.elapsed() < RETRY_BUDGET,
                    "{what}: still failing after {RETRY_BUDGET:?}: {s}"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(s) => panic!("{what}: {s}"),
        }
    }
}

/// The access list of a volume granted to both nodes.
fn both_nodes() -> Vec<(String, Vec<String>)> {
    NODES
        .iter()
        .map(|(node, address)| (node.to_string(), vec![address.to_string()]))
        .collect()
}

fn addresses(export: &pb::Export) -> Vec<(String, Vec<String>)> {
    let mut clients: Vec<_> = export
        .clients
        .iter()
        .map(|c| (c.client_id.clone(), c.addresses.clone()))
        .collect();
    clients.sort();
    clients
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_mid_call_ends_in_bound_and_the_retry_leaves_exactly_one_export() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let s = Stack::start(dir).await;
    let mut csi = s.csi.clone();

    // Before: the path works.
    let before = csi
        .create_volume(create_request("pvc-before"))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    println!(
        "partition between the controller and the agent (agent calls limited to {AGENT_TIMEOUT:?}):"
    );

    // 1. Both ways: the create never reaches the agent.
    s.partition(true);
    fails_in_bound(
        "CreateVolume, traffic dropped both ways",
        csi.create_volume(create_request("pvc-both")),
    )
    .await;
    fails_in_bound(
        "ControllerPublishVolume, traffic dropped both ways",
        csi.controller_publish_volume(publish_request(&before.volume_id, "node-a")),
    )
    .await;
    assert!(
        s.export("pvc-both").await.is_none(),
        "the request reached the agent"
    );
    assert!(
        s.export("pvc-before").await.unwrap().clients.is_empty(),
        "the grant reached the agent"
    );
    s.heal();
    let (both, _) = retried("CreateVolume after the heal", || {
        let mut csi = csi.clone();
        async move { csi.create_volume(create_request("pvc-both")).await }
    })
    .await;
    retried("ControllerPublishVolume after the heal", || {
        let (mut csi, id) = (csi.clone(), before.volume_id.clone());
        async move {
            csi.controller_publish_volume(publish_request(&id, "node-a"))
                .await
        }
    })
    .await;

    // 2. Replies only: the agent makes the export, or grants access, and the controller never
    //    hears. Each over a connection that is up when the partition starts (a new one could
    //    not even be opened), as when a link fails under a running call.
    s.warm().await;
    s.partition(false);
    fails_in_bound(
        "CreateVolume, the agent's replies dropped",
        csi.create_volume(create_request("pvc-mid")),
    )
    .await;
    let made = s
        .export("pvc-mid")
        .await
        .expect("the agent made the export");
    s.heal();
    let (mid, _) = retried("CreateVolume after the heal", || {
        let mut csi = csi.clone();
        async move { csi.create_volume(create_request("pvc-mid")).await }
    })
    .await;
    let mid = mid.volume.unwrap();
    assert_eq!(mid.capacity_bytes, 8 * MIB);

    s.warm().await;
    s.partition(false);
    fails_in_bound(
        "ControllerPublishVolume, the agent's replies dropped",
        csi.controller_publish_volume(publish_request(&before.volume_id, "node-b")),
    )
    .await;
    assert_eq!(
        addresses(&s.export("pvc-before").await.unwrap()),
        both_nodes(),
        "the agent carried out the grant"
    );
    s.heal();
    retried("ControllerPublishVolume after the heal", || {
        let (mut csi, id) = (csi.clone(), before.volume_id.clone());
        async move {
            csi.controller_publish_volume(publish_request(&id, "node-b"))
                .await
        }
    })
    .await;
    retried("ControllerPublishVolume after the heal", || {
        let (mut csi, id) = (csi.clone(), mid.volume_id.clone());
        async move {
            csi.controller_publish_volume(publish_request(&id, "node-a"))
                .await
        }
    })
    .await;

    // Exactly one export per volume, each with the access list the calls asked for.
    let exports = s.exports().await;
    let mut names: Vec<&str> = exports.iter().map(|e| e.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["pvc-before", "pvc-both", "pvc-mid"]);
    let by_name = |n: &str| exports.iter().find(|e| e.name == n).unwrap();
    assert_eq!(
        by_name("pvc-mid").export_id,
        made.export_id,
        "the retry made no second export"
    );
    assert_eq!(addresses(by_name("pvc-before")), both_nodes());
    assert_eq!(
        addresses(by_name("pvc-mid")),
        [("node-a".to_string(), vec!["10.0.0.1".to_string()])]
    );
    assert!(by_name("pvc-both").clients.is_empty());
    assert_ne!(both.volume.unwrap().volume_id, mid.volume_id);
    let active = s.host.exporter.active().await.unwrap();
    rwxnfs_testbed::assert_ganesha_serves_the_table(&dir.join("state"), &active);
    let volumes: Vec<String> = rwxnfs_testbed::names_in(&dir.join("exports/volumes"));
    assert_eq!(volumes.len(), 3, "{volumes:?}");
}
