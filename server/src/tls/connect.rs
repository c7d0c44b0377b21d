//! The client's side: a connector for tonic channels that dials TCP and runs the handshake
//! with the certificates of that moment.

use std::{
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll},
};

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tonic::transport::Uri;

use super::ClientTls;

/// Dials the URI's host and port (an `http://` URI: TLS is ours, not tonic's).
#[derive(Clone)]
pub struct TlsConnector(pub ClientTls);

type Stream = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;

impl tower::Service<Uri> for TlsConnector {
    type Response = Stream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Stream>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.0.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| io::Error::other(format!("{uri} names no host")))?
                .trim_matches(['[', ']'])
                .to_owned();
            let port = uri
                .port_u16()
                .ok_or_else(|| io::Error::other(format!("{uri} names no port")))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            let _ = tcp.set_nodelay(true);
            let config = tls.current().await;
            // A refused certificate comes back as the rustls error itself ("invalid peer
            // certificate: certificate expired: ..."), as the innermost cause.
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(tls.server_name.clone(), tcp)
                .await?;
            Ok(TokioIo::new(stream))
        })
    }
}
