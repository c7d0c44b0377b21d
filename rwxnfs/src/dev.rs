//! `rwxnfs dev`: the whole stack on one machine, under one state directory.
//!
//! ```text
//! <state>/bus.sock          a private D-Bus (system-type)
//! <state>/ganesha/          NFS-Ganesha's configuration, log and NFSv4 recovery state
//! <state>/exports/          the export root (per-claim directories; quotas not enforced)
//! <state>/agent/            the agent's export table and Ganesha export files
//! <state>/agent.sock        the agent
//! <state>/controller.sock   the CSI controller (Identity + Controller)
//! <state>/node.sock         the CSI node plugin (Identity + Node)
//! ```
//!
//! Ganesha and the bus are child processes, stopped (by PID) when `rwxnfs dev` ends.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use rwxnfs_agent::{config::AgentConfig, fs::plain::PlainFs, run};
use rwxnfs_controller::{
    ControllerConfig,
    config::{AgentBackendConfig, BackendConfig},
};
use rwxnfs_server::{Endpoint, Shutdown};

use crate::cli::DevArgs;

/// A child process stopped (by its PID) when dropped.
struct ChildGuard(String, Child);

impl ChildGuard {
    /// Starts `command`; the kernel sends it SIGTERM should `rwxnfs dev` die without
    /// stopping it (SIGKILL, a crash), so no Ganesha or bus outlives the stack.
    fn spawn(name: &str, command: &mut Command) -> anyhow::Result<Self> {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of the
        // parent; it runs in the child between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().with_context(|| {
            format!("cannot start {name}; is it installed? (scripts/dev installs it)")
        })?;
        Ok(Self(name.to_owned(), child))
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.1.try_wait().ok().flatten()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.1.kill();
        }
        let _ = self.1.wait();
        tracing::debug!(process = %self.0, "stopped");
    }
}

pub(crate) struct Layout {
    pub state: PathBuf,
}

impl Layout {
    fn p(&self, rel: &str) -> PathBuf {
        self.state.join(rel)
    }
    fn bus(&self) -> String {
        format!("unix:path={}", self.p("bus.sock").display())
    }
}

fn start_bus(l: &Layout) -> anyhow::Result<ChildGuard> {
    let socket = l.p("bus.sock");
    let _ = std::fs::remove_file(&socket);
    let config = l.p("dbus.conf");
    std::fs::write(
        &config,
        rwxnfs_agent::exporter::ganesha::private_bus_config(&socket),
    )?;
    let guard = ChildGuard::spawn(
        "dbus-daemon",
        Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .arg("--nofork")
            .stderr(Stdio::null()),
    )?;
    wait("the private D-Bus", Duration::from_secs(10), || {
        socket.exists()
    })?;
    Ok(guard)
}

fn start_ganesha(l: &Layout, nfs_port: u16) -> anyhow::Result<ChildGuard> {
    let dir = l.p("ganesha");
    std::fs::create_dir_all(dir.join("recovery"))?;
    let include = l.p("agent/ganesha/exports.conf");
    std::fs::create_dir_all(include.parent().unwrap_or(Path::new("/")))?;
    if !include.exists() {
        std::fs::write(&include, "")?;
    }
    let config = dir.join("ganesha.conf");
    std::fs::write(
        &config,
        format!(
            "NFS_CORE_PARAM {{ Protocols = 4; NFS_Port = {nfs_port}; Enable_NLM = false; Enable_RQUOTA = false; Enable_UDP = false; Dbus_Name_Prefix = \"rwxnfsdev\"; }}\n\
             NFSv4 {{ Graceless = true; RecoveryBackend = fs; RecoveryRoot = \"{}\"; Lease_Lifetime = 15; }}\n\
             %include \"{}\"\n",
            dir.join("recovery").display(),
            include.display()
        ),
    )?;
    ChildGuard::spawn(
        "ganesha.nfsd",
        Command::new("ganesha.nfsd")
            .args(["-F", "-f"])
            .arg(&config)
            .arg("-L")
            .arg(dir.join("ganesha.log"))
            .arg("-p")
            .arg(dir.join("ganesha.pid"))
            .env("DBUS_SYSTEM_BUS_ADDRESS", l.bus())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

fn wait(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
    let start = Instant::now();
    while !ready() {
        if start.elapsed() > limit {
            bail!("{what} was not ready within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn agent_config(l: &Layout) -> anyhow::Result<AgentConfig> {
    let text = format!(
        "exportRoot: {}\nstateDir: {}\nnfsServer: {{kind: ganesha, dbusAddress: \"{}\", dbusNamePrefix: rwxnfsdev}}\nquota: none\nserverAddresses: [127.0.0.1]\nlisten: [\"unix://{}\"]\ndefaults: {{squash: none, mode: \"777\"}}\n",
        l.p("exports").display(),
        l.p("agent").display(),
        l.bus(),
        l.p("agent.sock").display()
    );
    Ok(AgentConfig::parse(&text, Path::new("(rwxnfs dev)"))?)
}

fn controller_config(l: &Layout, node_id: &str, server: IpAddr) -> ControllerConfig {
    ControllerConfig {
        backends: vec![BackendConfig {
            name: "dev".into(),
            agent: Some(AgentBackendConfig {
                endpoint: format!("unix://{}", l.p("agent.sock").display()),
                tls: None,
                timeout_seconds: Some(30),
            }),
            subdir: None,
            server: Some(server),
            server_name: None,
        }],
        nodes: BTreeMap::from([(node_id.to_owned(), vec![IpAddr::from([127, 0, 0, 1])])]),
    }
}

pub(crate) async fn run(args: DevArgs) -> anyhow::Result<()> {
    let l = Layout {
        state: args.state_dir.clone(),
    };
    std::fs::create_dir_all(l.p("exports"))
        .with_context(|| format!("cannot create the state directory {}", l.state.display()))?;
    let node_id = args.node_id.clone().unwrap_or_else(hostname);

    let _bus = start_bus(&l)?;
    let mut ganesha = start_ganesha(&l, args.nfs_port)?;
    let config = agent_config(&l)?;
    let exporter = run::exporter(&config)?;
    let started = Instant::now();
    loop {
        if exporter.probe().await.is_ok() {
            break;
        }
        if let Some(status) = ganesha.exited() {
            bail!(
                "ganesha.nfsd exited ({status}); see {}",
                l.p("ganesha/ganesha.log").display()
            );
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!(
                "Ganesha did not answer on D-Bus within 30 s; see {}",
                l.p("ganesha/ganesha.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let agent = crate::agent::start(
        &config,
        Arc::new(PlainFs::open(&config.export_root)?),
        exporter,
    )?;

    let shutdown = Shutdown::on_signal();
    let grace = args.csi.shutdown_grace;
    let controller_config = controller_config(&l, &node_id, args.server_address);
    let nodes = Arc::new(rwxnfs_controller::StaticNodes(
        controller_config.nodes.clone(),
    ));
    let controller = crate::controller::router(&controller_config, nodes, &args.csi, None)?;
    let node = crate::node::router(&node_id, &args.csi)?;
    let (controller_ep, node_ep) = (
        Endpoint::Unix(l.p("controller.sock")),
        Endpoint::Unix(l.p("node.sock")),
    );
    let mut servers = tokio::task::JoinSet::new();
    {
        let (config, stop) = (config.clone(), shutdown.clone());
        servers.spawn(async move {
            run::serve(agent, &config, false, stop, grace)
                .await
                .map_err(anyhow::Error::from)
        });
    }
    for (router, endpoint) in [(controller, controller_ep.clone()), (node, node_ep.clone())] {
        let stop = shutdown.clone();
        servers.spawn(async move {
            rwxnfs_server::serve(router, &endpoint, stop.wait(), grace, || {})
                .await
                .map_err(anyhow::Error::from)
        });
    }
    args.csi.start_metrics().await?;
    println!(
        "rwxnfs dev is running (Ctrl-C stops it); state in {}",
        l.state.display()
    );
    println!("  controller  {controller_ep}");
    println!("  node        {node_ep}   (node id {node_id})");
    println!("  agent       unix://{}", l.p("agent.sock").display());
    println!(
        "  NFS server  NFS-Ganesha, NFSv4 on port {}; log {}",
        args.nfs_port,
        l.p("ganesha/ganesha.log").display()
    );
    println!(
        "  exports     {} (quotas not enforced here)",
        l.p("exports").display()
    );
    println!(
        "try: cargo run -p csi-sanity -- --endpoint {node_ep} --controller-endpoint {controller_ep} --skip 'Node Service'"
    );
    let mut result = Ok(());
    while let Some(joined) = servers.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                result = Err(e);
                break;
            }
            Err(e) => {
                result = Err(anyhow::anyhow!("a server task failed: {e}"));
                break;
            }
        }
    }
    servers.abort_all();
    result
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
