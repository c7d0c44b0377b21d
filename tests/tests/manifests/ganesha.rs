//! manifests/ha/nfs/ganesha.conf: its settings, and the real NFS-Ganesha reading it.

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use crate::ha::{agent_config, read};

/// Ganesha's blocks `NAME { Key = value; ... }`, flattened to `NAME.Key` -> value.
pub(crate) fn conf() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut block: Option<String> = None;
    for line in read("nfs/ganesha.conf").lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with("%include") {
            continue;
        }
        if let Some(name) = line.strip_suffix('{') {
            block = Some(name.trim().to_owned());
        } else if line == "}" {
            block = None;
        } else {
            let (k, v) = line
                .strip_suffix(';')
                .and_then(|l| l.split_once('='))
                .unwrap_or_else(|| panic!("ganesha.conf: not `Key = value;`: {line}"));
            let block = block.as_ref().expect("settings live in blocks");
            out.insert(
                format!("{block}.{}", k.trim()),
                v.trim().trim_matches('"').to_owned(),
            );
        }
    }
    out
}

pub(crate) fn recovery_root() -> String {
    conf()["NFSv4.RecoveryRoot"].clone()
}

pub(crate) fn settings_allow_reclaim() {
    let conf = conf();
    let get = |k: &str| {
        conf.get(k)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("ganesha.conf: no {k}"))
    };
    assert_eq!(get("NFS_CORE_PARAM.Protocols"), "4");
    assert_eq!(get("NFS_CORE_PARAM.Enable_NLM"), "false");
    assert_eq!(
        get("NFSv4.Graceless"),
        "false",
        "failover needs a grace period"
    );
    assert!(
        ["fs", "fs_ng"].contains(&get("NFSv4.RecoveryBackend")),
        "a recovery backend on the filesystem"
    );
    let lease: u32 = get("NFSv4.Lease_Lifetime").parse().expect("seconds");
    let grace: u32 = get("NFSv4.Grace_Period").parse().expect("seconds");
    assert!(
        (1..=120).contains(&lease) && (0..=180).contains(&grace),
        "Ganesha's ranges"
    );
    assert!(grace >= lease);
    assert!(!get("NFSv4.Server_Scope").is_empty());
    let include = read("nfs/ganesha.conf")
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("%include")
                .map(|p| p.trim().trim_matches('"').to_owned())
        })
        .expect("ganesha.conf includes the agent's export index");
    assert_eq!(
        Path::new(&include),
        agent_config().state_dir.join("ganesha/exports.conf"),
        "the index the agent writes under its stateDir"
    );
}

/// The shipped ganesha.conf, with its two host paths moved into a scratch directory, read by
/// the real NFS-Ganesha: it must parse and start its grace period. Runs Ganesha in a network
/// namespace of its own (root), for about a second.
pub(crate) fn accepts_its_configuration() {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let recovery = dir.path().join("recovery");
    let index = dir.path().join("exports.conf");
    std::fs::create_dir(&recovery).expect("mkdir");
    std::fs::write(&index, "").expect("an empty export index");
    let shipped = read("nfs/ganesha.conf");
    let moved = shipped
        .replace("/var/lib/nfs/ganesha", recovery.to_str().expect("UTF-8"))
        .replace(
            "/drbd/exports/.rwxnfs/ganesha/exports.conf",
            index.to_str().expect("UTF-8"),
        );
    assert_ne!(moved, shipped, "the paths to move are in ganesha.conf");
    let conf_file = dir.path().join("ganesha.conf");
    std::fs::write(&conf_file, moved).expect("write");
    let log = dir.path().join("ganesha.log");
    let script = format!(
        "ip link set lo up && exec ganesha.nfsd -F -f {} -L {} -p {}",
        conf_file.display(),
        log.display(),
        dir.path().join("pid").display()
    );
    let mut child = std::process::Command::new("unshare")
        .args(["-n", "sh", "-c", &script])
        .spawn()
        .expect("unshare (util-linux) runs");
    // Ganesha reports unknown or invalid settings as CONFIG lines while it starts, some after
    // its grace period began: read the log once it is in grace and has had a moment more.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("IN GRACE") || child.try_wait().expect("wait").is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Ganesha said nothing in 10 s: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !text.is_empty(),
        "no log from ganesha.nfsd: is NFS-Ganesha installed? scripts/install-test-deps installs nfs-ganesha"
    );
    assert!(
        text.contains("Configuration file successfully parsed"),
        "NFS-Ganesha refuses manifests/ha/nfs/ganesha.conf:\n{text}"
    );
    // Debian's build lacks the RADOS URL library and says so once; anything else about the
    // configuration is about ours.
    for line in text
        .lines()
        .filter(|l| l.contains(":CONFIG :") && !l.contains("RADOS"))
    {
        let bad = ["WARN", "CRIT", "MAJ", "FATAL"]
            .iter()
            .any(|level| line.contains(&format!(":CONFIG :{level}")));
        assert!(!bad, "ganesha.conf: {line}");
    }
    let grace = &conf()["NFSv4.Grace_Period"];
    assert!(
        text.contains(&format!("IN GRACE, duration {grace}")),
        "the grace period from ganesha.conf:\n{text}"
    );
}
