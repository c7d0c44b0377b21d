//! Kernel NFS over TLS (RPC-with-TLS, RFC 9289) in the VM tier, on Debian trixie's 6.12
//! kernel with its nfs-utils 2.8 and ktls-utils' `tlshd`: the mechanism that transport
//! security for claims is built on, proven with the kernel and the daemons alone.
//!
//! - `nfs1` (10.99.0.1, `nfs.rwxnfs.test` to the clients) exports one directory with
//!   `xprtsec=mtls` and one without; its `tlshd` has the server certificate (the name in its
//!   SAN) and trusts the test CA for clients.
//! - `node1` has a client certificate from that CA, `node2` none, `node3` one from another CA.
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
    vm::{Kernel, Lab, Vm, VmSpec},
};

/// The name clients mount by, the one the server certificate's SAN carries.
const SERVER_NAME: &str = "nfs.rwxnfs.test";

/// Kernel TLS with its ciphers loaded, and `tlshd`: its configuration has
/// `[authenticate.server]` or `[authenticate.client]` with the trust store and, where given,
/// the certificate and key presented (files, not symlinks: `tlshd` refuses those; it warns
/// unless certificates are mode 644 and keys 600). Logs to `/work/tlshd.log`.
fn tlshd(side: &str, own: bool) -> String {
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

/// Kernel nfsd on tmpfs exports (the mechanism needs no XFS): `/srv/tls` only over mutual TLS,
/// `/srv/plain` without.
fn server_boot() -> String {
    format!(
        r#"modprobe nfsd
{tlshd}mkdir -p /srv/tls /srv/plain /etc/exports.d
mount -t tmpfs tls /srv/tls
mount -t tmpfs plain /srv/plain
mount -t nfsd nfsd /proc/fs/nfsd
mount -t rpc_pipefs rpc_pipefs /var/lib/nfs/rpc_pipefs
cat > /etc/exports <<'END'
/srv/tls 10.99.0.0/24(rw,no_root_squash,fsid=101,xprtsec=mtls)
/srv/plain 10.99.0.0/24(rw,no_root_squash,fsid=102)
END
exportfs -ra
rpcbind -w
echo 10 > /proc/fs/nfsd/nfsv4leasetime
echo 10 > /proc/fs/nfsd/nfsv4gracetime
nfsdcld
rpc.mountd --no-udp -N 3
rpc.nfsd --no-udp -N 3 4
"#,
        tlshd = tlshd("server", true)
    )
}

fn client_boot(own: bool) -> String {
    format!(
        "modprobe nfsv4\n{}echo '10.99.0.1 {SERVER_NAME}' >> /etc/hosts\n",
        tlshd("client", own)
    )
}

/// `pki/` files of a VM: the CA its `tlshd` trusts and, where given, its own certificate.
fn pki_files(ca: &str, own: Option<(String, String)>) -> Vec<(String, String)> {
    let mut files = vec![("pki/ca.pem".to_string(), ca.to_string())];
    if let Some((cert, key)) = own {
        files.push(("pki/own.pem".into(), cert));
        files.push(("pki/own.key".into(), key));
    }
    files
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

#[test]
fn kernel_nfs_over_mutual_tls_admits_only_clients_with_a_trusted_certificate() {
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
        lan: Some(1),
        boot: server_boot(),
        files: pki_files(&pki.ca_pem, Some(server_cert)),
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
                boot: client_boot(own.is_some()),
                files: pki_files(&pki.ca_pem, own),
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
