//! NodeStageVolume of TLS claims: refused before the mount where the node lacks what the
//! handshake needs, mounted by the server's name with `xprtsec=` where it has it.

use std::sync::Arc;

use rwxnfs_model::Transport;
use tonic::{Code, Request};

use super::{service, stage_req};
use crate::{
    nodeserver::Node,
    tls::{FakeHandshake, TlsUnready},
};

fn tls_stage_req(
    dir: &std::path::Path,
    transport: &str,
) -> rwxnfs_proto::csi::NodeStageVolumeRequest {
    let mut req = stage_req(dir, &[]);
    req.volume_context
        .insert("server".into(), "localhost".into());
    req.volume_context
        .insert("transport".into(), transport.into());
    req
}

fn mounts(mounter: &crate::mounter::FakeMounter) -> Vec<String> {
    let calls = mounter.calls.lock().unwrap().clone();
    calls
        .into_iter()
        .filter(|c| c.starts_with("mount "))
        .collect()
}

#[tokio::test]
async fn a_tls_claim_on_a_node_without_a_handshake_daemon_is_failed_precondition_before_any_mount()
{
    let (svc, mounter, dir) = service();
    let svc = svc.with_handshake(Arc::new(FakeHandshake::unready(|transport| {
        TlsUnready::NoDaemon { transport }
    })));
    for transport in ["tls", "mtls"] {
        let err = svc
            .node_stage_volume(Request::new(tls_stage_req(dir.path(), transport)))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{transport}");
        assert!(
            err.message().starts_with(&format!(
                "transport {transport}: no TLS handshake daemon is running on this node"
            )),
            "{}",
            err.message()
        );
    }
    assert!(mounts(&mounter).is_empty());
    assert!(
        !dir.path().join("staging").exists(),
        "nothing is made before the check"
    );
    // A claim without TLS on the same node is mounted as ever.
    svc.node_stage_volume(Request::new(tls_stage_req(dir.path(), "none")))
        .await
        .unwrap();
    assert_eq!(mounts(&mounter).len(), 1);
}

#[tokio::test]
async fn an_mtls_claim_on_a_node_without_a_certificate_says_so_and_a_tls_claim_mounts() {
    let (svc, mounter, dir) = service();
    let svc = svc.with_handshake(Arc::new(FakeHandshake::unready(
        |transport| match transport {
            Transport::Mtls => TlsUnready::NoClientCertificate {
                config: "/etc/tlshd.conf".into(),
                what: "certificate",
                key: "x509.certificate",
            },
            Transport::Tls | Transport::None => unreachable!("only mtls asks for a certificate"),
        },
    )));
    let err = svc
        .node_stage_volume(Request::new(tls_stage_req(dir.path(), "mtls")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().starts_with(
            "transport mtls: /etc/tlshd.conf names no client certificate (x509.certificate in \
             [authenticate.client])"
        ),
        "{}",
        err.message()
    );
    assert!(mounts(&mounter).is_empty());
}

#[tokio::test]
async fn a_tls_claim_mounts_by_the_server_name_with_xprtsec() {
    let (svc, mounter, dir) = service();
    let svc = svc.with_handshake(Arc::new(FakeHandshake::ready()));
    svc.node_stage_volume(Request::new(tls_stage_req(dir.path(), "mtls")))
        .await
        .unwrap();
    let mounts = mounts(&mounter);
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert!(
        mounts[0].starts_with("mount nfs4 localhost:/pvc-1 ") && mounts[0].contains("xprtsec=mtls"),
        "{}",
        mounts[0]
    );
}

#[tokio::test]
async fn a_refused_tls_mount_names_the_handshake_and_the_certificates() {
    let (svc, mounter, dir) = service();
    let svc = svc.with_handshake(Arc::new(FakeHandshake::ready()));
    *mounter.fail.lock().unwrap() = Some(libc::EACCES);
    let err = svc
        .node_stage_volume(Request::new(tls_stage_req(dir.path(), "mtls")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message()
            .contains("(transport mtls: the TLS handshake with \"localhost\"")
            && err
                .message()
                .contains("this node's certificate must chain to a CA"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn a_tls_claim_of_a_server_this_node_mounts_in_plaintext_is_refused_before_the_mount() {
    let (svc, mounter, dir) = service();
    let svc = svc.with_handshake(Arc::new(FakeHandshake::ready()));
    let plain_at = dir.path().join("other-staging");
    let entry = |mount_point: &std::path::Path, xprtsec: Option<&str>| {
        let mut super_options = vec!["rw".to_string(), "vers=4.2".into()];
        super_options.extend(xprtsec.map(str::to_owned));
        super_options.push("addr=127.0.0.1".into());
        crate::mounter::MountEntry {
            mount_point: mount_point.to_owned(),
            root: "/".into(),
            fs_type: "nfs4".into(),
            source: "127.0.0.1:/pvc-0".into(),
            options: vec!["rw".into()],
            super_options,
            major_minor: "0:50".into(),
        }
    };
    mounter.table.lock().unwrap().push(entry(&plain_at, None));
    let err = svc
        .node_stage_volume(Request::new(tls_stage_req(dir.path(), "tls")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().starts_with(&format!(
            "transport tls: this node already mounts NFS server 127.0.0.1 without TLS at {}; ",
            plain_at.display()
        )),
        "{}",
        err.message()
    );
    assert!(mounts(&mounter).is_empty());
    // Beside a mount of that server over TLS, it mounts.
    *mounter.table.lock().unwrap() = vec![entry(&plain_at, Some("xprtsec=mtls"))];
    svc.node_stage_volume(Request::new(tls_stage_req(dir.path(), "tls")))
        .await
        .unwrap();
}
