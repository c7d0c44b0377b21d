//! Who may call the agent, and how much at once.
//!
//! On a TLS endpoint the handshake has checked that the client's certificate chains to the CA
//! bundle; [`Guard`] then checks who the certificate names: one of its DNS or URI subject
//! alternative names, or its common name, must be in `tls.allowedClientNames`, else the call
//! is answered `PERMISSION_DENIED` with the names it presented. A certificate from the same CA
//! for another workload is thus refused as that workload, not as a broken connection.
//!
//! On every endpoint, per client (the allowed name a certificate matched; all callers of a
//! unix socket or of a TCP endpoint without TLS count as one), a call past
//! `limits.maxConcurrentCallsPerClient` in flight, or a request message past
//! `limits.maxMessageBytes`, is answered `RESOURCE_EXHAUSTED` naming the limit. The message
//! size is read from each gRPC message's length prefix as the body streams in, so an oversized
//! request is refused before it is buffered.

use std::{
    collections::HashMap,
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use rwxnfs_server::tls::Peer;
use tonic::{Status, server::NamedService};
use tower::Service;

/// The bounds of [`Guard`] (`limits` in the configuration file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_concurrent_calls_per_client: usize,
}

/// What one endpoint admits; endpoints of one agent share the counts of calls in flight.
pub struct Policy {
    /// The names a client certificate must present one of; `None` on endpoints without TLS.
    allowed: Option<Vec<String>>,
    limits: Limits,
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
}

impl Policy {
    /// The policy of a TLS endpoint.
    pub fn tls(allowed: Vec<String>, limits: Limits, counts: &Counts) -> Arc<Self> {
        Arc::new(Self {
            allowed: Some(allowed),
            limits,
            in_flight: counts.0.clone(),
        })
    }

    /// The policy of a unix socket (protected by its mode) or of plain TCP (development).
    pub fn local(limits: Limits, counts: &Counts) -> Arc<Self> {
        Arc::new(Self {
            allowed: None,
            limits,
            in_flight: counts.0.clone(),
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The client a request comes from, or the status that refuses it.
    fn client<B>(&self, request: &http::Request<B>) -> Result<String, Status> {
        let Some(allowed) = &self.allowed else {
            return Ok("local".into());
        };
        let Some(peer) = request.extensions().get::<Peer>() else {
            return Err(Status::permission_denied(
                "no client certificate on this connection",
            ));
        };
        peer.names
            .iter()
            .find(|name| allowed.iter().any(|a| a == name.value()))
            .map(|name| name.value().to_owned())
            .ok_or_else(|| {
                Status::permission_denied(format!(
                    "the client certificate presents {}; the agent admits only {} \
                     (tls.allowedClientNames in its configuration)",
                    peer.describe(),
                    allowed.join(", ")
                ))
            })
    }

    /// A place among `client`'s calls in flight, or the status that refuses the call.
    fn admit(&self, client: String) -> Result<InFlight, Status> {
        let max = self.limits.max_concurrent_calls_per_client;
        let mut counts = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(client.clone()).or_default();
        if *count >= max {
            return Err(Status::resource_exhausted(format!(
                "client {client} already has {max} calls in flight, the agent's \
                 limits.maxConcurrentCallsPerClient; retry when some have finished"
            )));
        }
        *count += 1;
        Ok(InFlight {
            counts: self.in_flight.clone(),
            client,
        })
    }
}

/// The counts of calls in flight per client, shared by an agent's endpoints.
#[derive(Clone, Default)]
pub struct Counts(Arc<Mutex<HashMap<String, usize>>>);

/// One admitted call; dropped when it has been answered (or abandoned).
struct InFlight {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    client: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

/// A gRPC service behind a [`Policy`]; routed under the name of the service it wraps.
#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    policy: Arc<Policy>,
}

impl<S> Guard<S> {
    pub fn new(inner: S, policy: Arc<Policy>) -> Self {
        Self { inner, policy }
    }
}

impl<S: NamedService> NamedService for Guard<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for Guard<S>
where
    S: Service<
            http::Request<Limited<B>>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let admitted = self
            .policy
            .client(&request)
            .and_then(|client| self.policy.admit(client));
        let in_flight = match admitted {
            Ok(in_flight) => in_flight,
            Err(status) => return Box::pin(std::future::ready(Ok(status.into_http()))),
        };
        let max = self.policy.limits.max_message_bytes;
        let request = request.map(|body| Limited::new(body, max));
        // The clone that was made ready is the one called (the tower idiom).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(request).await;
            drop(in_flight);
            response
        })
    }
}

/// A request body whose gRPC messages are at most `max` bytes each: the length prefix of a
/// larger one ends the body with `RESOURCE_EXHAUSTED` before its bytes are passed on.
pub struct Limited<B> {
    inner: B,
    max: usize,
    /// The length prefix being read (flag byte and four length bytes), and how much of it.
    prefix: [u8; 5],
    have: usize,
    /// Bytes of the current message still to come.
    remaining: usize,
}

impl<B> Limited<B> {
    fn new(inner: B, max: usize) -> Self {
        Self {
            inner,
            max,
            prefix: [0; 5],
            have: 0,
            remaining: 0,
        }
    }

    /// Follows the message framing through `data`.
    fn scan(&mut self, mut data: &[u8]) -> Result<(), Status> {
        while !data.is_empty() {
            if self.remaining > 0 {
                let skip = self.remaining.min(data.len());
                self.remaining -= skip;
                data = &data[skip..];
                continue;
            }
            self.prefix[self.have] = data[0];
            self.have += 1;
            data = &data[1..];
            if self.have == self.prefix.len() {
                self.have = 0;
                let [_, a, b, c, d] = self.prefix;
                let len = u32::from_be_bytes([a, b, c, d]) as usize;
                if len > self.max {
                    return Err(Status::resource_exhausted(format!(
                        "the request message is {len} bytes, over the agent's \
                         limits.maxMessageBytes of {} bytes",
                        self.max
                    )));
                }
                self.remaining = len;
            }
        }
        Ok(())
    }
}

impl<B> Body for Limited<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => {
                return Poll::Ready(Some(Err(Status::from_error(e.into()))));
            }
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        if let Some(data) = frame.data_ref()
            && let Err(status) = self.scan(data.chunk())
        {
            return Poll::Ready(Some(Err(status)));
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
