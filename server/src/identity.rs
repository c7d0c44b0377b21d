//! The CSI Identity service, shared by the controller and node endpoints.

use std::sync::Arc;

use rwxnfs_model::DriverName;
use rwxnfs_proto::csi::{
    self, GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse, GetPluginInfoRequest,
    GetPluginInfoResponse, PluginCapability, ProbeRequest, ProbeResponse,
    identity_server::{Identity, IdentityServer},
    plugin_capability,
};
use tonic::{Request, Response, Status};

/// Whether the component's dependencies are usable right now. `Err` carries the reason, which
/// Probe logs and which should tell an operator what to fix.
///
/// A check must not block its thread (file reads go through `spawn_blocking`): Probe callers
/// and [`crate::health`] bound it with timers, which a blocked runtime thread can hold up.
#[tonic::async_trait]
pub trait Readiness: Send + Sync + 'static {
    async fn check(&self) -> Result<(), String>;
}

/// Always ready: for endpoints with nothing to depend on.
pub struct AlwaysReady;

#[tonic::async_trait]
impl Readiness for AlwaysReady {
    async fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

pub struct IdentityService {
    name: DriverName,
    vendor_version: String,
    capabilities: Vec<PluginCapability>,
    readiness: Arc<dyn Readiness>,
}

impl IdentityService {
    pub fn new(
        name: DriverName,
        vendor_version: impl Into<String>,
        capabilities: Vec<PluginCapability>,
        readiness: Arc<dyn Readiness>,
    ) -> Self {
        Self {
            name,
            vendor_version: vendor_version.into(),
            capabilities,
            readiness,
        }
    }

    /// The service with the [`crate::rpc`] layer, which times, counts and logs its calls.
    pub fn into_server(self) -> crate::rpc::Rpc<IdentityServer<Self>> {
        crate::rpc::wrap(IdentityServer::new(self))
    }
}

/// A plugin capability naming a whole service (CONTROLLER_SERVICE, ...).
pub fn service_capability(kind: plugin_capability::service::Type) -> PluginCapability {
    PluginCapability {
        r#type: Some(plugin_capability::Type::Service(
            plugin_capability::Service {
                r#type: kind as i32,
            },
        )),
    }
}

/// The plugin capability for online or offline volume expansion.
pub fn expansion_capability(kind: plugin_capability::volume_expansion::Type) -> PluginCapability {
    PluginCapability {
        r#type: Some(plugin_capability::Type::VolumeExpansion(
            plugin_capability::VolumeExpansion {
                r#type: kind as i32,
            },
        )),
    }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    /// The name MUST follow domain name notation and SHOULD be at most 63 characters; the
    /// vendor version is the crate version plus the git revision when it was known at build.
    async fn get_plugin_info(
        &self,
        _request: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: self.name.to_string(),
            vendor_version: self.vendor_version.clone(),
            manifest: Default::default(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _request: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        Ok(Response::new(GetPluginCapabilitiesResponse {
            capabilities: self.capabilities.clone(),
        }))
    }

    /// Reports `ready = false` (not an error) while a dependency is down, so that callers see
    /// a verdict rather than a transport failure; the reason is logged (and is the body of
    /// [`crate::health`]'s 503, which checks the same readiness).
    async fn probe(
        &self,
        _request: Request<ProbeRequest>,
    ) -> Result<Response<ProbeResponse>, Status> {
        let ready = match self.readiness.check().await {
            Ok(()) => {
                tracing::debug!(ready = true, "Probe");
                true
            }
            Err(reason) => {
                tracing::warn!(ready = false, %reason, "Probe: not ready");
                false
            }
        };
        Ok(Response::new(ProbeResponse { ready: Some(ready) }))
    }
}

/// The CONTROLLER_SERVICE capability, for endpoints that serve the Controller service.
pub fn controller_service() -> PluginCapability {
    service_capability(csi::plugin_capability::service::Type::ControllerService)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Down;

    #[tonic::async_trait]
    impl Readiness for Down {
        async fn check(&self) -> Result<(), String> {
            Err("the NFS server is not running".into())
        }
    }

    fn service(readiness: Arc<dyn Readiness>) -> IdentityService {
        IdentityService::new(
            DriverName::parse("rwxnfs.csi.io").unwrap(),
            "0.1.0",
            vec![controller_service()],
            readiness,
        )
    }

    #[tokio::test]
    async fn probe_reports_not_ready_while_a_dependency_is_down() {
        let res = service(Arc::new(Down))
            .probe(Request::new(ProbeRequest {}))
            .await
            .unwrap();
        assert_eq!(res.into_inner().ready, Some(false));
    }

    #[tokio::test]
    async fn probe_reports_ready_when_dependencies_are_up() {
        let res = service(Arc::new(AlwaysReady))
            .probe(Request::new(ProbeRequest {}))
            .await
            .unwrap();
        assert_eq!(res.into_inner().ready, Some(true));
    }

    #[tokio::test]
    async fn plugin_info_names_the_driver_and_its_version() {
        let info = service(Arc::new(AlwaysReady))
            .get_plugin_info(Request::new(GetPluginInfoRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(info.name, "rwxnfs.csi.io");
        assert_eq!(info.vendor_version, "0.1.0");
    }
}
