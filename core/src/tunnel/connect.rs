//! An established CONNECT stream, on whichever side: the bytes of one
//! tunnelled connection, after the request was answered 200.
//!
//! Two ways to carry it:
//! - [`ConnectStream::pump`] into a TCP socket (ztunnel): payload chunks go
//!   between quinn and the socket without a copy, with half-close and
//!   resets mapped both ways (see [`super::pump`]);
//! - [`ConnectStream::into_io`], a byte stream ([`AsyncRead`] +
//!   [`AsyncWrite`]) a protocol implementation runs on, e.g. hyper serving
//!   HTTP at the waypoint: `hyper_util::rt::TokioIo::new(stream.into_io())`.
//!
//! Either way the stream is counted in the tunnel metrics (opened, active,
//! closed, bytes) from its creation until it is dropped.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::io::StreamReader;
use tokio_util::sync::CancellationToken;

use super::http3::code::H3_CONNECT_ERROR;
use super::http3::frame;
use super::http3::stream::{RecvData, SendData, StreamError};
use super::pump::{pump, Transfer};
use crate::metrics::{StreamLabels, TunnelMetrics};

/// Payload bytes through one stream so far, readable while it is in use.
#[derive(Debug, Default)]
pub struct ByteCounts {
    sent: AtomicU64,
    received: AtomicU64,
}

impl ByteCounts {
    /// Bytes sent into the stream (to the peer).
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Bytes received from the stream (from the peer).
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    fn add(&self, sent: u64, received: u64) {
        self.sent.fetch_add(sent, Ordering::Relaxed);
        self.received.fetch_add(received, Ordering::Relaxed);
    }
}

/// Counts one stream in the tunnel metrics while it lives.
struct Counted {
    metrics: Arc<TunnelMetrics>,
    labels: StreamLabels,
    bytes: Arc<ByteCounts>,
    opened: std::time::Instant,
}

impl Counted {
    fn new(metrics: Arc<TunnelMetrics>, labels: StreamLabels) -> Self {
        metrics.streams_opened.get_or_create(&labels).inc();
        metrics.streams_active.inc();
        Counted {
            metrics,
            labels,
            bytes: Arc::default(),
            opened: std::time::Instant::now(),
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let m = &self.metrics;
        m.streams_active.dec();
        m.streams_closed.get_or_create(&self.labels).inc();
        m.stream_ended(&self.labels.direction, self.opened);
        m.bytes_sent
            .get_or_create(&self.labels)
            .inc_by(self.bytes.sent());
        m.bytes_received
            .get_or_create(&self.labels)
            .inc_by(self.bytes.received());
    }
}

/// An answered CONNECT stream. Dropping it unused finishes the sending
/// side and stops the receiving one.
pub struct ConnectStream {
    send: SendData,
    recv: RecvData,
    counted: Counted,
    /// Held as long as the stream (e.g. the client pool's count of streams
    /// on a connection).
    guard: Box<dyn std::any::Any + Send + Sync>,
}

impl ConnectStream {
    pub(crate) fn new(
        send: SendData,
        recv: RecvData,
        metrics: Arc<TunnelMetrics>,
        labels: StreamLabels,
        guard: Box<dyn std::any::Any + Send + Sync>,
    ) -> Self {
        ConnectStream {
            send,
            recv,
            counted: Counted::new(metrics, labels),
            guard,
        }
    }

    /// The guard it holds, if of type `T` (for tests of who holds what).
    #[cfg(test)]
    pub(crate) fn guard<T: 'static>(&self) -> Option<&T> {
        self.guard.downcast_ref()
    }

    /// Its byte counts, live (they stay readable after the stream is gone).
    pub fn bytes(&self) -> Arc<ByteCounts> {
        self.counted.bytes.clone()
    }

    /// The metric labels of the stream (direction and both identities).
    pub fn labels(&self) -> &StreamLabels {
        &self.counted.labels
    }

    /// Carries `tcp` through the stream until both directions are done, one
    /// side resets, or `stop` is cancelled.
    pub async fn pump(self, tcp: TcpStream, stop: CancellationToken) -> Transfer {
        let t = pump(tcp, self.send, self.recv, &stop).await;
        self.counted.bytes.add(t.sent, t.received);
        t
    }

    /// The stream as a byte stream for a protocol implementation.
    pub fn into_io(self) -> ConnectIo {
        let bytes = self.counted.bytes.clone();
        let recv_bytes = bytes.clone();
        // After an error the stream ends: a frame that was refused must
        // not be read on as if it had not been.
        let chunks = futures::stream::unfold(Some(self.recv), move |recv| {
            let counts = recv_bytes.clone();
            async move {
                let mut recv = recv?;
                match recv.recv().await {
                    Ok(Some(b)) => {
                        counts.add(0, b.len() as u64);
                        Some((Ok(b), Some(recv)))
                    }
                    Ok(None) => None,
                    Err(e) => {
                        recv.stop(H3_CONNECT_ERROR);
                        Some((Err(io_error(e)), None))
                    }
                }
            }
        });
        ConnectIo {
            reader: StreamReader::new(Box::pin(chunks)),
            send: self.send.into_inner(),
            head: BytesMut::new(),
            frame_left: 0,
            state: WriteState::Open,
            bytes,
            _counted: self.counted,
            _guard: self.guard,
        }
    }
}

/// A stream error as the I/O error a byte-stream user expects: a reset is
/// `ConnectionReset`, a protocol violation `InvalidData`.
fn io_error(e: StreamError) -> io::Error {
    let kind = match e {
        StreamError::Reset(_) => io::ErrorKind::ConnectionReset,
        StreamError::Closed(_) => io::ErrorKind::ConnectionAborted,
        StreamError::Truncated | StreamError::Frame(_) => io::ErrorKind::InvalidData,
    };
    io::Error::new(kind, e)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteState {
    Open,
    /// FIN sent (shutdown).
    Finished,
    /// RESET_STREAM sent.
    Reset,
}

/// Most payload put in one DATA frame by [`ConnectIo`]'s writes.
const MAX_FRAME: usize = 64 * 1024;

/// A CONNECT stream as [`AsyncRead`] + [`AsyncWrite`]: reads yield the DATA
/// payload the peer sends (end of stream at its FIN; a reset is an error),
/// writes go out as DATA frames, shutdown sends FIN.
///
/// Dropped without a shutdown, it resets the stream (as a TCP socket
/// closed with unsent or unread data would): a protocol implementation
/// shuts down when it ends cleanly, so a drop without one is an abort
/// (an error, a stop), and the peer must not take a cut-off body for a
/// whole one.
pub struct ConnectIo {
    reader: StreamReader<BoxStream<'static, io::Result<Bytes>>, Bytes>,
    send: quinn::SendStream,
    /// The encoded header of the DATA frame being written, not yet all
    /// handed to quinn.
    head: BytesMut,
    /// Payload bytes the current DATA frame still needs: the header
    /// promised them, so they come before anything else.
    frame_left: usize,
    state: WriteState,
    bytes: Arc<ByteCounts>,
    _counted: Counted,
    _guard: Box<dyn std::any::Any + Send + Sync>,
}

impl ConnectIo {
    /// Its byte counts, live.
    pub fn bytes(&self) -> Arc<ByteCounts> {
        self.bytes.clone()
    }

    /// Abandons the sending side (RESET_STREAM with H3_CONNECT_ERROR), as
    /// a TCP reset would; later writes fail. The receiving side is stopped
    /// when the stream is dropped.
    pub fn reset(&mut self) {
        if self.state == WriteState::Open {
            let _ = self.send.reset(H3_CONNECT_ERROR.into());
            self.state = WriteState::Reset;
        }
    }

    /// Hands the pending frame header to quinn.
    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.head.is_empty() {
            let n = ready!(Pin::new(&mut self.send).poll_write(cx, &self.head))?;
            let _ = self.head.split_to(n);
        }
        Poll::Ready(Ok(()))
    }

    fn closed(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::BrokenPipe,
            "the stream's sending side is closed",
        )
    }
}

impl AsyncRead for ConnectIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnectIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.state != WriteState::Open {
            return Poll::Ready(Err(this.closed()));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.frame_left == 0 && this.head.is_empty() {
            this.frame_left = buf.len().min(MAX_FRAME);
            frame::put_header(&mut this.head, frame::DATA, this.frame_left as u64);
        }
        ready!(this.poll_head(cx))?;
        let n = buf.len().min(this.frame_left);
        let written = ready!(Pin::new(&mut this.send).poll_write(cx, &buf[..n]))?;
        this.frame_left -= written;
        this.bytes.add(written as u64, 0);
        Poll::Ready(Ok(written))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // quinn sends what it was handed on its own; only a header of ours
        // may still be waiting.
        self.poll_head(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.state {
            WriteState::Finished => return Poll::Ready(Ok(())),
            WriteState::Reset => return Poll::Ready(Err(this.closed())),
            WriteState::Open => {}
        }
        if this.frame_left > 0 {
            // The frame promised bytes that will never come.
            this.reset();
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "shut down inside a DATA frame; the stream was reset",
            )));
        }
        ready!(this.poll_head(cx))?;
        this.state = WriteState::Finished;
        this.send
            .finish()
            .map_err(|e| io::Error::new(io::ErrorKind::BrokenPipe, e))?;
        Poll::Ready(Ok(()))
    }
}

impl Drop for ConnectIo {
    fn drop(&mut self) {
        self.reset();
    }
}

#[cfg(test)]
mod tests;
