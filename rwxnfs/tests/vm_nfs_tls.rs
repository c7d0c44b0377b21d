//! NFS over TLS (RPC-with-TLS, RFC 9289) in the VM tier, on Debian trixie's 6.12 kernel with
//! its nfs-utils 2.8 and ktls-utils' `tlshd`: first the mechanism with the kernel and the
//! daemons alone, then claims with `transport: tls|mtls` through the driver, on one boot.
//!
//! - `nfs1` (10.99.0.1, `nfs.rwxnfs.test` in its certificate) runs kernel nfsd, `tlshd` with
//!   the server certificate (trusting the test CA for clients), two exports of its own on tmpfs
//!   (`/srv/tls` with `xprtsec=mtls`, `/srv/plain` without), and the driver's agent and
//!   controller (the backend's `serverName` is the certificate's name).
//! - `node1` has a client certificate from that CA, `node2` none, `node3` one from another CA;
//!   each runs `tlshd` and the node plugin. QEMU records node1's and node3's lab network.
//!
//! Scenarios, in order: the mechanism (mounts by hand: by name, by address, without TLS,
//! without a certificate, with another CA's); a `tls` and an `mtls` claim on node1, written and
//! read on both sides; node2 refused for `mtls` (no certificate) and, with `tlshd` stopped, for
//! `tls`, before any mount, while a claim without TLS works; node3 refused by the handshake,
//! then admitted after its certificate is renewed in place; the capture (TLS records, no
//! plaintext NFS but the RFC 9289 probe, none of the written data); the throughput with and
//! without TLS.
//!
//! The kernel asks `tlshd` for each handshake over the `handshake` generic netlink family
//! (built in: `CONFIG_NET_HANDSHAKE`); `tlshd` takes the socket, does the TLS 1.3 handshake
//! with GnuTLS and hands the session to kernel TLS. The mount passes no key of its own, so
//! `tlshd` presents the certificate and key its `/etc/tlshd.conf` names and checks the peer
//! against the trust store there: the client checks the server certificate against the name
//! it mounts by, the server checks only that a client certificate chains to its trust store
//! (tlshd 1.0 ignores the client certificate's names). Kernel TLS then needs the cipher's
//! module (`gcm` for AES-GCM: QEMU's CPU has no AES-NI): without it the handshake succeeds
//! and the mount fails with EACCES, "The kernel does not support the requested algorithm".
#![allow(clippy::unwrap_used)]

use std::{
    path::Path,
    time::{Duration, Instant},
};

use rwxnfs_testbed::{
    Pki,
    vm::{Csi, Kernel, Lab, MIB, Mounted, Vm, VmSpec, pcap, recipes},
};
use tonic::Code;

/// The name clients mount by, the one the server certificate's SAN carries.
const SERVER_NAME: &str = "nfs.rwxnfs.test";

/// nfs1: kernel nfsd, its `tlshd`, and two exports of its own on tmpfs for the mechanism
/// (`/srv/tls` only over mutual TLS, `/srv/plain` without); then the driver's agent (kernel
/// exporter, XFS with project quotas on `/dev/vda`) and controller (CSI on TCP 7001, the
/// backend's `serverName` the certificate's name) for the claims.
fn server_boot() -> String {
    let nodes = [
        ("node1", "10.99.0.2"),
        ("node2", "10.99.0.3"),
        ("node3", "10.99.0.4"),
    ];
    format!(
        r#"{tlshd}{driver}
mkdir -p /srv/tls /srv/plain
mount -t tmpfs tls /srv/tls
mount -t tmpfs plain /srv/plain
cat > /etc/exports <<'END'
/srv/tls 10.99.0.0/24(rw,no_root_squash,fsid=101,xprtsec=mtls)
/srv/plain 10.99.0.0/24(rw,no_root_squash,fsid=102)
END
exportfs -ra
"#,
        tlshd = recipes::tlshd("server", true),
        driver = recipes::nfs_server_boot_named(&nodes, Some(SERVER_NAME)),
    )
}

/// A node: its `tlshd` (with a certificate where `own`), the server's name in /etc/hosts for
/// the mechanism's own mounts (the driver's need none: they mount at the context's address),
/// and the node plugin on TCP 7000. `netlink_diag` lets the plugin ask the kernel whether
/// `tlshd` listens.
fn client_boot(name: &str, own: bool) -> String {
    format!(
        "modprobe nfsv4\nmodprobe netlink_diag\n{}echo '10.99.0.1 {SERVER_NAME}' >> /etc/hosts\n{}",
        recipes::tlshd("client", own),
        recipes::node_boot(name)
    )
}

/// Mounts `source` at `/mnt/<dir>` with NFSv4.2 and `options`; the kernel's answer (the mount
/// system call, busybox passing the options through). Bounded: a refused handshake must end
/// the mount, not hang it.
fn mount(vm: &Vm, source: &str, dir: &str, options: &str) -> rwxnfs_testbed::vm::Output {
    let started = Instant::now();
    let out = vm.run(
        &format!(
            "mkdir -p /mnt/{dir} && timeout 90 mount -t nfs4 -o vers=4.2,addr=10.99.0.1,{options} \
             {source} /mnt/{dir}"
        ),
        Duration::from_secs(120),
    );
    println!(
        "{}: mount {source} -o {options}: rc {} in {:.1?} {}",
        vm.name,
        out.rc,
        started.elapsed(),
        out.out.trim()
    );
    out
}

/// One boot for everything (the slow part under software emulation): the mechanism with the
/// kernel and the daemons alone, then the driver's claims, then throughput.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nfs_over_tls_with_the_kernel_alone_and_through_the_driver() {
    let started = Instant::now();
    let kernel = Kernel::Trixie;
    let pki = Pki::new("rwxnfs NFS test CA");
    let other = Pki::new("another CA");
    let mut lab = Lab::with_kernel(
        "nfs-tls",
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        Path::new(env!("CARGO_BIN_EXE_rwxnfs")),
        kernel,
    );
    let server_cert = pki.issue_for(SERVER_NAME, None, &[SERVER_NAME]);
    let mut server = lab.start(VmSpec {
        memory_mb: 448,
        lan: Some(1),
        forwards: vec![7001],
        disks_mb: vec![1024],
        boot: server_boot(),
        files: recipes::tlshd_files(&pki.ca_pem, Some(server_cert)),
        ..VmSpec::new("nfs1")
    });
    let clients = [
        ("node1", 2, Some(pki.issue("node1"))),
        ("node2", 3, None),
        ("node3", 4, Some(other.issue("node3"))),
    ];
    let mut vms: Vec<Vm> = clients
        .into_iter()
        .map(|(name, lan, own)| {
            lab.start(VmSpec {
                lan: Some(lan),
                forwards: vec![7000],
                boot: client_boot(name, own.is_some()),
                files: recipes::tlshd_files(&pki.ca_pem, own),
                // The lab network is a hub: node1 sees every node's frames.
                capture: name == "node1",
                ..VmSpec::new(name)
            })
        })
        .collect();
    let limit = Duration::from_secs(240);
    println!("nfs1 booted in {:?}", server.wait_ready(limit));
    for vm in &mut vms {
        let took = vm.wait_ready(limit);
        println!("{} booted in {took:?}", vm.name);
    }
    let release = server.sh("uname -r");
    assert!(release.starts_with("6.12."), "nfs1 booted {release}");
    println!(
        "{kernel}: {}, {}",
        release.trim(),
        server.sh("tlshd -v 2>&1 || true").trim()
    );
    let [trusted, without, foreign] = &vms[..] else {
        unreachable!()
    };

    let step = Instant::now();
    mechanism(&server, trusted, without, foreign);
    println!("mechanism: {:?}", step.elapsed());

    let mut csi = Csi::connect(server.port(7001), trusted.port(7000), "node1")
        .await
        .unwrap();
    let step = Instant::now();
    claims_over_tls(&server, trusted, &mut csi).await;
    println!("claims over tls and mtls: {:?}", step.elapsed());

    let mut csi2 = csi.with_node(without.port(7000), "node2").await.unwrap();
    let step = Instant::now();
    throughput(without, &mut csi2).await;
    println!("throughput: {:?}", step.elapsed());

    let step = Instant::now();
    node_without_certificate(&server, without, &mut csi2).await;
    println!("a node without a certificate: {:?}", step.elapsed());

    let step = Instant::now();
    let mut csi3 = csi.with_node(foreign.port(7000), "node3").await.unwrap();
    node_with_another_ca(&server, foreign, &mut csi3, &pki).await;
    println!("a node with another CA's certificate: {:?}", step.elapsed());

    capture_evidence(trusted);
    println!("{kernel}: every scenario passed in {:?}", started.elapsed());
}

/// The mechanism, with the kernel and the daemons alone: nfs1's own exports mounted by hand.
fn mechanism(server: &Vm, trusted: &Vm, without: &Vm, foreign: &Vm) {
    // Mounted by address, the server certificate fails the name check: it carries the name
    // clients mount by, not the address.
    let tls_source = format!("{SERVER_NAME}:/srv/tls");
    let by_address = mount(trusted, "10.99.0.1:/srv/tls", "tls-ip", "xprtsec=mtls");
    assert_ne!(
        by_address.rc, 0,
        "the server certificate was accepted for a name it does not carry"
    );

    // A client with a certificate from the CA the server trusts mounts by the server's name,
    // writes, and the server has the data; and reads what the server wrote.
    let ok = mount(trusted, &tls_source, "tls", "xprtsec=mtls");
    assert_eq!(ok.rc, 0, "node1: mount over mtls: {}", ok.out);
    let mounts = trusted.sh("grep ' /mnt/tls ' /proc/mounts");
    println!("node1: {}", mounts.trim());
    assert!(mounts.contains("xprtsec=mtls"), "{mounts}");
    trusted.sh("echo written-over-tls > /mnt/tls/hello && sync");
    assert_eq!(server.sh("cat /srv/tls/hello").trim(), "written-over-tls");
    server.sh("echo from-the-server > /srv/tls/back");
    assert_eq!(
        trusted.sh("cat /mnt/tls/back").trim(),
        "from-the-server",
        "node1 reads what the server wrote"
    );
    let handshakes = std::fs::read_to_string(trusted.work().join("tlshd.log")).unwrap();
    println!("node1 tlshd:\n{handshakes}");

    // A second mount of that server from the same client without xprtsec: the kernel shares
    // the client's connection (and superblock) with the first, so it is admitted, over TLS
    // still: it never goes out in plaintext.
    let again = mount(trusted, &tls_source, "tls-again", "sec=sys");
    if again.rc == 0 {
        let line = trusted.sh("grep ' /mnt/tls-again ' /proc/mounts");
        println!("node1: {}", line.trim());
        assert!(
            line.contains("xprtsec=mtls"),
            "admitted without TLS: {line}"
        );
        trusted.sh("umount /mnt/tls-again");
    }

    // A client with no certificate, and one whose certificate another CA signed, are refused;
    // the export without TLS still serves the first.
    // And a client that asks for no TLS at all is refused by the export.
    let plain = mount(without, &tls_source, "tls-plain", "sec=sys");
    assert_ne!(plain.rc, 0, "an mtls export admitted a plaintext mount");
    for (vm, why) in [
        (without, "no certificate"),
        (foreign, "a certificate from another CA"),
    ] {
        let refused = mount(vm, &tls_source, "tls", "xprtsec=mtls");
        assert_ne!(refused.rc, 0, "{}: {why}, and the mount succeeded", vm.name);
        let log = std::fs::read_to_string(vm.work().join("tlshd.log")).unwrap();
        println!("{} tlshd:\n{log}", vm.name);
    }
    let plain = mount(
        without,
        &format!("{SERVER_NAME}:/srv/plain"),
        "plain",
        "sec=sys",
    );
    assert_eq!(plain.rc, 0, "node2: the plain export: {}", plain.out);
    without.sh("echo plain > /mnt/plain/hello && sync");
    assert_eq!(server.sh("cat /srv/plain/hello").trim(), "plain");

    let server_log = std::fs::read_to_string(server.work().join("tlshd.log")).unwrap();
    println!("nfs1 tlshd:\n{server_log}");
    trusted.sh("umount /mnt/tls");
    without.sh("umount /mnt/plain");
}

/// Written into the encrypted claims: never to be seen on the wire.
const SECRET: &str = "rwxnfs-marker-that-must-stay-encrypted";
/// Written into a claim without TLS: seen on the wire, which shows the capture sees data.
const CLEAR: &str = "rwxnfs-marker-in-the-clear";

/// A claim's parameters: `transport`, and the node's root writing as root.
fn params(transport: &'static str) -> [(&'static str, &'static str); 2] {
    [("transport", transport), ("squash", "none")]
}

/// The line of /proc/mounts for `path` on `vm`.
fn mount_line(vm: &Vm, path: &str) -> String {
    vm.sh(&format!("grep ' {path} ' /proc/mounts"))
        .trim()
        .to_string()
}

/// Writes `text` through the claim's target on `vm`, checks nfs1 has it in the export, and
/// that `vm` reads what nfs1 writes.
fn write_and_read(vm: &Vm, server: &Vm, m: &Mounted, text: &str) {
    vm.sh(&format!("echo {text} > {}/data && sync", m.target));
    let share = &m.context["share"];
    assert_eq!(server.sh(&format!("cat {share}/data")).trim(), text);
    server.sh(&format!("echo from-nfs1 > {share}/back"));
    assert_eq!(
        vm.sh(&format!("cat {}/back", m.target)).trim(),
        "from-nfs1",
        "{}: reads what nfs1 wrote",
        vm.name
    );
}

/// A claim without TLS mounted on the node of `csi`, with `text` written and read through it.
async fn plain_claim(csi: &mut Csi, node: &Vm, server: &Vm, name: &str, text: &str) -> Mounted {
    let m = csi
        .create_and_mount(name, &params("none"), 32 * MIB)
        .await
        .unwrap();
    write_and_read(node, server, &m, text);
    m
}

/// A claim with `transport`, published to the node of `csi`, whose NodeStageVolume must
/// fail: the volume, and the status it failed with.
async fn refused(
    csi: &mut Csi,
    name: &str,
    transport: &'static str,
) -> (rwxnfs_proto::csi::Volume, tonic::Status) {
    let volume = csi
        .create(name, &params(transport), 32 * MIB)
        .await
        .unwrap();
    let err = csi
        .publish_and_stage(&volume, &format!("/tmp/stage/{name}"))
        .await
        .expect_err("staged where it must be refused");
    println!("{name}: {:?}: {}", err.code(), err.message());
    (volume, err)
}

/// A volume that was refused on this node: published to it but never staged.
async fn discard(csi: &mut Csi, volume: &rwxnfs_proto::csi::Volume, staging: &str) {
    let m = Mounted {
        id: volume.volume_id.clone(),
        context: volume.volume_context.clone(),
        staging: staging.into(),
        target: String::new(),
    };
    csi.unmount_and_delete(&m, &[]).await.unwrap();
}

/// The NFS mounts on `vm`.
fn nfs_mounts(vm: &Vm) -> String {
    vm.sh("grep ' nfs' /proc/mounts || true")
}

/// A `tls` and an `mtls` claim through the driver on node1: the agent exports them with
/// `xprtsec=`, the node plugin mounts them by the name in nfs1's certificate at the context's
/// address, and data written on the node is in the export on nfs1 and back.
async fn claims_over_tls(server: &Vm, node: &Vm, csi: &mut Csi) {
    for transport in ["tls", "mtls"] {
        let name = format!("claim-{transport}");
        let m = csi
            .create_and_mount(&name, &params(transport), 32 * MIB)
            .await
            .unwrap_or_else(|e| panic!("{transport}: {e:?}"));
        assert_eq!(m.context["serverName"], SERVER_NAME, "{:?}", m.context);
        let line = mount_line(node, &m.staging);
        println!("node1 {transport}: {line}");
        assert!(line.starts_with(&format!("{SERVER_NAME}:/")), "{line}");
        // A tls claim shares a connection node1 may still have over mutual TLS.
        assert!(
            line.contains(&format!("xprtsec={transport}")) || line.contains("xprtsec=mtls"),
            "{line}"
        );
        assert!(line.contains("addr=10.99.0.1"), "{line}");
        let export = server.sh(&format!(
            "grep -h '{}' /var/lib/nfs/etab",
            m.context["share"]
        ));
        println!("nfs1 exports it: {}", export.trim());
        let wanted = if transport == "tls" {
            "xprtsec=tls:mtls"
        } else {
            "xprtsec=mtls"
        };
        assert!(export.contains(wanted), "{export}");
        write_and_read(node, server, &m, &format!("{SECRET}-{transport}"));
        csi.unmount_and_delete(&m, &[&m.target]).await.unwrap();
    }
    assert_eq!(nfs_mounts(node), "", "node1: mounts left behind");
}

/// node2 has `tlshd` but no certificate of its own: an `mtls` claim is refused before the
/// mount, saying so; with `tlshd` stopped a `tls` claim is refused before the mount too, and
/// mounts once it runs again; a claim without TLS mounts on the same server throughout.
async fn node_without_certificate(server: &Vm, node: &Vm, csi: &mut Csi) {
    let (mtls, err) = refused(csi, "node2-mtls", "mtls").await;
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("names no client certificate")
            && err
                .message()
                .contains("this node has no certificate to present"),
        "{}",
        err.message()
    );
    assert_eq!(nfs_mounts(node), "", "node2: refused, yet mounted");

    let plain = plain_claim(csi, node, server, "node2-none", "plain-from-node2").await;

    node.sh("kill $(pidof tlshd); while pidof tlshd; do usleep 100000; done; true");
    let (tls, err) = refused(csi, "node2-tls", "tls").await;
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message()
            .starts_with("transport tls: no TLS handshake daemon is running on this node"),
        "{}",
        err.message()
    );
    node.sh("setsid tlshd -s >> /work/tlshd.log 2>&1 < /dev/null & sleep 1");
    // The plain claim is still mounted: the node's mounts of nfs1 share one connection, which
    // the TLS mount would ride and its export refuse (EPERM): refused before the mount.
    let err = csi
        .stage(&tls, "/tmp/stage/node2-tls")
        .await
        .expect_err("a tls claim staged beside a plaintext mount of its server");
    println!(
        "node2-tls beside a plain mount: {:?}: {}",
        err.code(),
        err.message()
    );
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().starts_with(
            "transport tls: this node already mounts NFS server 10.99.0.1 without TLS at \
             /tmp/stage/node2-none, /tmp/target/node2-none;"
        ),
        "{}",
        err.message()
    );
    csi.unmount_and_delete(&plain, &[&plain.target])
        .await
        .unwrap();
    let m = csi.mount(&tls, "node2-tls").await.unwrap();
    let line = mount_line(node, &m.staging);
    println!("node2 tls with tlshd: {line}");
    assert!(line.contains("xprtsec=tls"), "{line}");
    write_and_read(node, server, &m, &format!("{SECRET}-node2"));
    // The other way round, a claim without TLS staged beside the TLS one rides its connection:
    // admitted (its export takes every transport), and encrypted.
    let plain = plain_claim(csi, node, server, "node2-none-beside", "plain-beside-tls").await;
    let line = mount_line(node, &plain.staging);
    println!("node2 none beside tls: {line}");
    assert!(line.contains("xprtsec=tls"), "{line}");
    csi.unmount_and_delete(&plain, &[&plain.target])
        .await
        .unwrap();
    csi.unmount_and_delete(&m, &[&m.target]).await.unwrap();
    discard(csi, &mtls, "/tmp/stage/node2-mtls").await;
}

/// node3's certificate is from a CA nfs1 does not trust: an `mtls` claim is refused by the
/// handshake, and the error says so; a claim without TLS mounts. Then node3's certificate is
/// renewed, from the trusted CA, into the same files with `tlshd` left running: the next
/// handshake presents it and the same claim mounts.
async fn node_with_another_ca(server: &Vm, node: &Vm, csi: &mut Csi, pki: &Pki) {
    let (mtls, err) = refused(csi, "node3-mtls", "mtls").await;
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains(&format!(
            "(transport mtls: the TLS handshake with {SERVER_NAME:?}"
        )),
        "{}",
        err.message()
    );
    assert_eq!(nfs_mounts(node), "", "node3: refused, yet mounted");

    let plain = plain_claim(csi, node, server, "node3-none", CLEAR).await;
    csi.unmount_and_delete(&plain, &[&plain.target])
        .await
        .unwrap();

    let tlshd = node.sh("pidof tlshd");
    let (cert, key) = pki.issue("node3");
    std::fs::write(node.work().join("renewed.pem"), cert).unwrap();
    std::fs::write(node.work().join("renewed.key"), key).unwrap();
    // As a renewal lands: new files renamed over the old ones.
    node.sh(
        "cp /work/renewed.pem /etc/tlshd/own.pem.new && cp /work/renewed.key /etc/tlshd/own.key.new \
         && chmod 644 /etc/tlshd/own.pem.new && chmod 600 /etc/tlshd/own.key.new \
         && mv /etc/tlshd/own.pem.new /etc/tlshd/own.pem && mv /etc/tlshd/own.key.new /etc/tlshd/own.key",
    );
    let m = csi
        .mount(&mtls, "node3-mtls")
        .await
        .unwrap_or_else(|e| panic!("node3 with the renewed certificate: {e:?}"));
    assert_eq!(node.sh("pidof tlshd"), tlshd, "tlshd was restarted");
    let line = mount_line(node, &m.staging);
    println!("node3 mtls after renewal: {line}");
    assert!(line.contains("xprtsec=mtls"), "{line}");
    write_and_read(node, server, &m, &format!("{SECRET}-renewed"));
    csi.unmount_and_delete(&m, &[&m.target]).await.unwrap();
}

/// What crossed the lab network, as QEMU recorded it at node1 (the network is a hub: every
/// node's frames): node1's NFS (port 2049) is TLS records after the RPC-with-TLS probe; none of
/// what any node wrote to a TLS claim appears anywhere in the capture, while what node3 wrote
/// to a claim without TLS does: the capture does see the data that crosses in the clear.
fn capture_evidence(node1: &Vm) {
    let raw = std::fs::read(node1.work().join("lan.pcap")).unwrap();
    let segments = pcap::tcp_segments(&raw).unwrap();
    let node1_address = std::net::Ipv4Addr::new(10, 99, 0, 2);
    let nfs: Vec<&pcap::Segment> = segments
        .iter()
        .filter(|s| s.has_port(2049) && (s.src == node1_address || s.dst == node1_address))
        .collect();
    let starts = |prefix: &[u8]| nfs.iter().filter(|s| s.payload.starts_with(prefix)).count();
    let (handshakes, records) = (starts(&[0x16, 0x03]), starts(&[0x17, 0x03, 0x03]));
    let bytes: usize = nfs.iter().map(|s| s.payload.len()).sum();
    // RPC calls in the clear: a record mark, then xid, CALL (0), RPC version 2, NFS (100003);
    // (procedure, credential flavour, a COMPOUND's first operation) of each, by sender.
    let clear_calls = |from: std::net::Ipv4Addr| -> Vec<(u32, u32, Option<u32>)> {
        segments
            .iter()
            .filter(|s| {
                s.src == from
                    && s.dst_port == 2049
                    && s.payload.get(8..20) == Some(&[0, 0, 0, 0, 0, 0, 0, 2, 0, 1, 0x86, 0xa3][..])
            })
            .map(|s| rpc_call(&s.payload))
            .collect()
    };
    let calls = clear_calls(node1_address);
    let node3_calls = clear_calls(std::net::Ipv4Addr::new(10, 99, 0, 4));
    println!(
        "capture: {} bytes; node1's NFS: {} TCP segments with data ({bytes} bytes), \
         {handshakes} beginning a TLS handshake record, {records} a TLS application-data \
         record (17 03 03), NFS calls in the clear (procedure, credential flavour, first \
         operation): {calls:?}; node3 (a claim without TLS): {} NFS calls in the clear",
        raw.len(),
        nfs.len(),
        node3_calls.len()
    );
    assert!(handshakes >= 2 && records >= 10, "too few TLS records seen");
    // RFC 9289: the probe is in the clear, a NULL call with AUTH_TLS (flavour 7). The
    // mechanism's mount without xprtsec beside the TLS one starts a client of its own, whose
    // NULL and EXCHANGE_ID (42: the client's name, no file or handle) go out in the clear
    // before the kernel finds the server's existing client and uses its TLS connection.
    assert!(calls.contains(&(0, 7, None)), "no RPC-with-TLS probe seen");
    assert!(
        calls
            .iter()
            .all(|&(procedure, _, op)| procedure == 0 || op == Some(42)),
        "NFS in the clear from node1: {calls:?}"
    );
    assert!(
        !pcap::contains(&raw, SECRET.as_bytes()),
        "what was written to a TLS claim is in the capture in the clear"
    );
    assert!(
        node3_calls.iter().any(|&(procedure, _, _)| procedure == 1),
        "no COMPOUND in the clear from node3's claim without TLS"
    );
    assert!(
        pcap::contains(&raw, CLEAR.as_bytes()),
        "node3's claim without TLS is not in the capture: the capture sees nothing"
    );
}

/// An RPC call's procedure, credential flavour and, for a COMPOUND, its first operation.
fn rpc_call(payload: &[u8]) -> (u32, u32, Option<u32>) {
    let word = |at: usize| {
        payload
            .get(at..at + 4)
            .map(|w| u32::from_be_bytes(w.try_into().unwrap()))
    };
    let pad = |n: u32| (n as usize).div_ceil(4) * 4;
    let (procedure, flavour) = (word(24).unwrap(), word(28).unwrap());
    let first_op = (procedure == 1)
        .then(|| {
            // credential body, verifier (flavour, body), tag, minor version, op count.
            let verifier = 36 + pad(word(32)?);
            let tag = verifier + 8 + pad(word(verifier + 4)?);
            word(tag + 4 + pad(word(tag)?) + 8)
        })
        .flatten();
    (procedure, flavour, first_op)
}

/// Sequential write (with fsync) and read (client cache dropped) of one file through a claim
/// without TLS and one with, on node2: MB/s of each and the ratio. The size is
/// `RWXNFS_TLS_THROUGHPUT_MIB` (64 by default: the emulated CPU is slow).
async fn throughput(node: &Vm, csi: &mut Csi) {
    let mib: i64 = std::env::var("RWXNFS_TLS_THROUGHPUT_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let mut rates = Vec::new();
    for transport in ["none", "tls"] {
        let m = csi
            .create_and_mount(
                &format!("speed-{transport}"),
                &params(transport),
                (mib + 32) * MIB,
            )
            .await
            .unwrap();
        let line = mount_line(node, &m.staging);
        assert_eq!(
            line.contains("xprtsec=tls"),
            transport == "tls",
            "node2 {transport}: {line}"
        );
        let out = node.run(
            &format!(
                "t0=$(cut -d' ' -f1 /proc/uptime)
dd if=/dev/zero of={t}/big bs=1M count={mib} conv=fsync 2>/dev/null
t1=$(cut -d' ' -f1 /proc/uptime)
echo 3 > /proc/sys/vm/drop_caches
dd if={t}/big of=/dev/null bs=1M 2>/dev/null
t2=$(cut -d' ' -f1 /proc/uptime)
echo $t0 $t1 $t2",
                t = m.target
            ),
            Duration::from_secs(1800),
        );
        assert_eq!(out.rc, 0, "{transport}: {}", out.out);
        let t: Vec<f64> = out
            .out
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect();
        let (write, read) = (t[1] - t[0], t[2] - t[1]);
        let rate = |secs: f64| mib as f64 * 1.048_576 / secs;
        println!(
            "throughput {transport}: {mib} MiB written in {write:.1} s ({:.1} MB/s), read in \
             {read:.1} s ({:.1} MB/s)",
            rate(write),
            rate(read)
        );
        rates.push((rate(write), rate(read)));
        csi.unmount_and_delete(&m, &[&m.target]).await.unwrap();
    }
    println!(
        "throughput TLS/plain: write {:.2}, read {:.2}",
        rates[1].0 / rates[0].0,
        rates[1].1 / rates[0].1
    );
}
