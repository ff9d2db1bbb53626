//! The controller's side of the TLS channel: accepted TCP connections,
//! each through its TLS handshake (bounded in time, so a stranger that
//! never finishes costs a task for at most that long), as the stream of
//! connections a tonic server serves (`serve_with_incoming`).

use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

/// The connections of `listener` whose TLS handshake completed within
/// `handshake_timeout`; failed and slow handshakes are logged and dropped.
pub fn tls_incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
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
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(%peer, error = %e, "TLS handshake with a proxy failed")
                    }
                    Err(_) => tracing::warn!(%peer, "TLS handshake with a proxy timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
