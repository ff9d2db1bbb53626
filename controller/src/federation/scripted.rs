//! A scripted HTTPS bundle endpoint: it presents the certificate and
//! answers with the body the caller sets, or holds every request without
//! answering, switched while it runs. It plays a peer that goes wrong in
//! the fetcher's tests (`controller/tests/federation.rs`) and in the
//! lab's two-mesh federation test, on the listener each gives it.
//!
//! Each connection is bounded: one request head of at most 4 KiB, read
//! once; a silent answer holds the connection 30 s at most.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use quicmesh_core::identity::Svid;
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the peer answers next.
#[derive(Debug, Clone)]
pub enum Answer {
    /// This body with HTTP 200, `application/json`.
    Body(String),
    /// Nothing (the connection is held open, then closed).
    Silent,
}

/// The peer's certificate and answer, changed by the test as it goes.
pub struct Script {
    cert: Mutex<Arc<CertifiedKey>>,
    answer: Mutex<Answer>,
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Script")
            .field("answer", &*self.answer.lock().expect("not poisoned"))
            .finish_non_exhaustive()
    }
}

impl Script {
    pub fn new(svid: &Svid, answer: Answer) -> Arc<Self> {
        Arc::new(Script {
            cert: Mutex::new(certified(svid)),
            answer: Mutex::new(answer),
        })
    }

    /// Presents `svid` from the next handshake on.
    pub fn present(&self, svid: &Svid) {
        *self.cert.lock().expect("not poisoned") = certified(svid);
    }

    /// Answers so from the next request on.
    pub fn answer(&self, answer: Answer) {
        *self.answer.lock().expect("not poisoned") = answer;
    }
}

impl rustls::server::ResolvesServerCert for Script {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.cert.lock().expect("not poisoned").clone())
    }
}

fn certified(svid: &Svid) -> Arc<CertifiedKey> {
    let key = quicmesh_core::crypto_provider()
        .key_provider
        .load_private_key(svid.clone_key())
        .expect("an SVID's key loads");
    Arc::new(CertifiedKey::new(svid.chain.clone(), key))
}

/// Serves `script` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, script: Arc<Script>) {
    let mut cfg = rustls::ServerConfig::builder_with_provider(quicmesh_core::crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("the provider's versions")
        .with_no_client_auth()
        .with_cert_resolver(script.clone());
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    while let Ok((tcp, _)) = listener.accept().await {
        let (acceptor, script) = (acceptor.clone(), script.clone());
        tokio::spawn(async move {
            let Ok(Ok(mut tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                return;
            };
            let mut head = vec![0; 4096];
            let _ = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut head)).await;
            let answer = script.answer.lock().expect("not poisoned").clone();
            match answer {
                Answer::Body(b) => {
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{b}",
                        b.len()
                    );
                    let _ = tls.write_all(resp.as_bytes()).await;
                    let _ = tls.shutdown().await;
                }
                Answer::Silent => tokio::time::sleep(Duration::from_secs(30)).await,
            }
        });
    }
}
