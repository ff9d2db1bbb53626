//! What a tunnelled connection speaks, when its Service port does not say:
//! the first bytes of an HTTP/1.x request (a method token and a space) or
//! of the HTTP/2 preface (`PRI * HTTP/2.0`) make it HTTP; anything else,
//! or nothing within [`DETECT_TIMEOUT`] (a protocol where the server
//! speaks first), makes it opaque TCP. The bytes read are replayed to
//! whoever serves the connection ([`Rewind`]).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// How long the client has to send its first bytes before the connection
/// is taken as opaque TCP.
pub const DETECT_TIMEOUT: Duration = Duration::from_millis(500);
/// The longest method token looked for (`OPTIONS`, `CONNECT`: 7).
const MAX_METHOD: usize = 10;

/// What the first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Http,
    Tcp,
    /// Not enough bytes yet.
    More,
}

/// Judges the bytes a client sent first.
pub fn judge(first: &[u8]) -> Verdict {
    for (i, b) in first.iter().enumerate() {
        match b {
            b'A'..=b'Z' if i < MAX_METHOD => continue,
            b' ' if i > 0 => return Verdict::Http,
            _ => return Verdict::Tcp,
        }
    }
    if first.len() >= MAX_METHOD {
        Verdict::Tcp
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
                Verdict::More => continue,
                v => return (v, buf.freeze()),
            },
            // End of stream, an error, or the client waits for the
            // server: not HTTP.
            _ => return (Verdict::Tcp, buf.freeze()),
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
    fn http_request_lines_and_the_h2_preface_are_http_the_rest_is_not() {
        assert_eq!(judge(b"GET / HTTP/1.1\r\n"), Verdict::Http);
        assert_eq!(judge(b"OPTIONS * HTTP/1.1"), Verdict::Http);
        assert_eq!(judge(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Verdict::Http);
        assert_eq!(judge(b"GE"), Verdict::More);
        assert_eq!(judge(b""), Verdict::More);
        assert_eq!(judge(b"\x16\x03\x01\x02\x00"), Verdict::Tcp, "TLS");
        assert_eq!(judge(b"ping\n"), Verdict::Tcp);
        assert_eq!(judge(b" GET"), Verdict::Tcp);
        assert_eq!(
            judge(b"ABCDEFGHIJK"),
            Verdict::Tcp,
            "no method is that long"
        );
        assert_eq!(judge(b"*3\r\n$3\r\nSET"), Verdict::Tcp, "redis");
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
    async fn a_silent_client_is_tcp_after_the_timeout() {
        let (_a, mut b) = tokio::io::duplex(64);
        let started = tokio::time::Instant::now();
        let (v, first) = detect(&mut b).await;
        assert_eq!((v, first.len()), (Verdict::Tcp, 0));
        assert_eq!(started.elapsed(), DETECT_TIMEOUT);
    }
}
