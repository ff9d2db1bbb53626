//! Connections carried as streams: opaque TCP, WebSocket, passed-through connections under changing policy.

use std::time::Duration;

use crate::lab::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undeclared_port_carries_tcp_as_bytes_and_http_as_requests() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = setup(14).await;
    // Not HTTP: passed through as bytes, both ways, several times.
    let mut io = s.open(UNDECLARED).await.unwrap().into_inner();
    for msg in [&b"\x00\x01ping\n"[..], b"\x16\x03\x01binary"] {
        io.write_all(msg).await.unwrap();
        let mut got = vec![0u8; 5 + msg.len()];
        tokio::time::timeout(Duration::from_secs(10), io.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, [b"echo:".as_slice(), msg].concat());
    }
    // A client that waits for the server to speak first: TCP after the
    // detection timeout (the echo server says nothing, but the bytes it
    // gets later still arrive).
    let mut io = s.open(UNDECLARED).await.unwrap().into_inner();
    tokio::time::sleep(waypoint::sniff::DETECT_TIMEOUT + Duration::from_millis(200)).await;
    io.write_all(b"late").await.unwrap();
    let mut got = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(10), io.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got, b"echo:late");
    // Each TCP connection is counted when it ends.
    drop(io);
    // A request behind a blank line is still HTTP (hyper skips it), so it
    // cannot reach the app around the waypoint's header handling.
    let mut io = s.open(UNDECLARED).await.unwrap().into_inner();
    io.write_all(b"\r\nGET / HTTP/1.1\r\nhost: echo\r\nx-forwarded-client-cert: forged\r\n\r\n")
        .await
        .unwrap();
    let mut got = vec![0u8; 17];
    tokio::time::timeout(Duration::from_secs(10), io.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        &got, b"HTTP/1.1 200 OK\r\n",
        "served as HTTP, not passed through"
    );
    // HTTP on the same port: served as requests (routed to the Service).
    let (mut c, conn) = hyper::client::conn::http1::handshake(s.open(UNDECLARED).await.unwrap())
        .await
        .unwrap();
    tokio::spawn(conn);
    let (status, _, body) = get(&mut c, "/", &[]).await;
    assert_eq!((status, body.as_str()), (200, "echo-http"));
    drop(io);
    let mut reg = prometheus_client::registry::Registry::default();
    s.waypoint.metrics.register(&mut reg);
    let mut text = String::new();
    for _ in 0..100 {
        text = quicmesh_core::metrics::encode(&reg);
        if text.contains("quicmesh_waypoint_tcp_connections_total{service=\"shop/echo:80\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        text.contains("quicmesh_waypoint_tcp_connections_total{service=\"shop/echo:80\""),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_becomes_a_stream_through_the_waypoint() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = setup(18).await;
    let mut io = s.open(WEBSOCKET).await.unwrap().into_inner();
    io.write_all(
        b"GET /chat HTTP/1.1\r\nhost: ws.shop\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    // The switch, as the backend answered it (its headers, with the
    // upgrade's hop-by-hop headers set again by the waypoint).
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(10), async {
        while !head.ends_with(b"\r\n\r\n") {
            io.read_exact(&mut b).await.unwrap();
            head.push(b[0]);
        }
    })
    .await
    .unwrap();
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(
        head.contains("x-key: dghlihnhbxbszsbub25jzq=="),
        "the key went through: {head}"
    );
    assert!(head.contains("x-upgrade-arrived: true"), "{head}");
    // Then bytes, both ways, several times.
    for msg in ["hello", "again"] {
        io.write_all(msg.as_bytes()).await.unwrap();
        let mut got = vec![0u8; 3 + msg.len()];
        tokio::time::timeout(Duration::from_secs(10), io.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, format!("ws:{msg}").as_bytes());
    }
    // A policy change that no longer admits the client cuts the stream,
    // and the cut is counted.
    let mut denying = (*s.directory.tables()).clone();
    denying.access.insert("ws".into(), deny_all());
    s.directory.set(1, denying);
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), io.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "still open after the policy change");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = s.metrics();
        if text.lines().any(|l| {
            l.starts_with("quicmesh_waypoint_upgraded_streams_total{")
                && l.contains("result=\"authz_revoked\"")
                && l.ends_with(" 1")
        }) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes a GET for `path` on a raw (passed-through) connection and reads
/// until the guarded app's answer to it is in; None if the connection
/// ends or nothing comes within the deadline.
pub(crate) async fn raw_get<S>(io: &mut S, path: &str) -> Option<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    io.write_all(format!("GET {path} HTTP/1.1\r\nhost: guarded\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let want = format!("guarded GET {path}");
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 512];
        while !String::from_utf8_lossy(&got).contains(&want) {
            match io.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
        Some(String::from_utf8_lossy(&got).into_owned())
    })
    .await
    .ok()
    .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_cuts_a_passed_through_connection_it_no_longer_allows() {
    use tokio::io::AsyncReadExt;
    let s = setup(19).await;
    let mut io = s
        .open_as(&s.admin_svid, GUARDED_TCP)
        .await
        .unwrap()
        .into_inner();
    let first = raw_get(&mut io, "/one")
        .await
        .expect("the admin is let through");
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");

    // A new config that still allows it: the connection carries on.
    let tables = s.directory.tables();
    s.directory.set(1, (*tables).clone());
    assert!(
        raw_get(&mut io, "/two").await.is_some(),
        "an allowed connection was cut"
    );

    // A config whose policy for the guarded workload admits nobody: cut.
    let mut denying = (*tables).clone();
    denying.access.insert("guarded".into(), deny_all());
    s.directory.set(2, denying);
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), io.read_to_end(&mut buf)).await;
    assert!(
        matches!(read, Ok(Err(_)) | Ok(Ok(_))),
        "still open after the policy change: {read:?}"
    );
    let text = s.metrics();
    assert!(
        text.contains(
            "quicmesh_waypoint_tcp_connections_total{service=\"shop/guarded:80\",result=\"authz_revoked\"} 1"
        ),
        "{text}"
    );
    // Decided quietly: the revocation is what is counted.
    assert!(!text.contains("policy=\"shop/deny-all\""), "{text}");
}
