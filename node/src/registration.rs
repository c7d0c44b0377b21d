//! The kubelet's plugin registration, served by the node plugin itself: the kubelet finds the
//! registration socket under `/var/lib/kubelet/plugins_registry/`, asks GetInfo who is there,
//! registers the CSI driver at the endpoint it names (then writes the node's CSINode entry
//! with NodeGetInfo's node id), and reports the outcome. This is node-driver-registrar's job;
//! serving it here needs no second container.
//!
//! Whether the kubelet has registered the driver is logged, never part of liveness: a slow
//! kubelet is no reason to restart the node plugin.

use rwxnfs_proto::pluginregistration::{
    InfoRequest, PluginInfo, RegistrationStatus, RegistrationStatusResponse,
    registration_server::{Registration, RegistrationServer},
};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

/// The plugin type the kubelet's CSI plugin handler registers.
pub const CSI_PLUGIN: &str = "CSIPlugin";
/// The CSI versions this driver speaks (the kubelet accepts 1.x).
pub const SUPPORTED_VERSIONS: [&str; 1] = ["1.0.0"];

pub struct RegistrationService {
    driver_name: String,
    csi_endpoint: String,
    /// The kubelet's last verdict: `None` until it reports one.
    verdict: watch::Sender<Option<bool>>,
}

impl RegistrationService {
    /// `driver_name` as in the CSIDriver object; `csi_endpoint` is where the kubelet reaches
    /// the CSI socket on the host (e.g. /var/lib/kubelet/plugins/rwxnfs.csi.io/csi.sock).
    pub fn new(driver_name: impl Into<String>, csi_endpoint: impl Into<String>) -> Self {
        Self {
            driver_name: driver_name.into(),
            csi_endpoint: csi_endpoint.into(),
            verdict: watch::Sender::new(None),
        }
    }

    /// The kubelet's verdicts as they come: `Some(true)` once it has registered the driver.
    pub fn verdicts(&self) -> watch::Receiver<Option<bool>> {
        self.verdict.subscribe()
    }

    pub fn into_server(self) -> RegistrationServer<Self> {
        RegistrationServer::new(self)
    }
}

#[tonic::async_trait]
impl Registration for RegistrationService {
    async fn get_info(
        &self,
        _request: Request<InfoRequest>,
    ) -> Result<Response<PluginInfo>, Status> {
        tracing::debug!(driver = %self.driver_name, endpoint = %self.csi_endpoint, "kubelet: GetInfo");
        Ok(Response::new(PluginInfo {
            r#type: CSI_PLUGIN.to_owned(),
            name: self.driver_name.clone(),
            endpoint: self.csi_endpoint.clone(),
            supported_versions: SUPPORTED_VERSIONS.iter().map(|v| v.to_string()).collect(),
        }))
    }

    /// The kubelet's verdict. A refusal is logged as an error with its reason, since pods
    /// cannot mount the driver's volumes on this node until it registers.
    async fn notify_registration_status(
        &self,
        request: Request<RegistrationStatus>,
    ) -> Result<Response<RegistrationStatusResponse>, Status> {
        let status = request.into_inner();
        self.verdict.send_replace(Some(status.plugin_registered));
        if status.plugin_registered {
            tracing::info!(driver = %self.driver_name, "registered with the kubelet");
        } else {
            tracing::error!(
                driver = %self.driver_name,
                error = %status.error,
                "the kubelet refused to register the driver: pods cannot mount its volumes on this node"
            );
        }
        Ok(Response::new(RegistrationStatusResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn get_info_names_a_csi_plugin_its_driver_and_its_host_endpoint() {
        let service = RegistrationService::new(
            "rwxnfs.csi.io",
            "/var/lib/kubelet/plugins/rwxnfs.csi.io/csi.sock",
        );
        let info = service
            .get_info(Request::new(InfoRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(info.r#type, "CSIPlugin");
        assert_eq!(info.name, "rwxnfs.csi.io");
        assert_eq!(
            info.endpoint,
            "/var/lib/kubelet/plugins/rwxnfs.csi.io/csi.sock"
        );
        assert_eq!(info.supported_versions, ["1.0.0"]);
    }

    #[tokio::test]
    async fn a_refused_registration_is_acknowledged_and_each_verdict_is_kept() {
        let service = RegistrationService::new("rwxnfs.csi.io", "/csi.sock");
        let verdicts = service.verdicts();
        assert_eq!(*verdicts.borrow(), None);
        for (registered, error) in [(false, "driver name mismatch"), (true, "")] {
            service
                .notify_registration_status(Request::new(RegistrationStatus {
                    plugin_registered: registered,
                    error: error.into(),
                }))
                .await
                .unwrap();
            assert_eq!(*verdicts.borrow(), Some(registered));
        }
    }
}
