//! `rwxnfs mesh annotations`.

use rwxnfs_controller::ControllerConfig;
use rwxnfs_model::mesh::{self, NfsProtocol};

use crate::cli::{MeshArgs, MeshCommand};

pub(crate) fn run(command: MeshCommand) -> anyhow::Result<()> {
    let MeshCommand::Annotations(args) = command;
    print!("{}", annotations(&args)?);
    Ok(())
}

fn annotations(args: &MeshArgs) -> anyhow::Result<String> {
    let config = ControllerConfig::load(&args.config)?;
    let protocol = match args.nfs_version.as_str() {
        "4.2" | "4.1" => NfsProtocol::V41Plus,
        "4.0" | "4" => NfsProtocol::V40,
        "3" => NfsProtocol::V3 {
            local_locks: args.local_locks,
            mountd_port: args.mountd_port,
        },
        other => anyhow::bail!("--nfs-version {other:?} is not one of 4.2, 4.1, 4.0, 3"),
    };
    let (traffic, unresolved) = rwxnfs_doctor::traffic::from_config(&config, protocol);
    let mut out = format!(
        "# controller pod\n{}",
        mesh::controller_pod_annotations(&traffic)
    );
    for note in unresolved {
        out.push_str(&format!("# note: {note}\n"));
    }
    out.push_str("---\n# node plugin pod (hostNetwork)\n");
    out.push_str(mesh::NODE_POD_LABELS);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_follow_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("controller.yaml");
        std::fs::write(&config, "backends:\n  - name: ha1\n    agent:\n      endpoint: tcp://192.168.222.25:9820\n      tls: {ca: /a, cert: /b, key: /c}\n    server: 192.168.222.25\n").unwrap();
        let args = MeshArgs {
            config,
            nfs_version: "3".into(),
            local_locks: true,
            mountd_port: Some(892),
        };
        let out = annotations(&args).unwrap();
        assert!(
            out.contains("excludeOutboundPorts: \"111,892,2049,9820\""),
            "{out}"
        );
        assert!(
            out.contains("excludeOutboundIPRanges: \"192.168.222.25/32\""),
            "{out}"
        );
        assert!(out.contains("sidecar.istio.io/inject: \"false\""));
    }
}
