//! The part of HTTP/3 (RFC 9114) and QPACK (RFC 9204) the tunnel speaks,
//! written for it: CONNECT streams (§4.4) carrying DATA frames, SETTINGS
//! and GOAWAY on the control streams, and field sections with the static
//! table only.
//!
//! Why our own and not the `h3` crate: the tunnel must bound what a peer
//! can make it hold *before* it buffers anything (a HEADERS frame's length
//! is checked against the limit before a byte of it is read), must refuse
//! malformed requests rather than repair them (h3 0.0.8 lets a second
//! `:authority` win and takes `Host` for a missing one; see [`message`]),
//! and must send the compliant CONNECT form itself (h3's client adds
//! `:scheme` and `:path`). It also hands payload `Bytes` to quinn without
//! the copy h3-quinn makes on every send.
//!
//! - [`frame`]: varints, frame headers, SETTINGS, GOAWAY (pure).
//! - [`qpack`] (and its Huffman code): field sections without a dynamic
//!   table (pure).
//! - [`message`]: well-formed request and response heads (pure).
//! - [`stream`]: reading a bounded head, then DATA both ways, on quinn
//!   streams.
//! - [`connection`]: control and QPACK streams, SETTINGS, GOAWAY.
//!
//! What it does not do: a dynamic QPACK table (we advertise capacity 0),
//! server push (never allowed), trailers on CONNECT (not allowed by §4.4),
//! priorities (ignored as unknown frames).

pub mod connection;
pub mod frame;
mod huffman;
pub mod message;
pub mod qpack;
pub mod stream;

pub use connection::{Http3, Side};

/// HTTP/3 and QPACK error codes (RFC 9114 §8.1, RFC 9204 §6).
pub mod code {
    pub const H3_NO_ERROR: u32 = 0x100;
    pub const H3_GENERAL_PROTOCOL_ERROR: u32 = 0x101;
    pub const H3_INTERNAL_ERROR: u32 = 0x102;
    pub const H3_STREAM_CREATION_ERROR: u32 = 0x103;
    pub const H3_CLOSED_CRITICAL_STREAM: u32 = 0x104;
    pub const H3_FRAME_UNEXPECTED: u32 = 0x105;
    pub const H3_FRAME_ERROR: u32 = 0x106;
    pub const H3_EXCESSIVE_LOAD: u32 = 0x107;
    pub const H3_ID_ERROR: u32 = 0x108;
    pub const H3_SETTINGS_ERROR: u32 = 0x109;
    pub const H3_MISSING_SETTINGS: u32 = 0x10a;
    pub const H3_REQUEST_REJECTED: u32 = 0x10b;
    pub const H3_REQUEST_CANCELLED: u32 = 0x10c;
    pub const H3_REQUEST_INCOMPLETE: u32 = 0x10d;
    pub const H3_MESSAGE_ERROR: u32 = 0x10e;
    pub const H3_CONNECT_ERROR: u32 = 0x10f;
    pub const QPACK_DECOMPRESSION_FAILED: u32 = 0x200;
    pub const QPACK_ENCODER_STREAM_ERROR: u32 = 0x201;
}
