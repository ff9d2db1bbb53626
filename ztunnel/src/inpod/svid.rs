//! A pod's SVID, from enrollment on.
//!
//! A pod is captured as soon as it is enrolled, whether or not the CA has
//! issued its SVID: its listeners and rules go in at once, so its traffic
//! never leaves it unencrypted, and its tunnel server starts without a
//! certificate (handshakes to it are refused). Until the SVID arrives the
//! pod is *identity-pending*: its mesh traffic fails closed (outbound is
//! reset with `no_svid`; inbound tunnels are not accepted), it is listed in
//! the enrollment answer's `identity_pending`, and a node agent keeps it
//! not ready. The task here keeps asking — paced by the cert manager's
//! backoff, and again at once (at most once a second) whenever config
//! arrives from the controller, a sign the CA is reachable and may now know
//! the pod — installs the SVID as the tunnel server's certificate, and from
//! then on replaces it whenever the cert manager renews it (at half-life). It never gives up; it ends when the
//! pod is removed.

use std::sync::Arc;
use std::time::Duration;

use quicmesh_core::identity::Svid;
use quicmesh_core::tunnel::config as tconfig;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::node::PodCtx;

/// How often a pending pod looks again (cheap: within the backoff the cert
/// manager answers without asking the CA).
const PENDING_POLL: Duration = Duration::from_millis(250);
/// Config news makes a pending pod ask the CA at once, but not more often
/// than this.
const EXPEDITE_EVERY: Duration = Duration::from_secs(1);

/// Where a pod's SVID stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Not issued yet; why the last attempt failed.
    Pending(String),
    /// Installed; the pod's tunnel server presents it.
    Ready,
}

impl Phase {
    pub fn is_ready(&self) -> bool {
        matches!(self, Phase::Ready)
    }
}

/// Waits until the pod's SVID is installed or `until` passes; true if it is
/// still pending (or the pod went away meanwhile).
pub async fn pending_at(rx: &mut watch::Receiver<Phase>, until: Instant) -> bool {
    let _ = tokio::time::timeout_at(until, rx.wait_for(Phase::is_ready)).await;
    !rx.borrow().is_ready()
}

/// Starts the pod's SVID task on `tracker`; it publishes its phase on the
/// returned channel and stops on `drain`.
pub fn spawn(
    ctx: Arc<PodCtx>,
    endpoint: quinn::Endpoint,
    tracker: &TaskTracker,
    drain: &CancellationToken,
    span: tracing::Span,
) -> watch::Receiver<Phase> {
    let (tx, rx) = watch::channel(Phase::Pending("asking the CA".into()));
    let drain = drain.clone();
    tracker.spawn(tracing::Instrument::instrument(
        async move {
            let Some(svid) = first(&ctx, &endpoint, &drain, &tx).await else {
                return;
            };
            renew(ctx, endpoint, drain, svid).await;
        },
        span,
    ));
    rx
}

fn server_config(ctx: &PodCtx, svid: &Svid) -> Result<quinn::ServerConfig, String> {
    let s = &ctx.shared;
    tconfig::server_config(
        svid,
        s.certs.bundles(),
        // L4 authorization policy is its own part; any identity proven
        // by a trusted bundle is accepted here.
        Box::new(|_| true),
        &s.metrics.tunnel,
        &s.settings,
    )
    .map_err(|e| format!("SVID unusable as a server certificate: {e}"))
}

/// Counts the pod among the identity-pending ones while it lives.
struct PendingGauge<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl Drop for PendingGauge<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Asks until the SVID is issued and installed; None if drained first.
async fn first(
    ctx: &PodCtx,
    endpoint: &quinn::Endpoint,
    drain: &CancellationToken,
    phase: &watch::Sender<Phase>,
) -> Option<Arc<Svid>> {
    let s = &ctx.shared;
    let mut seen = s.state();
    let mut since: Option<(Instant, PendingGauge)> = None;
    let mut expedited = Instant::now();
    loop {
        // A CA that does not answer holds a fetch for up to 10 s; a pod
        // removed meanwhile does not wait for it.
        let fetched = tokio::select! {
            r = s.certs.svid(&ctx.identity) => r,
            _ = drain.cancelled() => return None,
        };
        let attempt = match fetched {
            Ok(svid) => server_config(ctx, &svid).map(|cfg| (svid, cfg)),
            Err(e) => Err(e.to_string()),
        };
        match attempt {
            Ok((svid, cfg)) => {
                endpoint.set_server_config(Some(cfg));
                phase.send_replace(Phase::Ready);
                if let Some((t, _)) = &since {
                    tracing::info!(
                        waited_ms = t.elapsed().as_millis() as u64,
                        "SVID issued; the pod's mesh traffic flows"
                    );
                }
                return Some(svid);
            }
            Err(reason) => {
                if since.is_none() {
                    tracing::warn!(%reason, "pod enrolled without an SVID yet: its mesh traffic fails closed until the CA issues one; asking until it does");
                    s.metrics.identity_pending_pods.inc();
                    since = Some((
                        Instant::now(),
                        PendingGauge(&s.metrics.identity_pending_pods),
                    ));
                }
                phase.send_replace(Phase::Pending(reason));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(PENDING_POLL) => {}
            _ = drain.cancelled() => return None,
        }
        let now = s.state();
        if !Arc::ptr_eq(&seen, &now) && expedited.elapsed() >= EXPEDITE_EVERY {
            seen = now;
            expedited = Instant::now();
            s.certs.expedite(&ctx.identity);
        }
    }
}

/// Replaces the pod's server certificate at half-life. Client connections
/// pick up the new SVID on their next handshake; live connections continue.
async fn renew(
    ctx: Arc<PodCtx>,
    endpoint: quinn::Endpoint,
    drain: CancellationToken,
    current: Arc<Svid>,
) {
    let config = |svid: &Svid| server_config(&ctx, svid);
    quicmesh_core::tunnel::certificate::rotate(
        &ctx.shared.certs,
        &ctx.identity,
        &endpoint,
        &config,
        &drain,
        current,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_answer_waits_for_the_svid_only_until_the_grace_ends() {
        let (tx, mut rx) = watch::channel(Phase::Pending("asking the CA".into()));
        let start = Instant::now();
        // Issued within the grace: not pending, answered when it is.
        let t = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            t.send_replace(Phase::Ready);
        });
        assert!(!pending_at(&mut rx, start + Duration::from_secs(1)).await);
        assert_eq!(start.elapsed(), Duration::from_millis(300));

        // Not issued: pending once the grace is over, not later.
        tx.send_replace(Phase::Pending("the CA refused".into()));
        let start = Instant::now();
        assert!(pending_at(&mut rx, start + Duration::from_secs(1)).await);
        assert_eq!(start.elapsed(), Duration::from_secs(1));

        // Already ready: answered at once.
        tx.send_replace(Phase::Ready);
        let start = Instant::now();
        assert!(!pending_at(&mut rx, start + Duration::from_secs(1)).await);
        assert_eq!(start.elapsed(), Duration::ZERO);

        // The pod went away (its task ended) before the SVID came: pending.
        tx.send_replace(Phase::Pending("asking the CA".into()));
        drop(tx);
        assert!(pending_at(&mut rx, Instant::now() + Duration::from_secs(1)).await);
    }
}
