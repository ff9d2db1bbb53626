//! The connection-level half of HTTP/3 (RFC 9114 §6.2, §7.2.4, §5.2):
//! our control stream with SETTINGS (and GOAWAY when draining), and the
//! peer's unidirectional streams — its control stream (SETTINGS first,
//! then GOAWAY), its QPACK streams (held to what a table of capacity 0
//! allows), and nothing else.
//!
//! A protocol error closes the QUIC connection with its HTTP/3 error code;
//! each is logged with its reason and counted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::code;
use super::frame::{self, FrameError, Settings};
use super::stream::{FrameReader, StreamError};
use crate::metrics::TunnelMetrics;

/// Which end of the connection we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

impl Side {
    /// The metric label of refusals on this side.
    fn direction(self) -> &'static str {
        match self {
            Side::Client => "outbound",
            Side::Server => "inbound",
        }
    }
}

/// Largest frame accepted on the peer's control stream (SETTINGS, GOAWAY
/// and extensions are a few bytes; unknown frames are skipped, not held).
const MAX_CONTROL_FRAME: u64 = 4096;

/// A peer's unidirectional stream must say what it is within this.
const STREAM_TYPE_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP/3 connection's shared state.
pub struct Http3 {
    quic: quinn::Connection,
    side: Side,
    control: tokio::sync::Mutex<quinn::SendStream>,
    /// The stream ID of the peer's last GOAWAY (`u64::MAX`: none yet).
    goaway: AtomicU64,
    peer_settings: OnceLock<Settings>,
    /// The peer's control, QPACK encoder and decoder streams, once seen.
    seen: [AtomicBool; 3],
    metrics: Arc<TunnelMetrics>,
}

impl Http3 {
    /// Opens our control stream with SETTINGS (`max_field_section` is the
    /// largest header section we accept) and starts serving the peer's
    /// unidirectional streams until the connection ends.
    pub async fn start(
        quic: quinn::Connection,
        side: Side,
        max_field_section: u64,
        metrics: Arc<TunnelMetrics>,
    ) -> Result<Arc<Self>, StreamError> {
        let mut control = quic
            .open_uni()
            .await
            .map_err(|e| StreamError::Closed(e.to_string()))?;
        let mut payload = Vec::new();
        Settings {
            qpack_max_table_capacity: 0,
            qpack_blocked_streams: 0,
            max_field_section_size: Some(max_field_section),
        }
        .encode(&mut payload);
        let mut first = BytesMut::new();
        frame::put_varint(&mut first, frame::STREAM_CONTROL);
        first.extend_from_slice(&frame::frame(frame::SETTINGS, &payload));
        control.write_all_chunks(&mut [first.freeze()]).await?;
        let h3 = Arc::new(Http3 {
            quic,
            side,
            control: tokio::sync::Mutex::new(control),
            goaway: AtomicU64::new(u64::MAX),
            peer_settings: OnceLock::new(),
            seen: Default::default(),
            metrics,
        });
        tokio::spawn(h3.clone().peer_streams());
        Ok(h3)
    }

    pub fn quic(&self) -> &quinn::Connection {
        &self.quic
    }

    /// Whether the peer sent GOAWAY: no new request goes here.
    pub fn going_away(&self) -> bool {
        self.goaway.load(Ordering::Acquire) != u64::MAX
    }

    /// The peer's SETTINGS, once they arrived.
    pub fn peer_settings(&self) -> Option<Settings> {
        self.peer_settings.get().copied()
    }

    /// Sends GOAWAY: requests on streams from `id` on will not be served.
    pub async fn goaway(&self, id: u64) -> Result<(), StreamError> {
        let f = {
            let mut p = Vec::new();
            frame::put_varint(&mut p, id);
            frame::frame(frame::GOAWAY, &p)
        };
        let mut control = self.control.lock().await;
        control.write_all_chunks(&mut [Bytes::from(f)]).await?;
        Ok(())
    }

    /// Closes the connection for a protocol error, logged and counted.
    pub fn fail(&self, code: u32, label: &'static str, reason: &str) {
        tracing::warn!(
            error_code = format_args!("{code:#x}"),
            reason,
            "HTTP/3 protocol error; closing the tunnel connection"
        );
        self.metrics.refused(self.side.direction(), label);
        self.quic.close(code.into(), label.as_bytes());
    }

    async fn peer_streams(self: Arc<Self>) {
        while let Ok(recv) = self.quic.accept_uni().await {
            tokio::spawn(self.clone().peer_stream(FrameReader::new(recv)));
        }
    }

    /// One unidirectional stream of the peer, by its type.
    async fn peer_stream(self: Arc<Self>, mut r: FrameReader) {
        // The type is the first varint. A stream that never sends it holds
        // one of the few unidirectional streams QUIC lets the peer open,
        // and only until this bound.
        let ty = match tokio::time::timeout(STREAM_TYPE_TIMEOUT, r.varint()).await {
            Ok(Ok(Some(t))) => t,
            Err(_) => {
                let _ = r.stream().stop(code::H3_STREAM_CREATION_ERROR.into());
                return;
            }
            Ok(_) => return,
        };
        let slot = match ty {
            frame::STREAM_CONTROL => 0,
            frame::STREAM_QPACK_ENCODER => 1,
            frame::STREAM_QPACK_DECODER => 2,
            frame::STREAM_PUSH => {
                // Clients must not push; we never allow a server to.
                let (c, l) = match self.side {
                    Side::Server => (code::H3_STREAM_CREATION_ERROR, "h3_stream_creation"),
                    Side::Client => (code::H3_ID_ERROR, "h3_push"),
                };
                self.fail(c, l, "push stream");
                return;
            }
            _ => {
                // Unknown types (grease) are ignored (RFC 9114 §6.2).
                let _ = r.stream().stop(code::H3_STREAM_CREATION_ERROR.into());
                return;
            }
        };
        if self.seen[slot].swap(true, Ordering::AcqRel) {
            self.fail(
                code::H3_STREAM_CREATION_ERROR,
                "h3_stream_creation",
                "second control or QPACK stream",
            );
            return;
        }
        match slot {
            0 => self.control_stream(r).await,
            1 => self.encoder_stream(r).await,
            _ => self.decoder_stream(r).await,
        }
    }

    async fn control_stream(self: Arc<Self>, mut r: FrameReader) {
        let mut first = true;
        loop {
            let h = match r.header().await {
                Ok(Some(h)) => h,
                Ok(None) | Err(StreamError::Truncated) | Err(StreamError::Reset(_)) => {
                    self.fail(
                        code::H3_CLOSED_CRITICAL_STREAM,
                        "h3_closed_critical_stream",
                        "peer closed its control stream",
                    );
                    return;
                }
                // The connection is gone.
                Err(_) => return,
            };
            if first && h.ty != frame::SETTINGS {
                self.fail(
                    code::H3_MISSING_SETTINGS,
                    "h3_missing_settings",
                    "control stream does not start with SETTINGS",
                );
                return;
            }
            let known = matches!(
                h.ty,
                frame::SETTINGS | frame::GOAWAY | frame::MAX_PUSH_ID | frame::CANCEL_PUSH
            );
            if known && h.len > MAX_CONTROL_FRAME {
                let e = FrameError::TooLarge {
                    what: "control",
                    len: h.len,
                    limit: MAX_CONTROL_FRAME,
                };
                self.fail(code::H3_EXCESSIVE_LOAD, "h3_excessive_load", &e.to_string());
                return;
            }
            let outcome = match h.ty {
                frame::SETTINGS if first => r.payload(h.len).await.map(|p| {
                    Settings::decode(&p).map(|s| {
                        let _ = self.peer_settings.set(s);
                    })
                }),
                frame::GOAWAY => r.payload(h.len).await.map(|p| {
                    frame::decode_goaway(&p).map(|id| {
                        // Only ever lowered (RFC 9114 §5.2).
                        self.goaway.fetch_min(id, Ordering::AcqRel);
                    })
                }),
                frame::MAX_PUSH_ID if self.side == Side::Server => r.skip(h.len).await.map(Ok),
                frame::CANCEL_PUSH => r.skip(h.len).await.map(Ok),
                frame::SETTINGS => Ok(Err(FrameError::Unexpected("second SETTINGS"))),
                frame::MAX_PUSH_ID => Ok(Err(FrameError::Unexpected("MAX_PUSH_ID from a server"))),
                frame::DATA => Ok(Err(FrameError::Unexpected("DATA on the control stream"))),
                frame::HEADERS => Ok(Err(FrameError::Unexpected("HEADERS on the control stream"))),
                frame::PUSH_PROMISE => Ok(Err(FrameError::Unexpected(
                    "PUSH_PROMISE on the control stream",
                ))),
                t if frame::is_http2_only(t) => Ok(Err(FrameError::Http2Frame(t))),
                _ => r.skip(h.len).await.map(Ok),
            };
            first = false;
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    let (c, l) = match e {
                        FrameError::Settings(_) => (code::H3_SETTINGS_ERROR, "h3_settings"),
                        FrameError::Malformed(_) => (code::H3_FRAME_ERROR, "h3_frame_error"),
                        _ => (code::H3_FRAME_UNEXPECTED, "h3_frame_unexpected"),
                    };
                    self.fail(c, l, &e.to_string());
                    return;
                }
                Err(_) => {
                    self.fail(
                        code::H3_CLOSED_CRITICAL_STREAM,
                        "h3_closed_critical_stream",
                        "control stream ended inside a frame",
                    );
                    return;
                }
            }
        }
    }

    /// The peer's encoder may only say "capacity 0" (Set Dynamic Table
    /// Capacity, `001` + 0): any insertion exceeds the capacity we allow.
    async fn encoder_stream(self: Arc<Self>, mut r: FrameReader) {
        loop {
            match r.some_bytes().await {
                Ok(Some(b)) if b.iter().all(|&x| x == 0x20) => {}
                Ok(Some(_)) => {
                    self.fail(
                        code::QPACK_ENCODER_STREAM_ERROR,
                        "qpack_encoder_stream",
                        "encoder instruction other than capacity 0",
                    );
                    return;
                }
                Ok(None) | Err(StreamError::Reset(_)) => {
                    self.fail(
                        code::H3_CLOSED_CRITICAL_STREAM,
                        "h3_closed_critical_stream",
                        "peer closed its QPACK encoder stream",
                    );
                    return;
                }
                Err(_) => return,
            }
        }
    }

    /// The peer's decoder acknowledges or cancels sections of ours; with
    /// no dynamic table there is nothing to act on: read and drop.
    async fn decoder_stream(self: Arc<Self>, mut r: FrameReader) {
        loop {
            match r.some_bytes().await {
                Ok(Some(_)) => {}
                Ok(None) | Err(StreamError::Reset(_)) => {
                    self.fail(
                        code::H3_CLOSED_CRITICAL_STREAM,
                        "h3_closed_critical_stream",
                        "peer closed its QPACK decoder stream",
                    );
                    return;
                }
                Err(_) => return,
            }
        }
    }
}
