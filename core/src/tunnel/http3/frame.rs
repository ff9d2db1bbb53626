//! HTTP/3 framing (RFC 9114 §7): QUIC variable-length integers, frame
//! headers, SETTINGS and GOAWAY payloads. Pure: bytes in, values out.
//!
//! Decoding never trusts a length: a frame header only says how many bytes
//! follow, and the caller decides whether it will read that many.

use bytes::{Buf, BufMut};

/// Largest value a QUIC varint carries (2^62 - 1).
pub const VARINT_MAX: u64 = (1 << 62) - 1;

/// Frame types (RFC 9114 §7.2).
pub const DATA: u64 = 0x0;
pub const HEADERS: u64 = 0x1;
pub const CANCEL_PUSH: u64 = 0x3;
pub const SETTINGS: u64 = 0x4;
pub const PUSH_PROMISE: u64 = 0x5;
pub const GOAWAY: u64 = 0x7;
pub const MAX_PUSH_ID: u64 = 0xd;

/// Unidirectional stream types (RFC 9114 §6.2, RFC 9204 §4.2).
pub const STREAM_CONTROL: u64 = 0x0;
pub const STREAM_PUSH: u64 = 0x1;
pub const STREAM_QPACK_ENCODER: u64 = 0x2;
pub const STREAM_QPACK_DECODER: u64 = 0x3;

/// Settings identifiers (RFC 9114 §7.2.4.1, RFC 9204 §5).
pub const SETTING_QPACK_MAX_TABLE_CAPACITY: u64 = 0x1;
pub const SETTING_MAX_FIELD_SECTION_SIZE: u64 = 0x6;
pub const SETTING_QPACK_BLOCKED_STREAMS: u64 = 0x7;

/// Frame types of HTTP/2 with no HTTP/3 meaning: receiving one is a
/// connection error (RFC 9114 §7.2.8).
pub fn is_http2_only(ty: u64) -> bool {
    matches!(ty, 0x2 | 0x6 | 0x8 | 0x9)
}

/// Settings of HTTP/2 with no HTTP/3 meaning (RFC 9114 §7.2.4.1).
fn is_http2_setting(id: u64) -> bool {
    matches!(id, 0x2..=0x5)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("{0} frame not allowed here")]
    Unexpected(&'static str),
    #[error("HTTP/2 frame type {0:#x} is not allowed in HTTP/3")]
    Http2Frame(u64),
    #[error("malformed {0} frame")]
    Malformed(&'static str),
    #[error("SETTINGS: {0}")]
    Settings(&'static str),
    #[error("{what} frame of {len} bytes is over the limit of {limit}")]
    TooLarge {
        what: &'static str,
        len: u64,
        limit: u64,
    },
}

/// Bytes a varint takes for `v`.
pub fn varint_len(v: u64) -> usize {
    match v {
        0..=63 => 1,
        64..=16383 => 2,
        16384..=1_073_741_823 => 4,
        _ => 8,
    }
}

/// Reads one varint from the front of `buf`; `None` when `buf` holds only
/// part of one (nothing is consumed then).
pub fn get_varint(buf: &mut impl Buf) -> Option<u64> {
    if !buf.has_remaining() {
        return None;
    }
    let first = buf.chunk()[0];
    let len = 1usize << (first >> 6);
    if buf.remaining() < len {
        return None;
    }
    let mut v = u64::from(buf.get_u8() & 0x3f);
    for _ in 1..len {
        v = (v << 8) | u64::from(buf.get_u8());
    }
    Some(v)
}

/// Appends `v` as a varint. Panics past [`VARINT_MAX`] (a bug: nothing we
/// send comes near it).
pub fn put_varint(buf: &mut impl BufMut, v: u64) {
    assert!(v <= VARINT_MAX, "varint out of range");
    match varint_len(v) {
        1 => buf.put_u8(v as u8),
        2 => buf.put_u16(0x4000 | v as u16),
        4 => buf.put_u32(0x8000_0000 | v as u32),
        _ => buf.put_u64(0xc000_0000_0000_0000 | v),
    }
}

/// A frame header: its type and payload length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub ty: u64,
    pub len: u64,
}

/// Reads a frame header from the front of `buf`; `None` (nothing consumed)
/// when it is not all there yet.
pub fn get_header(buf: &mut impl Buf) -> Option<FrameHeader> {
    // A header is at most 16 bytes and may straddle chunks: parse a copy.
    let mut head = [0u8; 16];
    let n = buf.remaining().min(16);
    copy_front(buf, &mut head[..n]);
    let mut s = &head[..n];
    let h = header_from(&mut s)?;
    buf.advance(n - s.len());
    Some(h)
}

fn header_from(s: &mut &[u8]) -> Option<FrameHeader> {
    let ty = get_varint(s)?;
    let len = get_varint(s)?;
    Some(FrameHeader { ty, len })
}

fn copy_front(buf: &impl Buf, out: &mut [u8]) {
    let mut chunks = [std::io::IoSlice::new(&[]); 16];
    let n = buf.chunks_vectored(&mut chunks);
    let mut at = 0;
    for c in &chunks[..n] {
        let take = c.len().min(out.len() - at);
        out[at..at + take].copy_from_slice(&c[..take]);
        at += take;
        if at == out.len() {
            break;
        }
    }
}

/// Appends a frame header.
pub fn put_header(buf: &mut impl BufMut, ty: u64, len: u64) {
    put_varint(buf, ty);
    put_varint(buf, len);
}

/// The settings this implementation cares about. Unknown identifiers are
/// ignored, as RFC 9114 §7.2.4 requires (that is how peers grease).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settings {
    pub qpack_max_table_capacity: u64,
    pub qpack_blocked_streams: u64,
    /// `None`: the peer set no limit.
    pub max_field_section_size: Option<u64>,
}

impl Settings {
    /// The SETTINGS frame payload.
    pub fn encode(&self, out: &mut impl BufMut) {
        put_varint(out, SETTING_QPACK_MAX_TABLE_CAPACITY);
        put_varint(out, self.qpack_max_table_capacity);
        put_varint(out, SETTING_QPACK_BLOCKED_STREAMS);
        put_varint(out, self.qpack_blocked_streams);
        if let Some(n) = self.max_field_section_size {
            put_varint(out, SETTING_MAX_FIELD_SECTION_SIZE);
            put_varint(out, n);
        }
    }

    /// Parses a SETTINGS frame payload.
    pub fn decode(mut payload: &[u8]) -> Result<Settings, FrameError> {
        let mut s = Settings::default();
        let mut seen = Vec::new();
        while !payload.is_empty() {
            let (Some(id), Some(value)) = (get_varint(&mut payload), get_varint(&mut payload))
            else {
                return Err(FrameError::Malformed("SETTINGS"));
            };
            if is_http2_setting(id) {
                return Err(FrameError::Settings("HTTP/2 setting identifier"));
            }
            if seen.contains(&id) {
                return Err(FrameError::Settings("setting sent twice"));
            }
            // Bounded: a frame we read is at most a few KiB.
            seen.push(id);
            match id {
                SETTING_QPACK_MAX_TABLE_CAPACITY => s.qpack_max_table_capacity = value,
                SETTING_QPACK_BLOCKED_STREAMS => s.qpack_blocked_streams = value,
                SETTING_MAX_FIELD_SECTION_SIZE => s.max_field_section_size = Some(value),
                _ => {}
            }
        }
        Ok(s)
    }
}

/// A GOAWAY frame's payload: one varint (a stream or push ID).
pub fn decode_goaway(mut payload: &[u8]) -> Result<u64, FrameError> {
    let id = get_varint(&mut payload).ok_or(FrameError::Malformed("GOAWAY"))?;
    if !payload.is_empty() {
        return Err(FrameError::Malformed("GOAWAY"));
    }
    Ok(id)
}

/// A whole frame: header and payload.
pub fn frame(ty: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 16);
    put_header(&mut out, ty, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn varints_of_rfc_9000_appendix_a() {
        // RFC 9000 §A.1 examples.
        let cases: [(&[u8], u64); 4] = [
            (
                &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c],
                151_288_809_941_952_652,
            ),
            (&[0x9d, 0x7f, 0x3e, 0x7d], 494_878_333),
            (&[0x7b, 0xbd], 15_293),
            (&[0x25], 37),
        ];
        for (bytes, v) in cases {
            let mut b = bytes;
            assert_eq!(get_varint(&mut b), Some(v));
            assert!(b.is_empty());
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out, bytes);
        }
        // Two-byte encoding of 37 is valid too (non-minimal).
        assert_eq!(get_varint(&mut &[0x40, 0x25][..]), Some(37));
    }

    #[test]
    fn partial_input_consumes_nothing() {
        let mut b: &[u8] = &[0x9d, 0x7f];
        assert_eq!(get_varint(&mut b), None);
        assert_eq!(b.len(), 2);
        let mut b: &[u8] = &[0x01, 0x40];
        assert_eq!(get_header(&mut b), None);
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn headers_across_chunks() {
        let mut whole = Vec::new();
        put_header(&mut whole, HEADERS, 70_000);
        whole.push(0xaa);
        let (a, b) = whole.split_at(2);
        let mut chain = bytes::Bytes::copy_from_slice(a).chain(bytes::Bytes::copy_from_slice(b));
        assert_eq!(
            get_header(&mut chain),
            Some(FrameHeader {
                ty: HEADERS,
                len: 70_000
            })
        );
        assert_eq!(chain.remaining(), 1);
    }

    #[test]
    fn settings_roundtrip_and_refusals() {
        let s = Settings {
            qpack_max_table_capacity: 0,
            qpack_blocked_streams: 0,
            max_field_section_size: Some(16 << 10),
        };
        let mut p = Vec::new();
        s.encode(&mut p);
        assert_eq!(Settings::decode(&p), Ok(s));
        // Unknown (grease) identifiers are ignored.
        let mut g = p.clone();
        put_varint(&mut g, 0x1f * 7 + 0x21);
        put_varint(&mut g, 12345);
        assert_eq!(Settings::decode(&g), Ok(s));
        let mut dup = p.clone();
        put_varint(&mut dup, SETTING_MAX_FIELD_SECTION_SIZE);
        put_varint(&mut dup, 1);
        assert!(Settings::decode(&dup).is_err());
        let mut h2 = Vec::new();
        put_varint(&mut h2, 0x4);
        put_varint(&mut h2, 1);
        assert!(Settings::decode(&h2).is_err());
        assert!(
            Settings::decode(&[0x06]).is_err(),
            "identifier without value"
        );
    }

    #[test]
    fn goaway_payload() {
        assert_eq!(decode_goaway(&[0x10]), Ok(16));
        assert!(decode_goaway(&[]).is_err());
        assert!(decode_goaway(&[0x10, 0x00]).is_err());
    }

    proptest! {
        #[test]
        fn varint_roundtrip(v in 0u64..=VARINT_MAX) {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            prop_assert_eq!(out.len(), varint_len(v));
            prop_assert_eq!(get_varint(&mut &out[..]), Some(v));
        }

        #[test]
        fn header_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..20)) {
            let mut b = &bytes[..];
            let before = b.len();
            match get_header(&mut b) {
                None => prop_assert_eq!(b.len(), before),
                Some(h) => {
                    let mut again = Vec::new();
                    put_header(&mut again, h.ty, h.len);
                    prop_assert!(before - b.len() >= again.len());
                }
            }
        }
    }
}
