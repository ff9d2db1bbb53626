use super::*;

#[test]
fn a_file_token_is_read_again_each_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    assert!(Token::file(&path).is_err(), "missing: refused at start");
    std::fs::write(&path, "first\n").unwrap();
    let t = Token::file(&path).unwrap();
    assert_eq!(t.read().unwrap(), "first");
    // The kubelet replaces a projected token before it expires.
    std::fs::write(&path, "second").unwrap();
    assert_eq!(t.read().unwrap(), "second");
    std::fs::write(&path, "  \n").unwrap();
    assert!(t.read().is_err(), "empty");
}

#[test]
fn controller_addresses_are_ip_or_dns_with_a_port() {
    for ok in [
        "10.99.0.101:15012",
        "[fd00::1]:15012",
        "quicmesh-controller.quicmesh-system.svc:15012",
        "controller:1",
        "quicmesh-controller.quicmesh-system.svc.cluster.local.:15012",
    ] {
        assert!(ok.parse::<ControllerAddr>().is_ok(), "{ok}");
    }
    for bad in [
        "controller",
        "controller:0",
        "controller:99999",
        ":15012",
        "-bad-.svc:15012",
        "a b:15012",
        "http://controller:15012",
        "fd00::1:15012x",
    ] {
        assert!(bad.parse::<ControllerAddr>().is_err(), "{bad}");
    }
}

mod ca_bundle {
    //! The trust bundle in the CA's answer, over a real TLS channel to a
    //! CA served in the test.

    use std::sync::Mutex;

    use quicmesh_proto::ca::certificate_authority_server::{
        CertificateAuthority, CertificateAuthorityServer,
    };
    use quicmesh_proto::ca::CreateCertificateResponse;
    use rustls::server::danger::ClientCertVerifier;
    use rustls_pki_types::UnixTime;

    use super::*;
    use crate::identity::ca::Ca;
    use crate::identity::verify::ClientVerifier;
    use crate::identity::TrustBundles;

    const TD: &str = "cluster.local";

    /// Signs with `issuer` and answers with whatever `bundle` holds then.
    struct TestCa {
        issuer: Arc<Ca>,
        bundle: Arc<Mutex<String>>,
    }

    #[tonic::async_trait]
    impl CertificateAuthority for TestCa {
        async fn create_certificate(
            &self,
            req: tonic::Request<CreateCertificateRequest>,
        ) -> Result<tonic::Response<CreateCertificateResponse>, tonic::Status> {
            let (_, cert) = self
                .issuer
                .sign_csr(&req.into_inner().csr, Duration::from_secs(600))
                .map_err(|e| tonic::Status::internal(e.to_string()))?;
            Ok(tonic::Response::new(CreateCertificateResponse {
                cert_chain: vec![pem::encode(&pem::Pem::new("CERTIFICATE", cert.to_vec()))],
                trust_bundle: self.bundle.lock().unwrap().clone(),
            }))
        }
    }

    fn controller_id() -> SpiffeId {
        SpiffeId::workload(TD, "quicmesh-system", "controller").unwrap()
    }

    /// Serves a CA on loopback, presenting a controller certificate from
    /// `presented_by`.
    async fn serve(presented_by: &Ca, ca: TestCa) -> SocketAddr {
        let svid = presented_by
            .mint(&controller_id(), Duration::from_secs(600))
            .unwrap();
        let mut cfg = rustls::ServerConfig::builder_with_provider(crate::crypto_provider())
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
            crate::control::incoming::tls_incoming(listener, acceptor, Duration::from_secs(10));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(CertificateAuthorityServer::new(ca))
                .serve_with_incoming(incoming),
        );
        addr
    }

    fn client(
        addr: SocketAddr,
        bundles: &SharedBundles,
        tls: &Arc<TlsMetrics>,
    ) -> ControllerClient {
        ControllerClient {
            addr: addr.into(),
            identity: controller_id(),
            bundles: bundles.clone(),
            token: Token::Fixed("t".into()),
            node: "node1".into(),
            tls_metrics: tls.clone(),
        }
    }

    fn pems(cas: &[&Ca]) -> String {
        cas.iter().map(|c| c.cert_pem()).collect()
    }

    /// The CA moves to a new root and sends both: from then on peers of
    /// either root verify, in verifiers built before, and the controller
    /// client itself reaches a controller whose certificate the new root
    /// issued. A garbage bundle is ignored (the certificate is taken); one
    /// without the issuing root refuses the answer. The previous bundle
    /// stays in both cases.
    #[tokio::test]
    async fn the_cas_bundle_replaces_the_mesh_domains_roots() {
        let (old, new) = (
            Arc::new(Ca::generate(TD).unwrap()),
            Arc::new(Ca::generate(TD).unwrap()),
        );
        let bundle = Arc::new(Mutex::new(pems(&[&old, &new])));
        // Reached with the bootstrap bundle: the controller still presents
        // an old-root certificate.
        let first = serve(
            &old,
            TestCa {
                issuer: new.clone(),
                bundle: bundle.clone(),
            },
        )
        .await;
        // A controller already on the new root.
        let renewed = serve(
            &new,
            TestCa {
                issuer: new.clone(),
                bundle: bundle.clone(),
            },
        )
        .await;
        let mut bootstrap = TrustBundles::new();
        bootstrap.insert(TD, &[old.cert_der().clone()]).unwrap();
        let bundles = SharedBundles::new(bootstrap);
        let tls = Arc::new(TlsMetrics::default());
        // A tunnel server's verifier, built before any answer.
        let tunnel = ClientVerifier::new(
            bundles.clone(),
            Box::new(|_| true),
            crate::crypto_provider(),
            Arc::new(TlsMetrics::default()),
        );
        let life = Duration::from_secs(600);
        let peer_of = |ca: &Ca, ns: &str| {
            ca.mint(&SpiffeId::workload(TD, ns, "sa").unwrap(), life)
                .unwrap()
        };
        let (peer_old, peer_new) = (peer_of(&old, "a"), peer_of(&new, "b"));
        let verifies = |svid: &Svid| {
            tunnel
                .verify_client_cert(&svid.chain[0], &[], UnixTime::now())
                .is_ok()
        };
        assert!(verifies(&peer_old) && !verifies(&peer_new));
        let id = SpiffeId::workload(TD, "shop", "web").unwrap();
        client(renewed, &bundles, &tls)
            .sign(&id, None)
            .await
            .expect_err("a controller certificate of a root not yet trusted");
        assert_eq!(tls.count("client", "untrusted_chain"), 1);

        let svid = client(first, &bundles, &tls).sign(&id, None).await.unwrap();
        assert_eq!(svid.id, id);
        assert_eq!(tls.bundle_updates("replaced"), 1);
        assert!(verifies(&peer_old) && verifies(&peer_new));
        assert_eq!(bundles.load().get(TD).unwrap().len(), 2);
        // Future connections to the controller use the new bundle too.
        client(renewed, &bundles, &tls)
            .sign(&id, None)
            .await
            .unwrap();
        assert_eq!(tls.bundle_updates("unchanged"), 1);

        *bundle.lock().unwrap() = "-----BEGIN CERTIFICATE-----\ngarbage\n".into();
        client(first, &bundles, &tls).sign(&id, None).await.unwrap();
        assert_eq!(tls.bundle_updates("malformed"), 1);
        assert_eq!(bundles.load().get(TD).unwrap().len(), 2);

        *bundle.lock().unwrap() = pems(&[&old]);
        let e = client(first, &bundles, &tls)
            .sign(&id, None)
            .await
            .unwrap_err();
        assert!(
            e.contains("does not verify against the trust bundle it sent"),
            "{e}"
        );
        assert_eq!(tls.bundle_updates("untrusted"), 1);
        assert!(
            verifies(&peer_old) && verifies(&peer_new),
            "previous bundle kept"
        );

        // A CA that sends no bundle leaves ours alone, uncounted.
        bundle.lock().unwrap().clear();
        client(first, &bundles, &tls).sign(&id, None).await.unwrap();
        assert_eq!(
            tls.bundle_updates("replaced") + tls.bundle_updates("unchanged"),
            2
        );
    }
}
