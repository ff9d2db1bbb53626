//! The CONNECT stream as a byte stream, over a real tunnel on loopback:
//! hyper speaking HTTP/1.1 and HTTP/2 through it in both directions, large
//! bodies under flow control, half-close, resets, and the stream metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::identity::SpiffeId;
use crate::tunnel::client::{Pool, PoolKey};
use crate::tunnel::config::{Loopback, TunnelSettings};
use crate::tunnel::pump::Outcome;
use crate::tunnel::server::{self, Inbound, InboundRequest, Refused, Target, Upstream};

/// What the test server does with each accepted stream.
#[derive(Clone, Copy)]
enum Mode {
    /// hyper serves HTTP/1.1 and HTTP/2 (auto-detected) on the stream.
    Http,
    /// Reads to the end, then answers how many bytes it read and finishes.
    CountThenAnswer,
    /// Resets the stream once the client sent a byte (so the 200 it sent
    /// first has arrived: a reset discards what is not yet delivered).
    Reset,
}

struct InProcess(Mode);

impl Inbound for InProcess {
    fn local_identity(&self) -> SpiffeId {
        SpiffeId::parse("spiffe://cluster.local/ns/b/sa/s").unwrap()
    }

    async fn connect(&self, _: &InboundRequest) -> Result<Upstream, Refused> {
        let mode = self.0;
        let serve: server::ServeStream = Box::new(move |stream, _stop| {
            Box::pin(async move {
                let mut io = stream.into_io();
                match mode {
                    Mode::Http => {
                        let service = hyper::service::service_fn(echo);
                        let r = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(io), service)
                            .await;
                        match r {
                            Ok(()) => Outcome::Closed,
                            Err(_) => Outcome::StreamReset,
                        }
                    }
                    Mode::CountThenAnswer => {
                        let mut all = Vec::new();
                        io.read_to_end(&mut all).await.unwrap();
                        io.write_all(format!("read {}", all.len()).as_bytes())
                            .await
                            .unwrap();
                        io.shutdown().await.unwrap();
                        Outcome::Closed
                    }
                    Mode::Reset => {
                        let mut byte = [0u8; 1];
                        let _ = io.read_exact(&mut byte).await;
                        io.reset();
                        Outcome::Stopped
                    }
                }
            })
        });
        Ok(Upstream {
            target: Target::Serve(serve),
            stop: CancellationToken::new(),
            authz: "allow".into(),
            guard: Box::new(()),
        })
    }
}

/// Answers with the method, path and body length, then the body itself.
async fn echo(req: hyper::Request<Incoming>) -> Result<hyper::Response<Full<Bytes>>, hyper::Error> {
    let head = format!("{} {} ", req.method(), req.uri().path());
    let body = req.into_body().collect().await?.to_bytes();
    let mut out = head.into_bytes();
    out.extend_from_slice(format!("{}\n", body.len()).as_bytes());
    out.extend_from_slice(&body);
    Ok(hyper::Response::new(Full::new(Bytes::from(out))))
}

struct Setup {
    pool: Arc<Pool>,
    key: PoolKey,
    lo: Loopback,
    stop: CancellationToken,
}

impl Setup {
    fn new(mode: Mode) -> Setup {
        let settings = TunnelSettings::default();
        let lo = Loopback::new(&settings);
        let stop = lo.serve(InProcess(mode), &settings);
        let (pool, key) = lo.pool(settings);
        Setup {
            pool,
            key,
            lo,
            stop,
        }
    }

    async fn open(&self) -> ConnectStream {
        let authority: SocketAddr = "10.0.0.1:80".parse().unwrap();
        self.pool
            .open(
                &self.key,
                &self.lo.client_svid,
                authority,
                Default::default(),
            )
            .await
            .unwrap()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// 1 MiB of bytes that are not all alike, so a misplaced frame shows.
fn big_body() -> Vec<u8> {
    (0..1u32 << 20).map(|i| (i % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_requests_go_through_with_bodies_larger_than_the_windows() {
    let s = Setup::new(Mode::Http);
    let io = TokioIo::new(s.open().await.into_io());
    let (mut client, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    // Keep-alive: several requests on the one stream.
    for (path, body) in [("/small", b"hello".to_vec()), ("/big", big_body())] {
        let req = hyper::Request::post(path)
            .header("host", "svc")
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap();
        // The connection turns idle only once the previous response is
        // read to its end and the dispatcher has run: wait for it.
        client.ready().await.unwrap();
        let resp = client.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let got = resp.into_body().collect().await.unwrap().to_bytes();
        let mut want = format!("POST {path} {}\n", body.len()).into_bytes();
        want.extend_from_slice(&body);
        assert!(got == want, "{path}: {} bytes back", got.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_multiplexes_requests_on_one_stream() {
    let s = Setup::new(Mode::Http);
    let io = TokioIo::new(s.open().await.into_io());
    let (client, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(conn);
    let requests = (0..20).map(|i| {
        let mut client = client.clone();
        async move {
            let body = vec![b'x'; i * 10_000];
            let req = hyper::Request::post(format!("http://svc/r{i}"))
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            let resp = client.send_request(req).await.unwrap();
            let got = resp.into_body().collect().await.unwrap().to_bytes();
            let first = got.split(|b| *b == b'\n').next().unwrap().to_vec();
            assert_eq!(
                String::from_utf8(first).unwrap(),
                format!("POST /r{i} {}", i * 10_000)
            );
            assert_eq!(
                got.len(),
                format!("POST /r{i} {}\n", i * 10_000).len() + i * 10_000
            );
        }
    });
    futures::future::join_all(requests).await;
    // One tunnel stream carried all twenty.
    assert_eq!(s.pool.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_then_answer_and_the_bytes_are_counted() {
    let s = Setup::new(Mode::CountThenAnswer);
    let stream = s.open().await;
    let bytes = stream.bytes();
    let mut io = stream.into_io();
    let body = big_body();
    // Writes of every size, including ones that end mid-frame of the peer's
    // reads and empty ones.
    let mut at = 0;
    for size in [1, 0, 7, 65_535, 65_536, 65_537, 300_000].iter().cycle() {
        let end = (at + size).min(body.len());
        io.write_all(&body[at..end]).await.unwrap();
        at = end;
        if at == body.len() {
            break;
        }
    }
    io.shutdown().await.unwrap();
    assert!(io.write_all(b"more").await.is_err(), "wrote after FIN");
    let mut answer = String::new();
    io.read_to_string(&mut answer).await.unwrap();
    assert_eq!(answer, format!("read {}", body.len()));
    assert_eq!(bytes.sent(), body.len() as u64);
    assert_eq!(bytes.received(), answer.len() as u64);
    drop(io);
    let active = s.lo.metrics.streams_active.get();
    // The server side's count ends when its handler returns; wait for it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while s.lo.metrics.streams_active.get() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "streams still active: {active}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_reaches_the_reader_as_connection_reset() {
    let s = Setup::new(Mode::Reset);
    let mut io = s.open().await.into_io();
    io.write_all(b"x").await.unwrap();
    let mut buf = [0u8; 16];
    let e = tokio::time::timeout(Duration::from_secs(10), io.read(&mut buf))
        .await
        .expect("the reset arrived")
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
}
