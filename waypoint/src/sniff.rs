//! What a tunnelled connection speaks, when its Service port does not say.
//! Anything that could be an HTTP request is taken as HTTP (hyper then
//! serves it, or refuses it with 400): leading blank lines (which HTTP/1.1
//! servers skip), then a method token (any RFC 9110 token characters:
//! extension and lowercase methods too) and a space; the HTTP/2 preface
//! (`PRI * HTTP/2.0`) is one such line. A client that stops after part of
//! a token is HTTP too. Only a first byte that cannot start a request, or
//! a client that sends nothing within [`DETECT_TIMEOUT`] (a protocol where
//! the server speaks first), makes the connection opaque TCP: so no HTTP
//! request reaches an app around the waypoint's header handling
//! (`x-forwarded-client-cert`) and routes. The bytes read are replayed to
//! whoever serves the connection ([`Rewind`]).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// How long the client has to send its first bytes before the connection
/// is taken as opaque TCP.
pub const DETECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Bytes looked at before deciding; a token this long without a space
/// is still handed to HTTP, which refuses it.
const LOOK: usize = 32;

/// What the first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Http,
    Tcp,
    /// Not enough bytes yet.
    More,
}

/// RFC 9110 `tchar`: what a method token is made of.
fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Judges the bytes a client sent first.
pub fn judge(first: &[u8]) -> Verdict {
    // Blank lines before a request line are skipped by HTTP/1.1 servers.
    let start = first
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .unwrap_or(first.len());
    let rest = &first[start..];
    for (i, b) in rest.iter().enumerate() {
        match b {
            b' ' if i > 0 => return Verdict::Http,
            b if tchar(*b) => continue,
            _ if i == 0 => return Verdict::Tcp,
            // Part of a token, then something else: a malformed request
            // line, for HTTP to refuse.
            _ => return Verdict::Http,
        }
    }
    if rest.len() >= LOOK {
        Verdict::Http
    } else {
        Verdict::More
    }
}

/// Reads from `io` until [`judge`] decides, the client stops sending, or
/// [`DETECT_TIMEOUT`] passes (then: TCP); returns the verdict and the
/// bytes read.
pub async fn detect<T: AsyncRead + Unpin>(io: &mut T) -> (Verdict, Bytes) {
    let mut buf = BytesMut::with_capacity(64);
    let deadline = tokio::time::Instant::now() + DETECT_TIMEOUT;
    loop {
        let read = tokio::time::timeout_at(deadline, io.read_buf(&mut buf)).await;
        match read {
            Ok(Ok(n)) if n > 0 => match judge(&buf) {
                Verdict::More if buf.len() < 2 * LOOK => continue,
                // Only blank lines so far: HTTP (it skips them too).
                Verdict::More => return (Verdict::Http, buf.freeze()),
                v => return (v, buf.freeze()),
            },
            // Silence, end of stream or an error: TCP if nothing came
            // (the server may be meant to speak first); a partial token
            // or blank lines are HTTP's to refuse.
            _ => {
                let v = if buf.is_empty() {
                    Verdict::Tcp
                } else {
                    Verdict::Http
                };
                return (v, buf.freeze());
            }
        }
    }
}

/// A stream whose first reads return bytes already read from it.
pub struct Rewind<T> {
    prefix: Bytes,
    inner: T,
}

impl<T> Rewind<T> {
    pub fn new(prefix: Bytes, inner: T) -> Self {
        Rewind { prefix, inner }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anything_like_a_request_line_is_http_the_rest_is_not() {
        let http = [
            &b"GET / HTTP/1.1\r\n"[..],
            b"OPTIONS * HTTP/1.1",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"\r\nGET / HTTP/1.1",
            b"get / HTTP/1.1",
            b"M-SEARCH * HTTP/1.1",
            b"MKWORKSPACE /x HTTP/1.1",
            // A token cut short, or too long: HTTP refuses it.
            b"ping\n",
            b"*3\r\n$3\r\nSET",
            &[b'A'; 40],
        ];
        for h in http {
            assert_eq!(judge(h), Verdict::Http, "{:?}", String::from_utf8_lossy(h));
        }
        for more in [&b"GE"[..], b"\r\n", b""] {
            assert_eq!(judge(more), Verdict::More, "{more:?}");
        }
        for tcp in [&b"\x16\x03\x01\x02\x00"[..], b" GET", b"\x00\x00\x00\x08"] {
            assert_eq!(judge(tcp), Verdict::Tcp, "{tcp:?}");
        }
    }

    #[tokio::test]
    async fn the_bytes_read_are_replayed() {
        let (mut a, b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut a, b"GET /x HTTP/1.1\r\n")
            .await
            .unwrap();
        let mut b = b;
        let (v, first) = detect(&mut b).await;
        assert_eq!(v, Verdict::Http);
        let mut r = Rewind::new(first, b);
        let mut out = vec![0u8; 17];
        r.read_exact(&mut out).await.unwrap();
        assert_eq!(&out, b"GET /x HTTP/1.1\r\n");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_stopping_in_a_method_is_http() {
        let (mut a, mut b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut a, b"GE")
            .await
            .unwrap();
        let (v, first) = detect(&mut b).await;
        assert_eq!((v, &first[..]), (Verdict::Http, &b"GE"[..]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_tcp_after_the_timeout() {
        let (_a, mut b) = tokio::io::duplex(64);
        let started = tokio::time::Instant::now();
        let (v, first) = detect(&mut b).await;
        assert_eq!((v, first.len()), (Verdict::Tcp, 0));
        assert_eq!(started.elapsed(), DETECT_TIMEOUT);
    }
}
