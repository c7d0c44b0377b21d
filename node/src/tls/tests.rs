#![allow(clippy::unwrap_used)]

use std::io;

use super::*;

fn listening() -> io::Result<Upcall> {
    Ok(Upcall::Listening)
}

/// A node with tlshd's configuration `conf` (`{dir}` is replaced by the directory) and the
/// certificate and key files in that directory.
fn node(conf: &str) -> (tempfile::TempDir, Tlshd) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("node.pem"), "-----BEGIN CERTIFICATE-----\n").unwrap();
    std::fs::write(dir.path().join("node.key"), "-----BEGIN PRIVATE KEY-----\n").unwrap();
    let config = dir.path().join("tlshd.conf");
    let text = conf.replace("{dir}", &dir.path().display().to_string());
    std::fs::write(&config, text).unwrap();
    let check = Tlshd::with_upcall(&config, listening);
    (dir, check)
}

const CLIENT: &str = "[debug]\nloglevel=0\n\n[authenticate.client]\n# this node\n\
                      x509.truststore = {dir}/ca.pem\nx509.certificate={dir}/node.pem\n\
                      x509.private_key={dir}/node.key\n\n[authenticate.server]\n\
                      x509.certificate=/nowhere.pem\n";

#[test]
fn a_node_with_tlshd_listening_and_its_certificate_is_ready_for_every_transport() {
    let (_dir, check) = node(CLIENT);
    for transport in [Transport::None, Transport::Tls, Transport::Mtls] {
        check.ready(transport).unwrap();
    }
}

#[test]
fn without_a_listening_daemon_tls_is_refused_and_says_how_to_start_one() {
    let (_dir, mut check) = node(CLIENT);
    check.upcall = || Ok(Upcall::NoListener);
    check.ready(Transport::None).unwrap();
    for transport in [Transport::Tls, Transport::Mtls] {
        let err = check.ready(transport).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "transport {transport}: no TLS handshake daemon is running on this node"
            )) && err.contains("systemctl enable --now tlshd"),
            "{err}"
        );
    }
    check.upcall = || Ok(Upcall::NoFamily);
    let err = check.ready(Transport::Tls).unwrap_err().to_string();
    assert!(
        err.contains("needs Linux 6.5 or later on the node"),
        "{err}"
    );
}

#[test]
fn a_kernel_that_cannot_be_asked_does_not_stop_the_mount() {
    let (_dir, mut check) = node(CLIENT);
    check.upcall = || Err(io::Error::from_raw_os_error(libc::ENOENT));
    check.ready(Transport::Mtls).unwrap();
}

#[test]
fn mtls_needs_a_client_certificate_and_key_and_tls_does_not() {
    let server_only = "[authenticate.server]\nx509.certificate={dir}/node.pem\n\
                       x509.private_key={dir}/node.key\n";
    for (conf, what) in [
        (server_only, "certificate (x509.certificate"),
        (
            "[authenticate.client]\nx509.truststore={dir}/ca.pem\nx509.certificate=\n",
            "certificate (x509.certificate",
        ),
        (
            "[authenticate.client]\nx509.certificate={dir}/node.pem\n",
            "private key (x509.private_key",
        ),
    ] {
        let (_dir, check) = node(conf);
        check.ready(Transport::Tls).unwrap();
        let err = check.ready(Transport::Mtls).unwrap_err();
        assert!(
            matches!(err, TlsUnready::NoClientCertificate { .. }),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&format!("names no client {what}"))
                && message.contains("this node has no certificate to present"),
            "{message}"
        );
    }
}

#[test]
fn a_missing_configuration_is_no_certificate_for_mtls() {
    let (dir, check) = node(CLIENT);
    std::fs::remove_file(dir.path().join("tlshd.conf")).unwrap();
    check.ready(Transport::Tls).unwrap();
    let err = check.ready(Transport::Mtls).unwrap_err().to_string();
    assert!(
        err.starts_with("transport mtls: cannot read tlshd's configuration ")
            && err.contains("tlshd.conf: No such file or directory")
            && err.contains("no client certificate configured"),
        "{err}"
    );
}

#[test]
fn a_named_certificate_that_is_missing_a_link_or_empty_is_refused_with_the_reason() {
    let (dir, check) = node(CLIENT);
    let cert = dir.path().join("node.pem");
    std::fs::remove_file(&cert).unwrap();
    let err = check.ready(Transport::Mtls).unwrap_err().to_string();
    assert!(
        err.contains(&format!("the client certificate {}", cert.display()))
            && err.contains("cannot be read: No such file or directory"),
        "{err}"
    );
    std::fs::write(dir.path().join("real.pem"), "x").unwrap();
    std::os::unix::fs::symlink(dir.path().join("real.pem"), &cert).unwrap();
    let err = check.ready(Transport::Mtls).unwrap_err().to_string();
    assert!(
        err.contains("is a symbolic link, which tlshd refuses"),
        "{err}"
    );
    std::fs::remove_file(&cert).unwrap();
    std::fs::write(&cert, "").unwrap();
    let err = check.ready(Transport::Mtls).unwrap_err().to_string();
    assert!(err.contains("is empty"), "{err}");
    std::fs::remove_file(&cert).unwrap();
    std::fs::create_dir(&cert).unwrap();
    let err = check.ready(Transport::Mtls).unwrap_err().to_string();
    assert!(err.contains("is not a regular file"), "{err}");
}

#[test]
fn the_client_group_is_read_as_glib_reads_it() {
    let text = "[authenticate.client]\nx509.certificate=/a\n[authenticate.clientx]\n\
                x509.certificate=/b\n[authenticate.client]\nx509.certificate = /c\n";
    let section = client_section(text);
    assert_eq!(value(&section, "x509.certificate"), Some("/c"));
    assert_eq!(value(&section, "x509.private_key"), None);
}
