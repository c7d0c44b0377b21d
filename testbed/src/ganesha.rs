//! NFS-Ganesha in the foreground inside a namespace, NFSv4 only, controlled over a private bus.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use crate::{Dbus, Netns, Process, dump, wait_for};

pub struct Ganesha {
    pub log: PathBuf,
    pub include: PathBuf,
    pub prefix: String,
    pub config: PathBuf,
    process: Process,
}

impl Ganesha {
    /// Starts Ganesha in `netns` on `bus`, including `include` (the agent's export include file;
    /// created empty if missing). Its recovery state goes to `state`.
    pub fn start(
        netns: &Netns,
        bus: &Dbus,
        dir: &Path,
        include: &Path,
        state: &Path,
        prefix: &str,
    ) -> Self {
        std::fs::create_dir_all(state).expect("ganesha state dir");
        if !include.exists() {
            std::fs::create_dir_all(include.parent().unwrap_or(Path::new("/")))
                .expect("include dir");
            std::fs::write(include, "").expect("include file");
        }
        let config = dir.join(format!("ganesha-{prefix}.conf"));
        std::fs::write(
            &config,
            format!(
                "NFS_CORE_PARAM {{ Protocols = 4; Enable_NLM = false; Enable_RQUOTA = false; Enable_UDP = false; Dbus_Name_Prefix = \"{prefix}\"; }}\n\
                 NFSv4 {{ Graceless = true; RecoveryBackend = fs; RecoveryRoot = \"{}\"; Lease_Lifetime = 10; }}\n\
                 %include \"{}\"\n",
                state.display(),
                include.display()
            ),
        )
        .expect("ganesha config");
        let mut ganesha = Self {
            log: dir.join(format!("ganesha-{prefix}.log")),
            include: include.to_owned(),
            prefix: prefix.to_owned(),
            config,
            process: Process::spawn("ganesha", &mut std::process::Command::new("true")),
        };
        ganesha.launch(netns, bus);
        ganesha
    }

    fn launch(&mut self, netns: &Netns, bus: &Dbus) {
        let pidfile = self.log.with_extension("pid");
        let mut command = netns.command("ganesha.nfsd");
        command
            .args(["-F", "-f"])
            .arg(&self.config)
            .arg("-L")
            .arg(&self.log)
            .arg("-p")
            .arg(&pidfile)
            .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.process = Process::spawn("ganesha.nfsd", &mut command);
        let service = format!("{}.org.ganesha.nfsd", self.prefix);
        let address = bus.address();
        let log = self.log.clone();
        let mut process_ok = true;
        wait_for("Ganesha on D-Bus", Duration::from_secs(20), || {
            if !self.process.is_running() {
                process_ok = false;
                return true;
            }
            std::process::Command::new("dbus-send")
                .args([
                    "--system",
                    "--print-reply",
                    "--dest=org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.ListNames",
                ])
                .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&service))
        });
        if !process_ok {
            dump("ganesha", &log);
            panic!("ganesha.nfsd exited during start-up");
        }
    }

    /// Kills Ganesha (as a crash would) and starts it again with the same configuration.
    pub fn restart(&mut self, netns: &Netns, bus: &Dbus) {
        self.process.kill();
        self.launch(netns, bus);
    }

    pub fn stop(&mut self) {
        self.process.terminate(Duration::from_secs(5));
    }

    pub fn print_log(&self) {
        dump("ganesha", &self.log);
    }
}

impl Drop for Ganesha {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_log();
        }
        self.process.kill();
    }
}
