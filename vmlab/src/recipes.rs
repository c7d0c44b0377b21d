//! Boot scripts for the VMs the scenarios and the walkthrough share.

/// An NFS server VM on the lab network at 10.99.0.1: `/dev/vda` formatted as XFS and mounted
/// with `prjquota` as the export root, kernel nfsd (rpcbind, nfsdcld, mountd, nfsd; NFSv3 and
/// 4), `rwxnfs agent` with the kernel exporter and XFS project quotas on a unix socket, and
/// `rwxnfs controller` serving CSI on TCP 7001 with `nodes` as its node map (id, address).
pub fn nfs_server_boot(nodes: &[(&str, &str)]) -> String {
    let node_map: String = nodes
        .iter()
        .map(|(id, address)| format!("  {id}: [{address}]\n"))
        .collect();
    format!(
        r#"{setup}
cat > /etc/rwxnfs/agent.yaml <<'END'
{agent}listen: [unix:///run/rwxnfs/agent.sock]
END
cat > /etc/rwxnfs/controller.yaml <<'END'
backends:
  - name: vm
    agent:
      endpoint: unix:///run/rwxnfs/agent.sock
    server: 10.99.0.1
nodes:
{node_map}END
setsid rwxnfs --log-format text agent --config /etc/rwxnfs/agent.yaml > /work/agent.log 2>&1 &
setsid rwxnfs --log-format text controller --endpoint tcp://0.0.0.0:7001 --config /etc/rwxnfs/controller.yaml > /work/controller.log 2>&1 &
"#,
        setup = KERNEL_NFSD,
        agent = AGENT_CONFIG,
    )
}

/// The same NFS server without a controller: the agent serves mutual TLS on 10.99.0.1:9820
/// (certificate `cert` and `key`, clients' certificates checked against `ca`), for a
/// controller on another VM, as in a cluster.
pub fn nfs_server_boot_tls(ca: &str, cert: &str, key: &str) -> String {
    format!(
        r#"{setup}
mkdir -p /etc/rwxnfs/tls
cat > /etc/rwxnfs/tls/ca.pem <<'END'
{ca}END
cat > /etc/rwxnfs/tls/agent.pem <<'END'
{cert}END
cat > /etc/rwxnfs/tls/agent.key <<'END'
{key}END
cat > /etc/rwxnfs/agent.yaml <<'END'
{agent}listen: [tcp://10.99.0.1:9820, unix:///run/rwxnfs/agent.sock]
tls: {{ca: /etc/rwxnfs/tls/ca.pem, cert: /etc/rwxnfs/tls/agent.pem, key: /etc/rwxnfs/tls/agent.key}}
END
setsid rwxnfs --log-format text agent --config /etc/rwxnfs/agent.yaml > /work/agent.log 2>&1 &
"#,
        setup = KERNEL_NFSD,
        agent = AGENT_CONFIG,
    )
}

/// Kernel nfsd on an XFS export root with project quotas, at 10.99.0.1.
const KERNEL_NFSD: &str = r#"
modprobe nfsd
modprobe xfs
mkfs.xfs -q /dev/vda
mkdir -p /srv/exports /etc/exports.d /etc/rwxnfs /run/rwxnfs
mount -o prjquota /dev/vda /srv/exports
mount -t nfsd nfsd /proc/fs/nfsd
mount -t rpc_pipefs rpc_pipefs /var/lib/nfs/rpc_pipefs
: > /etc/exports
exportfs -ra
rpcbind -w
# Short lease and grace, so that restarts in the scenarios do not wait 90 s.
echo 10 > /proc/fs/nfsd/nfsv4leasetime
echo 10 > /proc/fs/nfsd/nfsv4gracetime
nfsdcld
rpc.mountd --no-udp
rpc.nfsd --no-udp 8"#;

/// The agent's configuration on that server, but for where it listens.
const AGENT_CONFIG: &str = "exportRoot: /srv/exports
stateDir: /srv/exports/.rwxnfs
nfsServer:
  kind: kernel
quota: xfs
serverAddresses: [10.99.0.1]
";

/// A Kubernetes node: the NFS client modules and `rwxnfs node` serving CSI on TCP 7000.
pub fn node_boot(node_id: &str) -> String {
    format!(
        "modprobe nfsv4\nmodprobe nfsv3\nsetsid rwxnfs --log-format text node --endpoint tcp://0.0.0.0:7000 \
         --node-id {node_id} > /work/node.log 2>&1 &\n"
    )
}
