//! A private system-type D-Bus daemon on a unix socket.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::{Process, wait_for};

pub struct Dbus {
    pub socket: PathBuf,
    _process: Process,
}

impl Dbus {
    pub fn start(dir: &Path) -> Self {
        let socket = dir.join("bus.sock");
        let config = dir.join("dbus.conf");
        std::fs::write(
            &config,
            rwxnfs_agent::exporter::ganesha::private_bus_config(&socket),
        )
        .expect("write dbus config");
        let process = Process::spawn(
            "dbus-daemon",
            Command::new("dbus-daemon")
                .arg(format!("--config-file={}", config.display()))
                .arg("--nofork"),
        );
        wait_for("the private D-Bus", Duration::from_secs(10), || {
            socket.exists()
        });
        Self {
            socket,
            _process: process,
        }
    }

    /// The address clients use: `unix:path=...`.
    pub fn address(&self) -> String {
        format!("unix:path={}", self.socket.display())
    }
}
