//! The controller's gRPC endpoint (15012): TLS with the controller's own
//! SVID; client certificates optional (bootstrap CSRs come with a token) but
//! verified when presented; the CA and the config stream on one port.

use std::net::SocketAddr;
use std::sync::Arc;

use quicmesh_core::identity::verify::ClientVerifier;
use quicmesh_core::identity::{Svid, TrustBundles};
use quicmesh_core::metrics::TlsMetrics;
use quicmesh_proto::ca::certificate_authority_server::CertificateAuthorityServer;
use quicmesh_proto::config::config_stream_server::ConfigStreamServer;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

use crate::ca::CaService;
use crate::push::ConfigService;

pub fn tls_acceptor(
    svid: &Svid,
    bundles: Arc<TrustBundles>,
    metrics: Arc<TlsMetrics>,
) -> anyhow::Result<TlsAcceptor> {
    let provider = quicmesh_core::crypto_provider();
    let verifier =
        ClientVerifier::new(bundles, Box::new(|_| true), provider.clone(), metrics).optional();
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(svid.chain.clone(), svid.clone_key())?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// Serves both gRPC services on `addr` until the process ends.
pub async fn serve(
    addr: SocketAddr,
    acceptor: TlsAcceptor,
    ca: CaService,
    config: ConfigService,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "gRPC (CA, config stream) listening");
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok::<_, std::io::Error>(tls)).await;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(%peer, error = %e, "TLS handshake with a proxy failed")
                    }
                    Err(_) => tracing::warn!(%peer, "TLS handshake with a proxy timed out"),
                }
            });
        }
    });
    tonic::transport::Server::builder()
        .add_service(CertificateAuthorityServer::new(ca))
        .add_service(ConfigStreamServer::new(config))
        .serve_with_incoming(ReceiverStream::new(rx))
        .await?;
    Ok(())
}
