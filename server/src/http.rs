//! The plain HTTP the scrape and probe endpoints speak (`/metrics`, `/healthz`): one request
//! read within bounds, one answer, the connection closed. Their clients (Prometheus, the
//! kubelet) send a GET and read a status and a short body; an HTTP library would be the
//! larger part of either endpoint.

use std::{future::Future, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// The most of a request head read before it is refused.
const HEAD_LIMIT: usize = 8192;

/// What a handler is asked: a GET of a path (its query cut off). Anything else is answered by
/// [`serve`] itself, without the handler.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Get {
    pub(crate) path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    ServiceUnavailable,
}

impl Status {
    fn line(self) -> &'static str {
        match self {
            Status::Ok => "200 OK",
            Status::BadRequest => "400 Bad Request",
            Status::NotFound => "404 Not Found",
            Status::MethodNotAllowed => "405 Method Not Allowed",
            Status::ServiceUnavailable => "503 Service Unavailable",
        }
    }
}

#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: Status,
    pub(crate) content_type: &'static str,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn text(status: Status, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

/// Serves `handler` on `listener` until `shutdown`. Each connection is one request, bounded in
/// what it may send ([`HEAD_LIMIT`]) and, with its answer, in time (`limit`): a client that
/// stalls is dropped, never waited for.
pub(crate) async fn serve<H, F>(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    limit: Duration,
    handler: H,
) where
    H: Fn(Get) -> F + Clone + Send + 'static,
    F: Future<Output = Answer> + Send,
{
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else { continue };
        let handler = handler.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(limit, answer(stream, handler)).await;
        });
    }
}

async fn answer<H, F>(mut stream: TcpStream, handler: H) -> std::io::Result<()>
where
    H: Fn(Get) -> F,
    F: Future<Output = Answer>,
{
    let head = read_head(&mut stream).await?;
    let answer = match parse(&head) {
        Ok(get) => handler(get).await,
        Err(answer) => answer,
    };
    let allow = if answer.status == Status::MethodNotAllowed {
        "Allow: GET\r\n"
    } else {
        ""
    };
    let response = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n{}",
        answer.status.line(),
        answer.content_type,
        answer.body.len(),
        answer.body
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// The request head: up to its blank line, the connection's end, or [`HEAD_LIMIT`] bytes.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < HEAD_LIMIT {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(head)
}

/// The GET a head asks for, or the answer to a head that is not one.
fn parse(head: &[u8]) -> Result<Get, Answer> {
    let bad = |why: &str| Answer::text(Status::BadRequest, format!("{why}\n"));
    let text = String::from_utf8_lossy(head);
    let Some((line, _)) = text.split_once("\r\n") else {
        return Err(bad("not an HTTP/1.1 request: no complete request line"));
    };
    let [method, target, version] = line.split(' ').collect::<Vec<_>>()[..] else {
        return Err(bad("not an HTTP/1.1 request line: METHOD TARGET HTTP/1.1"));
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Err(bad("not an HTTP/1.1 request line: METHOD TARGET HTTP/1.1"));
    }
    if method != "GET" {
        return Err(Answer::text(Status::MethodNotAllowed, "only GET\n"));
    }
    let path = target.split(['?', '#']).next().unwrap_or_default();
    Ok(Get {
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(head: &[u8]) -> Status {
        match parse(head) {
            Ok(_) => Status::Ok,
            Err(answer) => answer.status,
        }
    }

    #[test]
    fn a_get_is_its_path_without_the_query() {
        assert_eq!(
            parse(b"GET /healthz?verbose=1 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap(),
            Get {
                path: "/healthz".into()
            }
        );
    }

    #[test]
    fn other_methods_are_not_allowed() {
        for head in [
            &b"POST /healthz HTTP/1.1\r\n\r\n"[..],
            b"HEAD /metrics HTTP/1.0\r\n\r\n",
        ] {
            assert_eq!(status(head), Status::MethodNotAllowed);
        }
    }

    #[test]
    fn what_is_not_a_request_line_is_a_bad_request() {
        for head in [
            &b""[..],
            b"GET /healthz",
            b"GET\r\n\r\n",
            b"GET /healthz HTTP/1.1 extra\r\n\r\n",
            b"GET healthz HTTP/1.1\r\n\r\n",
            b"GET /healthz SPDY/3\r\n\r\n",
            b"\xff\xfe\x00\r\n\r\n",
        ] {
            assert_eq!(status(head), Status::BadRequest, "{head:?}");
        }
    }
}
