//! A tunnel server's certificate kept current: whenever the cert manager
//! renews the identity's SVID (at half-life), the endpoint's server config
//! is replaced. Live connections continue on the old certificate; new
//! handshakes present the new one.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::identity::certs::CertManager;
use crate::identity::{SpiffeId, Svid};

/// Builds the server config that presents an SVID.
pub type MakeConfig<'a> = &'a (dyn Fn(&Svid) -> Result<quinn::ServerConfig, String> + Sync);

/// Replaces `endpoint`'s certificate with each renewed SVID of `identity`,
/// starting from `current` (installed by the caller), until `stop`.
pub async fn rotate(
    certs: &CertManager,
    identity: &SpiffeId,
    endpoint: &quinn::Endpoint,
    config: MakeConfig<'_>,
    stop: &CancellationToken,
    mut current: Arc<Svid>,
) {
    loop {
        let wait = certs
            .refresh_time(identity)
            .await
            .and_then(|at| at.duration_since(SystemTime::now()).ok())
            .unwrap_or(Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep(wait.max(Duration::from_millis(200))) => {}
            _ = stop.cancelled() => return,
        }
        // Failures are logged and backed off by the cert manager; the
        // current SVID serves until it expires.
        let Ok(svid) = certs.svid(identity).await else {
            continue;
        };
        if Arc::ptr_eq(&svid, &current) {
            continue;
        }
        match config(&svid) {
            Ok(cfg) => {
                endpoint.set_server_config(Some(cfg));
                tracing::info!(%identity, "tunnel server certificate rotated");
                current = svid;
            }
            Err(e) => tracing::warn!(%identity, error = %e, "rotated SVID unusable"),
        }
    }
}
