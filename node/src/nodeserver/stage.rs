//! NodeStageVolume's work: the one NFS mount of a volume on this node, at the staging path.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    time::Instant,
};

use super::{NodeService, resolve::resolve};
use crate::error::NodeError;
use nix::mount::MsFlags;
use rwxnfs_model::{MountOptions, Transport, volume_context::VolumeContext};
use rwxnfs_proto::csi::{NodeStageVolumeRequest, VolumeCapability, volume_capability};

fn mount_flags(cap: &VolumeCapability) -> Vec<String> {
    match &cap.access_type {
        Some(volume_capability::AccessType::Mount(m)) => m.mount_flags.clone(),
        _ => Vec::new(),
    }
}

fn vfs_flags(options: &MountOptions) -> MsFlags {
    let mut flags = MsFlags::empty();
    for f in options.vfs_flags() {
        flags |= match f {
            "ro" => MsFlags::MS_RDONLY,
            "noatime" => MsFlags::MS_NOATIME,
            "nodiratime" => MsFlags::MS_NODIRATIME,
            "relatime" => MsFlags::MS_RELATIME,
            "strictatime" => MsFlags::MS_STRICTATIME,
            "noexec" => MsFlags::MS_NOEXEC,
            "nosuid" => MsFlags::MS_NOSUID,
            "nodev" => MsFlags::MS_NODEV,
            _ => MsFlags::empty(),
        };
    }
    flags
}

/// What a stage request asks to mount: the server, the export path on it, the options.
struct Wanted {
    server: String,
    share: String,
    transport: Transport,
    /// With TLS, the mount's source names the server as its certificate does (tlshd checks
    /// the certificate against the source's host name, not the address mounted).
    tls_name: String,
    options: MountOptions,
}

/// Reads the volume context and the capability's mount flags into what to mount.
fn wanted(req: &NodeStageVolumeRequest, cap: &VolumeCapability) -> Result<Wanted, NodeError> {
    let context = VolumeContext::parse(&req.volume_context)?;
    let tls_name = context.tls_name().to_owned();
    let user: Vec<String> = mount_flags(cap)
        .into_iter()
        .chain(context.mount_options)
        .collect();
    let options = MountOptions::merge(context.nfs_version, user.iter().map(String::as_str))?
        .with_transport(context.transport);
    Ok(Wanted {
        tls_name,
        server: context.server,
        share: context.share,
        transport: context.transport,
        options,
    })
}

impl NodeService {
    pub(super) async fn stage(
        &self,
        req: &NodeStageVolumeRequest,
        cap: &VolumeCapability,
    ) -> Result<(), NodeError> {
        let Wanted {
            server,
            share,
            transport,
            tls_name,
            options,
        } = wanted(req, cap)?;
        let addr = resolve(&server).await?;
        let host = if transport.is_tls() {
            tls_name.clone()
        } else if addr.is_ipv6() {
            format!("[{addr}]")
        } else {
            addr.to_string()
        };
        let source = format!("{host}:{share}");
        let staging = PathBuf::from(&req.staging_target_path);

        if let Some(existing) = self.mounted_at(&staging).await? {
            if existing.fs_type.starts_with("nfs") && existing.source == source {
                return Ok(());
            }
            return Err(NodeError::StagingTaken {
                staging,
                fs_type: existing.fs_type,
                mounted: existing.source,
                wanted: source,
            });
        }
        self.handshake_ready(transport, &staging).await?;
        if transport.is_tls() {
            self.no_plaintext_mount_of(addr, transport).await?;
        }
        self.mkdir(&staging).await?;
        let fs_type = if options.is_v3() { "nfs" } else { "nfs4" };
        let data = options.data(addr);
        let (mounter, target, src, flags) = (
            self.mounter.clone(),
            staging.clone(),
            source.clone(),
            vfs_flags(&options),
        );
        let started = Instant::now();
        self.bounded
            .run("NFS mount", &staging, move || {
                mounter.mount_nfs(&src, &target, fs_type, flags, &data)
            })
            .await
            .map_err(|step| match (transport.is_tls(), step.raw_os_error()) {
                (true, Some(libc::EACCES | libc::EPERM | libc::EIO | libc::ECONNREFUSED)) => {
                    NodeError::TlsRefused {
                        transport,
                        server: tls_name.clone(),
                        step,
                    }
                }
                _ => NodeError::Step { step },
            })?;
        tracing::info!(volume_id = %req.volume_id, %source, staging = %staging.display(), ms = started.elapsed().as_millis() as u64, "staged");
        Ok(())
    }
}

impl NodeService {
    /// A node's NFSv4 mounts of one server share one client and connection: a TLS mount made
    /// while a plaintext mount of the same server exists rides the plaintext connection, and
    /// the export refuses it (EPERM, seen in the VM tier). Refused here, saying why.
    async fn no_plaintext_mount_of(
        &self,
        addr: IpAddr,
        transport: Transport,
    ) -> Result<(), NodeError> {
        let addr_option = format!("addr={addr}");
        let plaintext: Vec<PathBuf> = self
            .mounts()
            .await?
            .into_iter()
            .filter(|m| {
                let mut options = m.super_options.iter().chain(&m.options);
                m.fs_type.starts_with("nfs")
                    && options.clone().any(|o| *o == addr_option)
                    && !options.any(|o| o.starts_with("xprtsec=") && o != "xprtsec=none")
            })
            .map(|m| m.mount_point)
            .collect();
        if plaintext.is_empty() {
            return Ok(());
        }
        Err(NodeError::PlaintextBeside {
            transport,
            addr,
            mounts: plaintext,
        })
    }

    /// A TLS claim is refused before its mount when this node lacks the handshake daemon or,
    /// for mtls, a client certificate (see [`crate::tls`]): the kernel's own error after a
    /// failed handshake would not say why.
    async fn handshake_ready(&self, transport: Transport, staging: &Path) -> Result<(), NodeError> {
        if !transport.is_tls() {
            return Ok(());
        }
        let handshake = self.handshake.clone();
        self.bounded
            .run("TLS handshake check", staging, move || {
                Ok(handshake.ready(transport))
            })
            .await??;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rwxnfs_proto::csi::volume_capability::{
        AccessMode, AccessType, MountVolume, access_mode::Mode,
    };
    use tonic::{Code, Status};

    use super::*;

    fn request(context: &[(&str, &str)]) -> NodeStageVolumeRequest {
        NodeStageVolumeRequest {
            volume_context: context
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    fn mount(flags: &[&str]) -> VolumeCapability {
        VolumeCapability {
            access_type: Some(AccessType::Mount(MountVolume {
                mount_flags: flags.iter().map(|f| f.to_string()).collect(),
                ..Default::default()
            })),
            access_mode: Some(AccessMode {
                mode: Mode::MultiNodeMultiWriter as i32,
            }),
        }
    }

    #[test]
    fn the_volume_context_and_the_mount_flags_make_what_is_mounted() {
        let req = request(&[
            ("server", "10.0.0.5"),
            ("share", "/pvc-1"),
            ("nfsVersion", "3"),
            ("mountOptions", "nconnect=4"),
        ]);
        let wanted = wanted(&req, &mount(&["noatime"])).unwrap();
        assert_eq!(
            (wanted.server.as_str(), wanted.share.as_str()),
            ("10.0.0.5", "/pvc-1")
        );
        assert!(wanted.options.is_v3());
        assert!(vfs_flags(&wanted.options).contains(MsFlags::MS_NOATIME));
    }

    #[test]
    fn a_context_missing_a_key_is_invalid_argument_naming_it() {
        for (context, message) in [
            (
                &[("share", "/pvc-1")][..],
                "volume context has no `server`: is this an rwxnfs volume? (static PVs set volumeAttributes server and share)",
            ),
            (
                &[("server", "10.0.0.5"), ("share", "pvc-1")][..],
                "volume context has no absolute `share` (the export path, e.g. /pvc-123)",
            ),
            (
                &[
                    ("server", "10.0.0.5"),
                    ("share", "/pvc-1"),
                    ("nfsVersion", "5"),
                ][..],
                "nfsVersion",
            ),
        ] {
            let err = wanted(&request(context), &mount(&[])).err().unwrap();
            let status = Status::from(err);
            assert_eq!(status.code(), Code::InvalidArgument, "{context:?}");
            assert!(status.message().contains(message), "{}", status.message());
        }
    }
}
