//! The cert manager with SVIDs from a SPIFFE Workload API
//! (`SvidSource::WorkloadApi`), against a real Workload API server on a
//! Unix socket (tests/support/workload_api.rs): real gRPC, the `spiffe`
//! crate's client, certificates from our CA.

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use quicmesh_core::identity::ca::Ca;
use quicmesh_core::identity::certs::{CertManager, IdentityError, SvidSource};
use quicmesh_core::identity::workload_api::{Settings, Status, WorkloadApi};
use quicmesh_core::identity::{SharedBundles, Svid};
use quicmesh_core::metrics::WorkloadApiMetrics;
use support::workload_api::{answer, entry, id, mint, Answer, Server};
use tokio_util::sync::CancellationToken;

/// Long enough for anything here on a loaded machine; never waited out
/// when things work.
const DEADLINE: Duration = Duration::from_secs(20);

struct Node {
    certs: Arc<CertManager>,
    api: Arc<WorkloadApi>,
    bundles: SharedBundles,
    metrics: Arc<WorkloadApiMetrics>,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
    socket: std::path::PathBuf,
}

impl Node {
    /// A cert manager following the socket in a fresh directory; the
    /// server is the caller's to start there.
    fn new() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let bundles = SharedBundles::default();
        let metrics = Arc::new(WorkloadApiMetrics::default());
        let settings = Settings {
            min_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            connect_timeout: Duration::from_secs(2),
            ..Settings::default()
        };
        let api = WorkloadApi::new(&socket, bundles.clone(), settings, metrics.clone());
        let certs = Arc::new(CertManager::new(
            SvidSource::WorkloadApi(api.clone()),
            bundles.clone(),
        ));
        let stop = CancellationToken::new();
        tokio::spawn(api.clone().run(stop.clone()));
        Node {
            certs,
            api,
            bundles,
            metrics,
            stop,
            _dir: dir,
            socket,
        }
    }

    /// Waits until the client's state satisfies `f`.
    async fn until(&self, what: &str, f: impl FnMut(&Status) -> bool) {
        let mut rx = self.api.subscribe();
        if tokio::time::timeout(DEADLINE, rx.wait_for(f))
            .await
            .is_err()
        {
            panic!("{what}: not within {DEADLINE:?}; state {:?}", *rx.borrow());
        }
    }

    /// Waits until the answers taken reach `n`.
    async fn taken(&self, n: u64) {
        self.until(&format!("{n} answers taken"), |s| s.taken >= n)
            .await;
    }

    async fn refused(&self, n: u64) {
        self.until(&format!("{n} answers refused"), |s| s.refused >= n)
            .await;
    }

    fn roots(&self, domain: &str) -> usize {
        self.bundles.load().get(domain).map_or(0, |a| a.len())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn same(a: &Svid, b: &Svid) -> bool {
    a.chain == b.chain
}

#[tokio::test]
async fn an_offered_identity_is_served_and_one_not_offered_is_unavailable() {
    let node = Node::new();
    let ca = Ca::generate("cluster.local").unwrap();
    let web = id("shop", "web");
    let issued = mint(&ca, &web);
    let _server = Server::start(&node.socket, answer(&[(&issued, &[&ca])], &[]));
    node.taken(1).await;

    let got = node.certs.svid(&web).await.unwrap();
    assert!(same(&got, &issued));
    assert_eq!(node.certs.check_valid(&web, SystemTime::now()), Ok(()));
    assert_eq!(node.roots("cluster.local"), 1);
    // Asked again: the same SVID, not a copy.
    assert!(Arc::ptr_eq(&got, &node.certs.svid(&web).await.unwrap()));

    let other = id("shop", "other");
    let e = node.certs.svid(&other).await.unwrap_err();
    assert!(
        matches!(&e, IdentityError::Load { reason, .. } if reason.contains("does not offer")),
        "{e}"
    );
    let why = node
        .certs
        .check_valid(&other, SystemTime::now())
        .unwrap_err();
    assert!(why.contains("no SVID for"), "{why}");
    assert!(node.certs.cached(&other).is_none());
    assert_eq!(node.metrics.updates("applied"), 1);
}

#[tokio::test]
async fn nothing_is_served_before_the_first_answer() {
    let node = Node::new();
    let _server = Server::start(&node.socket, Answer::Nothing);
    node.until("connected", |s| s.connected).await;
    let e = node.certs.svid(&id("shop", "web")).await.unwrap_err();
    assert!(
        e.to_string().contains("no answer from the Workload API"),
        "{e}"
    );
}

#[tokio::test]
async fn a_new_answer_rotates_the_svids_and_the_roots() {
    let node = Node::new();
    let (old_ca, new_ca) = (
        Ca::generate("cluster.local").unwrap(),
        Ca::generate("cluster.local").unwrap(),
    );
    let (web, db) = (id("shop", "web"), id("shop", "db"));
    let (web1, db1) = (mint(&old_ca, &web), mint(&old_ca, &db));
    let server = Server::start(
        &node.socket,
        answer(&[(&web1, &[&old_ca]), (&db1, &[&old_ca])], &[]),
    );
    node.taken(1).await;
    let served_db = node.certs.svid(&db).await.unwrap();

    // The agent rotates web's SVID to a new root, added to the bundle
    // beside the old one; db's stays as it was.
    let web2 = mint(&new_ca, &web);
    let both: &[&Ca] = &[&old_ca, &new_ca];
    server.set(answer(&[(&web2, both), (&db1, both)], &[]));
    node.taken(2).await;
    assert!(same(&node.certs.svid(&web).await.unwrap(), &web2));
    assert_eq!(node.roots("cluster.local"), 2);
    // Unchanged: the very same SVID (tunnel servers are not rebuilt).
    assert!(Arc::ptr_eq(
        &served_db,
        &node.certs.svid(&db).await.unwrap()
    ));

    // db dropped from the next answer: unavailable from then on.
    server.set(answer(&[(&web2, both)], &[]));
    node.taken(3).await;
    assert!(node.certs.svid(&db).await.is_err());
    assert!(node.certs.cached(&db).is_none());
    assert_eq!(node.metrics.updates("applied"), 3);
}

#[tokio::test]
async fn federated_bundles_come_and_go_with_the_answers() {
    let node = Node::new();
    let (ca, fed) = (
        Ca::generate("cluster.local").unwrap(),
        Ca::generate("other.example").unwrap(),
    );
    let web = mint(&ca, &id("shop", "web"));
    let server = Server::start(
        &node.socket,
        answer(&[(&web, &[&ca])], &[("other.example", &[&fed])]),
    );
    node.taken(1).await;
    assert_eq!(node.roots("other.example"), 1);
    assert_eq!(node.roots("cluster.local"), 1);

    // Federation ended: the domain is dropped, our own stays.
    server.set(answer(&[(&web, &[&ca])], &[]));
    node.taken(2).await;
    assert_eq!(node.roots("other.example"), 0);
    assert_eq!(node.roots("cluster.local"), 1);
}

#[tokio::test]
async fn the_last_svids_outlive_the_agent_and_its_successor_is_followed() {
    let node = Node::new();
    let ca = Ca::generate("cluster.local").unwrap();
    let web = id("shop", "web");
    let first = mint(&ca, &web);
    let server = Server::start(&node.socket, answer(&[(&first, &[&ca])], &[]));
    node.taken(1).await;
    node.until("connected", |s| s.connected).await;

    server.stop().await;
    node.until("disconnected", |s| !s.connected).await;
    // Still served, bundles still there, while the agent is away (and
    // the client keeps retrying against a socket nobody listens on).
    assert!(same(&node.certs.svid(&web).await.unwrap(), &first));
    assert_eq!(node.roots("cluster.local"), 1);

    // A new agent on the same path, with a new SVID.
    let second = mint(&ca, &web);
    let _server = Server::start(&node.socket, answer(&[(&second, &[&ca])], &[]));
    node.taken(2).await;
    assert!(same(&node.certs.svid(&web).await.unwrap(), &second));
}

#[tokio::test]
async fn malformed_answers_are_refused_counted_and_the_last_good_state_kept() {
    let node = Node::new();
    let ca = Ca::generate("cluster.local").unwrap();
    let web = id("shop", "web");
    let good = mint(&ca, &web);
    let server = Server::start(&node.socket, answer(&[(&good, &[&ca])], &[]));
    node.taken(1).await;

    let mut bad = Vec::new();
    // Not DER.
    let mut e = entry(&good, &[&ca]);
    e.x509_svid = b"not a certificate".to_vec();
    bad.push(("bad DER", e, "malformed", "X.509"));
    // Another SVID's key.
    let mut e = entry(&good, &[&ca]);
    e.x509_svid_key = mint(&ca, &web).key.secret_der().to_vec();
    bad.push((
        "key of another certificate",
        e,
        "malformed",
        "key and certificate",
    ));
    // An ID the crate folds to lower case and we refuse.
    let (cert, key) = upper_case_trust_domain_svid();
    let mut e = entry(&good, &[&ca]);
    e.x509_svid = cert;
    e.x509_svid_key = key;
    bad.push(("upper-case trust domain", e, "malformed", "'C'"));
    // Issued by a CA the answer's bundle does not hold.
    let stranger = Ca::generate("cluster.local").unwrap();
    bad.push((
        "chain not in its own bundle",
        entry(&mint(&stranger, &web), &[&ca]),
        "untrusted",
        "does not verify",
    ));

    for (n, (what, e, label, why)) in bad.into_iter().enumerate() {
        let before = node.metrics.updates(label);
        server.set(Answer::Svids(quicmesh_proto::workload::X509svidResponse {
            svids: vec![e],
            ..Default::default()
        }));
        node.refused(n as u64 + 1).await;
        assert_eq!(node.metrics.updates(label), before + 1, "{what}");
        let st = node.api.subscribe().borrow().clone();
        let error = st.last_error.unwrap_or_default();
        assert!(error.contains(why), "{what}: {error}");
        assert!(
            same(&node.certs.svid(&web).await.unwrap(), &good),
            "{what}: the last good SVID must stay"
        );
        assert_eq!(node.roots("cluster.local"), 1, "{what}");
    }
    // The stream survived the refusals: a good answer is taken.
    let next = mint(&ca, &web);
    server.set(answer(&[(&next, &[&ca])], &[]));
    node.taken(2).await;
    assert!(same(&node.certs.svid(&web).await.unwrap(), &next));
}

#[tokio::test]
async fn an_answer_with_too_many_svids_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let metrics = Arc::new(WorkloadApiMetrics::default());
    let api = WorkloadApi::new(
        &socket,
        SharedBundles::default(),
        Settings {
            max_svids: 1,
            ..Settings::default()
        },
        metrics.clone(),
    );
    let ca = Ca::generate("cluster.local").unwrap();
    let (a, b) = (mint(&ca, &id("x", "a")), mint(&ca, &id("x", "b")));
    let _server = Server::start(&socket, answer(&[(&a, &[&ca]), (&b, &[&ca])], &[]));
    let stop = CancellationToken::new();
    tokio::spawn(api.clone().run(stop.clone()));
    let mut rx = api.subscribe();
    tokio::time::timeout(DEADLINE, rx.wait_for(|s| s.refused >= 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(metrics.updates("too_large"), 1);
    assert!(api.svid(&a.id, SystemTime::now()).is_err());
    stop.cancel();
}

#[tokio::test]
async fn permission_denied_withdraws_the_svids_and_keeps_the_bundles() {
    let node = Node::new();
    let ca = Ca::generate("cluster.local").unwrap();
    let web = id("shop", "web");
    let issued = mint(&ca, &web);
    let server = Server::start(&node.socket, answer(&[(&issued, &[&ca])], &[]));
    node.taken(1).await;
    // The open stream ends with PermissionDenied, then the call itself is
    // refused with it on reconnecting.
    server.set(Answer::Denied);
    node.refused(2).await;
    assert!(node.metrics.updates("denied") >= 2);
    assert!(node.certs.svid(&web).await.is_err());
    assert_eq!(node.roots("cluster.local"), 1);
    // Entries registered again: served again on the next connection.
    server.set(answer(&[(&issued, &[&ca])], &[]));
    node.taken(2).await;
    assert!(node.certs.svid(&web).await.is_ok());
}

/// The spec: a server refuses a call without `workload.spiffe.io: true`.
/// Ours does, so the client reaching it at all shows the header is sent.
#[tokio::test]
async fn the_client_sends_the_header_the_spec_requires() {
    let node = Node::new();
    let ca = Ca::generate("cluster.local").unwrap();
    let issued = mint(&ca, &id("shop", "web"));
    let server = Server::start(&node.socket, answer(&[(&issued, &[&ca])], &[]));
    node.taken(1).await;
    assert_eq!(server.refused_without_header(), 0);

    // A client that leaves it out is refused.
    let path = node.socket.clone();
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                let s = tokio::net::UnixStream::connect(&path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
            }
        }))
        .await
        .unwrap();
    let mut bare =
        quicmesh_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient::new(channel);
    let status = bare
        .fetch_x509svid(quicmesh_proto::workload::X509svidRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(server.refused_without_header(), 1);
}

/// A self-signed SVID-shaped certificate for
/// `spiffe://Cluster.local/ns/shop/sa/web` (DER) and its key (PKCS#8):
/// our CA cannot mint it, our ID rules refusing it.
fn upper_case_trust_domain_svid() -> (Vec<u8>, Vec<u8>) {
    use rcgen::{CertificateParams, IsCa, KeyPair, KeyUsagePurpose, SanType};
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(
        "spiffe://Cluster.local/ns/shop/sa/web".try_into().unwrap(),
    )];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = params.self_signed(&key).unwrap();
    (cert.der().to_vec(), key.serialize_der())
}

/// The tunnel server of a test: answers every request by connecting to
/// one upstream, and remembers who the client proved to be.
struct Upstream {
    me: quicmesh_core::identity::SpiffeId,
    to: std::net::SocketAddr,
    peers: std::sync::Mutex<Vec<quicmesh_core::identity::SpiffeId>>,
}

impl quicmesh_core::tunnel::server::Inbound for Upstream {
    fn local_identity(&self) -> quicmesh_core::identity::SpiffeId {
        self.me.clone()
    }

    async fn connect(
        &self,
        req: &quicmesh_core::tunnel::server::InboundRequest,
    ) -> Result<quicmesh_core::tunnel::server::Upstream, quicmesh_core::tunnel::server::Refused>
    {
        self.peers.lock().unwrap().push(req.peer.clone());
        let tcp = tokio::net::TcpStream::connect(self.to).await.unwrap();
        Ok(quicmesh_core::tunnel::server::Upstream::plain(tcp))
    }
}

/// Two nodes in two federated trust domains, each with its own agent: the
/// client's SVID and bundles from one Workload API, the server's from the
/// other, and a CONNECT tunnel between them carries bytes both ways. Each
/// side trusts the other's domain only through the federated bundle its
/// agent sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_completes_between_svids_from_two_workload_apis() {
    use quicmesh_core::metrics::TunnelMetrics;
    use quicmesh_core::tunnel::client::{Pool, PoolKey};
    use quicmesh_core::tunnel::config::{bind_udp, endpoint, server_config, TunnelSettings};
    use quicmesh_core::tunnel::server::{serve, ServerCtx};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (here, there) = (
        Ca::generate("cluster.local").unwrap(),
        Ca::generate("other.example").unwrap(),
    );
    let cid = quicmesh_core::identity::SpiffeId::workload("other.example", "shop", "web").unwrap();
    let sid = id("store", "db");
    let (client_node, server_node) = (Node::new(), Node::new());
    let _client_agent = Server::start(
        &client_node.socket,
        answer(
            &[(&mint(&there, &cid), &[&there])],
            &[("cluster.local", &[&here])],
        ),
    );
    let _server_agent = Server::start(
        &server_node.socket,
        answer(
            &[(&mint(&here, &sid), &[&here])],
            &[("other.example", &[&there])],
        ),
    );
    client_node.taken(1).await;
    server_node.taken(1).await;

    // Upstream: echoes.
    let loopback: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let echo = tokio::net::TcpListener::bind(loopback).await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });

    // The server node's tunnel server presents its Workload API SVID.
    let settings = TunnelSettings::default();
    let metrics = TunnelMetrics::new();
    let server_svid = server_node.certs.svid(&sid).await.unwrap();
    let scfg = server_config(
        &server_svid,
        server_node.certs.bundles(),
        Box::new(|_| true),
        &metrics,
        &settings,
    )
    .unwrap();
    let server_ep = endpoint(
        bind_udp(loopback, &settings).unwrap(),
        Some(scfg),
        &settings,
    )
    .unwrap();
    let inbound = Arc::new(Upstream {
        me: sid.clone(),
        to: echo_addr,
        peers: Default::default(),
    });
    let stop = CancellationToken::new();
    tokio::spawn(serve(
        server_ep.clone(),
        inbound.clone(),
        ServerCtx::new(metrics.clone(), Arc::new(settings.clone())),
        stop.clone(),
        Duration::from_secs(1),
    ));

    // The client node's pool, with its Workload API SVID and bundles.
    let client_ep = endpoint(bind_udp(loopback, &settings).unwrap(), None, &settings).unwrap();
    let pool = Pool::new(
        client_ep,
        client_node.certs.bundles(),
        settings,
        metrics.clone(),
    );
    let key = PoolKey {
        src: cid.clone(),
        dst: sid.clone(),
        addr: server_ep.local_addr().unwrap(),
    };
    let client_svid = client_node.certs.svid(&cid).await.unwrap();
    let tunnel = pool
        .open(&key, &client_svid, echo_addr, http::HeaderMap::new())
        .await
        .unwrap();
    let apps = tokio::net::TcpListener::bind(loopback).await.unwrap();
    let mut app = tokio::net::TcpStream::connect(apps.local_addr().unwrap())
        .await
        .unwrap();
    let (captured, _) = apps.accept().await.unwrap();
    tokio::spawn(tunnel.pump(captured, CancellationToken::new()));

    app.write_all(b"over the mesh").await.unwrap();
    let mut back = [0u8; 13];
    tokio::time::timeout(DEADLINE, app.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"over the mesh");
    assert_eq!(*inbound.peers.lock().unwrap(), [cid]);
    stop.cancel();
}
