//! An NFS server host for tests: a network namespace with NFS-Ganesha on a private bus, and
//! the agent's Ganesha exporter pointed at it.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rwxnfs_agent::exporter::ganesha::{GaneshaExporter, GaneshaSettings, INCLUDE_FILE};

use crate::{Dbus, Ganesha, Netns, require};

pub struct GaneshaServer {
    pub netns: Netns,
    pub ganesha: Ganesha,
    pub exporter: Arc<GaneshaExporter>,
    settings: GaneshaSettings,
    /// Where the exporter keeps its export files.
    pub conf_dir: PathBuf,
    /// Declared last: the bus outlives Ganesha.
    pub bus: Dbus,
}

impl GaneshaServer {
    /// Starts everything under `dir`; `prefix` tells this Ganesha apart on the bus.
    pub fn start(dir: &Path, prefix: &str) -> Self {
        Self::with_conf_dir(dir, prefix, &dir.join(format!("{prefix}-exports")))
    }

    /// As [`GaneshaServer::start`], with the export files in `conf_dir` (the agent keeps them
    /// in its state directory: `<state>/ganesha`).
    pub fn with_conf_dir(dir: &Path, prefix: &str, conf_dir: &Path) -> Self {
        require(&[
            "ip",
            "nsenter",
            "ganesha.nfsd",
            "dbus-daemon",
            "dbus-send",
            "nfs-cat",
            "nfs-cp",
        ]);
        let bus = Dbus::start(dir);
        let netns = Netns::new(prefix);
        let conf_dir = conf_dir.to_owned();
        std::fs::create_dir_all(&conf_dir).expect("export file directory");
        let ganesha = Ganesha::start(
            &netns,
            &bus,
            dir,
            &conf_dir.join(INCLUDE_FILE),
            &dir.join(format!("{prefix}-recovery")),
            prefix,
        );
        let settings = GaneshaSettings {
            dbus_address: Some(bus.address()),
            name_prefix: Some(prefix.to_owned()),
            conf_dir: conf_dir.clone(),
            protocols: vec![4],
        };
        let exporter = Arc::new(GaneshaExporter::new(settings.clone()).expect("Ganesha exporter"));
        Self {
            netns,
            ganesha,
            exporter,
            settings,
            conf_dir,
            bus,
        }
    }

    /// Another exporter for this Ganesha, knowing nothing yet: what a restarted agent, or the
    /// standby's after a failover, starts with.
    pub fn fresh_exporter(&self) -> Arc<GaneshaExporter> {
        Arc::new(GaneshaExporter::new(self.settings.clone()).expect("Ganesha exporter"))
    }
}

/// A TCP port free on loopback right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
