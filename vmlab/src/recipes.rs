//! Boot scripts for the VMs the scenarios and the walkthrough share.

/// An NFS server VM on the lab network at 10.99.0.1: `/dev/vda` formatted as XFS and mounted
/// with `prjquota` as the export root, kernel nfsd (rpcbind, nfsdcld, mountd, nfsd; NFSv3 and
/// 4), `rwxnfs agent` with the kernel exporter and XFS project quotas on a unix socket, and
/// `rwxnfs controller` serving CSI on TCP 7001 with `nodes` as its node map (id, address).
pub fn nfs_server_boot(nodes: &[(&str, &str)]) -> String {
    nfs_server_boot_named(nodes, None)
}

/// [`nfs_server_boot`], with the backend's `serverName` (the name TLS claims mount by) when
/// given.
pub fn nfs_server_boot_named(nodes: &[(&str, &str)], server_name: Option<&str>) -> String {
    let server_name = server_name
        .map(|name| format!("    serverName: {name}\n"))
        .unwrap_or_default();
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
{server_name}nodes:
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

/// The NFS server of a cluster in the lab: as [`nfs_server_boot_tls`], and also at `vip` (an
/// address outside the lab network, as a storage cluster's floating address is), where the
/// agent serves mutual TLS and nodes mount from; `routes` (`(cidr, via)`) lead back to the
/// pods.
pub fn kube_storage_boot(
    ca: &str,
    cert: &str,
    key: &str,
    vip: &str,
    routes: &[(String, String)],
) -> String {
    let routes: String = routes
        .iter()
        .map(|(cidr, via)| format!("ip route add {cidr} via {via}\n"))
        .collect();
    format!(
        r#"ip addr add {vip}/32 dev eth1
{routes}{setup}
mkdir -p /etc/rwxnfs/tls
cat > /etc/rwxnfs/tls/ca.pem <<'END'
{ca}END
cat > /etc/rwxnfs/tls/agent.pem <<'END'
{cert}END
cat > /etc/rwxnfs/tls/agent.key <<'END'
{key}END
cat > /etc/rwxnfs/agent.yaml <<'END'
exportRoot: /srv/exports
stateDir: /srv/exports/.rwxnfs
nfsServer:
  kind: kernel
quota: xfs
serverAddresses: [{vip}]
listen: [tcp://{vip}:9820, unix:///run/rwxnfs/agent.sock]
tls: {{ca: /etc/rwxnfs/tls/ca.pem, cert: /etc/rwxnfs/tls/agent.pem, key: /etc/rwxnfs/tls/agent.key}}
END
setsid rwxnfs --log-format text agent --config /etc/rwxnfs/agent.yaml > /work/agent.log 2>&1 &
"#,
        setup = KERNEL_NFSD,
    )
}

/// Both hosts of a DRBD 8.4 HA pair, `nfs-a` (10.99.0.1) and `nfs-b` (10.99.0.2): resource
/// `r0` (protocol C, `/dev/vda` with internal metadata) created and up, so Secondary; nfsd's
/// filesystems mounted; the agent's configuration in place (mutual TLS on TCP 9820 with `cert`
/// and `key`, clients checked against `ca`; the export root on the replicated volume;
/// `serverAddresses: [vip]`); the promoter, [`ha_promoter`] for `vip`/`vip_prefix`, written to
/// `/work/promote`; and `routes` (`(cidr, via)`, e.g. back to a cluster's pods) added first.
///
/// Nothing is promoted at boot: the caller runs `/work/promote` on the host that wins. On the
/// pair's first start the disks are empty, so the first Primary skips the initial sync and
/// makes the filesystem itself (`drbdadm -- --clear-bitmap new-current-uuid r0`, `drbdadm
/// primary r0`, `mkfs.xfs /dev/drbd0`) before it promotes.
pub fn ha_storage_boot(
    ca: &str,
    cert: &str,
    key: &str,
    vip: &str,
    vip_prefix: u8,
    routes: &[(String, String)],
) -> String {
    let routes: String = routes
        .iter()
        .map(|(cidr, via)| format!("ip route add {cidr} via {via}\n"))
        .collect();
    let promoter = ha_promoter(vip, vip_prefix);
    // `usermode_helper`: DRBD 8.4 runs a helper (drbdadm) before a resync and drops the
    // connection when it fails; the image's drbdadm, from drbd-utils 9 driving the 8.4 module,
    // exits 20 there, so a secondary that reconnected after missing writes was never resynced.
    // The pair configures no handlers (no fencing), so /bin/true answers every helper call as
    // drbdadm would.
    format!(
        r#"
{routes}modprobe drbd usermode_helper=/bin/true
modprobe nfsd
modprobe xfs
mkdir -p /etc/rwxnfs/tls /run/rwxnfs /drbd/exports /etc/exports.d /var/lib/nfs/nfsdcld
cat > /etc/rwxnfs/tls/ca.pem <<'EOF'
{ca}EOF
cat > /etc/rwxnfs/tls/agent.pem <<'EOF'
{cert}EOF
cat > /etc/rwxnfs/tls/agent.key <<'EOF'
{key}EOF
cat > /etc/drbd.conf <<'EOF'
global {{ usage-count no; }}
resource r0 {{
  protocol C;
  device /dev/drbd0;
  disk /dev/vda;
  meta-disk internal;
  on nfs-a {{ address 10.99.0.1:7789; }}
  on nfs-b {{ address 10.99.0.2:7789; }}
}}
EOF
drbdadm create-md --force r0
drbdadm up r0
mount -t nfsd nfsd /proc/fs/nfsd
mount -t rpc_pipefs rpc_pipefs /var/lib/nfs/rpc_pipefs
: > /etc/exports
# Lease and grace as the test's own bound on the failover stall (manifests/ha/nfs/nfs.conf
# ships 30 s and 60 s for production).
echo 10 > /proc/fs/nfsd/nfsv4leasetime
echo 10 > /proc/fs/nfsd/nfsv4gracetime
cat > /etc/rwxnfs/agent.yaml <<'EOF'
exportRoot: /drbd/exports
stateDir: /drbd/exports/.rwxnfs
nfsServer:
  kind: kernel
quota: xfs
serverAddresses: [{vip}]
listen: [tcp://0.0.0.0:9820, unix:///run/rwxnfs/agent.sock]
tls: {{ca: /etc/rwxnfs/tls/ca.pem, cert: /etc/rwxnfs/tls/agent.pem, key: /etc/rwxnfs/tls/agent.key}}
EOF
cat > /work/promote <<'EOF'
{promoter}EOF
"#
    )
}

/// What DRBD Reactor's promoter does on the host of the pair that wins
/// (manifests/ha/drbd-reactor/rwxnfs.toml), each systemd unit's job written out and in its
/// order, ending with the floating address `vip`/`vip_prefix` on eth1, announced. A step's
/// time and name go to stdout (`<uptime> primary`, ...); any failure ends it non-zero.
pub fn ha_promoter(vip: &str, vip_prefix: u8) -> String {
    let until_address =
        PROMOTER_UNTIL_ADDRESS.replace("NFS_SERVER_START_PRE", &nfs_server_start_pre());
    format!(
        "{until_address}# 5. IPaddr2: the address once everything else is up, announced
ip addr add {vip}/{vip_prefix} dev eth1
arping -U -c 1 -I eth1 {vip} || true
step address
# 6. rwxnfs-tickle.service: the clients' connections to the previous host reset
rwxnfs --log-format text tickle --config /etc/rwxnfs/agent.yaml >> /work/agent.log 2>&1 || true
step tickled
"
    )
}

/// The nfs-server drop-in's `ExecStartPre` command as systemd runs it (its `-`, failure
/// ignored, is the promoter's `|| true`): the manifest's own line, not a copy of it.
fn nfs_server_start_pre() -> String {
    const DROPIN: &str =
        include_str!("../../manifests/ha/systemd/nfs-server.service.d/rwxnfs.conf");
    DROPIN
        .lines()
        .filter_map(|l| l.strip_prefix("ExecStartPre=-"))
        .next_back()
        .unwrap_or_else(|| panic!("the nfs-server drop-in has no ExecStartPre=- line"))
        .to_owned()
}

/// [`ha_promoter`] but for the address and the tickle, which it adds last; its
/// `NFS_SERVER_START_PRE` is [`nfs_server_start_pre`].
const PROMOTER_UNTIL_ADDRESS: &str = r#"set -e
t0=$(cut -d' ' -f1 /proc/uptime)
step() { echo "$(cut -d' ' -f1 /proc/uptime) $1"; }
# 0. drbd-promote@r0
drbdadm primary r0
step primary
# 1. drbd-exports.mount
mount -o prjquota /dev/drbd0 /drbd/exports
step mounted
# 2. var-lib-nfs-nfsdcld.mount: the NFSv4 client database on the replicated volume
mkdir -p /drbd/exports/.rwxnfs/nfsdcld
mount --bind /drbd/exports/.rwxnfs/nfsdcld /var/lib/nfs/nfsdcld
# 3. rwxnfs-agent.service; the next unit starts once the agent has reconciled
: > /work/agent.log
setsid rwxnfs --log-format text agent --config /etc/rwxnfs/agent.yaml >> /work/agent.log 2>&1 &
n=0
until grep -q reconciled /work/agent.log; do
  n=$((n+1)); [ $n -lt 6000 ] || { echo "the agent did not reconcile"; exit 1; }
  usleep 50000
done
step reconciled
# 4. nfs-server.service (exportfs -a when the host has exports of its own, which keeps the
#    agent's; mountd, nfsdcld, nfsd in the cluster's server scope:
#    manifests/ha/systemd/nfs-server.service.d/rwxnfs.conf)
NFS_SERVER_START_PRE || true
rpcbind -w
nfsdcld
rpc.mountd --no-udp -N 3
step mountd
unshare -u sh -c 'hostname rwxnfs-ha1 && rpc.nfsd --no-udp -N 3 8'
step nfsd
"#;

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

/// Kernel TLS with its ciphers loaded, and `tlshd` (RPC-with-TLS's handshake daemon) with the
/// files [`tlshd_files`] put in `/work/pki`: its configuration has
/// `[authenticate.server]` or `[authenticate.client]` with the trust store and, where given,
/// the certificate and key presented (files, not symlinks: `tlshd` refuses those; it warns
/// unless certificates are mode 644 and keys 600). Logs to `/work/tlshd.log`.
pub fn tlshd(side: &str, own: bool) -> String {
    let own = if own {
        "x509.certificate=/etc/tlshd/own.pem\nx509.private_key=/etc/tlshd/own.key\n"
    } else {
        ""
    };
    format!(
        r#"for m in tls gcm ghash_generic chacha20poly1305 ccm; do modprobe $m; done
mkdir -p /etc/tlshd
cp /work/pki/* /etc/tlshd/
chmod 644 /etc/tlshd/*.pem
chmod 600 /etc/tlshd/*.key 2>/dev/null || true
cat > /etc/tlshd.conf <<'END'
[debug]
loglevel=2
tls=0
nl=0

[authenticate.{side}]
x509.truststore=/etc/tlshd/ca.pem
{own}END
setsid tlshd -s > /work/tlshd.log 2>&1 &
"#
    )
}

/// A VM's files for [`tlshd`] (`VmSpec::files`): the CA its `tlshd` trusts and, where given,
/// its own certificate and key.
pub fn tlshd_files(ca: &str, own: Option<(String, String)>) -> Vec<(String, String)> {
    let mut files = vec![("pki/ca.pem".to_string(), ca.to_string())];
    if let Some((cert, key)) = own {
        files.push(("pki/own.pem".into(), cert));
        files.push(("pki/own.key".into(), key));
    }
    files
}

/// What a Kubernetes node VM needs to know of its cluster.
#[derive(Clone, Debug)]
pub struct KubeNode {
    /// The Node's name, as the kubelet registers it (and the CSI node id).
    pub name: String,
    /// Its address on the lab network, 10.99.0.`lan`: the Node's InternalIP.
    pub lan: u8,
    /// The pods' subnet on this node (the CNI bridge's host-local range), e.g. 10.244.1.0/24.
    pub pod_cidr: String,
    /// `(cidr, via)`: routes to the other nodes' pod subnets.
    pub routes: Vec<(String, String)>,
    /// The cluster's pod range, for kube-proxy's masquerade decisions.
    pub cluster_cidr: String,
    /// Addresses outside 10.99.0.0/24 reached directly on the lab network (a storage VIP).
    pub on_lan: Vec<String>,
}

/// A Kubernetes node: containerd (its root on `/dev/vda`, an ext4 disk mounted at /var/lib that
/// holds the images already, made by `oci::containerd_disk`: no registry is reachable), the
/// CNI bridge for pods, then the kubelet and kube-proxy (nftables mode) from `/opt/kube`. Their credentials and configuration are files
/// in `/work` that the cluster writes before boot: `kubelet.kubeconfig`, `kube-proxy.kubeconfig`
/// and `pki/ca.pem` (the CA whose clients the kubelet trusts, the API server among them).
/// Logs: `/work/containerd.log`, `/work/kubelet.log`, `/work/kube-proxy.log`.
pub fn kube_node_boot(node: &KubeNode) -> String {
    let routes: String = node
        .routes
        .iter()
        .map(|(cidr, via)| format!("ip route add {cidr} via {via}\n"))
        .chain(
            node.on_lan
                .iter()
                .map(|to| format!("ip route add {to} dev eth1\n")),
        )
        .collect();
    format!(
        r#"export PATH=/opt/kube:/usr/bin:/usr/sbin:$PATH
{routes}for m in overlay bridge br_netfilter veth nf_tables nft_ct nft_nat nft_chain_nat nft_masq \
         nft_numgen nft_fib_inet nft_fib_ipv4 nft_fib_ipv6 nft_reject_inet nft_reject_ipv4 \
         nft_reject_ipv6 nft_redir nft_limit nf_conntrack_netlink ext4 nfsv4 nfsv3; do
  modprobe $m
done
echo 1 > /proc/sys/net/ipv4/ip_forward
echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables
mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo "+cpuset +cpu +io +memory +pids" > /sys/fs/cgroup/cgroup.subtree_control
# The kubelet's pod directories hold mounts that must propagate (the CSI node plugin's).
mount --make-rshared /
mkdir -p /var/lib
mount -t ext4 /dev/vda /var/lib
mkdir -p /etc/containerd /etc/cni/net.d /var/lib/kubelet /var/log
: > /etc/resolv.conf
echo "$(echo {name} | sha256sum | cut -c1-32)" > /etc/machine-id
cat > /etc/containerd/config.toml <<'END'
version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "/etc/cni/net.d"
END
cat > /etc/cni/net.d/10-lab.conflist <<'END'
{{"cniVersion": "0.4.0", "name": "lab", "plugins": [
  {{"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "{pod_cidr}"}}]], "routes": [{{"dst": "0.0.0.0/0"}}]}}}},
  {{"type": "portmap", "capabilities": {{"portMappings": true}}}}]}}
END
setsid containerd > /work/containerd.log 2>&1 &
for i in $(seq 300); do [ -S /run/containerd/containerd.sock ] && break; sleep 0.1; done
ctr -n k8s.io images ls -q
cat > /work/kubelet.yaml <<'END'
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: /work/pki/ca.pem}}
authorization: {{mode: Webhook}}
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
failSwapOn: false
resolvConf: /etc/resolv.conf
clusterDomain: cluster.local
# The images were imported at boot; nothing would be found to pull.
serializeImagePulls: false
END
cat > /work/kube-proxy.yaml <<'END'
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
hostnameOverride: {name}
clusterCIDR: {cluster_cidr}
clientConnection: {{kubeconfig: /work/kube-proxy.kubeconfig}}
conntrack: {{maxPerCore: 0}}
END
setsid kubelet --config=/work/kubelet.yaml --kubeconfig=/work/kubelet.kubeconfig \
  --hostname-override={name} --node-ip=10.99.0.{lan} > /work/kubelet.log 2>&1 &
setsid kube-proxy --config=/work/kube-proxy.yaml > /work/kube-proxy.log 2>&1 &
"#,
        name = node.name,
        lan = node.lan,
        pod_cidr = node.pod_cidr,
        cluster_cidr = node.cluster_cidr,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(script: &str) -> Vec<&str> {
        script.lines().collect()
    }

    /// The floating address comes after nfsd (clients find the server only once it can answer
    /// them), and only the tickle after it.
    #[test]
    fn the_ha_promoter_adds_the_floating_address_last_then_tickles() {
        let promoter = ha_promoter("10.99.0.100", 24);
        let promoter_lines = lines(&promoter);
        assert_eq!(
            promoter_lines[promoter_lines.len() - 7..],
            [
                "# 5. IPaddr2: the address once everything else is up, announced",
                "ip addr add 10.99.0.100/24 dev eth1",
                "arping -U -c 1 -I eth1 10.99.0.100 || true",
                "step address",
                "# 6. rwxnfs-tickle.service: the clients' connections to the previous host reset",
                "rwxnfs --log-format text tickle --config /etc/rwxnfs/agent.yaml >> /work/agent.log 2>&1 || true",
                "step tickled",
            ]
        );
        assert!(
            promoter.find("rpc.nfsd").unwrap() < promoter.find("ip addr add").unwrap(),
            "{promoter}"
        );
        assert!(
            promoter.contains("\n/bin/sh -c 'if grep ")
                && promoter.contains("exportfs -a; fi' || true\n"),
            "the drop-in's start line: {promoter}"
        );
    }

    /// On the lab network (the HA scenario): the address in the lab's subnet, no routes.
    #[test]
    fn the_ha_pair_on_the_lab_network_has_no_routes() {
        let boot = ha_storage_boot("CA\n", "CERT\n", "KEY\n", "10.99.0.100", 24, &[]);
        assert!(
            boot.starts_with("\nmodprobe drbd usermode_helper=/bin/true\n"),
            "{boot}"
        );
        assert!(!boot.contains("ip route"), "{boot}");
        let boot = lines(&boot);
        for line in [
            "serverAddresses: [10.99.0.100]",
            "listen: [tcp://0.0.0.0:9820, unix:///run/rwxnfs/agent.sock]",
            "  on nfs-a { address 10.99.0.1:7789; }",
            "  on nfs-b { address 10.99.0.2:7789; }",
            "ip addr add 10.99.0.100/24 dev eth1",
        ] {
            assert!(boot.contains(&line), "{line} missing in {boot:#?}");
        }
        // Only the promoter adds the address: nothing is promoted at boot.
        let promote = boot
            .iter()
            .position(|l| *l == "cat > /work/promote <<'EOF'")
            .unwrap();
        let address = boot.iter().position(|l| l.starts_with("ip addr add"));
        assert!(address.unwrap() > promote, "{boot:#?}");
    }

    /// For a cluster: the shipped configuration's address, outside the lab's subnet (so /32),
    /// and routes back to the pods, added at boot on both hosts.
    #[test]
    fn the_ha_pair_for_a_cluster_serves_the_shipped_address_and_routes_to_the_pods() {
        let routes = [
            ("10.244.1.0/24".to_string(), "10.99.0.11".to_string()),
            ("10.244.2.0/24".to_string(), "10.99.0.12".to_string()),
        ];
        let boot = ha_storage_boot("CA\n", "CERT\n", "KEY\n", "192.168.222.25", 32, &routes);
        let boot = lines(&boot);
        assert_eq!(
            boot[1..3],
            [
                "ip route add 10.244.1.0/24 via 10.99.0.11",
                "ip route add 10.244.2.0/24 via 10.99.0.12",
            ]
        );
        for line in [
            "serverAddresses: [192.168.222.25]",
            "ip addr add 192.168.222.25/32 dev eth1",
            "arping -U -c 1 -I eth1 192.168.222.25 || true",
        ] {
            assert!(boot.contains(&line), "{line} missing in {boot:#?}");
        }
        assert!(!boot.iter().any(|l| l.contains("10.99.0.100")), "{boot:#?}");
        assert_eq!(
            ha_promoter("192.168.222.25", 32)
                .lines()
                .filter(|l| l.starts_with("ip addr add"))
                .collect::<Vec<_>>(),
            ["ip addr add 192.168.222.25/32 dev eth1"]
        );
    }
}
