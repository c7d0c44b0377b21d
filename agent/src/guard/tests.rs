#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use rwxnfs_server::tls::PeerName;

use super::*;

const LIMITS: Limits = Limits {
    max_message_bytes: 100,
    max_concurrent_calls_per_client: 2,
};

fn framed(len: u32) -> Vec<u8> {
    let mut message = vec![0];
    message.extend_from_slice(&len.to_be_bytes());
    message.extend(std::iter::repeat_n(7, len as usize));
    message
}

#[test]
fn message_lengths_are_read_across_chunk_boundaries() {
    let mut ok = Limited::new((), 100);
    let two: Vec<u8> = [framed(100), framed(3)].concat();
    for chunk in two.chunks(3) {
        ok.scan(chunk).unwrap();
    }
    let mut over = Limited::new((), 100);
    let big = framed(101);
    over.scan(&big[..2]).unwrap();
    let err = over.scan(&big[2..]).unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(
        err.message().contains("limits.maxMessageBytes of 100"),
        "{}",
        err.message()
    );
}

fn request(names: Vec<PeerName>) -> http::Request<()> {
    let mut request = http::Request::new(());
    request.extensions_mut().insert(Peer {
        remote: Some(SocketAddr::from(([127, 0, 0, 1], 1))),
        names: names.into(),
    });
    request
}

#[test]
fn a_client_is_the_allowed_name_its_certificate_presents() {
    let policy = Policy::tls(vec!["rwxnfs-controller".into()], LIMITS, &Counts::default());
    let client = policy
        .client(&request(vec![
            PeerName::Dns("other".into()),
            PeerName::CommonName("rwxnfs-controller".into()),
        ]))
        .unwrap();
    assert_eq!(client, "rwxnfs-controller");

    let err = policy
        .client(&request(vec![PeerName::Dns("intruder".into())]))
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(
        err.message().contains("DNS:intruder") && err.message().contains("rwxnfs-controller"),
        "{}",
        err.message()
    );
    let err = policy.client(&http::Request::new(())).unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert_eq!(
        Policy::local(LIMITS, &Counts::default())
            .client(&http::Request::new(()))
            .unwrap(),
        "local"
    );
}

#[test]
fn calls_past_the_limit_per_client_are_refused_until_one_finishes() {
    let counts = Counts::default();
    let policy = Policy::tls(vec!["a".into(), "b".into()], LIMITS, &counts);
    let first = policy.admit("a".into()).unwrap();
    let _second = policy.admit("a".into()).unwrap();
    let err = policy.admit("a".into()).err().unwrap();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(
        err.message().contains("maxConcurrentCallsPerClient"),
        "{}",
        err.message()
    );
    let _other = policy.admit("b".into()).unwrap();
    drop(first);
    let _third = policy.admit("a".into()).unwrap();
}
