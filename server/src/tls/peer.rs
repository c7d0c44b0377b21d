//! Who is on the other end of a TLS connection: the names its (verified) certificate presents.

use std::{fmt, net::SocketAddr, sync::Arc};

use tokio_rustls::rustls::pki_types::CertificateDer;

/// One name a certificate presents. cert-manager writes a Certificate's `dnsNames` and `uris`
/// as subject alternative names and its `commonName` as the subject's CN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerName {
    Dns(String),
    Uri(String),
    CommonName(String),
}

impl PeerName {
    /// The name itself, without its kind.
    pub fn value(&self) -> &str {
        match self {
            PeerName::Dns(v) | PeerName::Uri(v) | PeerName::CommonName(v) => v,
        }
    }
}

impl fmt::Display for PeerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerName::Dns(v) => write!(f, "DNS:{v}"),
            PeerName::Uri(v) => write!(f, "URI:{v}"),
            PeerName::CommonName(v) => write!(f, "CN={v}"),
        }
    }
}

/// The client of a connection whose certificate the handshake verified; tonic hands it to
/// every request of the connection as an extension.
#[derive(Clone, Debug)]
pub struct Peer {
    pub remote: Option<SocketAddr>,
    /// The names of its end-entity certificate, subject alternative names first.
    pub names: Arc<[PeerName]>,
}

impl Peer {
    /// The names as one readable list: `DNS:a, URI:spiffe://b, CN=c` (or `no names`).
    pub fn describe(&self) -> String {
        if self.names.is_empty() {
            return "no names".into();
        }
        self.names
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The DNS and URI subject alternative names and the common name(s) of `cert`.
pub(crate) fn names(cert: &CertificateDer<'_>) -> Vec<PeerName> {
    let Ok(parsed) = webpki::EndEntityCert::try_from(cert) else {
        return Vec::new();
    };
    let mut names: Vec<PeerName> = parsed
        .valid_dns_names()
        .map(|n| PeerName::Dns(n.to_owned()))
        .collect();
    names.extend(
        parsed
            .valid_uri_names()
            .map(|n| PeerName::Uri(n.to_owned())),
    );
    names.extend(common_names(parsed.subject()).map(PeerName::CommonName));
    names
}

/// OID 2.5.4.3 (id-at-commonName), DER-encoded.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// The common names in a DER Name (the contents of its RDNSequence): SET OF SEQUENCE {OID,
/// value}. Values of the string types certificates use; anything malformed ends the walk.
fn common_names(mut rdns: &[u8]) -> impl Iterator<Item = String> {
    let mut found = Vec::new();
    while let Some((0x31, mut set, rest)) = element(rdns) {
        rdns = rest;
        while let Some((0x30, attribute, rest)) = element(set) {
            set = rest;
            let Some((0x06, oid, value)) = element(attribute) else {
                break;
            };
            // UTF8String, PrintableString, TeletexString, IA5String.
            if oid == COMMON_NAME
                && let Some((0x0c | 0x13 | 0x14 | 0x16, text, _)) = element(value)
                && let Ok(text) = std::str::from_utf8(text)
            {
                found.push(text.to_owned());
            }
        }
    }
    found.into_iter()
}

/// One DER element: (tag, contents, what follows). Lengths up to four bytes long.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let octets = (first & 0x7f) as usize;
        if octets == 0 || octets > 4 || rest.len() < octets {
            return None;
        }
        let (len, rest) = rest.split_at(octets);
        (
            len.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize),
            rest,
        )
    };
    if rest.len() < len {
        return None;
    }
    let (contents, rest) = rest.split_at(len);
    Some((tag, contents, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_names_are_read_from_a_name_and_garbage_yields_none() {
        // SET { SEQUENCE { OID 2.5.4.10, "org" } }, SET { SEQUENCE { OID 2.5.4.3, "cn" } }
        let name = [
            0x31, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x04, 0x0a, 0x0c, 0x03, b'o', b'r', b'g',
            0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x03, 0x13, 0x02, b'c', b'n',
        ];
        assert_eq!(common_names(&name).collect::<Vec<_>>(), ["cn"]);
        for garbage in [
            &name[..5],
            &[0x31, 0x84, 0xff, 0xff, 0xff, 0xff][..],
            &[][..],
        ] {
            assert_eq!(common_names(garbage).count(), 0);
        }
    }

    #[test]
    fn names_are_described_with_their_kind() {
        let peer = Peer {
            remote: None,
            names: vec![
                PeerName::Dns("a".into()),
                PeerName::Uri("spiffe://b".into()),
                PeerName::CommonName("c".into()),
            ]
            .into(),
        };
        assert_eq!(peer.describe(), "DNS:a, URI:spiffe://b, CN=c");
    }
}
