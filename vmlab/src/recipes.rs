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
        r#"
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
rpc.nfsd --no-udp 8
cat > /etc/rwxnfs/agent.yaml <<'END'
exportRoot: /srv/exports
stateDir: /srv/exports/.rwxnfs
nfsServer:
  kind: kernel
quota: xfs
serverAddresses: [10.99.0.1]
listen: [unix:///run/rwxnfs/agent.sock]
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
"#
    )
}

/// A Kubernetes node: the NFS client modules and `rwxnfs node` serving CSI on TCP 7000.
pub fn node_boot(node_id: &str) -> String {
    format!(
        "modprobe nfsv4\nmodprobe nfsv3\nsetsid rwxnfs --log-format text node --endpoint tcp://0.0.0.0:7000 \
         --node-id {node_id} > /work/node.log 2>&1 &\n"
    )
}
