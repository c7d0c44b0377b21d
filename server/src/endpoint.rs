//! `unix://PATH` and `tcp://HOST:PORT` endpoints.
//!
//! A unix socket is made safe before anyone can connect: the parent directory is created, a
//! stale socket left by a crashed server is removed (a live one is not), and the socket is
//! chmod 0600 between bind(2) and listen(2), so there is no moment at which another user could
//! connect to it.

use std::{
    fmt, fs, io,
    os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    str::FromStr,
};

use hyper_util::rt::TokioIo;
use socket2::{Domain, SockAddr, Socket, Type};
use tonic::transport::{Channel, Uri};

/// Where a gRPC server listens, or a client connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("endpoint {0:?} is not understood: use unix:///absolute/path.sock or tcp://host:port")]
    Malformed(String),
    #[error("cannot create the directory {path} for the socket: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
    #[error("another server is already listening on {path}")]
    InUse { path: PathBuf },
    #[error("cannot remove the stale socket {path}: {source}")]
    RemoveStale { path: PathBuf, source: io::Error },
    #[error("cannot listen on {endpoint}: {source}")]
    Listen { endpoint: String, source: io::Error },
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: tonic::transport::Error,
    },
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(raw: &str) -> Result<Self, EndpointError> {
        let malformed = || EndpointError::Malformed(raw.to_owned());
        if let Some(path) = raw.strip_prefix("unix://") {
            // unix:///a/b is the usual spelling; the path after the scheme must be absolute.
            if !path.starts_with('/') || path.len() < 2 || path.contains('\0') {
                return Err(malformed());
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if let Some(addr) = raw.strip_prefix("tcp://") {
            let (host, port) = addr.rsplit_once(':').ok_or_else(malformed)?;
            if host.is_empty() || port.parse::<u16>().is_err() || addr.contains('/') {
                return Err(malformed());
            }
            return Ok(Self::Tcp(addr.to_owned()));
        }
        Err(malformed())
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix://{}", path.display()),
            Self::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

/// A bound, listening endpoint.
pub enum Listener {
    Unix {
        listener: tokio::net::UnixListener,
        socket: BoundSocket,
    },
    Tcp(tokio::net::TcpListener),
}

/// The socket file a server created; [`BoundSocket::remove`] deletes it only if it is still
/// the one this server made (a successor may already have replaced it).
pub struct BoundSocket {
    path: PathBuf,
    inode: u64,
}

impl BoundSocket {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn remove(&self) {
        if let Ok(meta) = fs::symlink_metadata(&self.path)
            && meta.ino() == self.inode
        {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl Endpoint {
    /// Binds and listens. Must run inside a tokio runtime.
    pub async fn listen(&self) -> Result<Listener, EndpointError> {
        let listen_err = |source| EndpointError::Listen {
            endpoint: self.to_string(),
            source,
        };
        match self {
            Self::Tcp(addr) => {
                let listener = tokio::net::TcpListener::bind(addr.as_str())
                    .await
                    .map_err(listen_err)?;
                Ok(Listener::Tcp(listener))
            }
            Self::Unix(path) => {
                let (std_listener, socket) = bind_unix(path)?;
                let listener =
                    tokio::net::UnixListener::from_std(std_listener).map_err(listen_err)?;
                Ok(Listener::Unix { listener, socket })
            }
        }
    }

    /// Opens a lazy-connecting gRPC channel to this endpoint.
    pub async fn connect(&self) -> Result<Channel, EndpointError> {
        let connect_err = |source| EndpointError::Connect {
            endpoint: self.to_string(),
            source,
        };
        match self {
            Self::Tcp(addr) => {
                let uri = format!("http://{addr}");
                tonic::transport::Endpoint::from_shared(uri)
                    .map_err(connect_err)?
                    .connect()
                    .await
                    .map_err(connect_err)
            }
            Self::Unix(path) => {
                let path = path.clone();
                // The URI is required by the API but unused: the connector dials the socket.
                tonic::transport::Endpoint::from_static("http://[::1]:50051")
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            let stream = tokio::net::UnixStream::connect(path).await?;
                            Ok::<_, io::Error>(TokioIo::new(stream))
                        }
                    }))
                    .await
                    .map_err(connect_err)
            }
        }
    }
}

impl Endpoint {
    /// A channel that connects on first use and reconnects after failures, so a client can
    /// start while its server is down. `tls` applies to TCP endpoints only (a unix socket is
    /// protected by its file mode). Every call is bounded by `timeout`.
    pub fn lazy_channel(
        &self,
        tls: Option<crate::tls::ClientTls>,
        timeout: std::time::Duration,
    ) -> Result<Channel, EndpointError> {
        let connect_err = |source| EndpointError::Connect {
            endpoint: self.to_string(),
            source,
        };
        match self {
            Self::Tcp(addr) => {
                // With TLS the scheme stays http: the connector does TLS, not tonic, so that
                // every new connection uses the certificates of that moment.
                let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                    .map_err(connect_err)?
                    .connect_timeout(timeout)
                    .timeout(timeout)
                    // A peer that died without closing (an NFS host that lost power, its
                    // address since moved to another host) is noticed within about ten
                    // seconds, and the next call dials again instead of waiting on it.
                    .http2_keep_alive_interval(std::time::Duration::from_secs(5))
                    .keep_alive_timeout(std::time::Duration::from_secs(5))
                    .keep_alive_while_idle(true);
                Ok(match tls {
                    Some(tls) => {
                        endpoint.connect_with_connector_lazy(crate::tls::TlsConnector(tls))
                    }
                    None => endpoint.connect_lazy(),
                })
            }
            Self::Unix(path) => {
                let path = path.clone();
                Ok(
                    tonic::transport::Endpoint::from_static("http://[::1]:50051")
                        .connect_timeout(timeout)
                        .timeout(timeout)
                        .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                            let path = path.clone();
                            async move {
                                let stream = tokio::net::UnixStream::connect(path).await?;
                                Ok::<_, io::Error>(TokioIo::new(stream))
                            }
                        })),
                )
            }
        }
    }
}

fn bind_unix(
    path: &Path,
) -> Result<(std::os::unix::net::UnixListener, BoundSocket), EndpointError> {
    let listen_err = |source| EndpointError::Listen {
        endpoint: format!("unix://{}", path.display()),
        source,
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|source| EndpointError::CreateDir {
            path: parent.to_owned(),
            source,
        })?;
    }
    remove_stale_socket(path)?;

    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(listen_err)?;
    socket
        .bind(&SockAddr::unix(path).map_err(listen_err)?)
        .map_err(listen_err)?;
    // Before listen(2): nobody can connect until the mode is right.
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(listen_err)?;
    socket.listen(1024).map_err(listen_err)?;
    socket.set_nonblocking(true).map_err(listen_err)?;
    let inode = fs::symlink_metadata(path).map_err(listen_err)?.ino();
    Ok((
        socket.into(),
        BoundSocket {
            path: path.to_owned(),
            inode,
        },
    ))
}

fn remove_stale_socket(path: &Path) -> Result<(), EndpointError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(EndpointError::RemoveStale {
                path: path.to_owned(),
                source,
            });
        }
    };
    if !meta.file_type().is_socket() {
        return Err(EndpointError::NotASocket {
            path: path.to_owned(),
        });
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(EndpointError::InUse {
            path: path.to_owned(),
        });
    }
    fs::remove_file(path).map_err(|source| EndpointError::RemoveStale {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_and_print_back() {
        for raw in [
            "unix:///tmp/rwxnfs/node.sock",
            "tcp://127.0.0.1:9000",
            "tcp://[::1]:80",
        ] {
            assert_eq!(raw.parse::<Endpoint>().unwrap().to_string(), raw);
        }
    }

    #[test]
    fn malformed_endpoints_are_rejected() {
        for raw in [
            "",
            "/tmp/x.sock",
            "unix://relative.sock",
            "unix://",
            "tcp://host",
            "tcp://:9",
            "tcp://h:99999",
            "http://h:1",
        ] {
            assert!(raw.parse::<Endpoint>().is_err(), "{raw:?}");
        }
    }

    #[tokio::test]
    async fn a_unix_socket_is_private_and_its_directory_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deeper/csi.sock");
        let ep = Endpoint::Unix(path.clone());
        let Listener::Unix { socket, .. } = ep.listen().await.unwrap() else {
            panic!("expected a unix listener");
        };
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        socket.remove();
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_but_a_live_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("csi.sock");
        let ep = Endpoint::Unix(path.clone());

        let live = ep.listen().await.unwrap();
        assert!(matches!(
            ep.listen().await,
            Err(EndpointError::InUse { .. })
        ));
        drop(live); // the file stays behind, as after a crash
        assert!(path.exists());
        let _again = ep.listen().await.unwrap();
    }

    #[tokio::test]
    async fn a_regular_file_at_the_socket_path_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("csi.sock");
        fs::write(&path, b"precious").unwrap();
        let err = Endpoint::Unix(path.clone()).listen().await.err().unwrap();
        assert!(matches!(err, EndpointError::NotASocket { .. }), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"precious");
    }
}
