//! Copies bytes between a TCP connection and a CONNECT stream.
//!
//! - Backpressure: one direction reads TCP only after the previous chunk was
//!   accepted by quinn's send buffer, and writes TCP before reading more from
//!   the stream, so memory per tunnel is bounded by the QUIC windows.
//! - Half-close: TCP EOF finishes the stream (FIN); stream FIN shuts down the
//!   TCP write side. Each direction ends on its own.
//! - Reset: a TCP error (e.g. RST from the app) resets the stream with
//!   H3_CONNECT_ERROR; a stream reset from the peer aborts the TCP connection
//!   with RST (SO_LINGER 0). Either way the other direction stops too.
//! - Stop: cancelling the caller's token (e.g. policy no longer allows the
//!   connection) aborts both ways as a reset does.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};
use futures::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::http3::code::H3_CONNECT_ERROR;
use super::http3::stream::{RecvData, SendData, StreamError};

/// The sending half of a CONNECT stream.
pub trait StreamSend: Send {
    fn send(
        &mut self,
        data: Bytes,
    ) -> impl std::future::Future<Output = Result<(), StreamError>> + Send;
    fn finish(&mut self) -> Result<(), StreamError>;
    fn reset(&mut self, code: u32);
}

/// The receiving half of a CONNECT stream.
pub trait StreamRecv: Send {
    fn recv(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Option<Bytes>, StreamError>> + Send;
    fn stop(&mut self, code: u32);
}

impl StreamSend for SendData {
    async fn send(&mut self, data: Bytes) -> Result<(), StreamError> {
        SendData::send(self, data).await
    }
    fn finish(&mut self) -> Result<(), StreamError> {
        SendData::finish(self)
    }
    fn reset(&mut self, code: u32) {
        SendData::reset(self, code)
    }
}

impl StreamRecv for RecvData {
    async fn recv(&mut self) -> Result<Option<Bytes>, StreamError> {
        RecvData::recv(self).await
    }
    fn stop(&mut self, code: u32) {
        RecvData::stop(self, code)
    }
}

/// How a tunnelled connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Both directions finished with FIN.
    Closed,
    /// The application side reset the TCP connection.
    TcpReset,
    /// The peer reset the stream (or the QUIC connection died).
    StreamReset,
    /// Cut by the caller's stop token; both sides saw a reset.
    Stopped,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Closed => "closed",
            Outcome::TcpReset => "tcp_reset",
            Outcome::StreamReset => "stream_reset",
            Outcome::Stopped => "stopped",
        }
    }
}

/// What went through a tunnel.
#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    /// Bytes read from TCP and sent into the stream.
    pub sent: u64,
    /// Bytes received from the stream and written to TCP.
    pub received: u64,
    pub outcome: Outcome,
}

const CHUNK: usize = 64 * 1024;

/// Chunks received from a stream, written to TCP together: quinn hands out
/// one chunk per QUIC packet (~1.4 KB), and a write per chunk cost a syscall
/// per packet (see docs/performance.md).
#[derive(Default)]
struct Batch {
    chunks: VecDeque<Bytes>,
    len: usize,
}

impl Batch {
    /// Enough for one write: a TCP read on the other side takes up to `CHUNK`.
    const MAX_BYTES: usize = CHUNK;
    /// Slices per `writev` (well under the kernel's 1024).
    const MAX_CHUNKS: usize = 64;

    fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.len += b.len();
            self.chunks.push_back(b);
        }
    }

    fn full(&self) -> bool {
        self.len >= Self::MAX_BYTES || self.chunks.len() >= Self::MAX_CHUNKS
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Writes every chunk (vectored) and empties the batch.
    async fn write_all<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> std::io::Result<()> {
        while !self.chunks.is_empty() {
            let slices: Vec<IoSlice<'_>> = self.chunks.iter().map(|c| IoSlice::new(c)).collect();
            let mut n = w.write_vectored(&slices).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.len -= n;
            while n > 0 {
                let front = self.chunks.front_mut().expect("wrote no more than held");
                if n >= front.len() {
                    n -= front.len();
                    self.chunks.pop_front();
                } else {
                    front.advance(n);
                    n = 0;
                }
            }
        }
        Ok(())
    }
}

/// Pumps until both directions are done, one side resets, or `stop` is
/// cancelled.
pub async fn pump(
    tcp: TcpStream,
    mut tx: impl StreamSend,
    mut rx: impl StreamRecv,
    stop: &CancellationToken,
) -> Transfer {
    let mut tcp = tcp;
    // Borrowed halves: tokio's owned write half would send a FIN when
    // dropped, turning a reset into a clean close.
    let (mut rd, mut wr) = tcp.split();
    let abort = stop.child_token();

    let up = async {
        let mut sent = 0u64;
        // One buffer for the connection: once quinn has released a sent
        // chunk, `reserve` reuses its memory instead of allocating anew.
        let mut buf = BytesMut::with_capacity(CHUNK);
        loop {
            buf.reserve(CHUNK);
            let read = tokio::select! {
                r = rd.read_buf(&mut buf) => r,
                _ = abort.cancelled() => { tx.reset(H3_CONNECT_ERROR); return (sent, None); }
            };
            match read {
                Ok(0) => {
                    // A peer that already went away makes finish fail; the
                    // other direction reports that.
                    let _ = tx.finish();
                    return (sent, None);
                }
                Ok(n) => {
                    let r = tokio::select! {
                        r = tx.send(buf.split().freeze()) => r,
                        _ = abort.cancelled() => { tx.reset(H3_CONNECT_ERROR); return (sent, None); }
                    };
                    if r.is_err() {
                        abort.cancel();
                        return (sent, Some(Outcome::StreamReset));
                    }
                    sent += n as u64;
                }
                Err(_) => {
                    tx.reset(H3_CONNECT_ERROR);
                    abort.cancel();
                    return (sent, Some(Outcome::TcpReset));
                }
            }
        }
    };

    let down = async {
        let mut received = 0u64;
        let mut batch = Batch::default();
        let outcome = loop {
            let r = tokio::select! {
                r = rx.recv() => r,
                _ = abort.cancelled() => break None,
            };
            // What else has already arrived goes out in the same write. A
            // read cut short by `now_or_never` loses nothing: the stream
            // keeps what it did not hand out.
            let mut next = r.map(|d| d.map(|d| batch.push(d)));
            while let Ok(Some(())) = next {
                if batch.full() {
                    break;
                }
                match rx.recv().now_or_never() {
                    Some(r) => next = r.map(|d| d.map(|d| batch.push(d))),
                    None => break,
                }
            }
            if !batch.is_empty() {
                let n = batch.len() as u64;
                let w = tokio::select! {
                    w = batch.write_all(&mut wr) => w,
                    _ = abort.cancelled() => break None,
                };
                if w.is_err() {
                    abort.cancel();
                    break Some(Outcome::TcpReset);
                }
                received += n;
            }
            match next {
                Ok(Some(())) => {}
                Ok(None) => {
                    let _ = wr.shutdown().await;
                    return (received, None);
                }
                Err(_) => {
                    abort.cancel();
                    break Some(Outcome::StreamReset);
                }
            }
        };
        // Aborting: stop the peer sending, and make the TCP close a RST.
        rx.stop(H3_CONNECT_ERROR);
        let _ = socket2::SockRef::from(wr.as_ref()).set_linger(Some(std::time::Duration::ZERO));
        (received, outcome)
    };

    let ((sent, o1), (received, o2)) = tokio::join!(up, down);
    let otherwise = if stop.is_cancelled() {
        // Also when one direction had already finished cleanly: the app
        // must see a reset, not a close it could take for success.
        let _ = socket2::SockRef::from(&tcp).set_linger(Some(std::time::Duration::ZERO));
        Outcome::Stopped
    } else {
        Outcome::Closed
    };
    Transfer {
        sent,
        received,
        outcome: o1.or(o2).unwrap_or(otherwise),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A writer taking at most `step` bytes per call, across slices.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
        calls: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(buf)])
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            self.calls += 1;
            let mut left = self.step;
            for b in bufs {
                let n = b.len().min(left);
                self.out.extend_from_slice(&b[..n]);
                left -= n;
                if left == 0 {
                    break;
                }
            }
            Poll::Ready(Ok(self.step - left))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn write(chunks: &[Vec<u8>], step: usize) -> (Trickle, Batch) {
        let mut batch = Batch::default();
        for c in chunks {
            batch.push(Bytes::from(c.clone()));
        }
        let mut w = Trickle {
            out: Vec::new(),
            step,
            calls: 0,
        };
        futures::executor::block_on(batch.write_all(&mut w)).unwrap();
        (w, batch)
    }

    #[test]
    fn one_write_carries_many_chunks() {
        let chunks = vec![vec![1u8; 1400]; 40];
        let (w, batch) = write(&chunks, usize::MAX);
        assert_eq!(w.calls, 1);
        assert_eq!(w.out, chunks.concat());
        assert!(batch.is_empty());
    }

    #[test]
    fn empty_chunks_are_not_written() {
        let (w, batch) = write(&[vec![], vec![], vec![9]], 5);
        assert_eq!(w.out, vec![9]);
        assert_eq!(w.calls, 1);
        assert!(batch.is_empty() && batch.chunks.is_empty());
        let (w, _) = write(&[vec![]], 5);
        assert_eq!(w.calls, 0, "nothing to write is no write (not WriteZero)");
    }

    #[test]
    fn full_by_bytes_or_by_chunks() {
        let mut b = Batch::default();
        b.push(Bytes::from(vec![0u8; Batch::MAX_BYTES - 1]));
        assert!(!b.full());
        b.push(Bytes::from_static(b"x"));
        assert!(b.full());
        let mut b = Batch::default();
        for _ in 0..Batch::MAX_CHUNKS {
            assert!(!b.full());
            b.push(Bytes::from_static(b"x"));
        }
        assert!(b.full());
    }

    proptest! {
        /// Partial writes at any boundary keep every byte, in order, once.
        #[test]
        fn partial_writes_keep_the_bytes(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..40),
            step in 1usize..700,
        ) {
            let (w, batch) = write(&chunks, step);
            prop_assert_eq!(w.out, chunks.concat());
            prop_assert!(batch.is_empty());
            prop_assert!(batch.chunks.is_empty());
        }
    }
}
