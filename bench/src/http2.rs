//! HTTP/2 for the L7 rows: cleartext with prior knowledge (h2c, what a
//! mesh's `appProtocol: http2` port carries inside the tunnel), the same
//! exchange as [`crate::http`] — `POST /echo` with a 1 KiB body answered by a
//! 200 with a 1 KiB body.
//!
//! - The server side: `quicmesh-bench serve` hands a connection that starts
//!   with the HTTP/2 preface to [`serve_conn`] (hyper); HTTP/1.1 keeps its
//!   own hand-written path, so the L4 figures are untouched.
//! - The load generator (`quicmesh-bench load --http2`): a fixed number of
//!   HTTP/2 connections on a two-thread tokio runtime. Open loop: a thread
//!   of its own keeps the schedule (request `i` at `start + i / rate`, the
//!   same precise sleeps as [`crate::load`]) and hands each slot to the
//!   runtime, which sends it on the next connection in turn as a new stream
//!   (HTTP/2 multiplexes: a request never waits for a free connection, only
//!   for the runtime to pick it up, which is its `send_lag`). Closed loop:
//!   `streams` requests in flight on each connection, each sent when the
//!   previous one on its slot is answered. Latency runs from the scheduled
//!   (open) or actual (closed) send to the last byte of the response body.
//!   Every request carries the load's extra [`crate::http::Headers`]; an
//!   answer other than a 200 with a 1 KiB body is an error.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper::{Request, Response, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::http::{Headers, BODY};
use crate::load::{nanos, set_timer_slack, LoadReport, LoadSpec, Mode, ThreadOut};

/// What every HTTP/2 connection starts with (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// A request that takes longer is an error.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Errors after which the generator stops.
const MAX_ERRORS: u64 = 100;

static REQUEST_BODY: [u8; BODY] = [b'q'; BODY];
static RESPONSE_BODY: [u8; BODY] = [b'm'; BODY];

/// A TCP stream whose first bytes were already read (to tell HTTP/2 from
/// HTTP/1.1): reads give those back first.
struct Rewind {
    head: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.head.len() {
            let n = buf.remaining().min(this.head.len() - this.pos);
            buf.put_slice(&this.head[this.pos..this.pos + n]);
            this.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Serves one HTTP/2 connection whose first bytes, `head`, were already read.
pub async fn serve_conn(s: TcpStream, head: Vec<u8>) -> Result<()> {
    let io = TokioIo::new(Rewind {
        head,
        pos: 0,
        inner: s,
    });
    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .max_concurrent_streams(1024)
        .serve_connection(io, hyper::service::service_fn(answer))
        .await
        .context("serving HTTP/2")
}

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    // Read the whole request, as the HTTP/1.1 path does.
    req.into_body().collect().await?;
    let mut resp = Response::new(Full::new(Bytes::from_static(&RESPONSE_BODY)));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/octet-stream"),
    );
    Ok(resp)
}

type Sender = SendRequest<Full<Bytes>>;

async fn connect(uri: &Uri, addr: std::net::SocketAddr) -> Result<Sender> {
    let tcp = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
        .await
        .with_context(|| format!("connecting to {addr}: timed out"))?
        .with_context(|| format!("connecting to {addr}"))?;
    tcp.set_nodelay(true)?;
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .with_context(|| format!("HTTP/2 handshake with {uri}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

/// What every request goes to and carries.
struct Target {
    uri: Uri,
    headers: Headers,
}

/// One request on `s`, bounded by [`IO_TIMEOUT`]; checks the answer.
async fn exchange(s: &mut Sender, t: &Target) -> Result<()> {
    let mut req = Request::post(t.uri.clone())
        .header(hyper::header::CONTENT_LENGTH, BODY)
        .body(Full::new(Bytes::from_static(&REQUEST_BODY)))?;
    let h = req.headers_mut();
    for (name, value) in t.headers.iter() {
        h.append(name.clone(), value.clone());
    }
    let work = async {
        s.ready().await?;
        let resp = s.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        if status != hyper::StatusCode::OK || body.len() != BODY {
            bail!("answered {status} with {} bytes", body.len());
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(IO_TIMEOUT, work)
        .await
        .context("request timed out")?
}

/// Runs the HTTP/2 load described by `spec` (open or closed) and reports it.
pub fn run(spec: &LoadSpec) -> Result<LoadReport> {
    if spec.conns == 0 || spec.conns > 1024 || spec.streams == 0 || spec.streams > 256 {
        bail!("conns must be 1..=1024 and streams 1..=256");
    }
    if spec.mode == Mode::Open && !(spec.rate > 0.0 && spec.rate <= 1e6) {
        bail!("rate must be in (0, 1e6]");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let out = rt.block_on(async {
        let target = Target {
            uri: format!("http://{}/echo", spec.addr).parse()?,
            headers: spec.headers.clone(),
        };
        // Connections first, so their setup is not part of any measurement.
        let mut senders = Vec::new();
        for _ in 0..spec.conns {
            senders.push(connect(&target.uri, spec.addr).await?);
        }
        match spec.mode {
            Mode::Open => open_loop(spec, target, senders).await,
            Mode::Closed => closed_loop(spec, target, senders).await,
            Mode::Churn => bail!("churn is HTTP/1.1 only"),
        }
    })?;
    Ok(LoadReport::new(spec, "2", spec.streams, out))
}

/// What one request saw: scheduled, sent, answered (None: failed).
type Sample = (Instant, Instant, Option<Instant>);

async fn open_loop(spec: &LoadSpec, target: Target, mut senders: Vec<Sender>) -> Result<ThreadOut> {
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    // The schedule is kept by a thread of its own: the runtime's timers
    // round to milliseconds.
    let rate = spec.rate;
    let clock = std::thread::spawn(move || {
        set_timer_slack();
        let interval = Duration::from_secs_f64(1.0 / rate);
        let mut scheduled = start;
        while scheduled < end {
            crate::load::wait_for_slot(scheduled, rate);
            if tx.send(scheduled).is_err() {
                return;
            }
            scheduled += interval;
        }
    });
    let target = Arc::new(target);
    let mut out = ThreadOut::default();
    let mut inflight = tokio::task::JoinSet::new();
    let mut next = 0usize;
    let tally = |out: &mut ThreadOut, (scheduled, sent, done): Sample| match done {
        None => out.errors += 1,
        Some(done) if scheduled >= measure_from => {
            out.lat.push(nanos(done - scheduled));
            out.lag.push(nanos(sent - scheduled));
        }
        Some(_) => {}
    };
    while let Some(scheduled) = rx.recv().await {
        let k = next % senders.len();
        next += 1;
        if senders[k].is_closed() {
            // The connection went away (counted as errors already): a new one.
            if let Ok(s) = connect(&target.uri, spec.addr).await {
                senders[k] = s;
            }
        }
        let (mut s, target) = (senders[k].clone(), target.clone());
        inflight.spawn(async move {
            let sent = Instant::now();
            let ok = exchange(&mut s, &target).await.is_ok();
            (scheduled, sent, ok.then(Instant::now))
        });
        while let Some(r) = inflight.try_join_next() {
            tally(&mut out, r?);
        }
        if out.errors >= MAX_ERRORS {
            break;
        }
    }
    drop(rx);
    while let Some(r) = inflight.join_next().await {
        tally(&mut out, r?);
    }
    clock
        .join()
        .map_err(|_| anyhow::anyhow!("the clock thread panicked"))?;
    Ok(out)
}

async fn closed_loop(spec: &LoadSpec, target: Target, senders: Vec<Sender>) -> Result<ThreadOut> {
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration;
    let target = Arc::new(target);
    let mut slots = tokio::task::JoinSet::new();
    for s in &senders {
        for _ in 0..spec.streams {
            let (mut s, target) = (s.clone(), target.clone());
            slots.spawn(async move {
                let mut out = ThreadOut::default();
                tokio::time::sleep_until(start.into()).await;
                while out.errors < MAX_ERRORS {
                    let sent = Instant::now();
                    if sent >= end {
                        break;
                    }
                    let ok = exchange(&mut s, &target).await.is_ok();
                    let done = Instant::now();
                    if !ok {
                        out.errors += 1;
                        // Not a hot loop on a dead connection.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    } else if sent >= measure_from && done <= end {
                        out.lat.push(nanos(done - sent));
                    }
                }
                out
            });
        }
    }
    let mut out = ThreadOut::default();
    while let Some(r) = slots.join_next().await {
        let r = r?;
        out.lat.extend(r.lat);
        out.errors += r.errors;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[test]
    fn both_modes_run_against_the_server_on_loopback() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr: SocketAddr = l.local_addr().unwrap();
        drop(l);
        std::thread::spawn(move || crate::http::serve(addr, 1));
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(addr).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        for (mode, rate) in [(Mode::Open, 500.0), (Mode::Closed, 0.0)] {
            let spec = LoadSpec {
                addr,
                mode,
                rate,
                conns: 2,
                streams: 2,
                http2: true,
                headers: Headers::default(),
                duration: Duration::from_millis(300),
                warmup: Duration::from_millis(50),
            };
            let r = run(&spec).unwrap();
            assert_eq!(r.errors, 0, "{mode:?}");
            assert!(r.requests > 10, "{mode:?}: {r:?}");
            assert!(r.latency_us.p50 > 0.0);
            assert_eq!(r.http, "2");
        }
        // The same server still speaks HTTP/1.1 on the same port.
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let mut buf = Vec::new();
        crate::http::exchange(
            &mut s,
            &crate::http::request(false, &Headers::default()),
            &mut buf,
        )
        .unwrap();
        assert_eq!(
            crate::http::parse_head(&buf).unwrap(),
            Some((buf.len(), false))
        );
    }

    /// An HTTP/2 server on loopback that answers 200 with a 1 KiB body only
    /// to requests carrying `x-bench: yes` (twice: a repeated header is
    /// sent as given), 403 to the others.
    fn gatekeeper() -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        l.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(l).unwrap();
                while let Ok((s, _)) = l.accept().await {
                    let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                        let n = req
                            .headers()
                            .get_all("x-bench")
                            .iter()
                            .filter(|v| *v == "yes")
                            .count();
                        req.into_body().collect().await?;
                        let (status, body) = if n == 2 {
                            (hyper::StatusCode::OK, &RESPONSE_BODY[..])
                        } else {
                            (hyper::StatusCode::FORBIDDEN, &b""[..])
                        };
                        let mut resp = Response::new(Full::new(Bytes::from_static(body)));
                        *resp.status_mut() = status;
                        Ok::<_, hyper::Error>(resp)
                    });
                    tokio::spawn(
                        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(s), svc),
                    );
                }
            });
        });
        addr
    }

    #[test]
    fn headers_go_on_every_request_and_refusals_are_errors() {
        let addr = gatekeeper();
        let yes = ["x-bench: yes", "X-Bench: yes"];
        for (headers, allowed) in [(&yes[..], true), (&yes[..1], false)] {
            for mode in [Mode::Open, Mode::Closed] {
                let spec = LoadSpec {
                    addr,
                    mode,
                    rate: 500.0,
                    conns: 2,
                    streams: 2,
                    http2: true,
                    headers: Headers::parse(headers).unwrap(),
                    duration: Duration::from_millis(200),
                    warmup: Duration::from_millis(50),
                };
                let r = run(&spec).unwrap();
                if allowed {
                    assert_eq!(r.errors, 0, "{mode:?}");
                    assert!(r.requests > 10, "{mode:?}: {r:?}");
                } else {
                    assert_eq!(r.requests, 0, "{mode:?}: {r:?}");
                    assert!(r.errors > 0, "{mode:?}: {r:?}");
                }
            }
        }
    }
}
