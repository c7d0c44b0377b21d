//! NFS server names to addresses.

use std::net::IpAddr;

use tonic::Status;

use super::STEP_LIMIT;

/// The mount system call takes an address: names are resolved here, bounded in time.
pub(super) async fn resolve(server: &str) -> Result<IpAddr, Status> {
    if let Ok(addr) = server.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(addr);
    }
    let lookup = tokio::net::lookup_host((server, 2049));
    match tokio::time::timeout(STEP_LIMIT, lookup).await {
        Ok(Ok(mut addrs)) => addrs
            .next()
            .map(|a| a.ip())
            .ok_or_else(|| Status::unavailable(format!("NFS server {server:?} has no address"))),
        Ok(Err(e)) => Err(Status::unavailable(format!(
            "cannot resolve NFS server {server:?}: {e}"
        ))),
        Err(_) => Err(Status::unavailable(format!(
            "resolving NFS server {server:?} timed out"
        ))),
    }
}
