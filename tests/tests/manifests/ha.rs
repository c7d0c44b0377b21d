//! manifests/ha/: the NFS hosts' files, parsed where they have a format (TOML, systemd units,
//! YAML, nfs.conf; ganesha.conf in ganesha.rs), and checked against each other and the order
//! the failover relies on.

use std::{collections::BTreeMap, net::IpAddr, path::Path};

use rwxnfs_agent::config::{AgentConfig, NfsServer};

use crate::{ganesha, objects::manifests};

pub(crate) fn read(rel: &str) -> String {
    let path = manifests().join("ha").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A systemd unit file: section -> key -> values (a key may repeat).
type Unit = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn unit(rel: &str) -> Unit {
    let mut out = Unit::new();
    let mut section = None;
    for (n, line) in read(rel).lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.to_owned());
            out.entry(name.to_owned()).or_default();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{rel}:{}: not `Key=value`: {line}", n + 1));
        let section = section
            .as_ref()
            .unwrap_or_else(|| panic!("{rel}:{}: a key before any [Section]", n + 1));
        out.get_mut(section)
            .expect("section entered")
            .entry(key.trim().to_owned())
            .or_default()
            .push(value.trim().to_owned());
    }
    out
}

fn one<'a>(u: &'a Unit, rel: &str, section: &str, key: &str) -> &'a str {
    u.get(section)
        .and_then(|s| s.get(key))
        .and_then(|v| v.last())
        .map(String::as_str)
        .unwrap_or_else(|| panic!("{rel}: no {section}.{key}"))
}

/// systemd's name for the mount unit of `path` (`/drbd/exports` -> `drbd-exports.mount`), for
/// the plain paths used here.
fn mount_unit_name(path: &str) -> String {
    format!(
        "{}.mount",
        path.trim_matches('/')
            .replace('-', "\\x2d")
            .replace('/', "-")
    )
}

/// A mount unit's What= and Where=, after checking that its file name is the one systemd
/// requires for its Where=.
fn mount(unit_name: &str) -> (String, String) {
    let rel = format!("systemd/{unit_name}");
    let u = unit(&rel);
    let what = one(&u, &rel, "Mount", "What").to_owned();
    let r#where = one(&u, &rel, "Mount", "Where").to_owned();
    assert_eq!(
        mount_unit_name(&r#where),
        unit_name,
        "{rel}: a mount unit is named after Where="
    );
    assert!(
        !u.contains_key("Install"),
        "{rel}: only the HA manager mounts it, never the boot"
    );
    (what, r#where)
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ReactorFile {
    promoter: Vec<Promoter>,
}

#[derive(serde::Deserialize)]
struct Promoter {
    resources: BTreeMap<String, PromotedResource>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct PromotedResource {
    start: Vec<String>,
    dependencies_as: Option<String>,
    target_as: Option<String>,
    on_drbd_demote_failure: Option<String>,
    stop_services_on_exit: Option<bool>,
}

/// What one promoter file starts, in order.
struct Chain {
    fs: String,
    recovery: String,
    agent: String,
    nfs_server: String,
    vip: String,
    tickle: String,
}

fn chain(rel: &str) -> Chain {
    let file: ReactorFile = toml::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert_eq!(file.promoter.len(), 1, "{rel}: one promoter");
    let resources = &file.promoter[0].resources;
    let resource = resources
        .get("rwxnfs")
        .unwrap_or_else(|| panic!("{rel}: no [promoter.resources.rwxnfs]"));
    assert_eq!(resources.len(), 1, "{rel}: one DRBD resource");
    assert_eq!(resource.dependencies_as.as_deref(), Some("Requires"));
    assert_eq!(resource.target_as.as_deref(), Some("Requires"));
    assert!(
        resource.on_drbd_demote_failure.is_some(),
        "{rel}: a demote failure must fence the host"
    );
    let _ = resource.stop_services_on_exit;
    let [fs, recovery, agent, nfs_server, vip, tickle] = resource.start.as_slice() else {
        panic!(
            "{rel}: the start list is: filesystem, NFSv4 recovery directory, agent, NFS server, VIP, tickle; it has {:?}",
            resource.start
        )
    };
    Chain {
        fs: fs.clone(),
        recovery: recovery.clone(),
        agent: agent.clone(),
        nfs_server: nfs_server.clone(),
        vip: vip.clone(),
        tickle: tickle.clone(),
    }
}

/// `ocf:heartbeat:IPaddr2 ID ip=A cidr_netmask=N` -> A.
fn vip_of(entry: &str) -> IpAddr {
    let mut words = entry.split_whitespace();
    assert_eq!(
        words.next(),
        Some("ocf:heartbeat:IPaddr2"),
        "the fifth start entry is the VIP: {entry}"
    );
    assert!(
        words.next().is_some(),
        "an OCF entry names its instance: {entry}"
    );
    words
        .find_map(|w| w.strip_prefix("ip="))
        .unwrap_or_else(|| panic!("no ip= in {entry}"))
        .parse()
        .expect("ip= is an address")
}

pub(crate) fn agent_config() -> AgentConfig {
    AgentConfig::parse(&read("agent.yaml"), Path::new("manifests/ha/agent.yaml"))
        .unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) fn check() {
    let agent = agent_config();
    let kernel = chain("drbd-reactor/rwxnfs.toml");
    let ganesha = chain("drbd-reactor/rwxnfs-ganesha.toml");
    for (rel, c, server_unit, recovery_dir) in [
        (
            "rwxnfs.toml",
            &kernel,
            "nfs-server.service",
            "/var/lib/nfs/nfsdcld".to_owned(),
        ),
        (
            "rwxnfs-ganesha.toml",
            &ganesha,
            "nfs-ganesha.service",
            ganesha::recovery_root(),
        ),
    ] {
        let (device, fs_root) = mount(&c.fs);
        assert!(
            device.starts_with("/dev/drbd"),
            "{rel}: the first mount is the DRBD device"
        );
        assert_eq!(
            fs_root,
            agent.export_root.to_str().expect("UTF-8"),
            "{rel}: the agent's exportRoot"
        );
        let (source, target) = mount(&c.recovery);
        assert!(
            Path::new(&source).starts_with(&agent.state_dir)
                && agent.state_dir.starts_with(&fs_root),
            "{rel}: the recovery directory {source} is on the replicated volume, beside the agent's table"
        );
        assert_eq!(
            target, recovery_dir,
            "{rel}: the recovery directory is bind-mounted where the NFS server reads it"
        );
        assert_eq!(c.agent, "rwxnfs-agent.service", "{rel}: third, the agent");
        assert_eq!(c.nfs_server, server_unit, "{rel}: fourth, the NFS server");
        assert_eq!(
            c.tickle, "rwxnfs-tickle.service",
            "{rel}: last, after the VIP, the clients' old connections reset"
        );
        let vip = vip_of(&c.vip);
        assert!(
            agent.server_addresses.contains(&vip),
            "{rel}: the VIP is the agent's serverAddresses"
        );
    }
    assert!(
        matches!(
            agent.nfs_server,
            NfsServer::Kernel {
                apply: rwxnfs_agent::config::KernelApplySetting::Etab,
                ..
            }
        ),
        "agent.yaml is the kernel nfsd example, the agent writing nfs-utils' table"
    );
    let tls = agent.tls.as_ref().expect("agent.yaml serves TCP with TLS");
    assert_eq!(
        tls.allowed_client_names,
        [rwxnfs_agent::config::CONTROLLER_NAME],
        "agent.yaml admits the controller's certificate (the README's, rwxnfs-controller)"
    );
    agent_unit();
    tickle_unit();
    nfsd_settings();
    ganesha::settings_allow_reclaim();
    pacemaker_group_follows_the_same_order(&kernel);
}

/// The tickle runs once, stays active for the HA manager's monitor, and cannot fail the chain.
fn tickle_unit() {
    let rel = "systemd/rwxnfs-tickle.service";
    let u = unit(rel);
    assert_eq!(one(&u, rel, "Service", "Type"), "oneshot");
    assert_eq!(one(&u, rel, "Service", "RemainAfterExit"), "yes");
    let exec = one(&u, rel, "Service", "ExecStart");
    let words: Vec<&str> = exec.split_whitespace().collect();
    assert!(
        words[0].starts_with("-/") && words[0].ends_with("/rwxnfs") && words[1] == "tickle",
        "{rel}: ExecStart runs `rwxnfs tickle`, its failure ignored"
    );
    assert_eq!(
        words.get(2..4),
        Some(&["--config", "/etc/rwxnfs/agent.yaml"][..])
    );
    assert!(
        !u.contains_key("Install"),
        "{rel}: started by the HA manager, not enabled at boot"
    );
}

fn agent_unit() {
    let rel = "systemd/rwxnfs-agent.service";
    let u = unit(rel);
    let exec = one(&u, rel, "Service", "ExecStart");
    let words: Vec<&str> = exec.split_whitespace().collect();
    assert!(
        words[0].ends_with("/rwxnfs") && words[1] == "agent",
        "{rel}: ExecStart runs `rwxnfs agent`"
    );
    assert_eq!(
        words.get(2..4),
        Some(&["--config", "/etc/rwxnfs/agent.yaml"][..])
    );
    assert_eq!(
        one(&u, rel, "Unit", "AssertPathIsMountPoint"),
        agent_config().export_root.to_str().expect("UTF-8")
    );
    one(&u, rel, "Unit", "Description");
    one(&u, rel, "Service", "Restart");
    assert!(
        !u.contains_key("Install"),
        "{rel}: started by the HA manager, not enabled at boot"
    );
    for private in [
        "PrivateTmp",
        "ProtectSystem",
        "PrivateMounts",
        "ReadWritePaths",
    ] {
        assert!(
            !u["Service"].contains_key(private),
            "{rel}: {private} gives the agent its own mount namespace; NFS-Ganesha would not see its subvolume mounts"
        );
    }
    // With kernel nfsd, the agent is started (for the unit after it) once it has reconciled.
    let ready = unit("systemd/rwxnfs-agent.service.d/kernel-nfsd.conf");
    assert_eq!(one(&ready, "agent drop-in", "Service", "Type"), "notify");
    assert_eq!(
        one(&ready, "agent drop-in", "Service", "NotifyAccess"),
        "main"
    );
    let dropin = unit("systemd/nfsdcld.service.d/rwxnfs.conf");
    assert_eq!(
        one(&dropin, "nfsdcld drop-in", "Unit", "After"),
        "var-lib-nfs-nfsdcld.mount"
    );
    assert_eq!(
        one(&dropin, "nfsdcld drop-in", "Unit", "PartOf"),
        "nfs-server.service"
    );
}

/// nfs.conf's [nfsd]: the same scope on every host, and a grace period long enough for every
/// client to notice the failover within a lease and reclaim.
fn nfsd_settings() {
    let mut section = String::new();
    let mut nfsd = BTreeMap::new();
    for line in read("nfs/nfs.conf").lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_owned();
            continue;
        }
        let (k, v) = line.split_once('=').expect("key=value");
        if section == "nfsd" {
            nfsd.insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
    let known = [
        "threads",
        "host",
        "scope",
        "port",
        "grace-time",
        "lease-time",
        "udp",
        "tcp",
        "vers3",
        "vers4",
        "vers4.0",
        "vers4.1",
        "vers4.2",
        "rdma",
        "rdma-port",
        "debug",
    ];
    for key in nfsd.keys() {
        assert!(
            known.contains(&key.as_str()),
            "nfs.conf [nfsd] {key} is not an rpc.nfsd setting"
        );
    }
    let scope = nfsd
        .get("scope")
        .expect("[nfsd] scope: one server scope for every host");
    assert!(!scope.is_empty());
    let seconds = |k: &str| -> u32 {
        nfsd.get(k)
            .unwrap_or_else(|| panic!("[nfsd] {k}"))
            .parse()
            .expect("seconds")
    };
    let (lease, grace) = (seconds("lease-time"), seconds("grace-time"));
    assert!(
        (10..=3600).contains(&lease),
        "rpc.nfsd accepts leases of 10 to 3600 s"
    );
    assert!(
        grace >= lease,
        "the grace period ({grace} s) is shorter than a lease ({lease} s)"
    );
    assert_eq!(nfsd.get("vers4.1").map(String::as_str), Some("y"));
    // nfs-utils 2.6.2 ignores `scope=`: the drop-in starts rpc.nfsd under the scope as its host
    // name, in a UTS namespace of its own.
    let rel = "systemd/nfs-server.service.d/rwxnfs.conf";
    let dropin = unit(rel);
    let starts = &dropin["Service"]["ExecStart"];
    assert_eq!(
        starts.first().map(String::as_str),
        Some(""),
        "{rel}: replaces ExecStart"
    );
    let start = one(&dropin, rel, "Service", "ExecStart");
    assert!(
        start.starts_with("/usr/bin/unshare --uts "),
        "{rel}: {start}"
    );
    assert!(
        start.contains(&format!("hostname {scope} && exec /usr/sbin/rpc.nfsd")),
        "{rel}: the scope in the drop-in is nfs.conf's {scope:?}: {start}"
    );
    // The stock unit's `exportfs -r` (start and reload) would drop the agent's exports from
    // nfs-utils' table, which the agent writes itself; `exportfs -a` keeps them. The start
    // runs it only for a host with exports of its own.
    for key in ["ExecStartPre", "ExecReload"] {
        let lines = &dropin["Service"][key];
        assert_eq!(
            lines.first().map(String::as_str),
            Some(""),
            "{rel}: replaces {key}"
        );
    }
    assert_eq!(
        one(&dropin, rel, "Service", "ExecReload"),
        "-/usr/sbin/exportfs -a",
        "{rel}"
    );
    let start = one(&dropin, rel, "Service", "ExecStartPre");
    let script = start
        .strip_prefix("-/bin/sh -c '")
        .and_then(|s| s.strip_suffix('\''))
        .unwrap_or_else(|| panic!("{rel}: ExecStartPre is not a shell line: {start}"));
    exportfs_runs_only_with_the_hosts_own_exports(rel, script);
}

/// Runs the start's shell line with the exports files in a scratch directory and `exportfs`
/// replaced by a marker: it runs for a line that exports something, in either file, and not
/// for missing, empty or comment-only files.
fn exportfs_runs_only_with_the_hosts_own_exports(rel: &str, script: &str) {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let etc = dir.path();
    let ran = etc.join("ran");
    let script = script
        .replace("/etc/exports", &etc.join("exports").display().to_string())
        .replace(
            "exec /usr/sbin/exportfs -a",
            &format!("touch {}", ran.display()),
        );
    assert!(
        script.contains(&ran.display().to_string()),
        "{rel}: {script}"
    );
    let runs = |exports: Option<&str>, exports_d: Option<&str>| {
        let _ = std::fs::remove_file(etc.join("exports"));
        let _ = std::fs::remove_dir_all(etc.join("exports.d"));
        let _ = std::fs::remove_file(&ran);
        if let Some(text) = exports {
            std::fs::write(etc.join("exports"), text).expect("writing exports");
        }
        if let Some(text) = exports_d {
            std::fs::create_dir_all(etc.join("exports.d")).expect("making exports.d");
            std::fs::write(etc.join("exports.d/site.exports"), text).expect("writing exports.d");
        }
        let status = std::process::Command::new("sh")
            .args(["-c", &script])
            .status()
            .expect("running sh");
        assert!(status.success(), "{rel}: {script}");
        ran.exists()
    };
    assert!(!runs(None, None), "{rel}: no exports files");
    assert!(!runs(Some(""), None), "{rel}: an empty /etc/exports");
    assert!(
        !runs(
            Some("# /srv 10.0.0.0/8(rw)\n\n   \n"),
            Some("  # nothing\n")
        ),
        "{rel}: comments and blank lines"
    );
    assert!(
        runs(Some("/srv 10.0.0.0/8(rw)\n"), None),
        "{rel}: /etc/exports"
    );
    assert!(
        runs(Some("# none\n"), Some("  /data *(ro)\n")),
        "{rel}: /etc/exports.d"
    );
}

/// The crm configuration's group lists the same resources in the same order.
fn pacemaker_group_follows_the_same_order(kernel: &Chain) {
    let crm = read("pacemaker/rwxnfs.crm").replace("\\\n", " ");
    let mut primitives = BTreeMap::new();
    let mut group = None;
    for line in crm.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["primitive", id, agent, rest @ ..] => {
                primitives.insert(id.to_string(), (agent.to_string(), rest.join(" ")));
            }
            ["group", _, members @ ..] => {
                group = Some(members.iter().map(|m| m.to_string()).collect::<Vec<_>>())
            }
            _ => {}
        }
    }
    let group = group.expect("a group starts the service in order");
    let agents: Vec<&str> = group.iter().map(|m| primitives[m].0.as_str()).collect();
    assert_eq!(
        agents,
        [
            "ocf:heartbeat:Filesystem",
            "ocf:heartbeat:Filesystem",
            "systemd:rwxnfs-agent",
            "systemd:nfs-server",
            "ocf:heartbeat:IPaddr2",
            "systemd:rwxnfs-tickle"
        ],
        "pacemaker/rwxnfs.crm: the group's order"
    );
    let (_, fs_rest) = mount(&kernel.fs);
    let (recovery_src, recovery_dst) = mount(&kernel.recovery);
    assert!(
        primitives[&group[0]]
            .1
            .contains(&format!("directory={fs_rest}"))
    );
    assert!(
        primitives[&group[1]]
            .1
            .contains(&format!("device={recovery_src}"))
    );
    assert!(
        primitives[&group[1]]
            .1
            .contains(&format!("directory={recovery_dst}"))
    );
    assert!(
        primitives[&group[4]]
            .1
            .contains(&format!("ip={}", vip_of(&kernel.vip)))
    );
    for constraint in ["colocation", "order"] {
        assert!(
            crm.lines()
                .any(|l| l.starts_with(constraint) && l.contains(":Promoted")
                    || l.starts_with(constraint) && l.contains(":promote")),
            "pacemaker/rwxnfs.crm: a {constraint} constraint ties the group to the DRBD Primary"
        );
    }
}

/// NFS over TLS on the NFS hosts: nfsd is started after tlshd (a handshake nobody answers
/// fails the client's connection), and tlshd presents the server certificate and trusts the
/// nodes' CA, from files of its own.
pub(crate) fn tlshd_before_nfsd() {
    let rel = "systemd/nfs-server.service.d/tlshd.conf";
    let dropin = unit(rel);
    assert_eq!(one(&dropin, rel, "Unit", "Wants"), "tlshd.service");
    assert_eq!(one(&dropin, rel, "Unit", "After"), "tlshd.service");
    let rel = "tlshd/tlshd.conf";
    let conf = unit(rel);
    assert!(
        !conf.contains_key("authenticate.client"),
        "{rel}: the NFS hosts are servers only"
    );
    let paths: Vec<&str> = ["x509.truststore", "x509.certificate", "x509.private_key"]
        .iter()
        .map(|key| one(&conf, rel, "authenticate.server", key))
        .collect();
    for path in &paths {
        assert!(path.starts_with("/etc/rwxnfs/nfs-tls/"), "{rel}: {path}");
    }
    let unique: std::collections::BTreeSet<_> = paths.iter().collect();
    assert_eq!(unique.len(), 3, "{rel}: {paths:?}");
}
