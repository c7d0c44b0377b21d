//! A throw-away certificate authority for tests of the agent's mutual TLS.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

pub struct Pki {
    pub ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(vec![]).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("a CA key");
        let cert = params.self_signed(&key).expect("a self-signed CA");
        Self {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// (certificate PEM, key PEM) for `name` (also its DNS subject name), signed by this CA.
    pub fn issue(&self, name: &str) -> (String, String) {
        self.issue_for(name, None, &[name])
    }

    /// (certificate PEM, key PEM) for `name` (also its DNS subject name) that expired at the
    /// start of 2021 (valid through 2020).
    pub fn issue_expired(&self, name: &str) -> (String, String) {
        let mut params = Self::params(name, None, &[name]);
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        self.sign(params)
    }

    /// (certificate PEM, key PEM) with common name `name`, an organization if given (what
    /// Kubernetes reads as the user's group), and `sans` as subject names: each one an IP
    /// address SAN when it parses as one, a URI SAN when it has a scheme (`spiffe://…`), else
    /// a DNS name.
    pub fn issue_for(
        &self,
        name: &str,
        organization: Option<&str>,
        sans: &[&str],
    ) -> (String, String) {
        self.sign(Self::params(name, organization, sans))
    }

    fn params(name: &str, organization: Option<&str>, sans: &[&str]) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans
            .iter()
            .map(|san| {
                if let Ok(ip) = san.parse() {
                    SanType::IpAddress(ip)
                } else if san.contains("://") {
                    SanType::URI((*san).try_into().expect("a URI SAN"))
                } else {
                    SanType::DnsName((*san).try_into().expect("a DNS SAN"))
                }
            })
            .collect();
        params.distinguished_name.push(DnType::CommonName, name);
        if let Some(org) = organization {
            params
                .distinguished_name
                .push(DnType::OrganizationName, org);
        }
        params
    }

    fn sign(&self, params: CertificateParams) -> (String, String) {
        let key = KeyPair::generate().expect("a key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("a signed certificate");
        (cert.pem(), key.serialize_pem())
    }
}

/// A new key pair (ECDSA P-256) as (private key PKCS#8 PEM, public key PEM), e.g. for signing
/// service-account tokens.
pub fn key_pair_pem() -> (String, String) {
    let key = KeyPair::generate().expect("a key");
    (key.serialize_pem(), key.public_key_pem())
}

/// Publishes `files` in `dir` as the kubelet updates a mounted Secret (what cert-manager's
/// renewals look like to a pod): a new directory `..v<version>`, the `..data` symlink swapped
/// to it in one rename, and each file a symlink through `..data`.
pub fn publish_secret(dir: &std::path::Path, version: u32, files: &[(&str, &str)]) {
    use std::path::Path;
    let data = dir.join(format!("..v{version}"));
    std::fs::create_dir_all(&data).expect("the Secret's new directory");
    for (name, text) in files {
        std::fs::write(data.join(name), text).expect("a file of the Secret");
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(data.file_name().expect("a name"), &tmp).expect("..data_tmp");
    std::fs::rename(&tmp, dir.join("..data")).expect("the ..data swap");
    for (name, _) in files {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), link)
                .expect("a file's link through ..data");
        }
    }
}
