//! The benchmark's wire format and its small server.
//!
//! Requests and responses are HTTP/1.1-style messages with a 1 KiB body
//! (`Content-Length: 1024`). The server (`quicmesh-bench serve`, run as a
//! process inside the server pod) answers every request with a 1 KiB
//! response on the same connection, or closes after it when the request says
//! `Connection: close`. No pipelining: one request in flight per connection.
//! A connection that starts with the HTTP/2 preface is served as HTTP/2
//! instead ([`crate::http2`]; the L7 rows use it), so one port speaks both.
//!
//! A load may add [`Headers`] of its own to every request (`load --header`,
//! e.g. a bearer token), validated once and bounded.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hyper::header::{HeaderName, HeaderValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Body size of requests and responses.
pub const BODY: usize = 1024;
/// Largest header block accepted: room for the request's own headers and
/// [`MAX_EXTRA_BYTES`] of extra ones.
const MAX_HEADERS: usize = 16 * 1024;
/// At most this many extra headers on a load's requests.
pub const MAX_EXTRA_HEADERS: usize = 16;
/// The extra headers' names and values together, at most.
pub const MAX_EXTRA_BYTES: usize = 8 * 1024;
/// Headers the bench sets itself or that frame the message (HTTP/1.1) or
/// are forbidden in HTTP/2: an extra header may not be one of them.
const RESERVED: [&str; 8] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "te",
];

/// Why a `--header` was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("header {0:?}: expected `name: value`")]
    NoColon(String),
    #[error("header {0:?}: the name is not a valid HTTP header name")]
    BadName(String),
    #[error(
        "header {0:?}: the value is not a valid HTTP header value (no control characters: CR, LF, NUL, ...)"
    )]
    BadValue(String),
    #[error("header {0:?}: not allowed ({1} is set by the bench, frames the message or is HTTP/2-forbidden)")]
    Reserved(String, &'static str),
    #[error("{0} headers: at most {MAX_EXTRA_HEADERS}")]
    TooMany(usize),
    #[error("headers of {0} bytes (names and values): at most {MAX_EXTRA_BYTES}")]
    TooLarge(usize),
}

/// Extra headers sent on every request of a load, valid as HTTP header
/// names and values, bounded by [`MAX_EXTRA_HEADERS`] and [`MAX_EXTRA_BYTES`].
#[derive(Debug, Clone, Default)]
pub struct Headers(Vec<(HeaderName, HeaderValue)>);

impl Headers {
    /// From `name: value` arguments (the value trimmed of spaces and tabs).
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Headers, HeaderError> {
        if args.len() > MAX_EXTRA_HEADERS {
            return Err(HeaderError::TooMany(args.len()));
        }
        let mut out = Vec::with_capacity(args.len());
        let mut bytes = 0;
        for arg in args {
            let arg = arg.as_ref();
            let (name, value) = arg
                .split_once(':')
                .ok_or_else(|| HeaderError::NoColon(arg.into()))?;
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| HeaderError::BadName(arg.into()))?;
            if let Some(r) = RESERVED.iter().find(|r| name == **r) {
                return Err(HeaderError::Reserved(arg.into(), r));
            }
            let value = HeaderValue::from_str(value.trim_matches([' ', '\t']))
                .map_err(|_| HeaderError::BadValue(arg.into()))?;
            bytes += name.as_str().len() + value.len();
            out.push((name, value));
        }
        if bytes > MAX_EXTRA_BYTES {
            return Err(HeaderError::TooLarge(bytes));
        }
        Ok(Headers(out))
    }

    pub fn iter(&self) -> impl Iterator<Item = &(HeaderName, HeaderValue)> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
/// A connection idle longer than this is closed by the server.
const SERVER_IDLE: Duration = Duration::from_secs(300);

/// A request with a 1 KiB body and the `extra` headers; `close` asks the
/// server to close after replying. Built once per connection: the load
/// loops send the same bytes every time.
pub fn request(close: bool, extra: &Headers) -> Vec<u8> {
    let conn = if close { "close" } else { "keep-alive" };
    let mut m =
        format!("POST /echo HTTP/1.1\r\nHost: server\r\nConnection: {conn}\r\n").into_bytes();
    for (name, value) in extra.iter() {
        m.extend_from_slice(name.as_str().as_bytes());
        m.extend_from_slice(b": ");
        m.extend_from_slice(value.as_bytes());
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(format!("Content-Length: {BODY}\r\n\r\n").as_bytes());
    m.extend(std::iter::repeat_n(b'q', BODY));
    m
}

/// The server's response: 200 with a 1 KiB body.
pub fn response() -> Vec<u8> {
    let mut m = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {BODY}\r\n\r\n"
    )
    .into_bytes();
    m.extend(std::iter::repeat_n(b'm', BODY));
    m
}

/// What the start of `buf` holds once a message's header block is complete:
/// the message's total length and whether it asks to close the connection.
/// `Ok(None)` while the header block is incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<(usize, bool)>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HEADERS {
            bail!("header block longer than {MAX_HEADERS} bytes");
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).context("header block is not UTF-8")?;
    let mut len = 0usize;
    let mut close = false;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            bail!("malformed header line {line:?}");
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            len = value.parse().context("bad Content-Length")?;
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    Ok(Some((end + 4 + len, close)))
}

/// Reads one whole message from a blocking stream into `buf` (cleared
/// first). Returns `Ok(false)` on a clean end of stream before any byte.
pub fn read_message(s: &mut impl Read, buf: &mut Vec<u8>) -> Result<bool> {
    buf.clear();
    let mut chunk = [0u8; 16 * 1024];
    let mut total = None;
    loop {
        if let Some(t) = total {
            if buf.len() >= t {
                return Ok(true);
            }
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            if buf.is_empty() {
                return Ok(false);
            }
            bail!("connection closed in the middle of a message");
        }
        buf.extend_from_slice(&chunk[..n]);
        if total.is_none() {
            total = parse_head(buf)?.map(|(t, _)| t);
        }
    }
}

/// One blocking request/response exchange on `s`; an answer other than a
/// 200 is an error (a proxy's 401, 403 or 503 is not a measurement).
pub fn exchange(s: &mut (impl Read + Write), req: &[u8], buf: &mut Vec<u8>) -> Result<()> {
    s.write_all(req)?;
    if !read_message(s, buf)? {
        bail!("the server closed the connection instead of answering");
    }
    if !buf.starts_with(b"HTTP/1.1 200 ") {
        let line = buf.split(|b| *b == b'\r').next().unwrap_or_default();
        bail!("answered {:?}", String::from_utf8_lossy(line));
    }
    Ok(())
}

/// Serves on `addr` until killed (`quicmesh-bench serve`).
pub fn serve(addr: SocketAddr, threads: usize) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        eprintln!("serving on {addr}");
        loop {
            let (s, _) = match l.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // Out of fds and the like: back off instead of spinning.
                    eprintln!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            tokio::spawn(async move {
                if let Err(e) = serve_conn(s).await {
                    eprintln!("connection: {e:#}");
                }
            });
        }
    })
}

async fn serve_conn(mut s: tokio::net::TcpStream) -> Result<()> {
    s.set_nodelay(true)?;
    let resp = response();
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    // The first bytes tell HTTP/2 (its preface) from HTTP/1.1; usually the
    // first read decides.
    let preface = crate::http2::PREFACE;
    loop {
        let n = match tokio::time::timeout(SERVER_IDLE, s.read(&mut chunk)).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let k = buf.len().min(preface.len());
        if buf[..k] != preface[..k] {
            break;
        }
        if k == preface.len() {
            return crate::http2::serve_conn(s, buf).await;
        }
    }
    loop {
        // Consume every complete message already buffered.
        while let Some((len, close)) = parse_head(&buf)? {
            if buf.len() < len {
                break;
            }
            buf.drain(..len);
            s.write_all(&resp).await?;
            if close {
                s.shutdown().await?;
                return Ok(());
            }
        }
        let n = match tokio::time::timeout(SERVER_IDLE, s.read(&mut chunk)).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> Headers {
        Headers::default()
    }

    #[test]
    fn request_and_response_parse_to_their_length() {
        let r = request(true, &none());
        assert_eq!(parse_head(&r).unwrap(), Some((r.len(), true)));
        let r = request(false, &none());
        assert_eq!(parse_head(&r).unwrap(), Some((r.len(), false)));
        let r = response();
        assert_eq!(parse_head(&r).unwrap(), Some((r.len(), false)));
        assert_eq!(parse_head(b"POST / HTTP/1.1\r\nHost").unwrap(), None);
        assert!(parse_head(b"GET / HTTP/1.1\r\nbroken\r\n\r\n").is_err());
    }

    #[test]
    fn read_message_reads_exactly_one_message() {
        let r = response();
        let mut cur = std::io::Cursor::new(r.clone());
        let mut buf = Vec::new();
        assert!(read_message(&mut cur, &mut buf).unwrap());
        assert_eq!(buf, r);
        assert!(!read_message(&mut cur, &mut buf).unwrap());
    }

    #[test]
    fn headers_parse_to_lower_case_names_and_trimmed_values() {
        let h =
            Headers::parse(&["Authorization: Bearer a.b.c", "x-a:b", "X-Debug: \t 1 \t"]).unwrap();
        let got: Vec<(&str, &[u8])> = h.iter().map(|(n, v)| (n.as_str(), v.as_bytes())).collect();
        assert_eq!(
            got,
            [
                ("authorization", &b"Bearer a.b.c"[..]),
                ("x-a", b"b"),
                ("x-debug", b"1")
            ]
        );
        assert!(Headers::parse::<&str>(&[]).unwrap().is_empty());
        // An empty value is a value.
        assert_eq!(Headers::parse(&["x-empty:"]).unwrap().iter().count(), 1);
    }

    #[test]
    fn headers_refuse_what_is_not_a_header_or_out_of_bounds() {
        use HeaderError::*;
        let one = |a: &str| Headers::parse(&[a]).unwrap_err();
        assert_eq!(one("no colon"), NoColon("no colon".into()));
        for bad in ["bad name: x", ": x", "x\r\ny: z", "é: x", "x y:z"] {
            assert_eq!(one(bad), BadName(bad.into()), "{bad:?}");
        }
        for bad in ["x: a\r\nInjected: b", "x: a\nb", "x: \0", "x: a\x7f"] {
            assert_eq!(one(bad), BadValue(bad.into()), "{bad:?}");
        }
        for (arg, name) in [
            ("Host: elsewhere", "host"),
            ("content-length: 3", "content-length"),
            ("Transfer-Encoding: chunked", "transfer-encoding"),
            ("Connection: close", "connection"),
            ("TE: trailers", "te"),
        ] {
            assert_eq!(one(arg), Reserved(arg.into(), name));
        }
        // At the bounds, and one past them.
        let many: Vec<String> = (0..MAX_EXTRA_HEADERS)
            .map(|i| format!("x-{i}: v"))
            .collect();
        assert!(Headers::parse(&many).is_ok());
        let too_many: Vec<String> = (0..=MAX_EXTRA_HEADERS)
            .map(|i| format!("x-{i}: v"))
            .collect();
        assert_eq!(Headers::parse(&too_many).unwrap_err(), TooMany(17));
        let half = MAX_EXTRA_BYTES / 2 - 3;
        let full = [
            format!("x-a: {}", "v".repeat(half)),
            format!("x-b: {}", "v".repeat(half)),
        ];
        assert!(Headers::parse(&full).is_ok());
        let over = [full[0].clone(), format!("{}w", full[1])];
        assert_eq!(
            Headers::parse(&over).unwrap_err(),
            TooLarge(MAX_EXTRA_BYTES + 1)
        );
    }

    #[test]
    fn extra_headers_are_in_the_request_and_keep_its_framing() {
        let h = Headers::parse(&["Authorization: Bearer t0k.en.sig", "x-bench: 1"]).unwrap();
        let r = request(false, &h);
        assert_eq!(parse_head(&r).unwrap(), Some((r.len(), false)));
        let head = String::from_utf8_lossy(&r[..r.len() - BODY]).into_owned();
        assert_eq!(
            head,
            "POST /echo HTTP/1.1\r\nHost: server\r\nConnection: keep-alive\r\n\
             authorization: Bearer t0k.en.sig\r\nx-bench: 1\r\nContent-Length: 1024\r\n\r\n"
        );
        // The largest extra headers still fit the server's header block.
        let big = [format!("x-a: {}", "v".repeat(MAX_EXTRA_BYTES - 3))];
        let r = request(true, &Headers::parse(&big).unwrap());
        assert_eq!(parse_head(&r).unwrap(), Some((r.len(), true)));
        assert!(r.len() - BODY < MAX_HEADERS);
    }

    /// Reads from a fixed answer, keeps what is written.
    struct Peer {
        answer: std::io::Cursor<Vec<u8>>,
        sent: Vec<u8>,
    }

    impl Read for Peer {
        fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
            Read::read(&mut self.answer, b)
        }
    }

    impl Write for Peer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            Write::write(&mut self.sent, b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn exchange_takes_only_a_200() {
        let req = request(false, &none());
        let mut buf = Vec::new();
        let mut ok = Peer {
            answer: std::io::Cursor::new(response()),
            sent: Vec::new(),
        };
        exchange(&mut ok, &req, &mut buf).unwrap();
        assert_eq!(ok.sent, req);
        for refusal in [
            &b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 13\r\n\r\ninvalid_token",
            b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
        ] {
            let mut p = Peer {
                answer: std::io::Cursor::new(refusal.to_vec()),
                sent: Vec::new(),
            };
            let e = exchange(&mut p, &req, &mut buf).unwrap_err().to_string();
            assert!(e.starts_with("answered \"HTTP/1.1 "), "{e}");
        }
    }
}
