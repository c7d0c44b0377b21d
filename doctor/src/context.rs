//! What every check shares: the objects, their workloads, the traffic the driver's pods must
//! keep out of the mesh, and the driver names that are ours.

use std::{collections::BTreeSet, path::Path};

use rwxnfs_controller::ControllerConfig;
use rwxnfs_model::mesh::{NfsProtocol, Traffic};

use crate::{
    checks::storage_class::{nfs_v3, our_storage_classes},
    finding::{Finding, Fix, ObjectRef, Severity},
    objects::Objects,
    workload::{Workload, workloads},
};

/// The agent port the README and the manifests use, assumed when no configuration is known.
pub const DEFAULT_AGENT_PORT: u16 = 9820;
/// The key of the controller's configuration in its ConfigMap.
pub const CONFIG_KEY: &str = "controller.yaml";

/// Where the traffic to exclude came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrafficSource {
    /// The controller's ConfigMap (its backends' agents and VIPs).
    Config(ObjectRef),
    /// NFSv4.1 and the default agent port; the VIPs are unknown.
    Defaults,
}

pub struct Context<'a> {
    pub objects: &'a Objects,
    pub workloads: Vec<Workload<'a>>,
    pub traffic: Traffic,
    pub traffic_source: TrafficSource,
    /// The driver names that are rwxnfs's: the default, and every name the driver's pods or a
    /// CSIDriver labelled as ours use.
    pub driver_names: BTreeSet<String>,
    /// Findings about the context itself (an unusable configuration).
    pub notes: Vec<Finding>,
}

impl<'a> Context<'a> {
    pub fn new(objects: &'a Objects) -> Self {
        let workloads = workloads(objects);
        let driver_names = crate::checks::driver_names::our_names(objects, &workloads);
        let mut ctx = Self {
            objects,
            workloads,
            traffic: default_traffic(),
            traffic_source: TrafficSource::Defaults,
            driver_names,
            notes: Vec::new(),
        };
        ctx.load_config();
        ctx
    }

    /// A context for one pod with a known configuration (the controller's self-check).
    pub fn with_traffic(objects: &'a Objects, traffic: Traffic, source: ObjectRef) -> Self {
        let mut ctx = Self::new(objects);
        ctx.traffic = traffic;
        ctx.traffic_source = TrafficSource::Config(source);
        ctx.notes.clear();
        ctx
    }

    fn load_config(&mut self) {
        let protocol = self.protocol();
        for cm in &self.objects.config_maps {
            let Some(text) = cm.data.as_ref().and_then(|d| d.get(CONFIG_KEY)) else {
                continue;
            };
            let object = ObjectRef::new(
                "ConfigMap",
                cm.metadata.namespace.as_deref().or(Some("default")),
                cm.metadata.name.as_deref().unwrap_or(""),
            );
            match ControllerConfig::parse(text, Path::new(CONFIG_KEY)) {
                Ok(config) => {
                    let (traffic, _) = crate::traffic::from_config(&config, protocol);
                    let before = self.traffic_if_config();
                    self.traffic = rwxnfs_model::mesh::merge([before, traffic]);
                    self.traffic_source = TrafficSource::Config(object);
                }
                Err(e) => self.notes.push(Finding {
                    code: "RWX070",
                    severity: Severity::Warning,
                    problem: format!(
                        "the controller configuration in key {CONFIG_KEY} does not load ({e}); the mesh checks assume NFSv4.1 and agent port {DEFAULT_AGENT_PORT}"
                    ),
                    fix: Fix::command(format!(
                        "kubectl -n {} edit configmap {} (see the README's \"The controller's configuration file\")",
                        object.namespace.as_deref().unwrap_or("default"),
                        object.name
                    )),
                    object,
                }),
            }
        }
    }

    /// The traffic collected from configurations so far (nothing while still on defaults).
    fn traffic_if_config(&self) -> Traffic {
        match self.traffic_source {
            TrafficSource::Config(_) => self.traffic.clone(),
            TrafficSource::Defaults => Traffic::default(),
        }
    }

    /// NFSv3 when one of our StorageClasses mounts with it (local locks only if all of them do).
    fn protocol(&self) -> NfsProtocol {
        let v3: Vec<bool> = our_storage_classes(self.objects, &self.driver_names)
            .filter_map(|sc| nfs_v3(&sc.parameters, &sc.mount_options))
            .collect();
        if v3.is_empty() {
            NfsProtocol::V41Plus
        } else {
            NfsProtocol::V3 {
                local_locks: v3.iter().all(|l| *l),
                mountd_port: None,
            }
        }
    }
}

pub fn default_traffic() -> Traffic {
    let mut t = Traffic::default();
    t.tcp_ports
        .extend([rwxnfs_model::mesh::NFS_PORT, DEFAULT_AGENT_PORT]);
    t
}
