//! Federation against real HTTPS servers on 127.0.0.1 playing the peer:
//! our own bundle endpoint (another mesh, `other.example`, with a real CA
//! and SVID) for the happy path and rotation; a scripted server for what a
//! peer can get wrong (malformed JSON, slowness, a wrong or expired
//! certificate, another domain's roots, no keys); a closed port. Every
//! wait has a deadline; nothing sleeps a fixed time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use quicmesh_controller::ca::rotation::CurrentCa;
use quicmesh_controller::federation::scripted::{self, Answer, Script};
use quicmesh_controller::federation::{self, endpoint, fetch};
use quicmesh_controller::model::Object;
use quicmesh_controller::server::OwnCert;
use quicmesh_controller::store::Store;
use quicmesh_core::identity::bundle_doc;
use quicmesh_core::identity::ca::Ca;
use quicmesh_core::identity::SpiffeId;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PEER: &str = "other.example";
const PEER_ENDPOINT_ID: &str = "spiffe://other.example/ns/quicmesh-system/sa/controller";

/// Waits (at most `within`) for `cond`, polling.
async fn until<T>(within: Duration, what: &str, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fetch settings for tests: quick timeouts and retries.
fn settings(web_roots: rustls::RootCertStore) -> fetch::Settings {
    fetch::Settings {
        connect_timeout: Duration::from_secs(2),
        total_timeout: Duration::from_millis(800),
        retry_first: Duration::from_millis(50),
        ..fetch::Settings::new(web_roots)
    }
}

fn peer_id() -> SpiffeId {
    SpiffeId::parse(PEER_ENDPOINT_ID).unwrap()
}

/// Another mesh: its store holding `ca`'s root, and its bundle endpoint
/// (https_spiffe, its controller's SVID, refresh hint 1 s).
async fn peer_mesh(ca: Ca) -> (Arc<Store>, SocketAddr, Arc<Ca>) {
    let store = Store::new(PEER);
    let current = Arc::new(CurrentCa::new(ca, store.clone(), Duration::from_secs(3600)).unwrap());
    let ca = current.signer();
    quicmesh_controller::trust::publish(&store, PEER, &[ca.cert_der().clone()], 0);
    let own = Arc::new(OwnCert::new(current, peer_id(), Duration::from_secs(3600)).unwrap());
    let addr = serve_endpoint(&store, endpoint::Profile::HttpsSpiffe(own)).await;
    (store, addr, ca)
}

async fn serve_endpoint(store: &Arc<Store>, profile: endpoint::Profile) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(endpoint::serve(
        listener,
        endpoint::tls_config(profile).unwrap(),
        Arc::new(endpoint::Document::new(
            store.clone(),
            Duration::from_secs(1),
        )),
        endpoint::Limits::default(),
        endpoint::Metrics::default(),
    ));
    addr
}

fn doc_of(roots: &[&Ca], seq: u64) -> String {
    let certs: Vec<_> = roots.iter().map(|c| c.cert_der().clone()).collect();
    bundle_doc::encode(&certs, seq, Duration::from_secs(1)).unwrap()
}

/// Our mesh (`cluster.local`) federating with `PEER` at `url`.
fn our_mesh(spec: Value) -> Arc<Store> {
    let store = Store::new("cluster.local");
    store.apply(|ix| {
        ix.upsert(Object::TrustDomainFederation(federation::compile(
            "other", 1, &spec,
        )))
    });
    store
}

fn spiffe_spec(url: &str, initial: &str) -> Value {
    json!({
        "trustDomain": PEER,
        "bundleEndpointURL": url,
        "bundleEndpointProfile": {"type": "https_spiffe", "endpointSPIFFEID": PEER_ENDPOINT_ID},
        "trustDomainBundle": initial,
    })
}

/// The peer's roots our store pushes to proxies, and their sequence.
fn pushed(store: &Store) -> Option<(Vec<Vec<u8>>, u64)> {
    store.with_index(|ix| ix.trust_bundle(PEER).map(|b| (b.roots.clone(), b.sequence)))
}

/// The `Fetched` condition: (status, reason, message).
fn fetched(store: &Store) -> (bool, String, String) {
    store.with_index(|ix| {
        let f = ix.federations().next().unwrap().clone();
        let c = federation::conditions(ix, "cluster.local", &f);
        let c = c.iter().find(|c| c.kind == "Fetched").unwrap();
        (c.status, c.reason.to_string(), c.message.clone())
    })
}

fn count(m: &fetch::Metrics, result: &str) -> u64 {
    m.fetches
        .get_or_create(&vec![
            ("trust_domain".into(), PEER.into()),
            ("result".into(), result.into()),
        ])
        .get()
}

#[tokio::test]
async fn a_peer_bundle_is_fetched_and_its_rotation_picked_up_within_the_refresh_hint() {
    let (peer_store, addr, peer_ca) = peer_mesh(Ca::generate(PEER).unwrap()).await;
    let store = our_mesh(spiffe_spec(
        &format!("https://{addr}/"),
        &doc_of(&[&peer_ca], 1),
    ));
    let metrics = fetch::Metrics::default();
    tokio::spawn(fetch::run(
        store.clone(),
        settings(rustls::RootCertStore::empty()),
        metrics.clone(),
    ));

    let (roots, first_seq) = until(Duration::from_secs(10), "the peer's bundle fetched", || {
        pushed(&store).filter(|(_, seq)| *seq > 1)
    })
    .await;
    assert_eq!(roots, [peer_ca.cert_der().to_vec()]);
    let (ok, reason, msg) = fetched(&store);
    assert!(
        ok && reason == "Fetched" && msg.contains("1 roots"),
        "{msg}"
    );
    assert!(count(&metrics, "success") >= 1);

    // The peer rotates: a new root beside the old one.
    let next = Ca::generate(PEER).unwrap();
    quicmesh_controller::trust::publish(
        &peer_store,
        PEER,
        &[peer_ca.cert_der().clone(), next.cert_der().clone()],
        0,
    );
    let rotated = tokio::time::Instant::now();
    let (roots, seq) = until(
        Duration::from_secs(10),
        "the rotated bundle picked up",
        || pushed(&store).filter(|(r, _)| r.len() == 2),
    )
    .await;
    // Within the 1 s hint (plus a fetch and scheduling slack on 2 shared cores).
    assert!(
        rotated.elapsed() < Duration::from_secs(5),
        "{:?}",
        rotated.elapsed()
    );
    assert_eq!(roots[1], next.cert_der().to_vec());
    assert_eq!(
        seq,
        first_seq + 1,
        "the sequence goes up by one with the content"
    );

    // Deleted: the bundle is withdrawn from proxies.
    store.apply(|ix| {
        ix.delete(&quicmesh_controller::model::Key {
            kind: quicmesh_controller::model::Kind::TrustDomainFederation,
            namespace: String::new(),
            name: "other".into(),
        })
    });
    until(Duration::from_secs(5), "the bundle withdrawn", || {
        pushed(&store).is_none().then_some(())
    })
    .await;
}

/// A scripted peer on 127.0.0.1.
async fn scripted_peer(s: Arc<Script>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(scripted::serve(listener, s));
    addr
}

#[tokio::test]
async fn a_peer_that_goes_wrong_keeps_the_last_good_bundle_and_says_why() {
    let peer_ca = Ca::generate(PEER).unwrap();
    let good_svid = peer_ca.mint(&peer_id(), Duration::from_secs(3600)).unwrap();
    let good_doc = doc_of(&[&peer_ca], 5);
    let s = Script::new(&good_svid, Answer::Body(good_doc.clone()));
    let addr = scripted_peer(s.clone()).await;
    let store = our_mesh(spiffe_spec(&format!("https://{addr}/bundle"), &good_doc));
    let metrics = fetch::Metrics::default();
    tokio::spawn(fetch::run(
        store.clone(),
        settings(rustls::RootCertStore::empty()),
        metrics.clone(),
    ));
    until(Duration::from_secs(10), "the good bundle fetched", || {
        fetched(&store).0.then_some(())
    })
    .await;
    let good = pushed(&store).unwrap();
    assert_eq!(good, (vec![peer_ca.cert_der().to_vec()], 5));

    let third = Ca::generate("third.example").unwrap();
    let impostor = peer_ca
        .mint(
            &SpiffeId::workload(PEER, "shop", "impostor").unwrap(),
            Duration::from_secs(3600),
        )
        .unwrap();
    let now = SystemTime::now();
    let expired = peer_ca
        .mint_window(
            &peer_id(),
            now - Duration::from_secs(7200),
            now - Duration::from_secs(3600),
        )
        .unwrap();
    let steps: Vec<(&str, Option<&quicmesh_core::identity::Svid>, Answer, &str, &str)> = vec![
        ("malformed JSON", None, Answer::Body("{\"keys\": [".into()), "malformed", "not a JSON object"),
        ("slow", None, Answer::Silent, "timeout", "no answer within"),
        (
            "a wrong endpoint ID",
            Some(&impostor),
            Answer::Body(good_doc.clone()),
            "tls_error",
            "spiffe://other.example/ns/shop/sa/impostor, expected spiffe://other.example/ns/quicmesh-system/sa/controller",
        ),
        ("an expired certificate", Some(&expired), Answer::Body(good_doc.clone()), "tls_error", "expired"),
        (
            "another domain's roots",
            Some(&good_svid),
            Answer::Body(doc_of(&[&third], 9)),
            "wrong_trust_domain",
            "CA of third.example",
        ),
        (
            "no keys",
            None,
            Answer::Body(r#"{"keys": [], "spiffe_sequence": 10}"#.into()),
            "no_roots",
            "no usable x509-svid key",
        ),
    ];
    for (what, cert, mode, label, message) in steps {
        if let Some(c) = cert {
            s.present(c);
        }
        s.answer(mode);
        let before = count(&metrics, label);
        let (_, reason, msg) = until(Duration::from_secs(10), what, || {
            let f = fetched(&store);
            (!f.0 && count(&metrics, label) > before && f.2.contains(message)).then_some(f)
        })
        .await;
        assert_ne!(reason, "Fetched", "{what}");
        assert!(
            msg.contains("the last good bundle is kept"),
            "{what}: {msg}"
        );
        assert_eq!(
            pushed(&store).as_ref(),
            Some(&good),
            "{what}: the last good bundle stays"
        );
    }
    // Mended: fetched again.
    s.present(&good_svid);
    s.answer(Answer::Body(doc_of(&[&peer_ca], 11)));
    until(Duration::from_secs(10), "fetched again", || {
        pushed(&store).filter(|(_, seq)| *seq == 11)
    })
    .await;
}

#[tokio::test]
async fn a_peer_that_is_down_leaves_the_initial_bundle_in_force() {
    let peer_ca = Ca::generate(PEER).unwrap();
    // A port nobody listens on.
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let store = our_mesh(spiffe_spec(
        &format!("https://{addr}/"),
        &doc_of(&[&peer_ca], 3),
    ));
    let metrics = fetch::Metrics::default();
    tokio::spawn(fetch::run(
        store.clone(),
        settings(rustls::RootCertStore::empty()),
        metrics.clone(),
    ));
    let (_, reason, msg) = until(Duration::from_secs(10), "the failure said", || {
        let f = fetched(&store);
        (f.1 == "Unreachable").then_some(f)
    })
    .await;
    assert_eq!(reason, "Unreachable");
    assert!(msg.contains(&addr.to_string()), "{msg}");
    assert!(count(&metrics, "connect_error") >= 1);
    assert_eq!(
        pushed(&store),
        Some((vec![peer_ca.cert_der().to_vec()], 3)),
        "the initial bundle"
    );
    let available = store.with_index(|ix| {
        let f = ix.federations().next().unwrap().clone();
        federation::conditions(ix, "cluster.local", &f)[1].clone()
    });
    assert_eq!(
        (available.status, available.reason),
        (true, "InitialBundle")
    );
}

/// GETs `path` over `tls` from `addr`; the raw response.
async fn raw(addr: SocketAddr, tls: Arc<rustls::ClientConfig>, request: &str) -> String {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut s = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn body(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// The document, checked by three readers: ours, the `spiffe` crate (on
/// the x5c values), and tests/python/spiffe_bundle_check.py.
fn check_independently(doc: &str, roots: &[Vec<u8>]) {
    use base64::Engine;
    let ours = bundle_doc::parse(doc.as_bytes()).unwrap();
    assert_eq!(
        ours.roots.iter().map(|r| r.to_vec()).collect::<Vec<_>>(),
        roots
    );
    let v: Value = serde_json::from_str(doc).unwrap();
    let ders: Vec<Vec<u8>> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            base64::engine::general_purpose::STANDARD
                .decode(k["x5c"][0].as_str().unwrap())
                .unwrap()
        })
        .collect();
    let refs: Vec<&[u8]> = ders.iter().map(Vec::as_slice).collect();
    let b = spiffe::X509Bundle::from_x509_authorities(
        spiffe::TrustDomain::new("cluster.local").unwrap(),
        &refs,
    )
    .unwrap();
    assert_eq!(b.authorities().len(), roots.len());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/python/spiffe_bundle_check.py"
    );
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (scripts/setup.sh installs it, with cryptography)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(doc.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Python check refused the document: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["roots"], roots.len());
    assert_eq!(summary["spiffe_refresh_hint"], 1);
}

#[tokio::test]
async fn our_endpoint_serves_a_document_independent_readers_accept_under_both_profiles() {
    let store = Store::new("cluster.local");
    let current = Arc::new(
        CurrentCa::new(
            Ca::generate("cluster.local").unwrap(),
            store.clone(),
            Duration::from_secs(3600),
        )
        .unwrap(),
    );
    let ca = current.signer();
    quicmesh_controller::trust::publish(&store, "cluster.local", &[ca.cert_der().clone()], 0);
    let roots = vec![ca.cert_der().to_vec()];

    // https_spiffe: our controller's SVID, fetched by our own client.
    let id = SpiffeId::workload("cluster.local", "quicmesh-system", "controller").unwrap();
    let own = Arc::new(OwnCert::new(current, id.clone(), Duration::from_secs(3600)).unwrap());
    let addr = serve_endpoint(&store, endpoint::Profile::HttpsSpiffe(own)).await;
    let spec = quicmesh_controller::model::FederationSpec {
        trust_domain: "cluster.local".into(),
        url: format!("https://{addr}/"),
        profile: quicmesh_controller::model::EndpointProfile::HttpsSpiffe {
            endpoint_id: id.to_string(),
        },
        initial: None,
    };
    let got = fetch::fetch_once(
        &spec,
        &[ca.cert_der().clone()],
        &settings(rustls::RootCertStore::empty()),
    )
    .await
    .unwrap();
    assert_eq!(got.roots, [ca.cert_der().clone()]);
    assert_eq!(got.refresh_hint, Some(Duration::from_secs(1)));

    // https_web: a web CA's certificate for 127.0.0.1, from files.
    let web_key = rcgen::KeyPair::generate().unwrap();
    let mut web_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    web_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let web_ca = web_params.self_signed(&web_key).unwrap();
    let issuer = rcgen::Issuer::new(web_params, web_key);
    let server_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let server = params.signed_by(&server_key, &issuer).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_path, server.pem()).unwrap();
    std::fs::write(&key_path, server_key.serialize_pem()).unwrap();
    let file_cert = Arc::new(endpoint::FileCert::load(cert_path, key_path).unwrap());
    let web_addr = serve_endpoint(&store, endpoint::Profile::HttpsWeb(file_cert)).await;
    let mut web_roots = rustls::RootCertStore::empty();
    web_roots.add(web_ca.der().clone()).unwrap();
    let web_spec = quicmesh_controller::model::FederationSpec {
        url: format!("https://{web_addr}/"),
        profile: quicmesh_controller::model::EndpointProfile::HttpsWeb,
        ..spec.clone()
    };
    let got = fetch::fetch_once(&web_spec, &[], &settings(web_roots.clone()))
        .await
        .unwrap();
    assert_eq!(got.roots, [ca.cert_der().clone()]);
    // A web client with other roots refuses it.
    let e = fetch::fetch_once(&web_spec, &[], &settings(rustls::RootCertStore::empty()))
        .await
        .unwrap_err();
    assert_eq!(e.label(), "tls_error", "{e}");

    let client = Arc::new(
        rustls::ClientConfig::builder_with_provider(quicmesh_core::crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(web_roots)
            .with_no_client_auth(),
    );
    let resp = raw(
        web_addr,
        client.clone(),
        "GET / HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{resp}"
    );
    check_independently(body(&resp), &roots);
    let resp = raw(
        web_addr,
        client.clone(),
        "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}",
    )
    .await;
    assert!(
        resp.starts_with("HTTP/1.1 405") && resp.to_ascii_lowercase().contains("allow: get, head"),
        "{resp}"
    );
    let resp = raw(
        web_addr,
        client.clone(),
        "GET /other HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
    let resp = raw(
        web_addr,
        client.clone(),
        "GET / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    let huge = format!(
        "GET / HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let resp = raw(web_addr, client, &huge).await;
    assert!(
        resp.starts_with("HTTP/1.1 431") || resp.is_empty(),
        "{resp}"
    );

    // Our own bundle rotates: the document follows, its sequence goes up.
    let before: Value = serde_json::from_str(&fetch_doc(web_addr).await).unwrap();
    let next = Ca::generate("cluster.local").unwrap();
    quicmesh_controller::trust::publish(
        &store,
        "cluster.local",
        &[ca.cert_der().clone(), next.cert_der().clone()],
        0,
    );
    let after: Value = serde_json::from_str(&fetch_doc(web_addr).await).unwrap();
    assert_eq!(after["keys"].as_array().unwrap().len(), 2);
    assert_eq!(
        after["spiffe_sequence"].as_u64().unwrap(),
        before["spiffe_sequence"].as_u64().unwrap() + 1
    );
}

/// The document served at `addr` (https_web, trusting anything: the
/// content is what is under test here).
async fn fetch_doc(addr: SocketAddr) -> String {
    #[derive(Debug)]
    struct Any;
    impl rustls::client::danger::ServerCertVerifier for Any {
        fn verify_server_cert(
            &self,
            _: &rustls_pki_types::CertificateDer<'_>,
            _: &[rustls_pki_types::CertificateDer<'_>],
            _: &rustls_pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls_pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &rustls_pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &rustls_pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            quicmesh_core::crypto_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
    let cfg = rustls::ClientConfig::builder_with_provider(quicmesh_core::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Any))
        .with_no_client_auth();
    body(&raw(addr, Arc::new(cfg), "GET / HTTP/1.1\r\nhost: x\r\n\r\n").await).to_string()
}

/// An https_web certificate from files is re-read when the files change:
/// the next handshakes present the new one.
#[tokio::test]
async fn the_https_web_certificate_is_re_read_when_its_files_change() {
    let self_signed = |name: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert, key)
    };
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let (a, ka) = self_signed("a.example");
    std::fs::write(&cert_path, a.pem()).unwrap();
    std::fs::write(&key_path, ka.serialize_pem()).unwrap();
    let fc = endpoint::FileCert::load(cert_path.clone(), key_path.clone()).unwrap();
    assert_eq!(fc.current().cert[0], *a.der());
    let (b, kb) = self_signed("b.example");
    std::fs::write(&key_path, kb.serialize_pem()).unwrap();
    std::fs::write(&cert_path, b.pem()).unwrap();
    until(
        Duration::from_secs(10),
        "the new certificate served",
        || (fc.current().cert[0] == *b.der()).then_some(()),
    )
    .await;
    // A broken file keeps the last good pair.
    std::fs::write(&cert_path, "not a certificate").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    while tokio::time::Instant::now() < deadline {
        assert_eq!(fc.current().cert[0], *b.der());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
