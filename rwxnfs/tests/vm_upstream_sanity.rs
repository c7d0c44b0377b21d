//! Upstream csi-sanity, the binary every CSI driver's CI runs, with its stock flags against the
//! real stack: the agent on kernel nfsd with XFS project quotas in one VM, and in another VM
//! `rwxnfs controller --node-id`, one endpoint serving Identity, Controller and Node, so that
//! every mount the suite asks for is a real kernel NFS mount and the suite's own
//! ControllerPublishVolume is what opens each export to the node. No parameters file: an
//! export admits nobody until it is published.
//!
//! It runs twice, with `--ginkgo.seed 1` and with a random seed, and fails on any failed spec.
//! The specs it may skip are the ones upstream itself skips for a capability the driver does
//! not advertise; the node lifecycle specs must have run and passed.
#![allow(clippy::unwrap_used)]

use std::{
    path::Path,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use rwxnfs_testbed::{
    Pki, upstream,
    vm::{Lab, Vm, VmSpec, recipes},
};

/// The node VM: NFS client modules, and the whole plugin on one unix socket.
const NODE_BOOT: &str = r#"
modprobe nfsv4
modprobe nfsv3
mkdir -p /etc/rwxnfs/tls /run/csi
mv /work/tls/* /etc/rwxnfs/tls/
cat > /etc/rwxnfs/controller.yaml <<'END'
backends:
  - name: vm
    agent:
      endpoint: tcp://10.99.0.1:9820
      tls: {ca: /etc/rwxnfs/tls/ca.pem, cert: /etc/rwxnfs/tls/controller.pem, key: /etc/rwxnfs/tls/controller.key, serverName: rwxnfs-agent}
    server: 10.99.0.1
nodes:
  node1: [10.99.0.2]
END
setsid rwxnfs --log-format text controller --node-id node1 --endpoint unix:///run/csi/csi.sock --config /etc/rwxnfs/controller.yaml > /work/plugin.log 2>&1 &
"#;

/// Specs that must have run and passed in every run: the node lifecycle, which upstream skips
/// unless one endpoint advertises the Controller service and serves the Node service too.
const MUST_PASS: &[&str] = &[
    "Node Service should work",
    "Node Service should be idempotent",
    "NodeStageVolume should fail when no volume id is provided",
    "ControllerPublishVolume should fail when the node does not exist",
    "ControllerPublishVolume should fail when the volume is already published but is incompatible",
];

#[test]
fn upstream_csi_sanity_with_stock_flags_passes_against_the_real_stack() {
    let sanity = upstream::tool("csi-sanity", "csi-sanity");
    let version = upstream::version("csi-sanity");
    let started = Instant::now();
    let pki = Pki::new("rwxnfs-test-ca");
    let mut lab = Lab::new(
        "upstream-sanity",
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        Path::new(env!("CARGO_BIN_EXE_rwxnfs")),
    );
    let (cert, key) = pki.issue("rwxnfs-agent");
    let mut server = lab.start(VmSpec {
        memory_mb: 448,
        lan: Some(1),
        // Sparse: the suite's volumes are 1 GiB and 2 GiB quotas, not data.
        disks_mb: vec![4096],
        boot: recipes::nfs_server_boot_tls(&pki.ca_pem, &cert, &key),
        ..VmSpec::new("nfs1")
    });
    // The controller's certificate and the suite's binary reach the node through its /work.
    let node_work = lab.dir().join("node1");
    let tls = node_work.join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    let (cert, key) = pki.issue("rwxnfs-controller");
    std::fs::write(tls.join("ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(tls.join("controller.pem"), cert).unwrap();
    std::fs::write(tls.join("controller.key"), key).unwrap();
    std::fs::copy(&sanity, node_work.join("csi-sanity")).unwrap();
    let mut node = lab.start(VmSpec {
        memory_mb: 448,
        lan: Some(2),
        boot: NODE_BOOT.into(),
        ..VmSpec::new("node1")
    });
    let limit = Duration::from_secs(180);
    println!("nfs1 booted in {:?}", server.wait_ready(limit));
    println!("node1 booted in {:?}", node.wait_ready(limit));
    wait_for_plugin(&node);
    println!(
        "plugin ready after {:?}; csi-sanity {version}",
        started.elapsed()
    );

    let random = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        % 100_000
        + 2;
    for seed in [1, random] {
        let run = Instant::now();
        let summary = run_sanity(&node, seed);
        println!(
            "csi-sanity {version}, --ginkgo.seed {seed}, {:?}: {summary}",
            run.elapsed()
        );
    }
    // Whatever the suite did, it cleaned up: no export left on the server, no mount on the node.
    let exports = server.sh("exportfs -v");
    assert!(
        !exports.contains("/srv/exports/"),
        "exports left behind:\n{exports}"
    );
    let mounts = node.sh("grep -c ' nfs' /proc/mounts || true");
    assert_eq!(mounts.trim(), "0", "NFS mounts left on the node");
}

/// Waits until the plugin's socket exists (the controller connects to the agent first).
fn wait_for_plugin(node: &Vm) {
    let out = node.run(
        "n=0; until [ -S /run/csi/csi.sock ]; do n=$((n+1)); [ $n -lt 600 ] || exit 1; usleep 100000; done",
        Duration::from_secs(90),
    );
    assert_eq!(
        out.rc,
        0,
        "the plugin did not listen:\n{}",
        std::fs::read_to_string(node.work().join("plugin.log")).unwrap_or_default()
    );
}

/// One run of the upstream suite with stock flags; returns its own summary line. Fails the
/// test on any failed spec, or when a spec of [`MUST_PASS`] did not run and pass.
fn run_sanity(node: &Vm, seed: u32) -> String {
    let junit = format!("junit-{seed}.xml");
    let log = format!("sanity-{seed}.log");
    let out = node.run(
        &format!(
            "/work/csi-sanity --csi.endpoint unix:///run/csi/csi.sock \
             --csi.controllerendpoint unix:///run/csi/csi.sock \
             --csi.mountdir /tmp/csi-mount --csi.stagingdir /tmp/csi-staging \
             --csi.testvolumesize 1073741824 --csi.testvolumeexpandsize 2147483648 \
             --ginkgo.seed {seed} --ginkgo.junit-report /work/{junit} > /work/{log} 2>&1"
        ),
        Duration::from_secs(900),
    );
    let text = strip_colours(&std::fs::read_to_string(node.work().join(&log)).unwrap_or_default());
    let Some(summary) = text
        .lines()
        .rev()
        .find(|l| l.contains("Passed |"))
        .map(|l| l.trim().to_owned())
    else {
        panic!("csi-sanity printed no summary (rc {}):\n{text}", out.rc);
    };
    assert_eq!(
        out.rc,
        0,
        "csi-sanity (seed {seed}) failed: {summary}\n{text}\n--- plugin log ---\n{}",
        std::fs::read_to_string(node.work().join("plugin.log")).unwrap_or_default()
    );
    let report = std::fs::read_to_string(node.work().join(&junit)).unwrap();
    let cases = testcases(&report);
    for must in MUST_PASS {
        let Some((_, status)) = cases.iter().find(|(name, _)| name.contains(must)) else {
            panic!("no spec named {must:?} in the report");
        };
        assert_eq!(status, "passed", "{must:?} did not pass (seed {seed})");
    }
    let skipped: Vec<&str> = cases
        .iter()
        .filter(|(_, status)| status == "skipped")
        .map(|(name, _)| name.as_str())
        .collect();
    println!("seed {seed}: skipped by upstream ({}):", skipped.len());
    for name in &skipped {
        println!("  {name}");
    }
    summary
}

/// (name, status) of every test case in a Ginkgo JUnit report.
fn testcases(report: &str) -> Vec<(String, String)> {
    let attr = |head: &str, key: &str| -> String {
        let key = format!("{key}=\"");
        head.find(&key)
            .map(|i| &head[i + key.len()..])
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default()
            .replace("&#34;", "\"")
            .replace("&amp;", "&")
    };
    report
        .split("<testcase ")
        .skip(1)
        .map(|case| {
            let head = case.split('>').next().unwrap_or_default();
            (attr(head, "name"), attr(head, "status"))
        })
        .collect()
}

/// Ginkgo's output without its colour escapes (ESC [ ... m).
fn strip_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
