//! Mutual TLS whose certificates are re-read as they are renewed.
//!
//! cert-manager (and the kubelet, for a mounted Secret) renews a certificate by writing new
//! files and swapping a `..data` symlink, so a process that read its files once at start would
//! keep presenting, and trusting, the old ones until restarted. Here every new connection reads
//! the three files again (a few kilobytes from a tmpfs) and builds a new rustls configuration
//! when their bytes changed; connections already open keep the one they were made with. Files
//! that do not make a configuration (a key that does not match its certificate, caught between
//! two writes) are logged and the last good configuration is kept until they do.
//!
//! - [`ServerTls`] and [`accept`]: the server's side, which requires a client certificate that
//!   chains to the CA bundle and passes on the names it presents ([`Peer`]) to every request.
//! - [`ClientTls`] and [`connect`]: the client's side, a connector for tonic channels.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use tokio_rustls::rustls::{
    self, ClientConfig, RootCertStore, ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
    server::WebPkiClientVerifier,
};

pub mod accept;
pub mod connect;
mod peer;

pub use accept::TlsConnection;
pub use connect::TlsConnector;
pub use peer::{Peer, PeerName};

/// The three files of one side of mutual TLS, in PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA bundle the peer's certificate must chain to (several CAs during a rotation).
    pub ca: PathBuf,
    /// Our certificate (with its intermediates).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read TLS file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TLS file {path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("TLS files {cert} and {key}: {source}")]
    Config {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("TLS server name {name:?}: {message}")]
    ServerName { name: String, message: String },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What the three files held when a configuration was last built from them.
#[derive(PartialEq, Eq)]
struct Contents {
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl Contents {
    async fn read(files: &TlsFiles) -> Result<Self, TlsError> {
        let read = |path: &Path| {
            let path = path.to_owned();
            async move {
                tokio::fs::read(&path)
                    .await
                    .map_err(|source| TlsError::Read { path, source })
            }
        };
        Ok(Self {
            ca: read(&files.ca).await?,
            cert: read(&files.cert).await?,
            key: read(&files.key).await?,
        })
    }

    fn read_now(files: &TlsFiles) -> Result<Self, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_owned(),
                source,
            })
        };
        Ok(Self {
            ca: read(&files.ca)?,
            cert: read(&files.cert)?,
            key: read(&files.key)?,
        })
    }

    fn roots(&self, files: &TlsFiles) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in certificates(&self.ca, &files.ca)? {
            roots.add(cert).map_err(|e| TlsError::Pem {
                path: files.ca.clone(),
                message: format!("not a CA certificate: {e}"),
            })?;
        }
        Ok(roots)
    }

    fn chain(&self, files: &TlsFiles) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        certificates(&self.cert, &files.cert)
    }

    fn private_key(&self, files: &TlsFiles) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_slice(&self.key).map_err(|e| TlsError::Pem {
            path: files.key.clone(),
            message: format!("no private key in PEM: {e}"),
        })
    }
}

fn certificates(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            message: "no certificate in PEM".into(),
        });
    }
    Ok(certs)
}

/// A configuration built from files, rebuilt when their bytes change.
struct Reloading<C> {
    files: TlsFiles,
    build: fn(&Contents, &TlsFiles) -> Result<C, TlsError>,
    last: Mutex<(Contents, Arc<C>)>,
}

impl<C> Reloading<C> {
    fn load(
        files: TlsFiles,
        build: fn(&Contents, &TlsFiles) -> Result<C, TlsError>,
    ) -> Result<Self, TlsError> {
        let contents = Contents::read_now(&files)?;
        let config = Arc::new(build(&contents, &files)?);
        Ok(Self {
            files,
            build,
            last: Mutex::new((contents, config)),
        })
    }

    /// The configuration for a new connection: from the files as they are now, or the last
    /// good one when they cannot be read or do not make one.
    async fn current(&self) -> Arc<C> {
        let fresh = Contents::read(&self.files).await;
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = match fresh {
            Ok(fresh) if fresh == last.0 => return last.1.clone(),
            Ok(fresh) => fresh,
            Err(e) => {
                tracing::warn!(error = %e, "TLS files unreadable; keeping the certificates loaded before");
                return last.1.clone();
            }
        };
        match (self.build)(&fresh, &self.files) {
            Ok(config) => {
                tracing::info!(
                    cert = %self.files.cert.display(),
                    ca = %self.files.ca.display(),
                    "TLS files changed; new connections use them"
                );
                *last = (fresh, Arc::new(config));
            }
            Err(e) => {
                tracing::warn!(error = %e, "changed TLS files do not make a configuration (yet); keeping the certificates loaded before");
            }
        }
        last.1.clone()
    }
}

/// The server's side: a certificate and key to present, and the CA bundle client certificates
/// must chain to (a client without one is refused in the handshake).
#[derive(Clone)]
pub struct ServerTls(Arc<Reloading<ServerConfig>>);

impl ServerTls {
    /// Reads the files now: an error here is a start-up error.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        Reloading::load(files, server_config).map(|r| Self(Arc::new(r)))
    }

    pub(crate) async fn current(&self) -> Arc<ServerConfig> {
        self.0.current().await
    }
}

fn server_config(contents: &Contents, files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let config_err = |source| TlsError::Config {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    };
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(contents.roots(files)?),
        provider.clone(),
    )
    .build()
    .map_err(|e| TlsError::Pem {
        path: files.ca.clone(),
        message: e.to_string(),
    })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(config_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(contents.chain(files)?, contents.private_key(files)?)
        .map_err(config_err)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The client's side: a certificate and key to present, the CA bundle the server's certificate
/// must chain to, and the name it must carry.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<Reloading<ClientConfig>>,
    server_name: ServerName<'static>,
}

impl ClientTls {
    /// Reads the files now: an error here is a start-up error.
    pub fn load(files: TlsFiles, server_name: &str) -> Result<Self, TlsError> {
        let server_name =
            ServerName::try_from(server_name.to_owned()).map_err(|e| TlsError::ServerName {
                name: server_name.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Self {
            config: Arc::new(Reloading::load(files, client_config)?),
            server_name,
        })
    }

    pub(crate) async fn current(&self) -> Arc<ClientConfig> {
        self.config.current().await
    }
}

fn client_config(contents: &Contents, files: &TlsFiles) -> Result<ClientConfig, TlsError> {
    let config_err = |source| TlsError::Config {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    };
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_err)?
        .with_root_certificates(contents.roots(files)?)
        .with_client_auth_cert(contents.chain(files)?, contents.private_key(files)?)
        .map_err(config_err)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests;
