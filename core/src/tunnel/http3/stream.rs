//! HTTP/3 frames on QUIC streams: reading a message head with its size
//! bounded before anything is buffered, then the DATA frames of a CONNECT
//! stream in both directions without copying the payload.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use super::frame::{self, FrameError, FrameHeader};
use super::qpack::{self, Field, QpackError};

/// Why reading or writing a stream failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("stream reset by the peer (code {0:#x})")]
    Reset(u64),
    #[error("stream or connection closed: {0}")]
    Closed(String),
    #[error("stream ended inside a frame")]
    Truncated,
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl From<quinn::ReadError> for StreamError {
    fn from(e: quinn::ReadError) -> Self {
        match e {
            quinn::ReadError::Reset(code) => StreamError::Reset(code.into_inner()),
            e => StreamError::Closed(e.to_string()),
        }
    }
}

impl From<quinn::WriteError> for StreamError {
    fn from(e: quinn::WriteError) -> Self {
        match e {
            quinn::WriteError::Stopped(code) => StreamError::Reset(code.into_inner()),
            e => StreamError::Closed(e.to_string()),
        }
    }
}

/// Why a message head could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("header section of {len} bytes is over the limit of {limit}")]
    TooLarge { len: u64, limit: u64 },
    #[error("stream ended before a complete header section")]
    Incomplete,
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error("QPACK: {0}")]
    Qpack(#[from] QpackError),
}

impl From<FrameError> for HeadError {
    fn from(e: FrameError) -> Self {
        HeadError::Stream(e.into())
    }
}

/// Received bytes not consumed yet: the chunks quinn handed out, in order.
#[derive(Default)]
struct Pending {
    chunks: VecDeque<Bytes>,
    len: usize,
}

impl Buf for Pending {
    fn remaining(&self) -> usize {
        self.len
    }
    fn chunk(&self) -> &[u8] {
        self.chunks.front().map_or(&[], |c| c)
    }
    fn chunks_vectored<'a>(&'a self, dst: &mut [std::io::IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, c) in dst.iter_mut().zip(&self.chunks) {
            *slot = std::io::IoSlice::new(c);
            n += 1;
        }
        n
    }
    fn advance(&mut self, mut cnt: usize) {
        self.len -= cnt;
        while cnt > 0 {
            let front = self.chunks.front_mut().expect("advance within remaining");
            if cnt >= front.len() {
                cnt -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(cnt);
                cnt = 0;
            }
        }
    }
}

/// Reads HTTP/3 frames from a QUIC receive stream. Every await point is a
/// quinn read, so a cancelled call loses nothing.
pub struct FrameReader {
    recv: quinn::RecvStream,
    pending: Pending,
    eof: bool,
}

impl FrameReader {
    pub fn new(recv: quinn::RecvStream) -> Self {
        FrameReader {
            recv,
            pending: Pending::default(),
            eof: false,
        }
    }

    /// The stream, e.g. to stop it.
    pub fn stream(&mut self) -> &mut quinn::RecvStream {
        &mut self.recv
    }

    /// Reads one more chunk from quinn; false at the end of the stream.
    async fn fill(&mut self) -> Result<bool, StreamError> {
        if self.eof {
            return Ok(false);
        }
        match self.recv.read_chunk(usize::MAX, true).await? {
            Some(c) if c.bytes.is_empty() => Ok(true),
            Some(c) => {
                self.pending.len += c.bytes.len();
                self.pending.chunks.push_back(c.bytes);
                Ok(true)
            }
            None => {
                self.eof = true;
                Ok(false)
            }
        }
    }

    /// The next frame header; `None` at a clean end of the stream.
    pub async fn header(&mut self) -> Result<Option<FrameHeader>, StreamError> {
        loop {
            if let Some(h) = frame::get_header(&mut self.pending) {
                return Ok(Some(h));
            }
            if !self.fill().await? {
                return if self.pending.len == 0 {
                    Ok(None)
                } else {
                    Err(StreamError::Truncated)
                };
            }
        }
    }

    /// Up to `max` bytes of the frame being read (at least one).
    pub async fn some(&mut self, max: u64) -> Result<Bytes, StreamError> {
        if self.pending.len == 0 && !self.fill().await? {
            return Err(StreamError::Truncated);
        }
        let front = self.pending.chunks.front_mut().expect("filled");
        let n = front.len().min(usize::try_from(max).unwrap_or(usize::MAX));
        let out = front.split_to(n);
        if front.is_empty() {
            self.pending.chunks.pop_front();
        }
        self.pending.len -= n;
        Ok(out)
    }

    /// A varint outside any frame (a unidirectional stream's type);
    /// `None` at the end of the stream.
    pub async fn varint(&mut self) -> Result<Option<u64>, StreamError> {
        loop {
            if let Some(v) = frame::get_varint(&mut self.pending) {
                return Ok(Some(v));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// Whatever bytes come next, frames or not; `None` at the end.
    pub async fn some_bytes(&mut self) -> Result<Option<Bytes>, StreamError> {
        if self.pending.len == 0 && !self.fill().await? {
            return Ok(None);
        }
        Ok(Some(self.some(u64::MAX).await?))
    }

    /// Discards `len` bytes of the frame being read.
    pub async fn skip(&mut self, mut len: u64) -> Result<(), StreamError> {
        while len > 0 {
            len -= self.some(len).await?.len() as u64;
        }
        Ok(())
    }

    /// A frame payload of exactly `len` bytes (the caller bounded `len`).
    pub async fn payload(&mut self, len: u64) -> Result<Vec<u8>, StreamError> {
        let mut out = Vec::with_capacity(len as usize);
        while (out.len() as u64) < len {
            let b = self.some(len - out.len() as u64).await?;
            out.extend_from_slice(&b);
        }
        Ok(out)
    }

    /// Reads and decodes a message head: the first HEADERS frame, whose
    /// length must be within `limit` before a byte of it is read. Unknown
    /// frames before it are skipped (RFC 9114 §9), at most `limit` bytes
    /// of them; DATA or a control frame first is a protocol error.
    pub async fn head(&mut self, limit: u64) -> Result<Vec<Field>, HeadError> {
        let mut skipped = 0u64;
        loop {
            let h = self.header().await?.ok_or(HeadError::Incomplete)?;
            match h.ty {
                frame::HEADERS => {
                    if h.len > limit {
                        return Err(HeadError::TooLarge { len: h.len, limit });
                    }
                    let block = self.payload(h.len).await.map_err(|e| match e {
                        StreamError::Truncated => HeadError::Incomplete,
                        e => e.into(),
                    })?;
                    return Ok(qpack::decode(&block, limit)?);
                }
                ty => {
                    check_request_stream_frame(ty)?;
                    skipped += h.len;
                    if skipped > limit {
                        return Err(HeadError::TooLarge {
                            len: skipped,
                            limit,
                        });
                    }
                    self.skip(h.len).await?;
                }
            }
        }
    }
}

/// [`FrameReader::head`] over a stream whose bytes are all in `stream`
/// (its end is the peer's FIN): the same frames skipped, the same bounds,
/// the same errors. Leaves `stream` just past the HEADERS frame. Pure, for
/// tests and fuzzing of what a peer can send before its request is judged.
pub fn decode_head(stream: &mut &[u8], limit: u64) -> Result<Vec<Field>, HeadError> {
    let mut skipped = 0u64;
    loop {
        let h = match frame::get_header(stream) {
            Some(h) => h,
            None if stream.is_empty() => return Err(HeadError::Incomplete),
            None => return Err(StreamError::Truncated.into()),
        };
        let present = h.len <= stream.len() as u64;
        if h.ty == frame::HEADERS {
            if h.len > limit {
                return Err(HeadError::TooLarge { len: h.len, limit });
            }
            if !present {
                return Err(HeadError::Incomplete);
            }
            let (block, rest) = stream.split_at(h.len as usize);
            *stream = rest;
            return Ok(qpack::decode(block, limit)?);
        }
        check_request_stream_frame(h.ty)?;
        skipped = skipped.saturating_add(h.len);
        if skipped > limit {
            return Err(HeadError::TooLarge {
                len: skipped,
                limit,
            });
        }
        if !present {
            return Err(StreamError::Truncated.into());
        }
        *stream = &stream[h.len as usize..];
    }
}

/// Frames that never belong on a request stream, before or after the head
/// (RFC 9114 §7.2); DATA and HEADERS are the caller's to judge.
fn check_request_stream_frame(ty: u64) -> Result<(), FrameError> {
    match ty {
        frame::DATA => Err(FrameError::Unexpected("DATA")),
        frame::HEADERS => Err(FrameError::Unexpected("HEADERS")),
        frame::SETTINGS => Err(FrameError::Unexpected("SETTINGS")),
        frame::GOAWAY => Err(FrameError::Unexpected("GOAWAY")),
        frame::MAX_PUSH_ID => Err(FrameError::Unexpected("MAX_PUSH_ID")),
        frame::CANCEL_PUSH => Err(FrameError::Unexpected("CANCEL_PUSH")),
        // We never allow pushes (no MAX_PUSH_ID is ever sent).
        frame::PUSH_PROMISE => Err(FrameError::Unexpected("PUSH_PROMISE")),
        t if frame::is_http2_only(t) => Err(FrameError::Http2Frame(t)),
        _ => Ok(()),
    }
}

/// The payload of the DATA frames of a CONNECT stream after its head.
/// Unknown frame types are skipped; any other frame (trailers included:
/// RFC 9114 §4.4 allows only DATA after a CONNECT) is a protocol error.
pub struct RecvData {
    reader: FrameReader,
    /// Bytes left in the frame being read, and whether it is DATA.
    left: u64,
    data: bool,
}

impl RecvData {
    pub fn new(reader: FrameReader) -> Self {
        RecvData {
            reader,
            left: 0,
            data: false,
        }
    }

    /// The next piece of payload; `None` once the peer finished cleanly.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, StreamError> {
        loop {
            if self.left > 0 {
                let b = self.reader.some(self.left).await?;
                self.left -= b.len() as u64;
                if self.data {
                    return Ok(Some(b));
                }
                continue;
            }
            let Some(h) = self.reader.header().await? else {
                return Ok(None);
            };
            if h.ty != frame::DATA {
                check_request_stream_frame(h.ty)?;
            }
            self.data = h.ty == frame::DATA;
            self.left = h.len;
        }
    }

    /// Asks the peer to stop sending (STOP_SENDING).
    pub fn stop(&mut self, code: u32) {
        let _ = self.reader.stream().stop(code.into());
    }
}

/// The sending half of a CONNECT stream: each payload goes out as one DATA
/// frame, handed to quinn as is (no copy).
pub struct SendData {
    send: quinn::SendStream,
}

impl SendData {
    pub fn new(send: quinn::SendStream) -> Self {
        SendData { send }
    }

    /// The QUIC stream, for a writer that frames its own DATA.
    pub fn into_inner(self) -> quinn::SendStream {
        self.send
    }

    pub async fn send(&mut self, data: Bytes) -> Result<(), StreamError> {
        if data.is_empty() {
            return Ok(());
        }
        let mut head = BytesMut::with_capacity(16);
        frame::put_header(&mut head, frame::DATA, data.len() as u64);
        self.send
            .write_all_chunks(&mut [head.freeze(), data])
            .await
            .map_err(StreamError::from)
    }

    /// Ends the stream cleanly (FIN).
    pub fn finish(&mut self) -> Result<(), StreamError> {
        self.send
            .finish()
            .map_err(|e| StreamError::Closed(e.to_string()))
    }

    /// Abandons the stream (RESET_STREAM).
    pub fn reset(&mut self, code: u32) {
        let _ = self.send.reset(code.into());
    }
}

/// Writes a HEADERS frame carrying `fields` on `send`.
pub async fn send_head<'a>(
    send: &mut quinn::SendStream,
    fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<(), StreamError> {
    let block = qpack::encode(fields);
    let mut head = BytesMut::with_capacity(16);
    frame::put_header(&mut head, frame::HEADERS, block.len() as u64);
    send.write_all_chunks(&mut [head.freeze(), Bytes::from(block)])
        .await
        .map_err(StreamError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_bytes_across_chunks() {
        let mut p = Pending::default();
        for c in [&b"ab"[..], b"cde"] {
            p.len += c.len();
            p.chunks.push_back(Bytes::copy_from_slice(c));
        }
        assert_eq!(p.remaining(), 5);
        p.advance(3);
        assert_eq!(p.chunk(), b"de");
        assert_eq!(p.copy_to_bytes(2), Bytes::from_static(b"de"));
        assert_eq!(p.remaining(), 0);
    }

    #[test]
    fn decode_head_reads_what_the_stream_reader_reads() {
        let headers = http::HeaderMap::new();
        let block = qpack::encode(super::super::message::connect_fields(
            "10.0.0.1:80",
            &headers,
        ));
        let mut stream = frame::frame(0x21, b"grease");
        stream.extend(frame::frame(frame::HEADERS, &block));
        stream.extend(frame::frame(frame::DATA, b"after"));
        let mut s = &stream[..];
        let fields = decode_head(&mut s, 1024).unwrap();
        assert_eq!(fields, qpack::decode(&block, 1024).unwrap());
        assert_eq!(
            s,
            &frame::frame(frame::DATA, b"after")[..],
            "left after HEADERS"
        );

        let head = |bytes: &[u8], limit| decode_head(&mut &bytes[..], limit);
        assert_eq!(head(&[], 1024), Err(HeadError::Incomplete));
        let partial = [0x01, 0x40];
        assert_eq!(
            head(&partial, 1024),
            Err(HeadError::Stream(StreamError::Truncated))
        );
        // Judged on the header alone, before any payload is there.
        let mut big = Vec::new();
        frame::put_header(&mut big, frame::HEADERS, 70_000);
        assert_eq!(
            head(&big, 1024),
            Err(HeadError::TooLarge {
                len: 70_000,
                limit: 1024
            })
        );
        let cut = &frame::frame(frame::HEADERS, &block)[..block.len()];
        assert_eq!(head(cut, 1024), Err(HeadError::Incomplete));
        assert_eq!(
            head(&frame::frame(frame::DATA, b"x"), 1024),
            Err(HeadError::Stream(StreamError::Frame(
                FrameError::Unexpected("DATA")
            )))
        );
        let mut skipped = frame::frame(0x21, &[0; 600]);
        skipped.extend(frame::frame(0x21, &[0; 600]));
        assert_eq!(
            head(&skipped, 1024),
            Err(HeadError::TooLarge {
                len: 1200,
                limit: 1024
            })
        );
        let unknown_cut = &frame::frame(0x21, b"grease")[..4];
        assert_eq!(
            head(unknown_cut, 1024),
            Err(HeadError::Stream(StreamError::Truncated))
        );
        assert_eq!(
            head(&frame::frame(frame::HEADERS, &[1, 0]), 1024),
            Err(HeadError::Qpack(QpackError::Dynamic))
        );
    }

    #[test]
    fn request_stream_frames() {
        assert!(check_request_stream_frame(0x21).is_ok(), "reserved type");
        assert!(check_request_stream_frame(0x2).is_err(), "HTTP/2 PRIORITY");
        assert!(check_request_stream_frame(frame::SETTINGS).is_err());
        assert!(check_request_stream_frame(frame::PUSH_PROMISE).is_err());
    }
}
