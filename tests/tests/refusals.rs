//! Peers that must get nothing through, and the reasons ztunnel gives.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use quicmesh_core::identity::ca::Ca;
use quicmesh_core::identity::{SpiffeId, Svid, TrustBundles};
use quicmesh_core::metrics::TunnelMetrics;
use quicmesh_core::tunnel::client::{Pool, PoolKey};
use quicmesh_core::tunnel::config::{self, TunnelSettings};
use quicmesh_core::tunnel::server::{Inbound, InboundRequest, Refused, Upstream};
use quicmesh_e2e::{app, eventually, require_root};
use quicmesh_lab::{Mesh, MeshPod, MeshSpec};
use tokio::io::AsyncReadExt;

fn spec() -> MeshSpec {
    MeshSpec {
        nodes: 2,
        pods: vec![
            MeshPod::new("client", 1, "demo", "client"),
            MeshPod::new("server", 2, "demo", "server"),
            MeshPod::new("stranger", 2, "other", "stranger").outside(),
            // The config says demo/payments lives here; an impostor answers.
            MeshPod::new("payments", 2, "demo", "payments").not_enrolled(),
        ],
        externals: 0,
    }
}

/// An app in the server pod that counts the connections it receives.
async fn counting_app(mesh: &Mesh, port: u16) -> Arc<AtomicUsize> {
    let w = mesh.worker(&mesh.lab.pod("server").netns).unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    app(&w, port, move |mut s| {
        n2.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut v = Vec::new();
            let _ = s.read_to_end(&mut v).await;
        }
    })
    .await
    .unwrap();
    n
}

/// A tunnel client of the test's own, in the stranger pod, presenting `svid`.
async fn rogue_client(mesh: &Mesh, svid: &Svid, port: u16) -> Result<(), String> {
    let w = mesh.worker(&mesh.lab.pod("stranger").netns).unwrap();
    let settings = TunnelSettings::default();
    let s2 = settings.clone();
    let udp = w
        .run(move || config::bind_udp("0.0.0.0:0".parse().unwrap(), &s2))
        .await
        .unwrap()
        .unwrap();
    let endpoint = config::endpoint(udp, None, &settings).unwrap();
    let mut bundles = TrustBundles::new();
    bundles
        .insert("cluster.local", &[mesh.ca().cert_der().clone()])
        .unwrap();
    let pool = Pool::new(endpoint, Arc::new(bundles), settings, TunnelMetrics::new());
    let server_ip = mesh.pod_ip("server");
    let key = PoolKey {
        src: svid.id.clone(),
        dst: mesh.identity("server"),
        addr: SocketAddr::new(server_ip.into(), 15008),
    };
    pool.open(
        &key,
        svid,
        SocketAddr::new(server_ip.into(), port),
        http::HeaderMap::new(),
    )
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

async fn refused_on_server(mesh: &Mesh, reason: &str) {
    let seen = eventually(Duration::from_secs(5), || async {
        mesh.metric(
            2,
            "quicmesh_tls_refusals_total",
            &[("side", "server"), ("reason", reason)],
        )
        .await
        .unwrap()
            >= 1.0
    })
    .await;
    assert!(
        seen,
        "no server-side refusal counted for {reason}:\n{}",
        mesh.metrics(2).await.unwrap()
    );
    let log = mesh.log(2);
    assert!(
        log.lines()
            .any(|l| l.contains("refused peer certificate") && l.contains(reason)),
        "node2 log does not give the reason {reason}:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_another_ca_is_refused() {
    require_root();
    let mesh = Mesh::start(spec()).await.unwrap();
    let app = counting_app(&mesh, 7100).await;
    let foreign = Ca::generate("cluster.local").unwrap();
    let svid = foreign
        .mint(&mesh.identity("client"), Duration::from_secs(3600))
        .unwrap();
    let r = rogue_client(&mesh, &svid, 7100).await;
    assert!(r.is_err(), "a foreign CA's certificate got a tunnel");
    refused_on_server(&mesh, "untrusted_chain").await;
    assert_eq!(
        app.load(Ordering::SeqCst),
        0,
        "the app received a connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_is_refused() {
    require_root();
    let mesh = Mesh::start(spec()).await.unwrap();
    let app = counting_app(&mesh, 7101).await;
    let past = SystemTime::now() - Duration::from_secs(2 * 3600);
    let svid = mesh
        .ca()
        .mint_window(
            &mesh.identity("client"),
            past,
            past + Duration::from_secs(3600),
        )
        .unwrap();
    assert!(rogue_client(&mesh, &svid, 7101).await.is_err());
    refused_on_server(&mesh, "expired").await;
    assert_eq!(app.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_trust_domain_is_refused() {
    require_root();
    let mesh = Mesh::start(spec()).await.unwrap();
    let app = counting_app(&mesh, 7102).await;
    let other = Ca::generate("other.example").unwrap();
    let id = SpiffeId::parse("spiffe://other.example/ns/demo/sa/client").unwrap();
    let svid = other.mint(&id, Duration::from_secs(3600)).unwrap();
    assert!(rogue_client(&mesh, &svid, 7102).await.is_err());
    refused_on_server(&mesh, "unknown_trust_domain").await;
    assert_eq!(app.load(Ordering::SeqCst), 0);
}

/// The impostor's upstream side: counts what would have been delivered.
struct Impostor(SpiffeId, Arc<AtomicUsize>);

impl Inbound for Impostor {
    fn local_identity(&self) -> SpiffeId {
        self.0.clone()
    }
    async fn connect(&self, _req: &InboundRequest) -> Result<Upstream, Refused> {
        self.1.fetch_add(1, Ordering::SeqCst);
        Err(Refused::new(
            http::StatusCode::BAD_GATEWAY,
            "impostor",
            "impostor",
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_with_an_unexpected_spiffe_id_is_refused() {
    require_root();
    let mesh = Mesh::start(spec()).await.unwrap();
    // A valid certificate from the mesh's own CA, but for the wrong identity.
    let impostor_id = SpiffeId::workload("cluster.local", "demo", "impostor").unwrap();
    let svid = mesh
        .ca()
        .mint(&impostor_id, Duration::from_secs(3600))
        .unwrap();
    let w = mesh.worker(&mesh.lab.pod("payments").netns).unwrap();
    let settings = TunnelSettings::default();
    let s2 = settings.clone();
    let udp = w
        .run(move || config::bind_udp("0.0.0.0:15008".parse().unwrap(), &s2))
        .await
        .unwrap()
        .unwrap();
    let mut bundles = TrustBundles::new();
    bundles
        .insert("cluster.local", &[mesh.ca().cert_der().clone()])
        .unwrap();
    let metrics = TunnelMetrics::new();
    let server_cfg = config::server_config(
        &svid,
        Arc::new(bundles),
        Box::new(|_| true),
        &metrics,
        &settings,
    )
    .unwrap();
    let endpoint = config::endpoint(udp, Some(server_cfg), &settings).unwrap();
    let delivered = Arc::new(AtomicUsize::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(quicmesh_core::tunnel::server::serve(
        endpoint,
        Arc::new(Impostor(impostor_id.clone(), delivered.clone())),
        quicmesh_core::tunnel::server::ServerCtx::new(metrics, Arc::new(settings.clone())),
        stop.clone(),
        Duration::from_secs(1),
    ));

    let url = format!("http://{}:8080/", mesh.pod_ip("payments"));
    let out = mesh.lab.exec_timeout(
        &mesh.lab.pod("client").netns,
        &["curl", "-sS", "--max-time", "10", &url],
        Duration::from_secs(15),
    );
    let failed = match out {
        Ok(o) => !o.status.success(),
        Err(_) => true,
    };
    assert!(failed, "curl through an impostor succeeded");
    assert_eq!(
        delivered.load(Ordering::SeqCst),
        0,
        "the impostor was sent a request"
    );
    let counted = mesh
        .metric(
            1,
            "quicmesh_tls_refusals_total",
            &[("side", "client"), ("reason", "unexpected_identity")],
        )
        .await
        .unwrap();
    assert!(counted >= 1.0, "{}", mesh.metrics(1).await.unwrap());
    let log = mesh.log(1);
    assert!(
        log.lines().any(|l| l.contains("refused peer certificate")
            && l.contains("spiffe://cluster.local/ns/demo/sa/impostor")
            && l.contains("spiffe://cluster.local/ns/demo/sa/payments")),
        "node1 log does not name both identities:\n{log}"
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_to_the_tunnel_port_gets_nothing_through() {
    require_root();
    let mesh = Mesh::start(spec()).await.unwrap();
    let app = counting_app(&mesh, 7103).await;
    let server_ip = mesh.pod_ip("server");
    let w = mesh.worker(&mesh.lab.pod("stranger").netns).unwrap();
    // TCP to 15008: like any inbound TCP it is redirected to 15006, where
    // ztunnel refuses its own port (reset, logged and counted); no TCP port
    // escapes inbound policy.
    let tcp = w
        .run(move || -> std::io::Result<usize> {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect_timeout(
                &SocketAddr::new(server_ip.into(), 15008),
                Duration::from_secs(3),
            )?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
            s.read(&mut [0u8; 64])
        })
        .await
        .unwrap();
    assert!(
        matches!(tcp, Err(_) | Ok(0)),
        "a plaintext TCP connection to 15008 got an answer: {tcp:?}"
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            mesh.metric(
                2,
                "quicmesh_ztunnel_connection_refusals_total",
                &[("direction", "inbound"), ("reason", "ztunnel_port")],
            )
            .await
            .unwrap_or(0.0)
                >= 1.0
        })
        .await,
        "the refusal was not counted"
    );
    // Plain bytes and an HTTP/1.1 CONNECT in UDP datagrams: not QUIC, dropped.
    w.run(move || {
        let u = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let to = SocketAddr::new(server_ip.into(), 15008);
        u.send_to(
            format!("CONNECT {server_ip}:7103 HTTP/1.1\r\n\r\n").as_bytes(),
            to,
        )
        .unwrap();
        u.send_to(&[0u8; 1200], to).unwrap();
        u.send_to(&[0xc0; 1200], to).unwrap();
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.load(Ordering::SeqCst), 0);
    // The tunnel still works for real peers.
    let client_w = mesh.worker(&mesh.lab.pod("client").netns).unwrap();
    let s = quicmesh_e2e::connect_from(&client_w, SocketAddr::new(server_ip.into(), 7103))
        .await
        .unwrap();
    drop(s);
    assert!(
        eventually(Duration::from_secs(5), || async {
            app.load(Ordering::SeqCst) == 1
        })
        .await
    );
}
