//! NFS server names to addresses.

use std::net::IpAddr;

use super::STEP_LIMIT;
use crate::error::NodeError;

/// The mount system call takes an address: names are resolved here, bounded in time.
pub(super) async fn resolve(server: &str) -> Result<IpAddr, NodeError> {
    if let Ok(addr) = server.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(addr);
    }
    let lookup = tokio::net::lookup_host((server, 2049));
    match tokio::time::timeout(STEP_LIMIT, lookup).await {
        Ok(Ok(mut addrs)) => addrs.next().map(|a| a.ip()).ok_or(NodeError::NoAddress {
            server: server.to_owned(),
        }),
        Ok(Err(source)) => Err(NodeError::Resolve {
            server: server.to_owned(),
            source,
        }),
        Err(_) => Err(NodeError::ResolveTimedOut {
            server: server.to_owned(),
        }),
    }
}
