//! The subdir backend: one directory per claim on an existing NFS export (a cloud provider's
//! managed share, a NAS appliance) where no agent can run.
//!
//! The controller makes and removes the directories itself with a userspace NFSv3 client
//! (MOUNT, LOOKUP, MKDIR, READDIRPLUS, REMOVE, RMDIR), as root through AUTH_SYS, so it needs
//! no mount privileges and no kernel NFS. What it cannot give, it says: capacity is not
//! enforced (Probe and GetCapacity report `quota_enforced: false`), every node that can mount
//! the share can reach every directory on it (publish grants nothing), and there are no
//! snapshots or clones.

use std::{net::IpAddr, time::Duration};

use nfs3_client::{
    Nfs3Connection,
    nfs3_types::{
        nfs3::{
            self, MKDIR3args, Nfs3Option, Nfs3Result, diropargs3, filename3, ftype3, nfsstat3,
            sattr3,
        },
        xdr_codec::Opaque,
    },
    tokio::TokioIo,
};
use rwxnfs_model::{Name, NameError};
use rwxnfs_proto::agent as pb;
use tokio::net::TcpStream;

use super::{Backend, BackendError};
use crate::{ControllerError, config::SubdirBackendConfig};

mod share;

/// Size reported for a claim that asks for none (nothing enforces it).
const DEFAULT_SIZE: i64 = 1 << 30;
/// Deeper trees than this are not removed (a loop, or not ours): the delete fails and says so.
const MAX_DEPTH: usize = 64;

type Connection = Nfs3Connection<TokioIo<TcpStream>>;

/// What can go wrong on a subdir backend; its codes are decided in [`ControllerError::code`].
#[derive(Debug, thiserror::Error)]
pub enum SubdirError {
    /// The share cannot be mounted, or a call on it failed or timed out.
    #[error("backend {backend} (subdir on {share}): {what}: {cause}")]
    Unreachable {
        backend: Name,
        share: String,
        what: &'static str,
        cause: String,
    },
    /// The NFS server refused a call.
    #[error("backend {backend} (subdir on {share}): {what}: {status:?}{}", access_hint(*.status))]
    Nfs {
        backend: Name,
        share: String,
        what: &'static str,
        status: nfsstat3,
    },
    #[error(
        "backend {backend}: {name} is more than {MAX_DEPTH} directories deep; remove it by hand"
    )]
    TooDeep { backend: Name, name: String },
    #[error(
        "backend {backend} is a subdir backend: it has no snapshots or clones (use an agent backend)"
    )]
    NoSnapshots { backend: Name },
    #[error("{0}")]
    BadName(NameError),
    #[error("backend {backend}: no directory {name} on {share}")]
    NoDirectory {
        backend: Name,
        name: String,
        share: String,
    },
}

/// The way out of a refusal that means the share is not exported as the controller needs.
fn access_hint(status: nfsstat3) -> &'static str {
    match status {
        nfsstat3::NFS3ERR_ACCES | nfsstat3::NFS3ERR_PERM | nfsstat3::NFS3ERR_ROFS => {
            " (the share must be exported read-write to the controller's address, without root \
             squashing)"
        }
        _ => "",
    }
}

pub struct SubdirBackend {
    name: Name,
    config: SubdirBackendConfig,
    /// Where nodes mount from: the backend's `server` when set, else the share's server.
    mount_server: IpAddr,
    timeout: Duration,
}

impl SubdirBackend {
    pub fn new(
        name: &str,
        config: &SubdirBackendConfig,
        mount_server: Option<IpAddr>,
    ) -> Result<Self, BackendError> {
        let name = Name::parse(name).map_err(|e| BackendError::Setup {
            backend: name.to_owned(),
            message: e.to_string(),
        })?;
        Ok(Self {
            name,
            config: config.clone(),
            mount_server: mount_server.unwrap_or(config.server),
            timeout: Duration::from_secs(config.timeout_seconds.unwrap_or(30)),
        })
    }

    fn share(&self) -> String {
        format!("{}:{}", self.config.server, self.config.share)
    }

    /// A failure to reach the share, with the backend and the share named.
    fn unavailable(&self, what: &'static str, e: impl std::fmt::Display) -> SubdirError {
        SubdirError::Unreachable {
            backend: self.name.clone(),
            share: self.share(),
            what,
            cause: e.to_string(),
        }
    }

    fn nfs_error(&self, what: &'static str, status: nfsstat3) -> SubdirError {
        SubdirError::Nfs {
            backend: self.name.clone(),
            share: self.share(),
            what,
            status,
        }
    }

    fn no_directory(&self, name: &str) -> SubdirError {
        SubdirError::NoDirectory {
            backend: self.name.clone(),
            name: name.to_owned(),
            share: self.share(),
        }
    }

    fn export(&self, name: &str, capacity: i64) -> pb::Export {
        let path = format!("{}/{name}", self.config.share.trim_end_matches('/'));
        pb::Export {
            name: name.to_owned(),
            path: path.clone(),
            pseudo_path: path,
            capacity_bytes: capacity,
            quota_enforced: false,
            ..Default::default()
        }
    }

    fn no_snapshots(&self) -> ControllerError {
        SubdirError::NoSnapshots {
            backend: self.name.clone(),
        }
        .into()
    }
}

#[tonic::async_trait]
impl Backend for SubdirBackend {
    fn name(&self) -> &Name {
        &self.name
    }

    fn has_sub_dirs(&self) -> bool {
        true
    }

    async fn server_address(&self) -> Result<IpAddr, ControllerError> {
        Ok(self.mount_server)
    }

    async fn probe(&self) -> Result<pb::ProbeResponse, ControllerError> {
        let mut c = self.connect().await?;
        let root = c.root_nfs_fh3();
        self.bounded("FSSTAT", async {
            c.fsstat(&nfs3::FSSTAT3args { fsroot: root })
                .await
                .map_err(|e| self.unavailable("FSSTAT", format!("{e:?}")))
        })
        .await?;
        Ok(pb::ProbeResponse {
            ready: true,
            reason: String::new(),
            nfs_server: "subdir".into(),
            quota: "none".into(),
            quota_enforced: false,
            version: String::new(),
            server_addresses: vec![self.mount_server.to_string()],
        })
    }

    async fn capacity(&self) -> Result<pb::GetCapacityResponse, ControllerError> {
        let mut c = self.connect().await?;
        let root = c.root_nfs_fh3();
        let res = self
            .bounded("FSSTAT", async {
                c.fsstat(&nfs3::FSSTAT3args { fsroot: root })
                    .await
                    .map_err(|e| self.unavailable("FSSTAT", format!("{e:?}")))
            })
            .await?;
        match res {
            Nfs3Result::Ok(ok) => Ok(pb::GetCapacityResponse {
                available_bytes: i64::try_from(ok.abytes).unwrap_or(i64::MAX),
                total_bytes: i64::try_from(ok.tbytes).unwrap_or(i64::MAX),
                quota_enforced: false,
                maximum_export_bytes: 0,
                granularity_bytes: 1,
            }),
            Nfs3Result::Err((status, _)) => Err(self.nfs_error("FSSTAT", status).into()),
        }
    }

    async fn create_export(
        &self,
        req: pb::CreateExportRequest,
    ) -> Result<pb::Export, ControllerError> {
        if req.source.is_some() {
            return Err(self.no_snapshots());
        }
        let name = Name::parse(&req.name).map_err(SubdirError::BadName)?;
        let capacity = if req.required_bytes > 0 {
            req.required_bytes
        } else {
            DEFAULT_SIZE
        };
        let mode = req.options.as_ref().and_then(|o| o.mode).unwrap_or(0o2775);
        let mut c = self.connect().await?;
        let root = c.root_nfs_fh3();
        let res = self
            .bounded("MKDIR", async {
                c.mkdir(&MKDIR3args {
                    where_: diropargs3 {
                        dir: root,
                        name: filename3(Opaque::borrowed(name.as_str().as_bytes())),
                    },
                    attributes: sattr3 {
                        mode: Nfs3Option::Some(mode),
                        uid: req
                            .options
                            .as_ref()
                            .and_then(|o| o.uid)
                            .map_or(Nfs3Option::None, Nfs3Option::Some),
                        gid: req
                            .options
                            .as_ref()
                            .and_then(|o| o.gid)
                            .map_or(Nfs3Option::None, Nfs3Option::Some),
                        ..sattr3::default()
                    },
                })
                .await
                .map_err(|e| self.unavailable("MKDIR", format!("{e:?}")))
            })
            .await?;
        match res {
            // Already there: the same claim asked again (CreateVolume is idempotent by name).
            Nfs3Result::Ok(_) | Nfs3Result::Err((nfsstat3::NFS3ERR_EXIST, _)) => {
                tracing::info!(backend = %self.name, export = %name, "directory ready");
                Ok(self.export(name.as_str(), capacity))
            }
            Nfs3Result::Err((status, _)) => Err(self.nfs_error("MKDIR", status).into()),
        }
    }

    async fn delete_export(&self, name: &str) -> Result<(), ControllerError> {
        let mut c = self.connect().await?;
        let root = c.root_nfs_fh3();
        // A tree can be large: the bound is per call, not for the whole removal.
        self.remove_tree(&mut c, &root, name.as_bytes(), 0).await?;
        tracing::info!(backend = %self.name, export = %name, "directory removed");
        Ok(())
    }

    async fn expand_export(
        &self,
        name: &str,
        required: i64,
        _limit: i64,
    ) -> Result<i64, ControllerError> {
        match self.find(name).await? {
            true => Ok(required),
            false => Err(self.no_directory(name).into()),
        }
    }

    /// Nothing to grant: whoever may mount the share reaches every directory on it.
    async fn grant(
        &self,
        name: &str,
        _client: pb::ClientAccess,
    ) -> Result<pb::Export, ControllerError> {
        self.get_export(name).await
    }

    async fn revoke(&self, _name: &str, _client_id: &str) -> Result<(), ControllerError> {
        Ok(())
    }

    async fn get_export(&self, name: &str) -> Result<pb::Export, ControllerError> {
        match self.find(name).await? {
            true => Ok(self.export(name, DEFAULT_SIZE)),
            false => Err(self.no_directory(name).into()),
        }
    }

    async fn list_exports(
        &self,
        max: i32,
        token: &str,
    ) -> Result<(Vec<pb::Export>, String), ControllerError> {
        let mut c = self.connect().await?;
        let root = c.root_nfs_fh3();
        let entries = self
            .bounded("READDIRPLUS", self.entries(&mut c, &root))
            .await?;
        // Directories whose names could be claims, in name order: the token is the last name.
        let mut names: Vec<String> = entries
            .into_iter()
            .filter(|(_, _, a)| {
                a.as_ref()
                    .is_some_and(|a| matches!(a.type_, ftype3::NF3DIR))
            })
            .filter_map(|(n, _, _)| String::from_utf8(n).ok())
            .filter(|n| Name::parse(n).is_ok() && n.as_str() > token)
            .collect();
        names.sort();
        let max = usize::try_from(max)
            .ok()
            .filter(|&m| m > 0)
            .unwrap_or(usize::MAX);
        let next = if names.len() > max {
            names.truncate(max);
            names.last().cloned().unwrap_or_default()
        } else {
            String::new()
        };
        let exports = names.iter().map(|n| self.export(n, DEFAULT_SIZE)).collect();
        Ok((exports, next))
    }

    async fn create_snapshot(
        &self,
        _name: &str,
        _source: &str,
    ) -> Result<pb::Snapshot, ControllerError> {
        Err(self.no_snapshots())
    }

    async fn delete_snapshot(&self, _name: &str) -> Result<(), ControllerError> {
        Ok(())
    }

    async fn list_snapshots(
        &self,
        _max: i32,
        _token: &str,
        _name: &str,
        _source: &str,
    ) -> Result<(Vec<pb::Snapshot>, String), ControllerError> {
        Ok((Vec::new(), String::new()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn nodes_mount_from_the_backends_server_when_one_is_set() {
        let config = SubdirBackendConfig {
            server: "10.0.0.5".parse().unwrap(),
            share: "/k8s".into(),
            mount_port: None,
            nfs_port: None,
            timeout_seconds: None,
        };
        let own = SubdirBackend::new("nas", &config, None).unwrap();
        assert_eq!(own.server_address().await.unwrap().to_string(), "10.0.0.5");
        let other = SubdirBackend::new("nas", &config, Some("10.1.0.5".parse().unwrap())).unwrap();
        assert_eq!(
            other.server_address().await.unwrap().to_string(),
            "10.1.0.5"
        );
        assert_eq!(own.export("claim-1", 1).pseudo_path, "/k8s/claim-1");
    }
}
