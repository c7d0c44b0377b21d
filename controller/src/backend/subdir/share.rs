//! The NFS calls on a subdir backend's share: mount, LOOKUP, READDIRPLUS, and the removal of
//! a claim's tree, each bounded by the backend's timeout.

use nfs3_client::{
    Nfs3ConnectionBuilder,
    nfs3_types::{
        nfs3::{
            self, LOOKUP3args, Nfs3Option, Nfs3Result, READDIRPLUS3args, REMOVE3args, RMDIR3args,
            cookieverf3, diropargs3, fattr3, filename3, ftype3, nfs_fh3, nfsstat3,
        },
        rpc::{auth_unix, opaque_auth},
        xdr_codec::Opaque,
    },
    tokio::TokioConnector,
};

use super::{Connection, MAX_DEPTH, SubdirBackend, SubdirError};

impl SubdirBackend {
    /// Mounts the share (a fresh connection per call: calls are rare and this survives the
    /// server's restarts), bounded by the configured timeout.
    pub(super) async fn connect(&self) -> Result<Connection, SubdirError> {
        let credential = opaque_auth::auth_unix(&auth_unix {
            machinename: Opaque::owned(b"rwxnfs-controller".to_vec()),
            ..auth_unix::default()
        });
        let mut builder = Nfs3ConnectionBuilder::new(
            TokioConnector,
            self.config.server.to_string(),
            &self.config.share,
        )
        .connect_from_privileged_port(false)
        .credential(credential);
        if let Some(port) = self.config.mount_port {
            builder = builder.mount_port(port);
        }
        if let Some(port) = self.config.nfs_port {
            builder = builder.nfs3_port(port);
        }
        match tokio::time::timeout(self.timeout, builder.mount()).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(e)) => Err(self.unavailable("cannot mount the share", format!("{e:?}"))),
            Err(_) => Err(self.unavailable("cannot mount the share", "timed out")),
        }
    }

    /// Runs one call on the share within the timeout.
    pub(super) async fn bounded<T>(
        &self,
        what: &'static str,
        call: impl std::future::Future<Output = Result<T, SubdirError>>,
    ) -> Result<T, SubdirError> {
        tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or_else(|_| Err(self.unavailable(what, "timed out")))
    }

    pub(super) async fn lookup(
        &self,
        c: &mut Connection,
        dir: &nfs_fh3,
        name: &[u8],
    ) -> Result<Option<(nfs_fh3, Option<fattr3>)>, SubdirError> {
        let res = c
            .lookup(&LOOKUP3args {
                what: diropargs3 {
                    dir: dir.clone(),
                    name: filename3(Opaque::borrowed(name)),
                },
            })
            .await
            .map_err(|e| self.unavailable("LOOKUP", format!("{e:?}")))?;
        match res {
            Nfs3Result::Ok(ok) => Ok(Some((ok.object, attrs(ok.obj_attributes)))),
            Nfs3Result::Err((nfsstat3::NFS3ERR_NOENT, _)) => Ok(None),
            Nfs3Result::Err((status, _)) => Err(self.nfs_error("LOOKUP", status)),
        }
    }

    /// Every entry of a directory but `.` and `..`: (name, handle, attributes).
    pub(super) async fn entries(
        &self,
        c: &mut Connection,
        dir: &nfs_fh3,
    ) -> Result<Vec<(Vec<u8>, Option<nfs_fh3>, Option<fattr3>)>, SubdirError> {
        let mut out = Vec::new();
        let (mut cookie, mut verifier) = (0, cookieverf3::default());
        loop {
            let res = c
                .readdirplus(&READDIRPLUS3args {
                    dir: dir.clone(),
                    cookie,
                    cookieverf: verifier,
                    dircount: 64 * 1024,
                    maxcount: 256 * 1024,
                })
                .await
                .map_err(|e| self.unavailable("READDIRPLUS", format!("{e:?}")))?;
            let ok = match res {
                Nfs3Result::Ok(ok) => ok,
                Nfs3Result::Err((status, _)) => return Err(self.nfs_error("READDIRPLUS", status)),
            };
            verifier = ok.cookieverf;
            for entry in ok.reply.entries.0 {
                cookie = entry.cookie;
                let name = entry.name.0.to_vec();
                if name == b"." || name == b".." {
                    continue;
                }
                let handle = match entry.name_handle {
                    Nfs3Option::Some(fh) => Some(fh),
                    Nfs3Option::None => None,
                };
                out.push((name, handle, attrs(entry.name_attributes)));
            }
            if ok.reply.eof {
                return Ok(out);
            }
        }
    }

    /// Removes `name` in `dir` with everything below it; already gone is success.
    pub(super) async fn remove_tree(
        &self,
        c: &mut Connection,
        dir: &nfs_fh3,
        name: &[u8],
        depth: usize,
    ) -> Result<(), SubdirError> {
        let Some((fh, attributes)) = self.lookup(c, dir, name).await? else {
            return Ok(());
        };
        let is_dir = attributes.is_some_and(|a| matches!(a.type_, ftype3::NF3DIR));
        if is_dir {
            if depth >= MAX_DEPTH {
                return Err(SubdirError::TooDeep {
                    backend: self.name.clone(),
                    name: String::from_utf8_lossy(name).into_owned(),
                });
            }
            for (child, _, _) in self.entries(c, &fh).await? {
                Box::pin(self.remove_tree(c, &fh, &child, depth + 1)).await?;
            }
            let res = c
                .rmdir(&RMDIR3args {
                    object: diropargs3 {
                        dir: dir.clone(),
                        name: filename3(Opaque::borrowed(name)),
                    },
                })
                .await
                .map_err(|e| self.unavailable("RMDIR", format!("{e:?}")))?;
            return match res {
                Nfs3Result::Ok(_) | Nfs3Result::Err((nfsstat3::NFS3ERR_NOENT, _)) => Ok(()),
                Nfs3Result::Err((status, _)) => Err(self.nfs_error("RMDIR", status)),
            };
        }
        let res = c
            .remove(&REMOVE3args {
                object: diropargs3 {
                    dir: dir.clone(),
                    name: filename3(Opaque::borrowed(name)),
                },
            })
            .await
            .map_err(|e| self.unavailable("REMOVE", format!("{e:?}")))?;
        match res {
            Nfs3Result::Ok(_) | Nfs3Result::Err((nfsstat3::NFS3ERR_NOENT, _)) => Ok(()),
            Nfs3Result::Err((status, _)) => Err(self.nfs_error("REMOVE", status)),
        }
    }

    /// Whether the directory of an export exists.
    pub(super) async fn find(&self, name: &str) -> Result<bool, SubdirError> {
        let mut c = self.connect().await?;
        let root = c.root_nfs_fh3();
        let found = self
            .bounded("LOOKUP", self.lookup(&mut c, &root, name.as_bytes()))
            .await?;
        Ok(found.is_some())
    }
}

fn attrs(attributes: nfs3::post_op_attr) -> Option<fattr3> {
    match attributes {
        Nfs3Option::Some(a) => Some(a),
        Nfs3Option::None => None,
    }
}
