//! ztunnel's own metrics, beside the shared tunnel metrics.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use quicmesh_core::metrics::{ReasonLabels, TunnelMetrics};

#[derive(Default)]
pub struct Metrics {
    pub tunnel: Arc<TunnelMetrics>,
    /// Connections refused or failed before they carried data, by reason.
    pub refusals: Family<ReasonLabels, Counter>,
    pub passthrough: Counter,
    /// Outbound connections sent to a waypoint (addressed to a Service or
    /// to a workload).
    pub via_waypoint: Counter,
    pub plaintext_inbound: Counter,
    pub enrolled_pods: Gauge,
    /// Enrolled pods still waiting for their first SVID.
    pub identity_pending_pods: Gauge,
    pub enrollment_failures: Counter,
    /// Enrollment connections and requests refused before they reached a
    /// pod, by reason.
    pub enrollment_refusals: Family<ReasonLabel, Counter>,
    pub alive_tasks: Gauge,
    /// 1 while the config stream is up.
    pub config_connected: Gauge,
    pub config_update_results: Family<ResultLabels, Counter>,
    /// The config version in effect, when updates were last taken or refused.
    pub config: quicmesh_core::metrics::ConfigGauges,
    pub svid_fetches: Family<ResultLabels, Counter>,
    /// Answers from the SPIFFE Workload API (`--svid-source workload-api:`).
    pub workload_api: quicmesh_core::metrics::WorkloadApiMetrics,
    /// Inbound connections denied by authorization, by policy and reason.
    pub authz_denials: Family<AuthzLabels, Counter>,
    /// Live connections cut because policy no longer allows them.
    pub authz_closed: Family<AuthzLabels, Counter>,
    /// Connections an AUDIT policy matched.
    pub authz_audits: Family<PolicyLabels, Counter>,
    /// Inbound connections admitted, by what admitted them (`policy`: an
    /// ALLOW policy matched; `waypoint`: the destination's waypoint, which
    /// decided its policies per request; `default`: no ALLOW policy
    /// applies). Three series at most.
    pub authz_admissions: Family<AdmittedLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct AdmittedLabels {
    pub by: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct AuthzLabels {
    pub policy: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct PolicyLabels {
    pub policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

impl Metrics {
    pub fn register(&self, reg: &mut Registry) {
        self.tunnel.register(reg);
        self.workload_api.register(reg);
        self.config.register(reg);
        reg.register(
            "quicmesh_ztunnel_connection_refusals",
            "Connections refused or failed before carrying data, by direction and reason",
            self.refusals.clone(),
        );
        reg.register(
            "quicmesh_ztunnel_passthrough_connections",
            "Outbound connections to destinations outside the mesh, passed through",
            self.passthrough.clone(),
        );
        reg.register(
            "quicmesh_ztunnel_waypoint_connections",
            "Outbound connections to a Service or a workload that uses a waypoint, tunnelled to the waypoint",
            self.via_waypoint.clone(),
        );
        reg.register(
            "quicmesh_ztunnel_plaintext_inbound_connections",
            "Inbound plaintext connections accepted from peers outside the mesh",
            self.plaintext_inbound.clone(),
        );
        reg.register(
            "quicmesh_ztunnel_enrolled_pods",
            "Pods enrolled on this node",
            self.enrolled_pods.clone(),
        );
        reg.register(
            "quicmesh_ztunnel_identity_pending_pods",
            "Enrolled pods whose SVID the CA has not issued yet (their mesh traffic fails closed)",
            self.identity_pending_pods.clone(),
        );
        reg.register(
            "quicmesh_ztunnel_enrollment_failures",
            "Enrollment operations that failed",
            self.enrollment_failures.clone(),
        );
        reg.register(
            "quicmesh_ztunnel_enrollment_refusals",
            "Enrollment connections (peer uid not allowed) and requests (descriptors, size, malformed, not a network namespace, snapshot order) refused, by reason",
            self.enrollment_refusals.clone(),
        );
        reg.register(
            "quicmesh_ztunnel_config_connected",
            "1 while the config stream to the controller is up",
            self.config_connected.clone(),
        );
        reg.register(
            "quicmesh_ztunnel_config_updates",
            "Config updates from the controller, by result (ack, nack)",
            self.config_update_results.clone(),
        );
        reg.register(
            "quicmesh_ztunnel_svid_fetches",
            "SVID fetches, by result",
            self.svid_fetches.clone(),
        );
        reg.register(
            "quicmesh_ztunnel_authz_denials",
            "Inbound connections denied by authorization, by policy and reason",
            self.authz_denials.clone(),
        );
        reg.register(
            "quicmesh_ztunnel_authz_closed_connections",
            "Live inbound connections closed because policy no longer allows them",
            self.authz_closed.clone(),
        );
        reg.register(
            "quicmesh_ztunnel_authz_audits",
            "Inbound connections matched by an AUDIT policy",
            self.authz_audits.clone(),
        );
        reg.register(
            "quicmesh_ztunnel_authz_admissions",
            "Inbound connections admitted, by what admitted them (policy, waypoint, default)",
            self.authz_admissions.clone(),
        );
        reg.register(
            "quicmesh_ztunnel_runtime_alive_tasks",
            "Tasks alive in the async runtime (sampled at scrape)",
            self.alive_tasks.clone(),
        );
    }

    pub fn config_updates(&self, result: &str) {
        self.config_update_results
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    }

    pub fn enrollment_refused(&self, reason: &str) {
        self.enrollment_refusals
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn authz_denied(&self, policy: &str, reason: &str) {
        self.authz_denials
            .get_or_create(&AuthzLabels {
                policy: policy.into(),
                reason: reason.into(),
            })
            .inc();
    }

    pub fn authz_closed(&self, policy: &str, reason: &str) {
        self.authz_closed
            .get_or_create(&AuthzLabels {
                policy: policy.into(),
                reason: reason.into(),
            })
            .inc();
    }

    pub fn authz_audited(&self, policy: &str) {
        self.authz_audits
            .get_or_create(&PolicyLabels {
                policy: policy.into(),
            })
            .inc();
    }

    pub fn authz_admitted(&self, by: &'static str) {
        self.authz_admissions
            .get_or_create(&AdmittedLabels { by })
            .inc();
    }

    pub fn outbound_refused(&self, reason: &str) {
        self.refused("outbound", reason)
    }

    pub fn inbound_refused(&self, reason: &str) {
        self.refused("inbound", reason)
    }

    fn refused(&self, direction: &str, reason: &str) {
        self.refusals
            .get_or_create(&ReasonLabels {
                direction: direction.into(),
                reason: reason.into(),
            })
            .inc();
    }
}
