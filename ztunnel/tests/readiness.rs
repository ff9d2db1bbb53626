//! `/healthz/ready` of a real ztunnel (the binary), against a stand-in
//! controller whose CA and config stream the test opens step by step: 503
//! naming what is missing, then 200; 503 again when the node's certificate
//! lapses (the CA closed, its short-lived certificate expires), and 200
//! once the CA renews it. Every wait is a poll with a deadline.

mod support;

use std::net::SocketAddr;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::get;

use quicmesh_core::identity::ca::Ca;
use quicmesh_core::identity::SpiffeId;
use quicmesh_proto::ca::certificate_authority_server::{
    CertificateAuthority, CertificateAuthorityServer,
};
use quicmesh_proto::ca::{CreateCertificateRequest, CreateCertificateResponse};
use quicmesh_proto::config::config_stream_server::{ConfigStream, ConfigStreamServer};
use quicmesh_proto::config::{Ack, Update};
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

const TD: &str = "cluster.local";
const NODE: &str = "node1";
/// Short, so that the node's certificate lapses within the test.
const SVID_TTL: Duration = Duration::from_secs(4);
/// How long any one step may take.
const STEP: Duration = Duration::from_secs(30);

/// Signs while the test keeps it open.
struct TestCa {
    ca: Arc<Ca>,
    open: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl CertificateAuthority for TestCa {
    async fn create_certificate(
        &self,
        req: Request<CreateCertificateRequest>,
    ) -> Result<Response<CreateCertificateResponse>, Status> {
        if !*self.open.borrow() {
            return Err(Status::unavailable("the test keeps the CA closed"));
        }
        let (_, cert) = self
            .ca
            .sign_csr(&req.into_inner().csr, SVID_TTL)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(CreateCertificateResponse {
            cert_chain: vec![pem::encode(&pem::Pem::new("CERTIFICATE", cert.to_vec()))],
            trust_bundle: self.ca.cert_pem().to_string(),
        }))
    }
}

/// Sends one (empty) full config once the test opens it, then holds the
/// stream.
struct TestConfig {
    open: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl ConfigStream for TestConfig {
    type StreamStream = ReceiverStream<Result<Update, Status>>;

    async fn stream(
        &self,
        req: Request<Streaming<Ack>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let (mut open, mut acks) = (self.open.clone(), req.into_inner());
        tokio::spawn(async move {
            if open.wait_for(|o| *o).await.is_err() {
                return;
            }
            let update = Update {
                nonce: "n1".into(),
                version: 1,
                full: true,
                ..Default::default()
            };
            if tx.send(Ok(update)).await.is_err() {
                return;
            }
            while let Ok(Some(_ack)) = acks.message().await {}
            drop(tx);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Serves the CA and the config stream on loopback over TLS, as the
/// controller identity; returns the address.
async fn controller(
    ca: Arc<Ca>,
    ca_open: watch::Receiver<bool>,
    config_open: watch::Receiver<bool>,
) -> SocketAddr {
    let id = SpiffeId::workload(TD, "quicmesh-system", "controller").unwrap();
    let svid = ca.mint(&id, Duration::from_secs(3600)).unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(quicmesh_core::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(svid.chain.clone(), svid.clone_key())
        .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming =
        quicmesh_core::control::incoming::tls_incoming(listener, acceptor, Duration::from_secs(10));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(CertificateAuthorityServer::new(TestCa {
                ca,
                open: ca_open,
            }))
            .add_service(ConfigStreamServer::new(TestConfig { open: config_open }))
            .serve_with_incoming(incoming),
    );
    addr
}

/// Asks `/healthz/ready` until `want` holds, for at most [`STEP`].
async fn ready_until(
    metrics: SocketAddr,
    log: &Path,
    what: &str,
    want: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let deadline = Instant::now() + STEP;
    let mut last = None;
    loop {
        if let Some((status, body)) = get(metrics, "/healthz/ready").await {
            if want(status, &body) {
                return (status, body);
            }
            last = Some((status, body));
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {STEP:?}; last answer {last:?}\nztunnel log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of `quicmesh_ready{condition}` in a scrape.
fn gauge(scrape: &str, condition: &str) -> Option<i64> {
    let prefix = format!("quicmesh_ready{{condition=\"{condition}\"}} ");
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_once_config_certificates_and_enrollment_are_live_and_not_when_the_certificate_lapses(
) {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(Ca::generate(TD).unwrap());
    let (ca_open, ca_rx) = watch::channel(false);
    let (config_open, config_rx) = watch::channel(false);
    let grpc = controller(ca.clone(), ca_rx, config_rx).await;
    let (bundle, token, socket, log) = (
        dir.path().join("ca.pem"),
        dir.path().join("token"),
        dir.path().join("ztunnel.sock"),
        dir.path().join("ztunnel.log"),
    );
    std::fs::write(&bundle, ca.cert_pem()).unwrap();
    std::fs::write(&token, "node1-token\n").unwrap();
    let [metrics, admin] = support::free_ports();
    let _ztunnel = support::spawn(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_ztunnel"))
            .args(["--node", NODE, "--controller", &grpc.to_string()])
            .arg("--bootstrap-token")
            .arg(&token)
            .arg("--trust-bundle")
            .arg(&bundle)
            .arg("--enroll-socket")
            .arg(&socket),
        metrics,
        admin,
        &log,
    );
    let node = SpiffeId::node(TD, NODE).unwrap();

    // Up, enrollment socket listening; neither a certificate nor a config.
    let no_cert = format!("certificates (no SVID for {node} yet");
    let (status, body) = ready_until(metrics, &log, "enrollment socket listening", |_, b| {
        !b.contains("enrollment")
    })
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("not ready: config (no update from the controller yet), ")
            && body.contains(&no_cert),
        "{body}"
    );
    assert!(socket.exists());
    let (_, scrape) = get(metrics, "/metrics").await.unwrap();
    assert_eq!(gauge(&scrape, "enrollment"), Some(1), "{scrape}");
    assert_eq!(gauge(&scrape, "config"), Some(0), "{scrape}");
    assert_eq!(gauge(&scrape, "certificates"), Some(0), "{scrape}");

    // The CA issues the node's certificate: only the config is missing.
    ca_open.send_replace(true);
    ready_until(metrics, &log, "node certificate issued", |s, b| {
        s == 503 && b == "not ready: config (no update from the controller yet)\n"
    })
    .await;

    // The first config applied: ready.
    config_open.send_replace(true);
    ready_until(metrics, &log, "config applied", |s, b| {
        s == 200 && b == "ready\n"
    })
    .await;
    let (_, scrape) = get(metrics, "/metrics").await.unwrap();
    for c in ["config", "certificates", "enrollment"] {
        assert_eq!(gauge(&scrape, c), Some(1), "{c}: {scrape}");
    }
    // The CA's bundle is the bootstrap one: taken, nothing to replace.
    assert!(
        scrape.contains("quicmesh_trust_bundle_updates_total{result=\"unchanged\"}"),
        "{scrape}"
    );
    // Config and certificate state as gauges: version 1 taken just now,
    // the node's SVID expiring within its lifetime.
    let value = |prefix: &str| -> Option<i64> {
        scrape
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse().ok())
    };
    let epoch = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
    };
    let now = epoch(std::time::SystemTime::now());
    assert_eq!(value("quicmesh_proxy_config_version "), Some(1), "{scrape}");
    let acked = value("quicmesh_proxy_config_last_update_timestamp_seconds{result=\"ack\"} ")
        .unwrap_or_else(|| panic!("no ack time: {scrape}"));
    assert!((now - 60..=now).contains(&acked), "{acked} vs {now}");
    let expiry = value(&format!(
        "quicmesh_svid_expiration_timestamp_seconds{{identity=\"{node}\"}} "
    ))
    .unwrap_or_else(|| panic!("no SVID expiry: {scrape}"));
    assert!(
        // Renewed at half-life: within a lifetime of now either way.
        (now - SVID_TTL.as_secs() as i64..=now + SVID_TTL.as_secs() as i64 + 1).contains(&expiry),
        "{expiry} vs {now}"
    );

    // The CA closes: renewal fails and the certificate expires.
    ca_open.send_replace(false);
    let (_, body) = ready_until(metrics, &log, "node certificate lapsed", |s, _| s == 503).await;
    assert!(
        body.starts_with(&format!(
            "not ready: certificates (the SVID of {node} has expired"
        )),
        "{body}"
    );
    // Renewed once the CA answers again.
    ca_open.send_replace(true);
    ready_until(metrics, &log, "node certificate renewed", |s, b| {
        s == 200 && b == "ready\n"
    })
    .await;
}
