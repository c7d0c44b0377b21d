//! manifests/ha/ read by the real tools where this machine has them: drbd-utils' parser and
//! systemd's.

use crate::objects::manifests;

/// drbd/rwxnfs.res read by drbd-utils' own parser (`drbdadm dump`), as each of its hosts: the
/// options the promoter relies on survive parsing.
pub(crate) fn drbd_resource_parses() {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let res = manifests().join("ha/drbd/rwxnfs.res");
    let conf = dir.path().join("drbd.conf");
    std::fs::write(
        &conf,
        format!(
            "global {{ usage-count no; }}\ninclude \"{}\";\n",
            res.display()
        ),
    )
    .expect("write");
    if let Err(e) = std::process::Command::new("drbdadm")
        .arg("--version")
        .output()
    {
        panic!("cannot run drbdadm ({e}): scripts/install-test-deps installs drbd-utils");
    }
    for host in ["nfs-a", "nfs-b", "nfs-c"] {
        // drbdadm reads the resource as the host it runs on: a UTS namespace of its own.
        let script = format!(
            "hostname {host} && exec drbdadm -c {} dump rwxnfs",
            conf.display()
        );
        let out = std::process::Command::new("unshare")
            .args(["--uts", "sh", "-c", &script])
            .output()
            .expect("unshare (util-linux) runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "drbdadm refuses drbd/rwxnfs.res as {host}: {stderr}"
        );
        let dump = String::from_utf8_lossy(&out.stdout);
        for option in [
            "auto-promote      no;",
            "quorum           majority;",
            "on-no-quorum     io-error;",
            "protocol           C;",
            "device           /dev/drbd1000",
        ] {
            let squeeze = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(
                squeeze(&dump).contains(&squeeze(option)),
                "drbdadm's reading of rwxnfs.res lacks `{option}`:\n{dump}"
            );
        }
    }
}

/// Every unit and drop-in in systemd/ read by systemd's own parser (`systemd-analyze verify`):
/// an unknown key or a bad value is a warning there, so any output fails. The agent's binary
/// is replaced by /bin/true (systemd checks that it exists), and the distribution's units the
/// drop-ins extend by stubs.
pub(crate) fn systemd_accepts_the_units() {
    if let Err(e) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    {
        panic!("cannot run systemd-analyze ({e}): scripts/install-test-deps installs systemd");
    }
    let dir = tempfile::tempdir().expect("a scratch directory");
    let source = manifests().join("ha/systemd");
    let mut units = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&source)
        .expect("manifests/ha/systemd")
        .map(|e| e.expect("readable").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("UTF-8")
            .to_owned();
        if let Some(unit) = name.strip_suffix(".d") {
            let dropins = dir.path().join(&name);
            std::fs::create_dir(&dropins).expect("mkdir");
            for file in std::fs::read_dir(&path).expect("drop-in directory") {
                let file = file.expect("readable").path();
                std::fs::copy(&file, dropins.join(file.file_name().expect("a name")))
                    .expect("copy");
            }
            if !source.join(unit).exists() {
                std::fs::write(
                    dir.path().join(unit),
                    "[Unit]\nDescription=the distribution's unit\n[Service]\nType=oneshot\nExecStart=/bin/true\n",
                )
                .expect("stub");
                units.push(unit.to_owned());
            }
        } else {
            let text = std::fs::read_to_string(&path)
                .expect("readable")
                .replace("/usr/local/bin/rwxnfs ", "/bin/true ");
            std::fs::write(dir.path().join(&name), text).expect("copy");
            units.push(name);
        }
    }
    for unit in units {
        let out = std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(dir.path().join(&unit))
            .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.path().display()))
            .output()
            .expect("systemd-analyze runs");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && said.trim().is_empty(),
            "systemd-analyze verify {unit} (or its drop-ins): {said}"
        );
    }
}
