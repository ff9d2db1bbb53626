//! ztunnel's per-connection lines against `docs/access-log.md`: real
//! ztunnels (JSON logs) carry a tunnelled connection, a passthrough to a
//! host outside the mesh, a plaintext one from it, and three that fail
//! (no app at the port, on both paths; no host at the passthrough port);
//! every field the doc lists for each line is in what ztunnel writes,
//! with the documented type, and nothing undocumented is.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use quicmesh_core::netns::NetnsWorker;
use quicmesh_e2e::{app, connect_from, listen_in, require_root, two_node_spec};
use quicmesh_lab::{LogFormat, Mesh};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "../../core/tests/support/access_log.rs"]
mod access_log;

/// How long ztunnel may take to write a line after the connection ended.
const WITHIN: Duration = Duration::from_secs(20);

/// An app that reads until the client's FIN, then answers `pong` and closes.
async fn pong(mut s: tokio::net::TcpStream) {
    let mut v = Vec::new();
    let _ = s.read_to_end(&mut v).await;
    let _ = s.write_all(b"pong").await;
    let _ = s.shutdown().await;
}

/// Sends `ping`, half-closes, reads what comes back (nothing when refused).
async fn ping(s: std::io::Result<tokio::net::TcpStream>) -> Vec<u8> {
    let mut got = Vec::new();
    if let Ok(mut s) = s {
        let _ = s.write_all(b"ping").await;
        let _ = s.shutdown().await;
        let _ = s.read_to_end(&mut got).await;
    }
    got
}

/// A line to find: the doc's heading for it, the node whose log has it,
/// its target and message, and a field that tells it apart.
struct Wanted {
    heading: &'static str,
    node: usize,
    target: &'static str,
    message: &'static str,
    key: &'static str,
    value: String,
}

/// The connections: through the tunnel, passed through, plaintext from
/// outside; then to 7001 in the server pod, where nothing listens (on
/// both paths), and to 9091 outside, where nothing listens either.
async fn traffic(mesh: &Mesh, client: &NetnsWorker, outside: &NetnsWorker) {
    let (server, ext) = (mesh.pod_ip("server"), mesh.lab.external(1).ip);
    let to_server = |port| SocketAddr::new(server.into(), port);
    let to_ext = |port| SocketAddr::new(ext.into(), port);
    let connect =
        |w, addr| async move { connect_from(w, addr).await.map_err(std::io::Error::other) };
    assert_eq!(ping(connect(client, to_server(7000)).await).await, b"pong");
    assert_eq!(ping(connect(client, to_ext(9090)).await).await, b"pong");
    assert_eq!(ping(connect(outside, to_server(7000)).await).await, b"pong");
    assert!(ping(connect(client, to_server(7001)).await)
        .await
        .is_empty());
    assert!(ping(connect(outside, to_server(7001)).await)
        .await
        .is_empty());
    assert!(ping(connect(client, to_ext(9091)).await).await.is_empty());
}

/// The first line of `log` that `pick` finds, waiting for it (bounded).
async fn wait_for<T>(mesh: &Mesh, node: usize, what: &str, pick: impl Fn(&str) -> Option<T>) -> T {
    let deadline = Instant::now() + WITHIN;
    loop {
        if let Some(found) = pick(&mesh.log(node)) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {WITHIN:?}\n{}",
            mesh.log_tail(node, 40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_field_is_written_and_nothing_else() {
    require_root();
    let mut mesh = Mesh::start(two_node_spec()).await.unwrap();
    let client = mesh.worker(&mesh.lab.pod("client").netns).unwrap();
    let server = mesh.worker(&mesh.lab.pod("server").netns).unwrap();
    let outside = mesh.worker(&mesh.lab.external(1).netns).unwrap();
    app(&server, 7000, pong).await.unwrap();
    let l = listen_in(&outside, SocketAddr::from(([0, 0, 0, 0], 9090)))
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(pong(s));
        }
    });

    let (client_id, server_id) = (mesh.identity("client"), mesh.identity("server"));
    let server_at = |port| SocketAddr::new(mesh.pod_ip("server").into(), port).to_string();
    let ext_at = |port| SocketAddr::new(mesh.lab.external(1).ip.into(), port).to_string();
    let wanted = [
        Wanted {
            heading: "Outbound, through a tunnel",
            node: 1,
            target: "ztunnel::proxy::outbound",
            message: "connection complete",
            key: "path",
            value: "tunnel".into(),
        },
        Wanted {
            heading: "Inbound, through the tunnel",
            node: 2,
            target: "quicmesh_core::tunnel::server::requests",
            message: "connection complete",
            key: "src.identity",
            value: client_id.to_string(),
        },
        Wanted {
            heading: "Outbound, passed through",
            node: 1,
            target: "ztunnel::proxy::outbound",
            message: "connection complete",
            key: "path",
            value: "passthrough".into(),
        },
        Wanted {
            heading: "Inbound, plaintext",
            node: 2,
            target: "ztunnel::proxy::inbound",
            message: "connection complete",
            key: "direction",
            value: "inbound_plaintext".into(),
        },
        Wanted {
            heading: "Refused: outbound tunnel failed",
            node: 1,
            target: "ztunnel::proxy::outbound",
            message: "outbound tunnel failed",
            key: "dst.identity",
            value: server_id.to_string(),
        },
        Wanted {
            heading: "Refused: tunnel request refused",
            node: 2,
            target: "quicmesh_core::tunnel::server::requests",
            message: "tunnel request refused",
            key: "authority",
            value: server_at(7001),
        },
        Wanted {
            heading: "Refused: plaintext inbound refused",
            node: 2,
            target: "ztunnel::proxy::inbound",
            message: "plaintext inbound refused",
            key: "dst.addr",
            value: server_at(7001),
        },
        Wanted {
            heading: "Refused: passthrough connect failed",
            node: 1,
            target: "ztunnel::proxy::outbound",
            message: "passthrough connect failed",
            key: "dst.addr",
            value: ext_at(9091),
        },
    ];
    let doc = access_log::doc();
    let envelope = access_log::fields(&doc, "The JSON envelope");

    // Text (the lab's default): every field by name.
    traffic(&mesh, &client, &outside).await;
    for w in &wanted {
        let fields = access_log::fields(&doc, w.heading);
        let what = format!("node{}'s {} {:?} line (text)", w.node, w.target, w.message);
        let (plain, quoted) = (
            format!("{}={}", w.key, w.value),
            format!("{}={:?}", w.key, w.value),
        );
        let line = wait_for(&mesh, w.node, &what, |log| {
            log.lines()
                .filter_map(|l| l.split_once(&format!(" {}: {} ", w.target, w.message)))
                .map(|(_, fields)| format!(" {fields}"))
                .find(|f| f.contains(&format!(" {plain}")) || f.contains(&format!(" {quoted}")))
        })
        .await;
        if let Err(e) = access_log::check_text(&line, &fields) {
            panic!(
                "{what} against \"{}\" in docs/access-log.md: {e}\n{line}",
                w.heading
            );
        }
    }

    // JSON: every field and nothing else, each of its type.
    mesh.ztunnels.set_log_format(LogFormat::Json);
    for node in [1, 2] {
        mesh.restart_ztunnel(node).await.unwrap();
    }
    traffic(&mesh, &client, &outside).await;
    for w in &wanted {
        let fields = access_log::fields(&doc, w.heading);
        let what = format!("node{}'s {} {:?} line (JSON)", w.node, w.target, w.message);
        let line = wait_for(&mesh, w.node, &what, |log| {
            access_log::json_lines(log).into_iter().find(|l| {
                access_log::str_at(l, "target") == w.target
                    && access_log::str_at(l, "message") == w.message
                    && access_log::str_at(l, w.key) == w.value
            })
        })
        .await;
        if let Err(e) = access_log::check_json(&line, &envelope, &fields) {
            panic!(
                "{what} against \"{}\" in docs/access-log.md: {e}\n{line}",
                w.heading
            );
        }
    }
}
