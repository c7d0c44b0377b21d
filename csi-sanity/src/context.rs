//! Connections to the driver and what it says it can do, discovered once per run.

use rwxnfs_proto::csi::{
    ControllerGetCapabilitiesRequest, GetPluginCapabilitiesRequest,
    GroupControllerGetCapabilitiesRequest, NodeGetCapabilitiesRequest,
    controller_client::ControllerClient, controller_service_capability,
    group_controller_client::GroupControllerClient, group_controller_service_capability,
    identity_client::IdentityClient, node_client::NodeClient, node_service_capability,
    plugin_capability,
};
use tonic::transport::Channel;

use crate::config::Config;

pub use controller_service_capability::rpc::Type as ControllerCap;
pub use group_controller_service_capability::rpc::Type as GroupCap;
pub use node_service_capability::rpc::Type as NodeCap;
pub use plugin_capability::service::Type as PluginService;

/// A precondition for a spec to apply.
#[derive(Clone, Copy, Debug)]
pub enum Need {
    ControllerService,
    GroupControllerService,
    Controller(ControllerCap),
    Node(NodeCap),
    Group(GroupCap),
}

pub struct Ctx {
    pub config: Config,
    pub(crate) resources: crate::resources::Resources,
    node: Channel,
    controller: Channel,
    /// Services the controller endpoint advertises, or why that could not be learned.
    plugin_services: Result<Vec<i32>, String>,
    controller_caps: Vec<i32>,
    node_caps: Result<Vec<i32>, String>,
    group_caps: Vec<i32>,
}

fn plugin_services(caps: &[rwxnfs_proto::csi::PluginCapability]) -> Vec<i32> {
    caps.iter()
        .filter_map(|c| match &c.r#type {
            Some(plugin_capability::Type::Service(s)) => Some(s.r#type),
            _ => None,
        })
        .collect()
}

impl Ctx {
    pub async fn connect(config: Config) -> anyhow::Result<Self> {
        let node = config.endpoint.connect().await?;
        let controller = match &config.controller_endpoint {
            Some(ep) => ep.connect().await?,
            None => node.clone(),
        };
        let mut ctx = Self {
            config,
            resources: Default::default(),
            node,
            controller,
            plugin_services: Err("not asked yet".into()),
            controller_caps: Vec::new(),
            node_caps: Err("not asked yet".into()),
            group_caps: Vec::new(),
        };
        ctx.discover().await;
        Ok(ctx)
    }

    async fn discover(&mut self) {
        self.plugin_services = IdentityClient::new(self.controller.clone())
            .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
            .await
            .map(|r| plugin_services(&r.into_inner().capabilities))
            .map_err(|s| {
                format!(
                    "GetPluginCapabilities failed: {:?} {}",
                    s.code(),
                    s.message()
                )
            });
        if self.has_service(PluginService::ControllerService)
            && let Ok(r) = self
                .controller()
                .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
                .await
        {
            self.controller_caps = (r.into_inner().capabilities.iter())
                .filter_map(|c| c.r#type.as_ref())
                .map(|controller_service_capability::Type::Rpc(rpc)| rpc.r#type)
                .collect();
        }
        if self.has_service(PluginService::GroupControllerService)
            && let Ok(r) = self
                .group_controller()
                .group_controller_get_capabilities(GroupControllerGetCapabilitiesRequest {})
                .await
        {
            self.group_caps = (r.into_inner().capabilities.iter())
                .filter_map(|c| c.r#type.as_ref())
                .map(|group_controller_service_capability::Type::Rpc(rpc)| rpc.r#type)
                .collect();
        }
        self.node_caps = self
            .node()
            .node_get_capabilities(NodeGetCapabilitiesRequest {})
            .await
            .map(|r| {
                (r.into_inner().capabilities.iter())
                    .filter_map(|c| c.r#type.as_ref())
                    .map(|node_service_capability::Type::Rpc(rpc)| rpc.r#type)
                    .collect()
            })
            .map_err(|s| format!("NodeGetCapabilities failed: {:?} {}", s.code(), s.message()));
    }

    fn has_service(&self, service: PluginService) -> bool {
        self.plugin_services
            .as_ref()
            .is_ok_and(|s| s.contains(&(service as i32)))
    }

    /// Why `need` is not met, or None when it is.
    pub fn unmet(&self, need: Need) -> Option<String> {
        let missing = |what: &str| Some(format!("the driver does not advertise {what}"));
        match need {
            Need::ControllerService if !self.has_service(PluginService::ControllerService) => {
                missing("CONTROLLER_SERVICE")
            }
            Need::GroupControllerService
                if !self.has_service(PluginService::GroupControllerService) =>
            {
                missing("GROUP_CONTROLLER_SERVICE")
            }
            Need::Controller(cap) if !self.controller_caps.contains(&(cap as i32)) => {
                missing(&format!("the controller capability {}", cap.as_str_name()))
            }
            Need::Group(cap) if !self.group_caps.contains(&(cap as i32)) => missing(&format!(
                "the group controller capability {}",
                cap.as_str_name()
            )),
            Need::Node(cap) => match &self.node_caps {
                Ok(caps) if caps.contains(&(cap as i32)) => None,
                Ok(_) => missing(&format!("the node capability {}", cap.as_str_name())),
                // Not "not applicable": a node endpoint must answer this.
                Err(_) => None,
            },
            _ => None,
        }
    }

    pub fn identity(&self) -> IdentityClient<Channel> {
        IdentityClient::new(self.node.clone())
    }

    pub fn controller_identity(&self) -> IdentityClient<Channel> {
        IdentityClient::new(self.controller.clone())
    }

    pub fn controller(&self) -> ControllerClient<Channel> {
        ControllerClient::new(self.controller.clone())
    }

    pub fn group_controller(&self) -> GroupControllerClient<Channel> {
        GroupControllerClient::new(self.controller.clone())
    }

    pub fn node(&self) -> NodeClient<Channel> {
        NodeClient::new(self.node.clone())
    }
}
