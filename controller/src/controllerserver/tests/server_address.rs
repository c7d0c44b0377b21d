//! A backend with no `server` configured: its address comes from the agent's Probe, asked
//! once rather than on every CreateVolume, GetVolume and ListVolumes page, and asked again
//! once the agent has been unavailable.

use super::*;
use crate::backend::fake::PROBED_SERVER;

fn probes(backend: &FakeBackend) -> usize {
    backend.calls().iter().filter(|c| *c == "Probe").count()
}

async fn get_volume(svc: &ControllerService, id: &str) -> Result<csi::Volume, Status> {
    let response = svc
        .controller_get_volume(Request::new(csi::ControllerGetVolumeRequest {
            volume_id: id.into(),
        }))
        .await?;
    Ok(response.into_inner().volume.unwrap())
}

#[tokio::test]
async fn the_server_address_is_probed_once_and_again_after_the_agent_was_unavailable() {
    let backend = Arc::new(FakeBackend::without_server("ha"));
    let nodes = Arc::new(StaticNodes(BTreeMap::new()));
    let svc = ControllerService::new(vec![backend.clone()], nodes);
    let probed = std::net::IpAddr::from(PROBED_SERVER).to_string();

    // [Success] two creates, a get and a listing in two pages: one Probe.
    for name in ["pvc-1", "pvc-2"] {
        let volume = svc
            .create_volume(Request::new(create(name)))
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        assert_eq!(volume.volume_context["server"], probed);
    }
    assert_eq!(
        get_volume(&svc, "vol1:ha:pvc-1")
            .await
            .unwrap()
            .volume_context["server"],
        probed
    );
    let mut token = String::new();
    loop {
        let page = svc
            .list_volumes(Request::new(csi::ListVolumesRequest {
                max_entries: 1,
                starting_token: token,
            }))
            .await
            .unwrap()
            .into_inner();
        for entry in &page.entries {
            assert_eq!(
                entry.volume.as_ref().unwrap().volume_context["server"],
                probed
            );
        }
        token = page.next_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(probes(&backend), 1, "{:?}", backend.calls());

    // [Error] the agent is unavailable once; [Success] the next call asks its address again.
    *backend.fail_next.lock().unwrap() = Some(Status::unavailable("connection reset"));
    let err = get_volume(&svc, "vol1:ha:pvc-1").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    get_volume(&svc, "vol1:ha:pvc-1").await.unwrap();
    get_volume(&svc, "vol1:ha:pvc-2").await.unwrap();
    assert_eq!(probes(&backend), 2, "{:?}", backend.calls());

    // Any other refusal keeps the address.
    *backend.fail_next.lock().unwrap() = Some(Status::not_found("export pvc-9 does not exist"));
    get_volume(&svc, "vol1:ha:pvc-9").await.unwrap_err();
    get_volume(&svc, "vol1:ha:pvc-1").await.unwrap();
    assert_eq!(probes(&backend), 2, "{:?}", backend.calls());
}
