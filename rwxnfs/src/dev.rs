//! `rwxnfs dev`: the whole stack on one machine.
//!
//! Today that is the node plugin; the agent, NFS server and controller join it as they land.

use anyhow::Context;

use crate::cli::DevArgs;

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.state_dir).with_context(|| {
        format!(
            "cannot create the state directory {}",
            args.state_dir.display()
        )
    })?;
    let node_id = match args.node_id {
        Some(id) => id,
        None => hostname(),
    };
    let endpoint = crate::node::dev_endpoint(&args.state_dir);
    let router = crate::node::router(&node_id, &args.csi)?;
    let shown = endpoint.clone();
    rwxnfs_server::serve(
        router,
        &endpoint,
        rwxnfs_server::termination_signal(),
        args.csi.shutdown_grace,
        move || {
            println!("rwxnfs dev is running (Ctrl-C stops it)");
            println!("  node plugin   {shown}   (node id {node_id})");
            println!("  controller    not part of this build yet");
            println!("  agent + NFS   not part of this build yet");
        },
    )
    .await?;
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
