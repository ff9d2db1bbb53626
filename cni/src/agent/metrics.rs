//! The agent's metrics (`/metrics` on `--health-addr`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::protocol::Refusal;

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[derive(Debug, Default)]
pub struct Metrics {
    requests: Family<Labels, Counter>,
    refusals: Family<Labels, Counter>,
    operations: Family<Labels, Counter>,
    syncs: Family<Labels, Counter>,
    pods: Family<Labels, Gauge>,
    pub identity_pending: Gauge,
    pub ztunnel_connected: Gauge,
}

impl Metrics {
    pub fn register(&self, reg: &mut Registry) {
        reg.register(
            "quicmesh_cni_requests",
            "Plugin requests answered, by command and result (ok, or the CNI error code)",
            self.requests.clone(),
        );
        reg.register(
            "quicmesh_cni_refusals",
            "Plugin connections or requests refused before they were acted on, by reason",
            self.refusals.clone(),
        );
        reg.register(
            "quicmesh_cni_ztunnel_operations",
            "Enrollment operations sent to ztunnel, by operation (add, remove) and result (ok, refused, unreachable)",
            self.operations.clone(),
        );
        reg.register(
            "quicmesh_cni_ztunnel_syncs",
            "Times the agent brought a (re)connected ztunnel up to date: snapshot (its enrolled set made the agent's) or adds (added only: it may hold pods the agent does not know)",
            self.syncs.clone(),
        );
        reg.register(
            "quicmesh_cni_pods",
            "Pods of this node whose network namespace the agent holds, by state (enrolled, not_enrolled)",
            self.pods.clone(),
        );
        reg.register(
            "quicmesh_cni_identity_pending_pods",
            "Enrolled pods whose SVID ztunnel does not have yet",
            self.identity_pending.clone(),
        );
        reg.register(
            "quicmesh_cni_ztunnel_connected",
            "1 while the agent is connected to ztunnel's enrollment socket",
            self.ztunnel_connected.clone(),
        );
    }

    pub fn request(&self, command: &str, result: &str) {
        self.requests
            .get_or_create(&labels(&[("command", command), ("result", result)]))
            .inc();
    }

    pub fn refused(&self, reason: Refusal) {
        self.refusals
            .get_or_create(&labels(&[("reason", reason.as_str())]))
            .inc();
    }

    pub fn refusals(&self, reason: Refusal) -> u64 {
        self.refusals
            .get_or_create(&labels(&[("reason", reason.as_str())]))
            .get()
    }

    pub fn operation(&self, op: &str, result: &str) {
        self.operations
            .get_or_create(&labels(&[("op", op), ("result", result)]))
            .inc();
    }

    pub fn synced(&self, kind: &str) {
        self.syncs.get_or_create(&labels(&[("kind", kind)])).inc();
    }

    pub fn set_pods(&self, enrolled: usize, not_enrolled: usize) {
        self.pods
            .get_or_create(&labels(&[("state", "enrolled")]))
            .set(enrolled as i64);
        self.pods
            .get_or_create(&labels(&[("state", "not_enrolled")]))
            .set(not_enrolled as i64);
    }
}
