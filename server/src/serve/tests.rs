use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use rwxnfs_model::DriverName;
use rwxnfs_proto::csi::{ProbeRequest, identity_client::IdentityClient};
use tokio::sync::oneshot;

use super::*;
use crate::identity::{IdentityService, Readiness};

/// A dependency check that takes its time, so a Probe is "in flight" for a while.
struct Slow(Duration);

#[tonic::async_trait]
impl Readiness for Slow {
    async fn check(&self) -> Result<(), String> {
        tokio::time::sleep(self.0).await;
        Ok(())
    }
}

fn router(delay: Duration) -> Router {
    let identity = IdentityService::new(
        DriverName::parse("rwxnfs.csi.io").unwrap(),
        "test",
        vec![],
        Arc::new(Slow(delay)),
    );
    builder().add_service(identity.into_server())
}

/// Starts a server; returns the endpoint, the trigger that stops it, and its task.
async fn start(
    delay: Duration,
    grace: Duration,
) -> (
    tempfile::TempDir,
    Endpoint,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), ServeError>>,
) {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = Endpoint::Unix(dir.path().join("csi.sock"));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (ready_tx, ready_rx) = oneshot::channel::<()>();
    let ep = endpoint.clone();
    let task = tokio::spawn(async move {
        serve(
            router(delay),
            &ep,
            async {
                let _ = stop_rx.await;
            },
            grace,
            move || {
                let _ = ready_tx.send(());
            },
        )
        .await
    });
    ready_rx.await.unwrap();
    (dir, endpoint, stop_tx, task)
}

#[tokio::test]
async fn shutdown_during_a_call_lets_the_call_finish_and_removes_the_socket() {
    let (_dir, endpoint, stop, server) =
        start(Duration::from_millis(500), Duration::from_secs(5)).await;
    let mut client = IdentityClient::new(endpoint.connect().await.unwrap());
    let call = tokio::spawn(async move { client.probe(ProbeRequest {}).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();

    let response = call
        .await
        .unwrap()
        .expect("the call in flight must complete");
    assert_eq!(response.into_inner().ready, Some(true));
    server.await.unwrap().unwrap();
    let Endpoint::Unix(path) = &endpoint else {
        unreachable!()
    };
    assert!(!path.exists(), "the socket must be removed on shutdown");
}

#[tokio::test]
async fn a_call_that_outlives_the_grace_period_does_not_hold_up_shutdown() {
    let grace = Duration::from_millis(300);
    let (_dir, endpoint, stop, server) = start(Duration::from_secs(60), grace).await;
    let mut client = IdentityClient::new(endpoint.connect().await.unwrap());
    let _call = tokio::spawn(async move { client.probe(ProbeRequest {}).await });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    let took = started.elapsed();
    assert!(
        took < grace + Duration::from_secs(1),
        "shutdown took {took:?}"
    );
    let Endpoint::Unix(path) = &endpoint else {
        unreachable!()
    };
    assert!(!path.exists());
}

#[tokio::test]
async fn new_connections_are_refused_once_shutdown_begins() {
    let (_dir, endpoint, stop, server) =
        start(Duration::from_millis(800), Duration::from_secs(5)).await;
    let mut client = IdentityClient::new(endpoint.connect().await.unwrap());
    let call = tokio::spawn(async move { client.probe(ProbeRequest {}).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    assert!(
        endpoint.connect().await.is_err(),
        "a new connection during the drain must fail"
    );
    call.await.unwrap().unwrap();
    server.await.unwrap().unwrap();
}
