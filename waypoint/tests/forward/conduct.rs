//! What a client may make the waypoint hold, and how it lets go: bounded heads, idle connections, HTTP/2 abuse, draining.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioExecutor;

use crate::lab::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_request_head_is_refused_and_the_waypoint_keeps_serving() {
    let s = setup(5).await;
    let mut c = s.http1().await;
    let big = "x".repeat(100 * 1024);
    c.ready().await.unwrap();
    let req = http::Request::get("/api/1")
        .header("host", "shop")
        .header("x-big", big.as_str())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let refused = match c.send_request(req).await {
        Ok(resp) => resp.status() == 431,
        // hyper may close before writing the 431 out.
        Err(_) => true,
    };
    assert!(refused, "a 100 KiB header was taken");
    assert_eq!(s.closed_for("head_too_large").await, 1.0);
    // A new connection is served as before.
    let mut c = s.http1().await;
    let (status, _, body) = get(&mut c, "/v1-only/x", &[]).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "v1 GET /inner/x host=rewritten.example x-added=")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_no_request_is_closed() {
    use tokio::io::AsyncReadExt;
    let s = setup(7).await;
    let mut io = s.open(VIP).await.unwrap().into_inner();
    // Half an HTTP/2 preface, then nothing.
    tokio::io::AsyncWriteExt::write_all(&mut io, b"PRI * HTTP/2.0")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(
        waypoint::proxy::HEADER_TIMEOUT + Duration::from_secs(10),
        io.read(&mut buf),
    )
    .await;
    match closed {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("{n} bytes answered to half a preface"),
        Err(_) => panic!("still open after the header timeout"),
    }
    assert_eq!(s.closed_for("no_request").await, 1.0);
}

/// An HTTP/2 frame: length, type, flags, stream, payload.
pub(crate) fn h2_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_rapid_reset_closes_the_connection_and_is_counted() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = setup(15).await;
    let mut io = s.open(VIP).await.unwrap().into_inner();
    // The preface, empty SETTINGS, then 100 GETs each cancelled at once
    // (CVE-2023-44487), in one write: the waypoint sees them before it
    // has served any.
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    h2_frame(&mut out, 0x4, 0, 0, &[]);
    // HPACK: :method GET, :scheme http, :path / (static table), and
    // :authority as a literal.
    let host = b"shop.shop.svc.cluster.local";
    let mut block = vec![0x82, 0x86, 0x84, 0x01, host.len() as u8];
    block.extend_from_slice(host);
    for i in 0..100u32 {
        let stream = 2 * i + 1;
        // HEADERS with END_STREAM | END_HEADERS, then RST_STREAM(CANCEL).
        h2_frame(&mut out, 0x1, 0x5, stream, &block);
        h2_frame(&mut out, 0x3, 0, stream, &8u32.to_be_bytes());
    }
    io.write_all(&out).await.unwrap();
    // Frames until GOAWAY (bounded: the answers to at most 100 streams).
    let goaway = tokio::time::timeout(Duration::from_secs(20), async {
        let mut frames = 0;
        loop {
            let mut head = [0u8; 9];
            io.read_exact(&mut head).await.ok()?;
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len.min(1 << 20)];
            io.read_exact(&mut payload).await.ok()?;
            if head[3] == 0x7 && len >= 8 {
                return Some(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
            }
            frames += 1;
            assert!(frames < 1000, "no GOAWAY in 1000 frames");
        }
    })
    .await
    .expect("the connection was neither refused nor closed");
    // ENHANCE_YOUR_CALM.
    assert_eq!(goaway, Some(0xb), "the waypoint's answer to a rapid reset");
    assert_eq!(s.closed_for("http2_abuse").await, 1.0, "{}", s.metrics());
    // Another client is served as before.
    let (mut client, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), s.open(VIP).await.unwrap())
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("http://shop.shop.svc.cluster.local/v1-only/x")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(client.send_request(req).await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_ends_connections_after_their_requests() {
    let s = setup(8).await;
    let (mut client, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), s.open(VIP).await.unwrap())
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = || {
        http::Request::get("http://shop.shop.svc.cluster.local/v1-only/d")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    assert_eq!(client.send_request(req()).await.unwrap().status(), 200);
    s.waypoint.drain();
    // GOAWAY: the client's connection ends (bounded), and takes no more.
    let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(ended.is_ok(), "the drained connection did not end");
    assert!(client.send_request(req()).await.is_err());
}
