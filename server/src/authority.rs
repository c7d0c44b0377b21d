//! Connections whose HTTP/2 requests get `:authority: localhost`, for clients that send a
//! unix socket's path there.
//!
//! The kubelet's plugin watcher dials a registration socket by its bare path, and grpc-go
//! then sends that path (`/var/lib/kubelet/plugins_registry/….sock`) as the request's
//! `:authority`. That is no authority at all, and the h2 crate under tonic refuses such a
//! request as malformed; the kubelet only sees its one-second GetInfo deadline pass, again and
//! again (kubernetes/kubernetes#108254; the kubelet's CSI and device-plugin clients set
//! `localhost` themselves, its plugin watcher does not).
//!
//! [`normalize`] sits between the accepted socket and the server: the client's frames are
//! read one by one, header blocks (HEADERS and their CONTINUATIONs) are decoded with the
//! client's HPACK state, `:authority` is replaced, and the block is encoded again with a
//! state of our own toward the server; every other frame, and everything the server sends
//! back, passes unchanged.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The smallest maximum frame size HTTP/2 allows, which every server accepts.
const MAX_FRAME: usize = 16_384;
/// A header block larger than this is not a gRPC call: the connection is dropped.
const MAX_BLOCK: usize = 256 * 1024;

/// The server's side of a connection whose requests are rewritten; a task copies between it
/// and `client` until either side closes.
pub fn normalize<S>(client: S) -> Normalized
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let (client_read, mut client_write) = tokio::io::split(client);
        let (server_read, server_write) = tokio::io::split(theirs);
        let up = rewrite(client_read, server_write);
        let down = async move {
            let mut server_read = server_read;
            let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
            let _ = client_write.shutdown().await;
        };
        let (result, ()) = tokio::join!(up, down);
        if let Err(e) = result {
            tracing::debug!(error = %e, "a connection whose authority was rewritten ended");
        }
    });
    Normalized(ours)
}

/// Copies the client's frames to the server, rewriting header blocks.
async fn rewrite(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
) -> std::io::Result<()> {
    let mut preface = [0u8; PREFACE.len()];
    from.read_exact(&mut preface).await?;
    if preface != PREFACE {
        // Not HTTP/2 with prior knowledge: pass it on for the server to refuse.
        to.write_all(&preface).await?;
        tokio::io::copy(&mut from, &mut to).await?;
        return Ok(());
    }
    to.write_all(PREFACE).await?;
    let mut decoder = hpack::Decoder::new();
    let mut encoder = hpack::Encoder::new();
    // A header block being assembled: (stream, END_STREAM, fragment so far).
    let mut block: Option<(u32, u8, Vec<u8>)> = None;
    loop {
        let mut head = [0u8; 9];
        if let Err(e) = from.read_exact(&mut head).await {
            return if e.kind() == std::io::ErrorKind::UnexpectedEof {
                to.shutdown().await
            } else {
                Err(e)
            };
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        if len > MAX_BLOCK {
            return Err(invalid("a frame larger than any gRPC call needs"));
        }
        let mut payload = vec![0u8; len];
        from.read_exact(&mut payload).await?;
        let fragment = match kind {
            HEADERS => Some(headers_fragment(&payload, flags)?),
            CONTINUATION if block.is_some() => Some(payload.as_slice()),
            _ => None,
        };
        let Some(fragment) = fragment else {
            to.write_all(&head).await?;
            to.write_all(&payload).await?;
            continue;
        };
        let (_, _, assembled) =
            block.get_or_insert_with(|| (stream, flags & END_STREAM, Vec::new()));
        assembled.extend_from_slice(fragment);
        if assembled.len() > MAX_BLOCK {
            return Err(invalid("a header block larger than any gRPC call needs"));
        }
        if flags & END_HEADERS == 0 {
            continue;
        }
        let (stream, end_stream, assembled) = block.take().expect("a block is being assembled");
        let headers = decoder
            .decode(&assembled)
            .map_err(|e| invalid(&format!("a header block HPACK cannot decode: {e:?}")))?;
        let headers: Vec<(Vec<u8>, Vec<u8>)> = headers
            .into_iter()
            .map(|(name, value)| {
                if name == b":authority" {
                    (name, b"localhost".to_vec())
                } else {
                    (name, value)
                }
            })
            .collect();
        let encoded = encoder.encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        write_block(&mut to, stream, end_stream, &encoded).await?;
    }
}

/// A HEADERS frame's header block fragment, without its padding and priority fields.
fn headers_fragment(payload: &[u8], flags: u8) -> std::io::Result<&[u8]> {
    let mut start = 0;
    let mut end = payload.len();
    if flags & PADDED != 0 {
        let pad = *payload
            .first()
            .ok_or_else(|| invalid("an empty padded frame"))? as usize;
        start = 1;
        end = end
            .checked_sub(pad)
            .ok_or_else(|| invalid("more padding than frame"))?;
    }
    if flags & PRIORITY != 0 {
        start += 5;
    }
    payload
        .get(start..end)
        .ok_or_else(|| invalid("a HEADERS frame shorter than its fields"))
}

/// Writes `block` as one HEADERS frame and as many CONTINUATIONs as it needs.
async fn write_block(
    to: &mut (impl AsyncWrite + Unpin),
    stream: u32,
    end_stream: u8,
    block: &[u8],
) -> std::io::Result<()> {
    let mut chunks = block.chunks(MAX_FRAME).peekable();
    let mut kind = HEADERS;
    let mut flags = end_stream;
    if chunks.peek().is_none() {
        return write_frame(to, HEADERS, end_stream | END_HEADERS, stream, &[]).await;
    }
    while let Some(chunk) = chunks.next() {
        if chunks.peek().is_none() {
            flags |= END_HEADERS;
        }
        write_frame(to, kind, flags, stream, chunk).await?;
        kind = CONTINUATION;
        flags = 0;
    }
    Ok(())
}

async fn write_frame(
    to: &mut (impl AsyncWrite + Unpin),
    kind: u8,
    flags: u8,
    stream: u32,
    payload: &[u8],
) -> std::io::Result<()> {
    let len = (payload.len() as u32).to_be_bytes();
    let id = stream.to_be_bytes();
    to.write_all(&[
        len[1], len[2], len[3], kind, flags, id[0], id[1], id[2], id[3],
    ])
    .await?;
    to.write_all(payload).await
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

/// The server's end of a rewritten connection.
pub struct Normalized(DuplexStream);

impl tonic::transport::server::Connected for Normalized {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Normalized {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Normalized {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A HEADERS frame as grpc-go sends the kubelet's GetInfo: the socket's path as authority.
    fn request(encoder: &mut hpack::Encoder<'_>, stream: u32, authority: &[u8]) -> Vec<u8> {
        let block = encoder.encode(vec![
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"http"),
            (b":path", b"/pluginregistration.Registration/GetInfo"),
            (b":authority", authority),
            (b"content-type", b"application/grpc"),
        ]);
        let mut frame = Vec::new();
        let len = (block.len() as u32).to_be_bytes();
        let id = stream.to_be_bytes();
        frame.extend_from_slice(&[len[1], len[2], len[3], HEADERS, END_HEADERS]);
        frame.extend_from_slice(&id);
        frame.extend_from_slice(&block);
        frame
    }

    #[tokio::test]
    async fn the_authority_becomes_localhost_and_the_rest_passes_unchanged() {
        let mut client = hpack::Encoder::new();
        let path = b"/var/lib/kubelet/plugins_registry/rwxnfs.csi.io-reg.sock";
        let mut input = PREFACE.to_vec();
        // SETTINGS (empty), then two requests (the second uses the dynamic table), then DATA.
        input.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
        input.extend(request(&mut client, 1, path));
        input.extend(request(&mut client, 3, path));
        input.extend_from_slice(&[0, 0, 2, 0x0, END_STREAM, 0, 0, 0, 3, 0xab, 0xcd]);
        let (mut out, sink) = tokio::io::duplex(1 << 16);
        rewrite(&input[..], sink).await.unwrap();
        let mut got = Vec::new();
        out.read_to_end(&mut got).await.unwrap();

        assert_eq!(&got[..PREFACE.len()], PREFACE);
        let mut rest = &got[PREFACE.len()..];
        let mut server = hpack::Decoder::new();
        let mut seen = Vec::new();
        while !rest.is_empty() {
            let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
            let (kind, flags, stream) = (rest[3], rest[4], rest[8] as u32);
            let payload = &rest[9..9 + len];
            if kind == HEADERS {
                assert_ne!(flags & END_HEADERS, 0);
                let headers = server.decode(payload).unwrap();
                let authority = headers.iter().find(|(n, _)| n == b":authority").unwrap();
                assert_eq!(authority.1, b"localhost");
                let path = headers.iter().find(|(n, _)| n == b":path").unwrap();
                assert_eq!(path.1, b"/pluginregistration.Registration/GetInfo");
            }
            seen.push((kind, stream, payload.to_vec()));
            rest = &rest[9 + len..];
        }
        let kinds: Vec<(u8, u32)> = seen.iter().map(|(k, s, _)| (*k, *s)).collect();
        assert_eq!(kinds, [(0x4, 0), (HEADERS, 1), (HEADERS, 3), (0x0, 3)]);
        assert_eq!(seen[3].2, [0xab, 0xcd]);
    }

    #[tokio::test]
    async fn a_header_block_split_over_continuations_and_padded_is_reassembled() {
        let mut client = hpack::Encoder::new();
        let block = client.encode(vec![
            (&b":method"[..], &b"POST"[..]),
            (b":path", b"/x"),
            (b":authority", b"/a/path.sock"),
        ]);
        let (first, second) = block.split_at(block.len() / 2);
        let mut input = PREFACE.to_vec();
        // HEADERS, padded with 3 bytes, END_STREAM, no END_HEADERS; then a CONTINUATION.
        let len = (1 + first.len() + 3) as u8;
        input.extend_from_slice(&[0, 0, len, HEADERS, PADDED | END_STREAM, 0, 0, 0, 5, 3]);
        input.extend_from_slice(first);
        input.extend_from_slice(&[0, 0, 0]);
        input.extend_from_slice(&[
            0,
            0,
            second.len() as u8,
            CONTINUATION,
            END_HEADERS,
            0,
            0,
            0,
            5,
        ]);
        input.extend_from_slice(second);
        let (mut out, sink) = tokio::io::duplex(1 << 16);
        rewrite(&input[..], sink).await.unwrap();
        let mut got = Vec::new();
        out.read_to_end(&mut got).await.unwrap();
        let frame = &got[PREFACE.len()..];
        assert_eq!(frame[3], HEADERS);
        assert_eq!(frame[4], END_STREAM | END_HEADERS);
        let len = u32::from_be_bytes([0, frame[0], frame[1], frame[2]]) as usize;
        let headers = hpack::Decoder::new().decode(&frame[9..9 + len]).unwrap();
        assert!(headers.contains(&(b":authority".to_vec(), b"localhost".to_vec())));
        assert_eq!(frame.len(), 9 + len);
    }

    #[tokio::test]
    async fn garbage_ends_the_connection_with_an_error_not_a_panic() {
        let mut input = PREFACE.to_vec();
        input.extend_from_slice(&[
            0,
            0,
            4,
            HEADERS,
            END_HEADERS,
            0,
            0,
            0,
            1,
            0xff,
            0xff,
            0xff,
            0xff,
        ]);
        let (_out, sink) = tokio::io::duplex(1 << 16);
        assert!(rewrite(&input[..], sink).await.is_err());
        let mut input = PREFACE.to_vec();
        input.extend_from_slice(&[0, 0, 1, HEADERS, PADDED | END_HEADERS, 0, 0, 0, 1, 9]);
        let (_out, sink) = tokio::io::duplex(1 << 16);
        assert!(rewrite(&input[..], sink).await.is_err());
    }
}
