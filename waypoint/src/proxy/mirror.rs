//! Request mirroring: copies sent in the background, answers dropped.

use http::Request;
use http_body_util::BodyExt;

use super::{prepare_upstream, Conn, Directory, Waypoint};
use crate::response::{Body, Failure};

/// Mirrored requests in flight at most; more are dropped.
pub const MAX_MIRRORS_IN_FLIGHT: usize = 256;
/// A mirrored request taking longer is abandoned.
pub const MIRROR_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl<D: Directory> Waypoint<D> {
    /// Sends a copy of a request to an endpoint of the mirror's backend, in
    /// the background; its answer is read and dropped. At most
    /// [`MAX_MIRRORS_IN_FLIGHT`] at once (more are dropped and counted),
    /// each within [`MIRROR_TIMEOUT`].
    pub(super) fn mirror(
        &self,
        conn: &Conn,
        m: &quicmesh_core::route::Mirror,
        mut req: Request<Body>,
        facts: Option<&crate::authz::RequestFacts>,
    ) {
        let Ok(permit) = self.mirror_slots.clone().try_acquire_owned() else {
            self.metrics.mirrored("dropped", 1);
            return;
        };
        // A mirror names a Service; a name spelled as a pod address
        // (which the directory would resolve for workload-addressed
        // traffic) is no Service, and gets nothing.
        if super::workload::backend_ip(&m.target.name).is_some() {
            self.metrics.mirrored("no_healthy_endpoint", 1);
            return;
        }
        let endpoints = self.directory.endpoints(&m.target);
        let addrs: Vec<_> = endpoints.iter().map(|e| e.addr).collect();
        let Some((i, pending)) = self.balancer.choose(&addrs) else {
            self.metrics.mirrored("no_healthy_endpoint", 1);
            return;
        };
        let ep = endpoints[i].clone();
        // A copy is a request of the client's to the mirror's workload: its
        // policies decide it as they would the original.
        if self.authorize(conn, &ep, facts).is_err() {
            self.metrics.mirrored("denied", 1);
            return;
        }
        let version = ep.protocol.version(req.version());
        prepare_upstream(&mut req, version);
        let (upstreams, metrics) = (self.upstreams.clone(), self.metrics.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let sent = tokio::time::timeout(MIRROR_TIMEOUT, async {
                let resp = upstreams.send(&ep, version, req).await?;
                let ok = !resp.status().is_server_error();
                // Read to the end, so the connection can be reused.
                let _ = resp.into_body().collect().await;
                Ok::<_, Failure>(ok)
            })
            .await;
            match sent {
                Ok(Ok(true)) => {
                    pending.done();
                    metrics.mirrored("sent", 1);
                }
                _ => {
                    pending.fail();
                    metrics.mirrored("failed", 1);
                }
            }
        });
    }
}
