use std::{
    convert::Infallible,
    io::Write,
    sync::{Arc, Mutex, OnceLock},
};

use rwxnfs_model::DriverName;
use rwxnfs_proto::csi::{GetPluginInfoRequest, identity_client::IdentityClient};
use tonic::body::Body;
use tower::ServiceExt;

use super::*;
use crate::{
    Endpoint,
    identity::{AlwaysReady, IdentityService},
};

/// Every log line of this test binary. One global subscriber, not a thread-local one per test:
/// with thread-local subscribers a callsite first hit by another test at the same moment can
/// be cached as uninteresting and the capture comes up empty. Tests tell their lines apart by
/// the volume id each uses.
fn log() -> &'static Mutex<Vec<u8>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || Capture(writer.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        log
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The captured lines that mention `needle`.
fn lines_with(needle: &str) -> Vec<String> {
    let log = log().lock().unwrap();
    String::from_utf8_lossy(&log)
        .lines()
        .filter(|line| line.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// Calls `path` on a wrapped handler that names `volume` and answers `status` (OK when `None`).
async fn call(path: &str, volume: &'static str, status: Option<Status>) {
    log();
    let handler = tower::service_fn(move |_request: http::Request<Body>| {
        let status = status.clone();
        async move {
            volume_id(volume);
            tracing::info!("inside the handler");
            Ok::<_, Infallible>(match status {
                Some(status) => status.into_http(),
                None => http::Response::new(Body::empty()),
            })
        }
    });
    let request = http::Request::builder()
        .uri(format!("http://localhost{path}"))
        .body(Body::empty())
        .unwrap();
    wrap(handler).oneshot(request).await.unwrap();
}

#[test]
fn the_method_is_the_last_segment_of_the_path() {
    assert_eq!(method("/csi.v1.Node/NodeStageVolume"), "NodeStageVolume");
    assert_eq!(method("NoSlash"), "NoSlash");
}

#[tokio::test]
async fn a_failing_call_is_logged_once_with_its_code_message_and_volume_id() {
    let message = "volume vol-fails is not staged at /s: 100% \"gone\"; stage it first";
    call(
        "/csi.v1.Node/NodePublishVolume",
        "vol-fails",
        Some(Status::failed_precondition(message)),
    )
    .await;
    let failed: Vec<String> = lines_with("vol-fails")
        .into_iter()
        .filter(|line| line.contains("rpc failed"))
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    let line = &failed[0];
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("rpc=\"NodePublishVolume\""), "{line}");
    assert!(line.contains("volume_id=\"vol-fails\""), "{line}");
    assert!(line.contains("code=FailedPrecondition"), "{line}");
    assert!(
        line.contains(message),
        "the message is percent-decoded: {line}"
    );
}

#[tokio::test]
async fn an_internal_failure_is_logged_as_an_error() {
    call(
        "/csi.v1.Node/NodeUnstageVolume",
        "vol-internal",
        Some(Status::internal("still mounted")),
    )
    .await;
    let failed = lines_with("vol-internal");
    assert!(
        failed
            .iter()
            .any(|line| line.contains("ERROR") && line.contains("code=Internal")),
        "{failed:?}"
    );
}

#[tokio::test]
async fn a_successful_call_is_not_logged_at_info() {
    call("/csi.v1.Node/NodeGetVolumeStats", "vol-fine", None).await;
    let lines = lines_with("vol-fine");
    let own: Vec<&String> = lines
        .iter()
        .filter(|line| !line.contains("inside the handler"))
        .collect();
    assert_eq!(own.len(), 1, "{lines:?}");
    assert!(
        own[0].contains("DEBUG") && own[0].contains("rpc succeeded"),
        "{own:?}"
    );
}

#[tokio::test]
async fn the_handler_runs_inside_the_span_with_the_rpc_and_volume_id() {
    call("/csi.v1.Node/NodeExpandVolume", "vol-span", None).await;
    let inside = lines_with("inside the handler");
    assert!(
        inside
            .iter()
            .any(|line| line.contains("rpc{rpc=\"NodeExpandVolume\" volume_id=\"vol-span\"}")),
        "{inside:?}"
    );
}

#[tokio::test]
async fn each_call_is_counted_with_its_code() {
    let path = "/csi.v1.Node/TestRpcLayerCounts";
    call(path, "vol-count", Some(Status::aborted("busy"))).await;
    call(path, "vol-count", None).await;
    call(path, "vol-count", None).await;
    let text = crate::metrics::render();
    assert!(
        text.contains("rwxnfs_rpc_calls_total{rpc=\"TestRpcLayerCounts\",code=\"ABORTED\"} 1"),
        "{text}"
    );
    assert!(text.contains("rwxnfs_rpc_calls_total{rpc=\"TestRpcLayerCounts\",code=\"OK\"} 2"));
    assert!(text.contains("rwxnfs_rpc_duration_seconds_count{rpc=\"TestRpcLayerCounts\"} 3"));
}

#[tokio::test]
async fn a_call_dropped_before_it_answers_is_counted_and_logged_as_cancelled() {
    log();
    let handler = tower::service_fn(|_request: http::Request<Body>| async {
        volume_id("vol-hangs");
        std::future::pending::<Result<http::Response<Body>, Infallible>>().await
    });
    let request = http::Request::builder()
        .uri("http://localhost/csi.v1.Node/TestRpcLayerHangs")
        .body(Body::empty())
        .unwrap();
    let call = wrap(handler).oneshot(request);
    assert!(
        tokio::time::timeout(Duration::from_millis(50), call)
            .await
            .is_err(),
        "the handler never answers"
    );
    let text = crate::metrics::render();
    assert!(
        text.contains("rwxnfs_rpc_calls_total{rpc=\"TestRpcLayerHangs\",code=\"CANCELLED\"} 1"),
        "{text}"
    );
    let failed = lines_with("vol-hangs");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].contains("WARN") && failed[0].contains("code=Cancelled"),
        "{failed:?}"
    );
}

#[test]
fn made_up_methods_cannot_grow_the_registry_without_bound() {
    let mut names = Names::default();
    for i in 0..3 {
        names.intern(&format!("MadeUp{i}"), 3);
    }
    assert_eq!(names.intern("MadeUp1", 3), "MadeUp1", "known names stay");
    assert_eq!(names.intern("MadeUpOneMore", 3), "unknown");
}

#[tokio::test]
async fn a_wrapped_service_is_routed_and_counted_over_a_socket() {
    log();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = Endpoint::Unix(dir.path().join("csi.sock"));
    let identity = IdentityService::new(
        DriverName::parse("rwxnfs.csi.io").unwrap(),
        "test",
        vec![],
        Arc::new(AlwaysReady),
    );
    let router = crate::builder().add_service(identity.into_server());
    let server = crate::Serving::start(router, &endpoint).await.unwrap();
    let mut client = IdentityClient::new(endpoint.connect().await.unwrap());
    let info = client
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .unwrap();
    assert_eq!(info.into_inner().name, "rwxnfs.csi.io");
    let text = crate::metrics::render();
    assert!(
        text.contains("rwxnfs_rpc_calls_total{rpc=\"GetPluginInfo\",code=\"OK\"} 1"),
        "{text}"
    );
    server.stop().await.unwrap();
}
