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

use bytes::{Buf, Bytes, BytesMut};
use h3::error::Code;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

type SendStream = h3_quinn::SendStream<Bytes>;
type RecvStream = h3_quinn::RecvStream;

/// The sending half of a CONNECT stream, client or server side.
pub trait StreamSend: Send {
    fn send(
        &mut self,
        data: Bytes,
    ) -> impl std::future::Future<Output = Result<(), h3::error::StreamError>> + Send;
    fn finish(
        &mut self,
    ) -> impl std::future::Future<Output = Result<(), h3::error::StreamError>> + Send;
    fn reset(&mut self, code: Code);
}

/// The receiving half of a CONNECT stream, client or server side.
pub trait StreamRecv: Send {
    fn recv(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Option<Bytes>, h3::error::StreamError>> + Send;
    fn stop(&mut self, code: Code);
}

macro_rules! impl_halves {
    ($stream:ident) => {
        impl StreamSend for h3::$stream::RequestStream<SendStream, Bytes> {
            async fn send(&mut self, data: Bytes) -> Result<(), h3::error::StreamError> {
                self.send_data(data).await
            }
            async fn finish(&mut self) -> Result<(), h3::error::StreamError> {
                h3::$stream::RequestStream::finish(self).await
            }
            fn reset(&mut self, code: Code) {
                self.stop_stream(code)
            }
        }
        impl StreamRecv for h3::$stream::RequestStream<RecvStream, Bytes> {
            async fn recv(&mut self) -> Result<Option<Bytes>, h3::error::StreamError> {
                Ok(self
                    .recv_data()
                    .await?
                    .map(|mut b| b.copy_to_bytes(b.remaining())))
            }
            fn stop(&mut self, code: Code) {
                self.stop_sending(code)
            }
        }
    };
}
impl_halves!(client);
impl_halves!(server);

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
                _ = abort.cancelled() => { tx.reset(Code::H3_CONNECT_ERROR); return (sent, None); }
            };
            match read {
                Ok(0) => {
                    // A peer that already went away makes finish fail; the
                    // other direction reports that.
                    let _ = tx.finish().await;
                    return (sent, None);
                }
                Ok(n) => {
                    let r = tokio::select! {
                        r = tx.send(buf.split().freeze()) => r,
                        _ = abort.cancelled() => { tx.reset(Code::H3_CONNECT_ERROR); return (sent, None); }
                    };
                    if r.is_err() {
                        abort.cancel();
                        return (sent, Some(Outcome::StreamReset));
                    }
                    sent += n as u64;
                }
                Err(_) => {
                    tx.reset(Code::H3_CONNECT_ERROR);
                    abort.cancel();
                    return (sent, Some(Outcome::TcpReset));
                }
            }
        }
    };

    let down = async {
        let mut received = 0u64;
        // h3-quinn 0.0.10 panics in stop_sending if a read was cancelled
        // mid-flight (its stream sits inside the pending read); then we leave
        // the stop to quinn, which sends STOP_SENDING when the stream drops.
        let mut mid_read = false;
        let outcome = loop {
            let r = tokio::select! {
                r = rx.recv() => r,
                _ = abort.cancelled() => { mid_read = true; break None; }
            };
            match r {
                Ok(Some(mut data)) => {
                    let n = data.len() as u64;
                    let w = tokio::select! {
                        w = wr.write_all_buf(&mut data) => w,
                        _ = abort.cancelled() => break None,
                    };
                    if w.is_err() {
                        abort.cancel();
                        break Some(Outcome::TcpReset);
                    }
                    received += n;
                }
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
        if !mid_read {
            rx.stop(Code::H3_CONNECT_ERROR);
        }
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
