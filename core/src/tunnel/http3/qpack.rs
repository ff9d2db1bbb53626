//! QPACK (RFC 9204) without a dynamic table: the tunnel advertises
//! `SETTINGS_QPACK_MAX_TABLE_CAPACITY = 0` and `QPACK_BLOCKED_STREAMS = 0`,
//! so a peer may use only the static table and literals, and a field
//! section never waits for the encoder stream.
//!
//! Decoding is bounded before it allocates: a literal's length is checked
//! against the bytes present, and the decoded section against the field
//! section limit (RFC 9114 §4.2.2: names + values + 32 per field).
//! Encoding uses static references where they exist and plain (not
//! Huffman) literals otherwise: what we send is a few short fields.

use super::huffman::{self, HuffmanError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QpackError {
    #[error("field section truncated")]
    Truncated,
    #[error("integer too large")]
    Overflow,
    #[error("reference to the dynamic table, whose capacity is 0")]
    Dynamic,
    #[error("static table index {0} out of range")]
    BadIndex(u64),
    #[error("Huffman: {0}")]
    Huffman(#[from] HuffmanError),
    #[error("field section over {0} bytes")]
    TooLarge(u64),
}

/// A decoded field line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

impl Field {
    /// Its size as RFC 9114 §4.2.2 counts it.
    pub fn size(&self) -> u64 {
        (self.name.len() + self.value.len() + 32) as u64
    }
}

/// Reads a prefixed integer (RFC 7541 §5.1) whose first byte keeps
/// `prefix` low bits; the high bits of that byte are the caller's.
fn get_int(buf: &mut &[u8], prefix: u8) -> Result<u64, QpackError> {
    let (&first, rest) = buf.split_first().ok_or(QpackError::Truncated)?;
    *buf = rest;
    let max = (1u64 << prefix) - 1;
    let mut v = u64::from(first) & max;
    if v < max {
        return Ok(v);
    }
    let mut shift = 0u32;
    loop {
        let (&b, rest) = buf.split_first().ok_or(QpackError::Truncated)?;
        *buf = rest;
        // 62 bits is all any length or index here can need.
        if shift > 56 {
            return Err(QpackError::Overflow);
        }
        v = v
            .checked_add(u64::from(b & 0x7f) << shift)
            .ok_or(QpackError::Overflow)?;
        shift += 7;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
}

/// Appends a prefixed integer; `flags` are the high bits of the first byte.
fn put_int(out: &mut Vec<u8>, flags: u8, prefix: u8, mut v: u64) {
    let max = (1u64 << prefix) - 1;
    if v < max {
        out.push(flags | v as u8);
        return;
    }
    out.push(flags | max as u8);
    v -= max;
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a string literal whose length has a `prefix`-bit prefix and whose
/// Huffman flag is the bit just above it; at most `max` decoded bytes.
fn get_string(buf: &mut &[u8], prefix: u8, max: u64) -> Result<Vec<u8>, QpackError> {
    let huff = buf.first().ok_or(QpackError::Truncated)? & (1 << prefix) != 0;
    let len = get_int(buf, prefix)?;
    if len > buf.len() as u64 {
        return Err(QpackError::Truncated);
    }
    let (raw, rest) = buf.split_at(len as usize);
    *buf = rest;
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    if huff {
        return huffman::decode(raw, max).map_err(|e| match e {
            HuffmanError::TooLong(_) => QpackError::TooLarge(max as u64),
            e => e.into(),
        });
    }
    if raw.len() > max {
        return Err(QpackError::TooLarge(max as u64));
    }
    Ok(raw.to_vec())
}

fn static_entry(index: u64) -> Result<(&'static str, &'static str), QpackError> {
    STATIC
        .get(usize::try_from(index).unwrap_or(usize::MAX))
        .copied()
        .ok_or(QpackError::BadIndex(index))
}

/// Decodes an encoded field section, refusing one over `max_size`
/// (RFC 9114 §4.2.2 accounting).
pub fn decode(block: &[u8], max_size: u64) -> Result<Vec<Field>, QpackError> {
    decode_fields(block, max_size).map_err(|e| match e {
        QpackError::TooLarge(_) => QpackError::TooLarge(max_size),
        e => e,
    })
}

fn decode_fields(block: &[u8], max_size: u64) -> Result<Vec<Field>, QpackError> {
    let mut buf = block;
    // Required Insert Count, then the sign bit and Delta Base.
    if get_int(&mut buf, 8)? != 0 {
        return Err(QpackError::Dynamic);
    }
    get_int(&mut buf, 7)?;
    let mut fields = Vec::new();
    let mut size = 0u64;
    while let Some(&b) = buf.first() {
        let left = max_size.saturating_sub(size).saturating_sub(32);
        let field = if b & 0x80 != 0 {
            // Indexed field line: 1 T index(6).
            if b & 0x40 == 0 {
                return Err(QpackError::Dynamic);
            }
            let (n, v) = static_entry(get_int(&mut buf, 6)?)?;
            Field {
                name: n.as_bytes().to_vec(),
                value: v.as_bytes().to_vec(),
            }
        } else if b & 0x40 != 0 {
            // Literal with name reference: 01 N T index(4), value.
            if b & 0x10 == 0 {
                return Err(QpackError::Dynamic);
            }
            let (n, _) = static_entry(get_int(&mut buf, 4)?)?;
            let value = get_string(&mut buf, 7, left.saturating_sub(n.len() as u64))?;
            Field {
                name: n.as_bytes().to_vec(),
                value,
            }
        } else if b & 0x20 != 0 {
            // Literal with literal name: 001 N H len(3) name, value.
            let name = get_string(&mut buf, 3, left)?;
            let value = get_string(&mut buf, 7, left.saturating_sub(name.len() as u64))?;
            Field { name, value }
        } else {
            // Post-base index forms (0001xxxx, 0000xxxx) address the
            // dynamic table.
            return Err(QpackError::Dynamic);
        };
        size += field.size();
        if size > max_size {
            return Err(QpackError::TooLarge(max_size));
        }
        fields.push(field);
    }
    Ok(fields)
}

/// Encodes `fields` as a field section with no dynamic table references.
pub fn encode<'a>(fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Vec<u8> {
    // Required Insert Count 0, Delta Base 0.
    let mut out = vec![0, 0];
    for (name, value) in fields {
        let exact = STATIC
            .iter()
            .position(|(n, v)| n.as_bytes() == name && v.as_bytes() == value);
        if let Some(i) = exact {
            put_int(&mut out, 0xc0, 6, i as u64);
            continue;
        }
        match STATIC.iter().position(|(n, _)| n.as_bytes() == name) {
            Some(i) => put_int(&mut out, 0x50, 4, i as u64),
            None => {
                put_int(&mut out, 0x20, 3, name.len() as u64);
                out.extend_from_slice(name);
            }
        }
        put_int(&mut out, 0x00, 7, value.len() as u64);
        out.extend_from_slice(value);
    }
    out
}

/// RFC 9204 Appendix A: the static table, by index.
#[rustfmt::skip]
pub(crate) const STATIC: [(&str, &str); 99] = [
    (":authority", ""),
    (":path", "/"),
    ("age", "0"),
    ("content-disposition", ""),
    ("content-length", "0"),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("referer", ""),
    ("set-cookie", ""),
    (":method", "CONNECT"),
    (":method", "DELETE"),
    (":method", "GET"),
    (":method", "HEAD"),
    (":method", "OPTIONS"),
    (":method", "POST"),
    (":method", "PUT"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "103"),
    (":status", "200"),
    (":status", "304"),
    (":status", "404"),
    (":status", "503"),
    ("accept", "*/*"),
    ("accept", "application/dns-message"),
    ("accept-encoding", "gzip, deflate, br"),
    ("accept-ranges", "bytes"),
    ("access-control-allow-headers", "cache-control"),
    ("access-control-allow-headers", "content-type"),
    ("access-control-allow-origin", "*"),
    ("cache-control", "max-age=0"),
    ("cache-control", "max-age=2592000"),
    ("cache-control", "max-age=604800"),
    ("cache-control", "no-cache"),
    ("cache-control", "no-store"),
    ("cache-control", "public, max-age=31536000"),
    ("content-encoding", "br"),
    ("content-encoding", "gzip"),
    ("content-type", "application/dns-message"),
    ("content-type", "application/javascript"),
    ("content-type", "application/json"),
    ("content-type", "application/x-www-form-urlencoded"),
    ("content-type", "image/gif"),
    ("content-type", "image/jpeg"),
    ("content-type", "image/png"),
    ("content-type", "text/css"),
    ("content-type", "text/html; charset=utf-8"),
    ("content-type", "text/plain"),
    ("content-type", "text/plain;charset=utf-8"),
    ("range", "bytes=0-"),
    ("strict-transport-security", "max-age=31536000"),
    ("strict-transport-security", "max-age=31536000; includesubdomains"),
    ("strict-transport-security", "max-age=31536000; includesubdomains; preload"),
    ("vary", "accept-encoding"),
    ("vary", "origin"),
    ("x-content-type-options", "nosniff"),
    ("x-xss-protection", "1; mode=block"),
    (":status", "100"),
    (":status", "204"),
    (":status", "206"),
    (":status", "302"),
    (":status", "400"),
    (":status", "403"),
    (":status", "421"),
    (":status", "425"),
    (":status", "500"),
    ("accept-language", ""),
    ("access-control-allow-credentials", "FALSE"),
    ("access-control-allow-credentials", "TRUE"),
    ("access-control-allow-headers", "*"),
    ("access-control-allow-methods", "get"),
    ("access-control-allow-methods", "get, post, options"),
    ("access-control-allow-methods", "options"),
    ("access-control-expose-headers", "content-length"),
    ("access-control-request-headers", "content-type"),
    ("access-control-request-method", "get"),
    ("access-control-request-method", "post"),
    ("alt-svc", "clear"),
    ("authorization", ""),
    ("content-security-policy", "script-src 'none'; object-src 'none'; base-uri 'none'"),
    ("early-data", "1"),
    ("expect-ct", ""),
    ("forwarded", ""),
    ("if-range", ""),
    ("origin", ""),
    ("purpose", "prefetch"),
    ("server", ""),
    ("timing-allow-origin", "*"),
    ("upgrade-insecure-requests", "1"),
    ("user-agent", ""),
    ("x-forwarded-for", ""),
    ("x-frame-options", "deny"),
    ("x-frame-options", "sameorigin"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn f(name: &str, value: &str) -> Field {
        Field {
            name: name.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
        }
    }

    #[test]
    fn integers_of_rfc_7541_c1() {
        // 10 in a 5-bit prefix; 1337 in a 5-bit prefix; 42 in 8 bits.
        let mut out = Vec::new();
        put_int(&mut out, 0, 5, 10);
        assert_eq!(out, [0x0a]);
        out.clear();
        put_int(&mut out, 0, 5, 1337);
        assert_eq!(out, [0x1f, 0x9a, 0x0a]);
        assert_eq!(get_int(&mut &out[..], 5), Ok(1337));
        out.clear();
        put_int(&mut out, 0, 8, 42);
        assert_eq!(out, [42]);
        // Continuation bytes without end, and past 62 bits.
        assert_eq!(
            get_int(&mut &[0x1f, 0x80][..], 5),
            Err(QpackError::Truncated)
        );
        let long = [
            0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        assert_eq!(get_int(&mut &long[..], 5), Err(QpackError::Overflow));
    }

    #[test]
    fn our_connect_encoding() {
        let block = encode([
            (&b":method"[..], &b"CONNECT"[..]),
            (b":authority", b"10.0.0.1:80"),
        ]);
        // 0xcf: static 15 (:method CONNECT); 0x50: name of static 0.
        let mut want = vec![0, 0, 0xcf, 0x50, 11];
        want.extend_from_slice(b"10.0.0.1:80");
        assert_eq!(block, want);
        assert_eq!(
            decode(&block, 1 << 10).unwrap(),
            [f(":method", "CONNECT"), f(":authority", "10.0.0.1:80")]
        );
        // :status 200 is one byte (static 25).
        assert_eq!(encode([(&b":status"[..], &b"200"[..])]), [0, 0, 0xd9]);
    }

    /// A field section encoded by ls-qpack (through Python's pylsqpack,
    /// as aioquic uses it; `Encoder().encode(0, fields)`, no dynamic
    /// table): Huffman literals, static name references, literal names.
    #[test]
    fn decodes_an_independent_encoder() {
        let block = [
            0x00, 0x00, 0xcf, 0x50, 0x8a, 0x08, 0x17, 0x0a, 0xe2, 0x5d, 0x9b, 0x8f, 0x01, 0xe0,
            0x7f, 0x5f, 0x50, 0x85, 0x19, 0x8f, 0xda, 0xd3, 0x13, 0x2e, 0xf2, 0xb1, 0x2d, 0x42,
            0x4f, 0x4f, 0x01, 0x76, 0x2b, 0x9c, 0xe8, 0x4f, 0x8a, 0x08, 0x17, 0x0a, 0xe2, 0x5d,
            0x9b, 0x8f, 0x01, 0xe0, 0x7f,
        ];
        assert_eq!(
            decode(&block, 1 << 10).unwrap(),
            [
                f(":method", "CONNECT"),
                f(":authority", "10.1.2.3:8080"),
                f("user-agent", "aioquic"),
                f("x-custom", "v"),
                f("host", "10.1.2.3:8080"),
            ]
        );
    }

    #[test]
    fn refusals() {
        // Required Insert Count 1: the dynamic table.
        assert_eq!(decode(&[1, 0], 100), Err(QpackError::Dynamic));
        // Indexed from the dynamic table (T = 0), post-base forms.
        assert_eq!(decode(&[0, 0, 0x81], 100), Err(QpackError::Dynamic));
        assert_eq!(decode(&[0, 0, 0x10], 100), Err(QpackError::Dynamic));
        assert_eq!(decode(&[0, 0, 0x00], 100), Err(QpackError::Dynamic));
        assert_eq!(decode(&[0, 0, 0x40, 0], 100), Err(QpackError::Dynamic));
        // Static index 99 does not exist (0xff 0x24 = 63 + 36).
        assert_eq!(
            decode(&[0, 0, 0xff, 0x24], 100),
            Err(QpackError::BadIndex(99))
        );
        // A literal claiming more bytes than present allocates nothing.
        assert_eq!(
            decode(&[0, 0, 0x50, 0x7f, 0xff, 0xff, 0x03], 1 << 20),
            Err(QpackError::Truncated)
        );
        // Over the section limit: 2 fields of 32 + ~10 bytes each in 60.
        let block = encode([(&b"a"[..], &b"b"[..]), (b"c", b"d")]);
        assert!(decode(&block, 100).is_ok());
        assert_eq!(decode(&block, 60), Err(QpackError::TooLarge(60)));
        // A Huffman literal name that decodes past the budget: 200
        // bytes from 125 encoded ones.
        let name = huffman::encode(&[b'a'; 200]);
        let mut big = vec![0, 0];
        put_int(&mut big, 0x28, 3, name.len() as u64);
        big.extend_from_slice(&name);
        big.push(0x00);
        assert_eq!(decode(&big, 100), Err(QpackError::TooLarge(100)));
        assert!(decode(&big, 1000).is_ok());
    }

    proptest! {
        #[test]
        fn roundtrip(fields in proptest::collection::vec(
            (proptest::sample::select(vec![":method", ":authority", ":status", "forwarded", "traceparent", "host", "x-y"]),
             "[ -~]{0,40}"), 0..8)) {
            let pairs: Vec<(&[u8], &[u8])> = fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())).collect();
            let block = encode(pairs.iter().copied());
            let got = decode(&block, 1 << 20).unwrap();
            prop_assert_eq!(got.len(), fields.len());
            for (g, (n, v)) in got.iter().zip(&fields) {
                prop_assert_eq!(&g.name, n.as_bytes());
                prop_assert_eq!(&g.value, v.as_bytes());
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes, 4096);
        }
    }
}
