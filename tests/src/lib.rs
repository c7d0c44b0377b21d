//! The whole rwxnfs stack in one process, for cross-component tests: an agent (with the NFS
//! server and filesystem given), a controller talking to it over a unix socket, and a node
//! plugin, each on its own socket, as in a cluster.

pub mod bench;

use std::{net::IpAddr, path::PathBuf, sync::Arc, time::Duration};

use rwxnfs_agent::{
    AgentService, ExportAgent, Settings, exporter::Exporter, fs::VolumeFs, table::Table,
};
use rwxnfs_controller::{
    AgentBackend, ControllerService, StaticNodes,
    config::{AgentBackendConfig, BackendConfig},
};
use rwxnfs_model::DriverName;
use rwxnfs_proto::csi::plugin_capability;
use rwxnfs_server::{
    Endpoint, IdentityService, Shutdown,
    identity::{AlwaysReady, controller_service, expansion_capability},
};

/// The node id the stack's node plugin reports; the controller maps it to 127.0.0.1.
pub const NODE_ID: &str = "node-1";

pub struct Stack {
    pub dir: tempfile::TempDir,
    pub agent: Endpoint,
    pub controller: Endpoint,
    pub node: Endpoint,
    stop: tokio::sync::watch::Sender<bool>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Stack {
    /// Starts the three endpoints under a fresh temporary directory; the controller maps
    /// [`NODE_ID`] to 127.0.0.1.
    pub async fn start(
        fs: impl FnOnce(PathBuf) -> Arc<dyn VolumeFs>,
        exporter: Arc<dyn Exporter>,
    ) -> Self {
        Self::start_with_nodes(fs, exporter, &[(NODE_ID, IpAddr::from([127, 0, 0, 1]))]).await
    }

    /// Starts the stack with the controller's node map (node id -> the address the NFS server
    /// sees for it).
    pub async fn start_with_nodes(
        fs: impl FnOnce(PathBuf) -> Arc<dyn VolumeFs>,
        exporter: Arc<dyn Exporter>,
        node_map: &[(&str, IpAddr)],
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("exports");
        std::fs::create_dir_all(&root).expect("export root");
        let sock = |name: &str| Endpoint::Unix(dir.path().join(format!("{name}.sock")));
        let (agent, controller, node) = (sock("agent"), sock("controller"), sock("node"));
        let (stop, shutdown) = Shutdown::manual();
        let mut servers = Vec::new();

        let table = Table::open(&dir.path().join("state")).expect("table");
        let export_agent = Arc::new(ExportAgent::new(
            Settings::default(),
            table,
            fs(root),
            exporter,
        ));
        export_agent.spawn_purger();
        let router =
            rwxnfs_server::builder().add_service(AgentService::new(export_agent).into_server());
        servers.push(spawn(router, &agent, shutdown.clone()).await);

        let backend = AgentBackend::new(&BackendConfig {
            name: "local".into(),
            agent: Some(AgentBackendConfig {
                endpoint: agent.to_string(),
                tls: None,
                timeout_seconds: Some(30),
            }),
            subdir: None,
            server: Some(IpAddr::from([127, 0, 0, 1])),
            server_name: None,
        })
        .expect("backend");
        let nodes = StaticNodes(
            node_map
                .iter()
                .map(|(id, addr)| (id.to_string(), vec![*addr]))
                .collect(),
        );
        let identity = IdentityService::new(
            driver(),
            "test",
            vec![
                controller_service(),
                expansion_capability(plugin_capability::volume_expansion::Type::Online),
            ],
            Arc::new(AlwaysReady),
        );
        let router = rwxnfs_server::builder()
            .add_service(identity.into_server())
            .add_service(
                ControllerService::new(vec![Arc::new(backend)], Arc::new(nodes)).into_server(),
            );
        servers.push(spawn(router, &controller, shutdown.clone()).await);

        let identity = IdentityService::new(driver(), "test", vec![], Arc::new(AlwaysReady));
        let node_service = rwxnfs_node::NodeService::new(rwxnfs_node::NodeConfig {
            node_id: NODE_ID.into(),
        });
        let router = rwxnfs_server::builder()
            .add_service(identity.into_server())
            .add_service(node_service.into_server());
        servers.push(spawn(router, &node, shutdown).await);

        Self {
            dir,
            agent,
            controller,
            node,
            stop,
            servers,
        }
    }

    /// A conformance-runner configuration pointed at this stack.
    pub fn sanity_config(&self) -> csi_sanity::Config {
        let mut config = csi_sanity::Config::new(self.node.clone());
        config.controller_endpoint = Some(self.controller.clone());
        config.staging_dir = self.dir.path().join("staging");
        config.target_dir = self.dir.path().join("target");
        config.test_volume_size = 1 << 30;
        config.test_volume_expand_size = 2 << 30;
        config.spec_timeout = Duration::from_secs(60);
        config
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for server in self.servers {
            let _ = server.await;
        }
    }
}

fn driver() -> DriverName {
    DriverName::parse(rwxnfs_model::DEFAULT_DRIVER_NAME).expect("default driver name")
}

async fn spawn(
    router: tonic::transport::server::Router,
    endpoint: &Endpoint,
    shutdown: Shutdown,
) -> tokio::task::JoinHandle<()> {
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let endpoint = endpoint.clone();
    let handle = tokio::spawn(async move {
        let result = rwxnfs_server::serve(
            router,
            &endpoint,
            shutdown.wait(),
            Duration::from_secs(5),
            move || {
                let _ = ready_tx.send(());
            },
        )
        .await;
        if let Err(e) = result {
            eprintln!("{endpoint}: {e}");
        }
    });
    let _ = ready_rx.await;
    handle
}
