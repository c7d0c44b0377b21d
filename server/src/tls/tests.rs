#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};

use super::*;

fn ca() -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(vec![]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

fn leaf(issuer: &Issuer<'static, KeyPair>, sans: Vec<SanType>, cn: &str) -> (String, String) {
    let mut params = CertificateParams::default();
    params.subject_alt_names = sans;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, ca: &str, (cert, key): &(String, String)) -> TlsFiles {
    let files = TlsFiles {
        ca: dir.join("ca.crt"),
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    };
    std::fs::write(&files.ca, ca).unwrap();
    std::fs::write(&files.cert, cert).unwrap();
    std::fs::write(&files.key, key).unwrap();
    files
}

#[tokio::test]
async fn a_changed_file_makes_a_new_configuration_and_a_broken_one_keeps_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, issuer) = ca();
    let first = leaf(
        &issuer,
        vec![SanType::DnsName("a".try_into().unwrap())],
        "a",
    );
    let files = write(dir.path(), &ca_pem, &first);
    let tls = ServerTls::load(files.clone()).unwrap();
    let one = tls.current().await;
    assert!(
        Arc::ptr_eq(&one, &tls.current().await),
        "unchanged files, same config"
    );

    let second = leaf(
        &issuer,
        vec![SanType::DnsName("b".try_into().unwrap())],
        "b",
    );
    write(dir.path(), &ca_pem, &second);
    let two = tls.current().await;
    assert!(!Arc::ptr_eq(&one, &two), "a renewed certificate is loaded");

    // The certificate of one pair with the key of another: kept out, the last good one stays.
    std::fs::write(&files.key, &first.1).unwrap();
    assert!(Arc::ptr_eq(&two, &tls.current().await));
    std::fs::remove_file(&files.ca).unwrap();
    assert!(Arc::ptr_eq(&two, &tls.current().await));
}

#[test]
fn load_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, issuer) = ca();
    let files = write(dir.path(), &ca_pem, &leaf(&issuer, vec![], "x"));
    std::fs::write(&files.cert, "not PEM").unwrap();
    let err = ServerTls::load(files.clone()).err().unwrap().to_string();
    assert!(err.contains("tls.crt"), "{err}");
    std::fs::remove_file(&files.key).unwrap();
    let err = ClientTls::load(files, "agent").err().unwrap().to_string();
    assert!(err.contains("tls.key"), "{err}");
}

#[test]
fn a_certificate_presents_its_dns_and_uri_names_and_its_common_name() {
    let (_, issuer) = ca();
    let (pem, _) = leaf(
        &issuer,
        vec![
            SanType::DnsName("rwxnfs-controller".try_into().unwrap()),
            SanType::URI(
                "spiffe://cluster.local/ns/rwxnfs/sa/rwxnfs-controller"
                    .try_into()
                    .unwrap(),
            ),
            SanType::IpAddress([10, 0, 0, 1].into()),
        ],
        "controller",
    );
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    assert_eq!(
        peer::names(&der),
        [
            PeerName::Dns("rwxnfs-controller".into()),
            PeerName::Uri("spiffe://cluster.local/ns/rwxnfs/sa/rwxnfs-controller".into()),
            PeerName::CommonName("controller".into()),
        ]
    );
}
