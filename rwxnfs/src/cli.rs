//! Command-line interface.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};
use rwxnfs_server::{Endpoint, logging::LogFormat};

#[derive(Parser, Debug)]
#[command(
    name = "rwxnfs",
    version = crate::version(),
    about = "ReadWriteMany volumes for Kubernetes: a per-claim NFS export on a highly-available, \
             synchronously replicated NFS cluster, mounted on nodes with the options the \
             StorageClass asks for."
)]
pub(crate) struct Cli {
    /// Log format: json, text, or auto (json when stderr is not a terminal). The level comes
    /// from RUST_LOG (default: info).
    #[arg(long, global = true, default_value = "auto", env = "RWXNFS_LOG_FORMAT")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Run the CSI controller plugin (Identity + Controller services) beside the standard
    /// sidecars. It turns CreateVolume, ControllerPublishVolume, snapshots and expansion into
    /// calls on the export agent and keeps no state of its own.
    Controller(ControllerArgs),

    /// Run the CSI node plugin (Identity + Node services) on a Kubernetes node. It mounts each
    /// volume's NFS export once per node with the mount system call and bind-mounts it into
    /// pods; it never hangs on a dead server.
    Node(NodeArgs),

    /// Run the export agent on an NFS host. It creates, resizes, snapshots, grants, revokes and
    /// deletes per-claim exports on the local NFS server, and keeps the export table on the
    /// replicated filesystem so the next host can take over after a failover.
    Agent(AgentArgs),

    /// On an NFS host that has just taken over the cluster's address: reset the NFS clients'
    /// connections the previous host recorded, so each client reconnects now instead of
    /// after its TCP retransmission backoff. Run it after the address is up (the HA
    /// manifests do); it needs CAP_NET_RAW and changes nothing on this host.
    Tickle(TickleArgs),

    /// Check manifests (offline) or a live cluster for service-mesh and NFS misconfiguration,
    /// and print the exact fix for each finding.
    Doctor(DoctorArgs),

    /// Service-mesh settings derived from the configuration.
    #[command(subcommand)]
    Mesh(MeshCommand),

    /// Run the whole stack on this machine, for trying rwxnfs out and for conformance runs.
    /// No cluster is needed; everything listens on unix sockets under one state directory.
    #[cfg(feature = "lab")]
    Dev(DevArgs),

    /// Show what rwxnfs is for, end to end, with real NFS: an NFS server and three nodes in
    /// small VMs (QEMU, Debian's kernel), a 4 GiB ReadWriteMany claim written from two nodes,
    /// refused to the third, expanded, snapshotted and cleaned up. Needs root and the packages
    /// scripts/install-test-deps installs; takes a few minutes, and stops everything it starts.
    #[cfg(feature = "lab")]
    Walkthrough(WalkthroughArgs),
}

#[cfg(feature = "lab")]
#[derive(Args, Debug)]
pub(crate) struct WalkthroughArgs {
    /// Where the VM image is cached and the VMs' logs are kept (default: target/tmp of the
    /// checkout this binary was built in, else /var/tmp/rwxnfs).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,

    /// How long to show the two writers' lines arriving.
    #[arg(long, default_value_t = 12)]
    pub tail_seconds: u64,
}

/// Settings every CSI endpoint shares.
#[derive(Args, Debug, Clone)]
pub(crate) struct CsiArgs {
    /// The driver name reported by GetPluginInfo; must match the CSIDriver object.
    #[arg(long, default_value = rwxnfs_model::DEFAULT_DRIVER_NAME, env = "CSI_DRIVER_NAME")]
    pub driver_name: String,

    /// How long calls in flight may run after SIGTERM before they are abandoned (e.g. 10s,
    /// 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Serve Prometheus metrics (GET /metrics) on this address, e.g. 0.0.0.0:9809.
    #[arg(long, env = "RWXNFS_METRICS_ADDRESS")]
    pub metrics_address: Option<std::net::SocketAddr>,
}

impl CsiArgs {
    /// Starts the metrics endpoint, when one is configured; it stops on SIGTERM/SIGINT.
    pub(crate) async fn start_metrics(&self) -> anyhow::Result<()> {
        if let Some(addr) = self.metrics_address {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?;
            tracing::info!(%addr, "serving metrics on /metrics");
            tokio::spawn(rwxnfs_server::metrics::serve(
                listener,
                rwxnfs_server::termination_signal(),
            ));
        }
        Ok(())
    }
}

/// The kubelet's probes, answered by the plugin itself (no livenessprobe sidecar).
#[derive(Args, Debug, Clone)]
pub(crate) struct HealthArgs {
    /// Serve the probes on this address, e.g. 0.0.0.0:9808: GET /healthz (liveness) is 200
    /// "ok" while the CSI endpoint accepts connections; GET /readyz (readiness) is 200 "ok"
    /// while the CSI Probe reports ready; else 503 with the reason.
    #[arg(long, env = "RWXNFS_HEALTH_ADDRESS")]
    pub health_address: Option<std::net::SocketAddr>,

    /// How long a probe waits for its check before it answers 503 (e.g. 3s); keep it below
    /// the probes' timeoutSeconds.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub health_timeout: Duration,
}

impl HealthArgs {
    /// Starts the probes' endpoint, when an address is configured: liveness from `endpoint`
    /// accepting, readiness from `readiness` (the one the Identity service's Probe reports).
    /// It stops on SIGTERM/SIGINT.
    pub(crate) async fn start(
        &self,
        readiness: std::sync::Arc<dyn rwxnfs_server::Readiness>,
        endpoint: &Endpoint,
    ) -> anyhow::Result<()> {
        if let Some(addr) = self.health_address {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot serve the probes on {addr}: {e}"))?;
            // The bound address, which differs from the flag's for port 0.
            let addr = listener.local_addr().unwrap_or(addr);
            tracing::info!(%addr, timeout = ?self.health_timeout, "serving liveness on /healthz and readiness on /readyz");
            tokio::spawn(rwxnfs_server::health::serve(
                listener,
                std::sync::Arc::new(rwxnfs_server::health::Accepting(endpoint.clone())),
                readiness,
                self.health_timeout,
                rwxnfs_server::termination_signal(),
            ));
        }
        Ok(())
    }
}

#[derive(Args, Debug)]
pub(crate) struct NodeArgs {
    /// Where to serve CSI: unix:///path.sock or tcp://host:port.
    #[arg(long, default_value = "unix:///csi/csi.sock", env = "CSI_ENDPOINT")]
    pub endpoint: Endpoint,

    /// This node's id: the Kubernetes node name.
    #[arg(long, env = "NODE_NAME")]
    pub node_id: String,

    /// Register with the kubelet without node-driver-registrar: serve the kubelet's plugin
    /// registration API on this socket, e.g.
    /// /var/lib/kubelet/plugins_registry/rwxnfs.csi.io-reg.sock (where the kubelet looks).
    #[arg(long)]
    pub registration_socket: Option<PathBuf>,

    /// With --registration-socket: where the kubelet reaches the CSI endpoint on the host
    /// (default: the --endpoint socket's path, right when the plugin runs on the host's paths).
    #[arg(long, requires = "registration_socket")]
    pub kubelet_registration_path: Option<PathBuf>,

    /// The node's TLS handshake daemon's configuration (ktls-utils' tlshd), as this process
    /// sees it: a claim with transport mtls is refused with FAILED_PRECONDITION before its
    /// mount when it names no readable client certificate and key in [authenticate.client].
    #[arg(long, default_value = rwxnfs_node::tls::DEFAULT_TLSHD_CONFIG, env = "RWXNFS_TLSHD_CONFIG")]
    pub tlshd_config: PathBuf,

    /// Hand this node's TLS identity to the host's tlshd: copy tls.crt, tls.key and ca.crt
    /// from this directory (a cert-manager CSI volume or a Secret, whose files are links) to
    /// --tls-identity-to as regular files node.pem, node.key and ca.pem, at start and whenever
    /// they change (a renewal), for tlshd's [authenticate.client] to name.
    #[arg(long, requires = "tls_identity_to")]
    pub tls_identity_from: Option<PathBuf>,

    /// With --tls-identity-from: the host directory tlshd reads the identity from, e.g.
    /// /run/rwxnfs/tls (a tmpfs: the key stays off disk).
    #[arg(long, requires = "tls_identity_from")]
    pub tls_identity_to: Option<PathBuf>,

    #[command(flatten)]
    pub csi: CsiArgs,

    #[command(flatten)]
    pub health: HealthArgs,
}

#[derive(Args, Debug)]
pub(crate) struct ControllerArgs {
    /// Where to serve CSI: unix:///path.sock or tcp://host:port.
    #[arg(long, default_value = "unix:///csi/csi.sock", env = "CSI_ENDPOINT")]
    pub endpoint: Endpoint,

    /// The controller's configuration file: backends and, outside a cluster, node addresses.
    #[arg(
        long,
        default_value = "/etc/rwxnfs/controller.yaml",
        env = "RWXNFS_CONTROLLER_CONFIG"
    )]
    pub config: PathBuf,

    /// Also serve the Node service, as this node, on the same endpoint: one process and one
    /// socket with Identity, Controller and Node, the shape conformance suites such as
    /// upstream csi-sanity expect (like csi-driver-host-path's single plugin). In a cluster
    /// the controller and the node plugin run apart; leave this unset there.
    #[arg(long)]
    pub node_id: Option<String>,

    #[command(flatten)]
    pub csi: CsiArgs,

    #[command(flatten)]
    pub health: HealthArgs,
}

/// The agent's configuration file, for the commands that read it.
#[derive(Args, Debug)]
pub(crate) struct AgentConfigArg {
    /// The agent's configuration file (see the README's "The agent's configuration file").
    #[arg(
        long,
        default_value = "/etc/rwxnfs/agent.yaml",
        env = "RWXNFS_AGENT_CONFIG"
    )]
    pub config: PathBuf,
}

#[derive(Args, Debug)]
pub(crate) struct AgentArgs {
    #[command(flatten)]
    pub config: AgentConfigArg,

    /// Serve TCP endpoints without TLS. For development only: anyone who can reach the port
    /// can then create, grant and delete exports.
    #[arg(long)]
    pub insecure_tcp: bool,

    /// How long calls in flight may run after SIGTERM before they are abandoned.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

/// `rwxnfs tickle`: the connections are recorded under the configuration's stateDir.
#[derive(Args, Debug)]
pub(crate) struct TickleArgs {
    #[command(flatten)]
    pub config: AgentConfigArg,
}

#[derive(Args, Debug)]
#[command(after_help = "\
Driver pods are the pods and pod templates with a container of the rwxnfs image run as \
`controller` or `node`, or labelled app.kubernetes.io/part-of=rwxnfs (the role then from \
app.kubernetes.io/component, else DaemonSet = node). The ports and VIPs to exclude come from \
the controller's ConfigMap (key controller.yaml) when it is among the objects, else NFSv4.1 \
and agent port 9820. Finding codes are listed in the README's \"Service meshes\" section.

Exit status: 0 clean (info findings only), 1 warnings but no errors, 2 errors, or the input \
could not be read (unreadable file, malformed YAML, Kubernetes API unreachable).")]
pub(crate) struct DoctorArgs {
    /// Manifests to check: files or directories of YAML (read recursively, *.yaml and *.yml),
    /// or - for standard input. Repeatable. Without it the live cluster is checked.
    #[arg(short = 'f', long = "filename", conflicts_with = "kubeconfig")]
    pub files: Vec<PathBuf>,

    /// Check the cluster of this kubeconfig (default: the in-cluster service account, then
    /// KUBECONFIG or ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,

    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    pub output: DoctorOutput,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DoctorOutput {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub(crate) enum MeshCommand {
    /// Print the Istio annotations and labels the driver's pods need for a controller
    /// configuration: the ports and addresses its NFS and agent traffic use, excluded from
    /// sidecars, and ambient mode off.
    Annotations(MeshArgs),
}

#[derive(Args, Debug)]
pub(crate) struct MeshArgs {
    /// The controller's configuration file.
    #[arg(long, default_value = "/etc/rwxnfs/controller.yaml")]
    pub config: PathBuf,
    /// The NFS version the StorageClasses use: 4.2, 4.1, 4.0 or 3.
    #[arg(long, default_value = "4.2")]
    pub nfs_version: String,
    /// NFSv3 with `nolock` or `local_lock=all` (no lockd/statd traffic).
    #[arg(long)]
    pub local_locks: bool,
    /// NFSv3: the port mountd is pinned to on the servers.
    #[arg(long)]
    pub mountd_port: Option<u16>,
}

#[cfg(feature = "lab")]
#[derive(Args, Debug)]
pub(crate) struct DevArgs {
    /// Where the stack keeps its sockets, state and logs.
    #[arg(long, default_value = "/tmp/rwxnfs-dev")]
    pub state_dir: PathBuf,

    /// The node id of the embedded node plugin (default: this host's name).
    #[arg(long)]
    pub node_id: Option<String>,

    /// The TCP port the embedded NFS-Ganesha serves NFSv4 on.
    #[arg(long, default_value_t = 2049)]
    pub nfs_port: u16,

    /// The address volumes tell nodes to mount from (e.g. 10.0.2.2 for a QEMU guest on user
    /// networking, which reaches this host's 127.0.0.1 there).
    #[arg(long, default_value = "127.0.0.1")]
    pub server_address: std::net::IpAddr,

    #[command(flatten)]
    pub csi: CsiArgs,
}

/// Parses "10s", "1500ms", "2m".
pub(crate) fn parse_duration(raw: &str) -> Result<Duration, String> {
    let err = || format!("{raw:?} is not a duration like 10s, 500ms or 2m");
    let split = raw.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
    let (number, unit) = raw.split_at(split);
    let n: u64 = number.parse().map_err(|_| err())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        _ => Err(err()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        for bad in ["", "10", "s", "1h", "-1s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
