//! The benchmark's wire format and its small server.
//!
//! Requests and responses are HTTP/1.1-style messages with a 1 KiB body
//! (`Content-Length: 1024`). The server (`quicmesh-bench serve`, run as a
//! process inside the server pod) answers every request with a 1 KiB
//! response on the same connection, or closes after it when the request says
//! `Connection: close`. No pipelining: one request in flight per connection.
//! A connection that starts with the HTTP/2 preface is served as HTTP/2
//! instead ([`crate::http2`]; the L7 rows use it), so one port speaks both.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Body size of requests and responses.
pub const BODY: usize = 1024;
/// Largest header block accepted.
const MAX_HEADERS: usize = 8 * 1024;
/// A connection idle longer than this is closed by the server.
const SERVER_IDLE: Duration = Duration::from_secs(300);

/// A request with a 1 KiB body; `close` asks the server to close after replying.
pub fn request(close: bool) -> Vec<u8> {
    let conn = if close { "close" } else { "keep-alive" };
    let mut m = format!(
        "POST /echo HTTP/1.1\r\nHost: server\r\nConnection: {conn}\r\nContent-Length: {BODY}\r\n\r\n"
    )
    .into_bytes();
    m.extend(std::iter::repeat_n(b'q', BODY));
    m
}

/// The server's response: 200 with a 1 KiB body.
pub fn response() -> Vec<u8> {
    let mut m = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {BODY}\r\n\r\n"
    )
    .into_bytes();
    m.extend(std::iter::repeat_n(b'm', BODY));
    m
}

/// What the start of `buf` holds once a message's header block is complete:
/// the message's total length and whether it asks to close the connection.
/// `Ok(None)` while the header block is incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<(usize, bool)>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HEADERS {
            bail!("header block longer than {MAX_HEADERS} bytes");
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).context("header block is not UTF-8")?;
    let mut len = 0usize;
    let mut close = false;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            bail!("malformed header line {line:?}");
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            len = value.parse().context("bad Content-Length")?;
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    Ok(Some((end + 4 + len, close)))
}

/// Reads one whole message from a blocking stream into `buf` (cleared
/// first). Returns `Ok(false)` on a clean end of stream before any byte.
pub fn read_message(s: &mut impl Read, buf: &mut Vec<u8>) -> Result<bool> {
    buf.clear();
    let mut chunk = [0u8; 16 * 1024];
    let mut total = None;
    loop {
        if let Some(t) = total {
            if buf.len() >= t {
                return Ok(true);
            }
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            if buf.is_empty() {
                return Ok(false);
            }
            bail!("connection closed in the middle of a message");
        }
        buf.extend_from_slice(&chunk[..n]);
        if total.is_none() {
            total = parse_head(buf)?.map(|(t, _)| t);
        }
    }
}

/// One blocking request/response exchange on `s`.
pub fn exchange(s: &mut (impl Read + Write), req: &[u8], buf: &mut Vec<u8>) -> Result<()> {
    s.write_all(req)?;
    if !read_message(s, buf)? {
        bail!("the server closed the connection instead of answering");
    }
    Ok(())
}

/// Serves on `addr` until killed (`quicmesh-bench serve`).
pub fn serve(addr: SocketAddr, threads: usize) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        eprintln!("serving on {addr}");
        loop {
            let (s, _) = match l.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // Out of fds and the like: back off instead of spinning.
                    eprintln!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            tokio::spawn(async move {
                if let Err(e) = serve_conn(s).await {
                    eprintln!("connection: {e:#}");
                }
            });
        }
    })
}

async fn serve_conn(mut s: tokio::net::TcpStream) -> Result<()> {
    s.set_nodelay(true)?;
    let resp = response();
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    // The first bytes tell HTTP/2 (its preface) from HTTP/1.1; usually the
    // first read decides.
    let preface = crate::http2::PREFACE;
    loop {
        let n = match tokio::time::timeout(SERVER_IDLE, s.read(&mut chunk)).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let k = buf.len().min(preface.len());
        if buf[..k] != preface[..k] {
            break;
        }
        if k == preface.len() {
            return crate::http2::serve_conn(s, buf).await;
        }
    }
    loop {
        // Consume every complete message already buffered.
        while let Some((len, close)) = parse_head(&buf)? {
            if buf.len() < len {
                break;
            }
            buf.drain(..len);
            s.write_all(&resp).await?;
            if close {
                s.shutdown().await?;
                return Ok(());
            }
        }
        let n = match tokio::time::timeout(SERVER_IDLE, s.read(&mut chunk)).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_response_parse_to_their_length() {
        let r = request(true);
        assert_eq!(parse_head(&r).unwrap(), Some((r.len(), true)));
        let r = request(false);
        assert_eq!(parse_head(&r).unwrap(), Some((r.len(), false)));
        let r = response();
        assert_eq!(parse_head(&r).unwrap(), Some((r.len(), false)));
        assert_eq!(parse_head(b"POST / HTTP/1.1\r\nHost").unwrap(), None);
        assert!(parse_head(b"GET / HTTP/1.1\r\nbroken\r\n\r\n").is_err());
    }

    #[test]
    fn read_message_reads_exactly_one_message() {
        let r = response();
        let mut cur = std::io::Cursor::new(r.clone());
        let mut buf = Vec::new();
        assert!(read_message(&mut cur, &mut buf).unwrap());
        assert_eq!(buf, r);
        assert!(!read_message(&mut cur, &mut buf).unwrap());
    }
}
