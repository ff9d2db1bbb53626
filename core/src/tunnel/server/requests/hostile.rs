//! An authenticated but hostile peer against a real tunnel server on
//! loopback (real QUIC, TLS and certificates): request streams are written
//! byte by byte as the test wants them, not as a client library would.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::identity::SpiffeId;
use crate::metrics::{ReasonLabels, TunnelMetrics};
use crate::tunnel::config::{client_config, Loopback, TunnelSettings};
use crate::tunnel::http3::stream::{send_head, FrameReader};
use crate::tunnel::http3::{code, frame, message, qpack, Http3, Side};
use crate::tunnel::server::{serve, Inbound, InboundRequest, Refused, ServerCtx, Upstream};

/// Connects every accepted request to a local sink, counting them.
struct Sink {
    addr: SocketAddr,
    connects: AtomicUsize,
}

impl Inbound for Sink {
    fn local_identity(&self) -> SpiffeId {
        SpiffeId::parse("spiffe://cluster.local/ns/b/sa/s").unwrap()
    }
    async fn connect(&self, _: &InboundRequest) -> Result<Upstream, Refused> {
        self.connects.fetch_add(1, Ordering::SeqCst);
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        Ok(Upstream::plain(tcp))
    }
}

struct Server {
    lo: Loopback,
    settings: TunnelSettings,
    sink: Arc<Sink>,
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Server {
    async fn start(settings: TunnelSettings) -> Server {
        let lo = Loopback::new(&settings);
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink_addr = tcp.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = tcp.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                });
            }
        });
        let sink = Arc::new(Sink {
            addr: sink_addr,
            connects: AtomicUsize::new(0),
        });
        let stop = CancellationToken::new();
        let ctx = ServerCtx::new(lo.metrics.clone(), Arc::new(settings.clone()));
        tokio::spawn(serve(
            lo.server.clone(),
            sink.clone(),
            ctx,
            stop.clone(),
            Duration::from_secs(1),
        ));
        let addr = lo.server.local_addr().unwrap();
        Server {
            lo,
            settings,
            sink,
            addr,
            stop,
        }
    }

    /// An authenticated QUIC connection with HTTP/3 control streams set up.
    async fn connect(&self) -> quinn::Connection {
        let conn = self.connect_bare().await;
        // Kept alive by its own task until the connection ends.
        Http3::start(conn.clone(), Side::Client, 16 << 10, TunnelMetrics::new())
            .await
            .unwrap();
        conn
    }

    fn refused(&self, reason: &str) -> u64 {
        refusals(&self.lo.metrics, reason)
    }
}

fn refusals(m: &TunnelMetrics, reason: &str) -> u64 {
    m.refusals
        .get_or_create(&ReasonLabels {
            direction: "inbound".into(),
            reason: reason.into(),
        })
        .get()
}

/// Opens a stream and writes `bytes` on it as they are.
async fn raw(conn: &quinn::Connection, bytes: &[u8]) -> (quinn::SendStream, FrameReader) {
    let (mut send, recv) = conn.open_bi().await.unwrap();
    // The server may stop the stream before all of it is written.
    let _ = send.write_all(bytes).await;
    (send, FrameReader::new(recv))
}

/// A HEADERS frame carrying `fields` as they are (duplicates and all).
fn headers_frame(fields: &[(&str, &str)]) -> Vec<u8> {
    let block = qpack::encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
    frame::frame(frame::HEADERS, &block)
}

/// The status the server answered, within a bounded wait.
async fn status(r: &mut FrameReader) -> StatusCode {
    let fields = tokio::time::timeout(Duration::from_secs(10), r.head(16 << 10))
        .await
        .expect("the server answered within 10 s")
        .expect("a response head");
    message::response(&fields).unwrap().status
}

/// The STOP_SENDING code the server sent for our half, within a bound.
async fn stopped(send: &mut quinn::SendStream) -> u64 {
    let code = tokio::time::timeout(Duration::from_secs(10), send.stopped())
        .await
        .expect("the server stopped the stream within 10 s")
        .expect("stream not lost");
    code.expect("stopped, not finished").into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_headers_frame_over_the_limit_is_refused_before_it_is_read() {
    let srv = Server::start(TunnelSettings::default()).await;
    let conn = srv.connect().await;
    // A HEADERS frame claiming 4 MiB, then 256 KiB of it, never finished:
    // the server must refuse on the length alone, not buffer the bytes.
    let mut bytes = Vec::new();
    frame::put_header(&mut bytes, frame::HEADERS, 4 << 20);
    bytes.extend(std::iter::repeat_n(0x41u8, 256 << 10));
    let (mut send, mut r) = raw(&conn, &bytes).await;
    assert_eq!(
        status(&mut r).await,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    assert_eq!(stopped(&mut send).await, u64::from(code::H3_EXCESSIVE_LOAD));
    assert_eq!(srv.refused("header_too_large"), 1);
    // Unknown frames before the head count against the same limit.
    let mut grease = Vec::new();
    for _ in 0..3 {
        grease.extend(frame::frame(0x21, &[0u8; 8 << 10]));
    }
    let (mut send, mut r) = raw(&conn, &grease).await;
    assert_eq!(
        status(&mut r).await,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    assert_eq!(stopped(&mut send).await, u64::from(code::H3_EXCESSIVE_LOAD));
    assert_eq!(srv.refused("header_too_large"), 2);
    assert_eq!(srv.sink.connects.load(Ordering::SeqCst), 0);
    // Small on the wire, too large decoded: 600 one-byte fields count 33
    // bytes each (RFC 9114 §4.2.2), 19.8 KB in all.
    let many: Vec<(String, String)> = (0..600)
        .map(|i| (format!("x{}", i % 10), String::new()))
        .collect();
    let mut fields = vec![(":method", "CONNECT"), (":authority", "10.0.0.1:80")];
    fields.extend(many.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let block = headers_frame(&fields);
    assert!(block.len() < 16 << 10, "{} bytes on the wire", block.len());
    let (mut send, mut r) = raw(&conn, &block).await;
    assert_eq!(
        status(&mut r).await,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    assert_eq!(stopped(&mut send).await, u64::from(code::H3_EXCESSIVE_LOAD));
    assert_eq!(srv.refused("header_too_large"), 3);
    // The connection still serves well-formed requests.
    let ok = headers_frame(&[(":method", "CONNECT"), (":authority", "10.0.0.1:80")]);
    let (_send, mut r) = raw(&conn, &ok).await;
    assert_eq!(status(&mut r).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_request_headers_time_out_and_free_their_streams() {
    let settings = TunnelSettings {
        header_timeout: Duration::from_millis(500),
        ..TunnelSettings::default()
    };
    let srv = Server::start(settings).await;
    let conn = srv.connect().await;
    // 100 streams, each with a HEADERS frame of 100 bytes of which 10 came.
    let mut partial = Vec::new();
    frame::put_header(&mut partial, frame::HEADERS, 100);
    partial.extend_from_slice(&[0u8; 10]);
    let mut streams = Vec::new();
    for _ in 0..100 {
        // More than the initial stream limit (32): the server raises it as
        // the streams open (each open waits for credit otherwise).
        let s = tokio::time::timeout(Duration::from_secs(10), raw(&conn, &partial))
            .await
            .expect("stream credit within 10 s");
        streams.push(s);
    }
    for (send, r) in &mut streams {
        assert_eq!(status(r).await, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(stopped(send).await, u64::from(code::H3_REQUEST_INCOMPLETE));
    }
    assert_eq!(srv.refused("header_timeout"), 100);
    assert_eq!(srv.sink.connects.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_connect_requests_are_refused() {
    let srv = Server::start(TunnelSettings::default()).await;
    let conn = srv.connect().await;
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[
                (":method", "CONNECT"),
                (":authority", "10.0.0.1:80"),
                (":authority", "10.0.0.2:80"),
            ],
            "duplicate_pseudo_header",
        ),
        (
            &[
                (":method", "CONNECT"),
                (":scheme", "https"),
                (":authority", "10.0.0.1:80"),
                (":path", "/"),
            ],
            "connect_scheme_or_path",
        ),
        (
            &[(":method", "CONNECT"), ("host", "10.0.0.1:80")],
            "missing_authority",
        ),
        (
            &[
                (":method", "CONNECT"),
                (":authority", "10.0.0.1:80"),
                ("connection", "keep-alive"),
            ],
            "connection_specific_field",
        ),
    ];
    for (fields, label) in cases {
        let (mut send, mut r) = raw(&conn, &headers_frame(fields)).await;
        assert_eq!(status(&mut r).await, StatusCode::BAD_REQUEST, "{fields:?}");
        assert_eq!(stopped(&mut send).await, u64::from(code::H3_MESSAGE_ERROR));
        assert_eq!(srv.refused(label), 1, "{label}");
    }
    assert_eq!(srv.sink.connects.load(Ordering::SeqCst), 0);
    // The compliant form gets through.
    let ok = headers_frame(&[(":method", "CONNECT"), (":authority", "10.0.0.1:80")]);
    let (_send, mut r) = raw(&conn, &ok).await;
    assert_eq!(status(&mut r).await, StatusCode::OK);
    assert_eq!(srv.sink.connects.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_that_do_not_belong_close_the_connection() {
    let srv = Server::start(TunnelSettings::default()).await;
    // DATA before HEADERS on a request stream: H3_FRAME_UNEXPECTED.
    let conn = srv.connect().await;
    let (_send, _r) = raw(&conn, &frame::frame(frame::DATA, b"x")).await;
    let e = tokio::time::timeout(Duration::from_secs(10), conn.closed())
        .await
        .expect("closed within 10 s");
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(
                c.error_code.into_inner(),
                u64::from(code::H3_FRAME_UNEXPECTED)
            );
        }
        e => panic!("closed with {e}"),
    }
    assert_eq!(srv.refused("h3_frame_unexpected"), 1);
    // A field section referring to the dynamic table we never allowed.
    let conn = srv.connect().await;
    let (_send, _r) = raw(&conn, &frame::frame(frame::HEADERS, &[0x01, 0x00, 0x80])).await;
    let e = tokio::time::timeout(Duration::from_secs(10), conn.closed())
        .await
        .expect("closed within 10 s");
    assert!(
        matches!(&e, quinn::ConnectionError::ApplicationClosed(c)
            if c.error_code.into_inner() == u64::from(code::QPACK_DECOMPRESSION_FAILED)),
        "{e}"
    );
    assert_eq!(srv.refused("qpack"), 1);
}

/// What our own client sends is the RFC 9114 §4.4 form: `:method` and
/// `:authority`, then the caller's headers, no `:scheme`, no `:path`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_sends_the_compliant_connect() {
    let settings = TunnelSettings::default();
    let lo = Loopback::new(&settings);
    let addr = lo.server.local_addr().unwrap();
    let server = lo.server.clone();
    let seen = tokio::spawn(async move {
        let conn = server.accept().await.unwrap().await.unwrap();
        let (mut send, recv) = conn.accept_bi().await.unwrap();
        let mut r = FrameReader::new(recv);
        let fields = r.head(16 << 10).await.unwrap();
        send_head(&mut send, message::status_fields(&StatusCode::OK))
            .await
            .unwrap();
        // Keep the connection until the client is done with it.
        let _ = conn.closed().await;
        fields
    });
    let (pool, key) = lo.pool(settings);
    assert_eq!(key.addr, addr);
    let mut headers = http::HeaderMap::new();
    headers.insert("forwarded", "for=10.0.0.3".parse().unwrap());
    let tunnel = pool
        .open(
            &key,
            &lo.client_svid,
            "10.0.0.1:80".parse().unwrap(),
            headers,
        )
        .await
        .unwrap();
    drop(tunnel);
    lo.client.close(0u32.into(), b"done");
    let fields = seen.await.unwrap();
    let got: Vec<(Bytes, Bytes)> = fields
        .into_iter()
        .map(|f| (Bytes::from(f.name), Bytes::from(f.value)))
        .collect();
    let want: Vec<(Bytes, Bytes)> = [
        (":method", "CONNECT"),
        (":authority", "10.0.0.1:80"),
        ("forwarded", "for=10.0.0.3"),
    ]
    .into_iter()
    .map(|(n, v)| (Bytes::from(n), Bytes::from(v)))
    .collect();
    assert_eq!(got, want);
}

impl Server {
    /// An authenticated QUIC connection with no HTTP/3 set up: the test
    /// writes the control streams itself.
    async fn connect_bare(&self) -> quinn::Connection {
        let lo = &self.lo;
        let cfg = client_config(
            &lo.client_svid,
            lo.bundles.clone(),
            lo.server_id.clone(),
            &lo.metrics,
            &self.settings,
        )
        .unwrap();
        lo.client
            .connect_with(cfg, self.addr, "tunnel.quicmesh")
            .unwrap()
            .await
            .unwrap()
    }
}

/// The HTTP/3 error code the server closed `conn` with, within a bound.
async fn closed_with(conn: &quinn::Connection) -> u64 {
    let e = tokio::time::timeout(Duration::from_secs(10), conn.closed())
        .await
        .expect("closed within 10 s");
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => c.error_code.into_inner(),
        e => panic!("closed with {e}"),
    }
}

async fn uni(conn: &quinn::Connection, bytes: &[u8]) -> quinn::SendStream {
    let mut s = conn.open_uni().await.unwrap();
    s.write_all(bytes).await.unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_stream_rules_are_enforced() {
    let srv = Server::start(TunnelSettings::default()).await;
    let settings = {
        let mut p = Vec::new();
        frame::Settings::default().encode(&mut p);
        frame::frame(frame::SETTINGS, &p)
    };
    let control = |first: &[u8]| {
        let mut b = vec![frame::STREAM_CONTROL as u8];
        b.extend_from_slice(first);
        b
    };

    // A control stream that does not start with SETTINGS.
    let conn = srv.connect_bare().await;
    let _c = uni(&conn, &control(&frame::frame(frame::GOAWAY, &[0]))).await;
    assert_eq!(
        closed_with(&conn).await,
        u64::from(code::H3_MISSING_SETTINGS)
    );
    assert_eq!(srv.refused("h3_missing_settings"), 1);

    // Two control streams.
    let conn = srv.connect_bare().await;
    let _a = uni(&conn, &control(&settings)).await;
    let _b = uni(&conn, &control(&settings)).await;
    assert_eq!(
        closed_with(&conn).await,
        u64::from(code::H3_STREAM_CREATION_ERROR)
    );

    // An encoder stream inserting into a table we said has capacity 0.
    let conn = srv.connect_bare().await;
    let _a = uni(&conn, &control(&settings)).await;
    let _e = uni(
        &conn,
        &[frame::STREAM_QPACK_ENCODER as u8, 0xc0, 0x01, b'x'],
    )
    .await;
    assert_eq!(
        closed_with(&conn).await,
        u64::from(code::QPACK_ENCODER_STREAM_ERROR)
    );
    assert_eq!(srv.refused("qpack_encoder_stream"), 1);

    // The control stream closed: a critical stream.
    let conn = srv.connect_bare().await;
    let mut a = uni(&conn, &control(&settings)).await;
    a.finish().unwrap();
    assert_eq!(
        closed_with(&conn).await,
        u64::from(code::H3_CLOSED_CRITICAL_STREAM)
    );

    // Unknown stream types and settings are ignored: requests still work.
    let conn = srv.connect_bare().await;
    let _a = uni(&conn, &control(&settings)).await;
    let _g = uni(&conn, &[0x21, 1, 2, 3]).await;
    let ok = headers_frame(&[(":method", "CONNECT"), (":authority", "10.0.0.1:80")]);
    let (_send, mut r) = raw(&conn, &ok).await;
    assert_eq!(status(&mut r).await, StatusCode::OK);
}

/// On drain the server sends GOAWAY: the pool stops choosing the
/// connection, the stream already open keeps working, and the server
/// closes the connection once that stream is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_lets_open_streams_finish_and_takes_no_new_ones() {
    use tokio::io::AsyncWriteExt;

    let srv = Server::start(TunnelSettings::default()).await;
    let lo = &srv.lo;
    let (pool, key) = lo.pool(srv.settings.clone());
    assert_eq!(key.addr, srv.addr);
    let tunnel = pool
        .open(
            &key,
            &lo.client_svid,
            "10.0.0.1:80".parse().unwrap(),
            Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(pool.connections(), 1);
    // The app side of the tunnelled connection.
    let apps = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut app = TcpStream::connect(apps.local_addr().unwrap())
        .await
        .unwrap();
    let (captured, _) = apps.accept().await.unwrap();
    let pumping = tokio::spawn(tunnel.pump(captured, CancellationToken::new()));

    srv.stop.cancel();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while pool.connections() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "GOAWAY not seen within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The open stream still carries bytes, then ends cleanly.
    app.write_all(&[7u8; 100_000]).await.unwrap();
    app.shutdown().await.unwrap();
    let mut rest = Vec::new();
    app.read_to_end(&mut rest).await.unwrap();
    let t = tokio::time::timeout(Duration::from_secs(10), pumping)
        .await
        .expect("pump ended")
        .unwrap();
    assert_eq!(t.sent, 100_000);
}

/// A client presenting no certificate is refused and counted with the
/// other certificate refusals, although it never reaches the verifier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_certificate_is_counted() {
    use crate::identity::verify::ServerVerifier;
    use quinn::crypto::rustls::QuicClientConfig;

    let srv = Server::start(TunnelSettings::default()).await;
    let lo = &srv.lo;
    let provider = crate::crypto_provider();
    let verifier = ServerVerifier::new(
        lo.bundles.clone(),
        lo.server_id.clone(),
        provider.clone(),
        Arc::new(lo.metrics.tls.clone()),
    );
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    tls.alpn_protocols = vec![crate::tunnel::ALPN.to_vec()];
    let mut cfg = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()));
    cfg.transport_config(srv.settings.client_transport());
    let attempt = lo
        .client
        .connect_with(cfg, srv.addr, "tunnel.quicmesh")
        .unwrap();
    // TLS 1.3 lets the client finish before the server refuses it: the
    // refusal shows as the connection closing.
    if let Ok(conn) = attempt.await {
        let _ = tokio::time::timeout(Duration::from_secs(10), conn.closed()).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while lo.metrics.tls.count("server", "no_certificate") == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not counted within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(srv.sink.connects.load(Ordering::SeqCst), 0);
}
