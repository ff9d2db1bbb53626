//! The waypoint's request metrics. Labels are bounded by the config (the
//! Service; for workload-addressed traffic, `<namespace>/pod-ip`, one
//! series for every pod address), by HTTP (the status
//! code) and by [`crate::response::Failure`] (the response flag): a flood
//! of distinct clients or paths adds no series.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The Service the request was addressed to: `namespace/name:port`;
    /// for workload-addressed traffic `namespace/pod-ip` (any pod, any port).
    pub service: String,
    pub code: u16,
    /// Why the waypoint answered itself (`""` when the backend answered).
    pub flag: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    /// `namespace/name` of the route (bounded by the config).
    pub route: String,
    /// `retried`, or `budget_exhausted` (a retry the budget refused).
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TcpLabels {
    pub service: String,
    /// How it ended (`closed`, `stream_reset`, `stopped`) or why it was
    /// refused (`no_healthy_endpoint`, `upstream_connect_failure`, ...).
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DenialLabels {
    /// The policy that decided (`namespace/name`, bounded by the config).
    pub policy: String,
    /// `deny_policy`, `no_allow_match`, `invalid_policy`, `unknown_workload`.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JwtLabels {
    /// `authenticated`, `no_token` or `refused`.
    pub result: String,
    /// Why refused (a fixed word: `expired`, `bad_signature`, ...); empty otherwise.
    pub reason: String,
}

#[derive(Default)]
pub struct RequestMetrics {
    /// Requests a RequestAuthentication applied to, by outcome.
    pub jwt: Family<JwtLabels, Counter>,
    pub authz_denials: Family<DenialLabels, Counter>,
    pub authz_audits: Family<PolicyLabels, Counter>,
    pub requests: Family<RequestLabels, Counter>,
    pub tcp: Family<TcpLabels, Counter>,
    /// WebSocket streams after the switch, by Service and how they ended.
    pub upgrades: Family<TcpLabels, Counter>,
    pub retries: Family<RetryLabels, Counter>,
    pub mirrors: Family<ResultLabels, Counter>,
    /// Tunnelled connections being served as HTTP.
    pub connections: Gauge,
}

impl RequestMetrics {
    pub fn register(&self, reg: &mut Registry) {
        reg.register(
            "waypoint_requests",
            "HTTP requests answered, by destination Service, status code and response flag",
            self.requests.clone(),
        );
        reg.register(
            "waypoint_tcp_connections",
            "Connections passed through as opaque TCP (ports declared as such, or not detected as HTTP), by Service and result",
            self.tcp.clone(),
        );
        reg.register(
            "waypoint_upgraded_streams",
            "WebSocket streams spliced after the backend switched protocols, by Service and result: ended, incomplete (a side's upgrade did not complete), authz_revoked (cut: a policy change denies it)",
            self.upgrades.clone(),
        );
        reg.register(
            "waypoint_retries",
            "Retries of requests to backends by route: sent, or refused by the route's retry budget",
            self.retries.clone(),
        );
        reg.register(
            "waypoint_mirrored_requests",
            "Copies of requests for RequestMirror filters: sent (answered), failed, dropped (too many in flight), not_replayable (a streamed body), no_healthy_endpoint, denied (the mirror's workload's policies refuse the client)",
            self.mirrors.clone(),
        );
        reg.register(
            "waypoint_authz_denials",
            "Requests and TCP connections refused by the destination's authorization policies, by policy and reason",
            self.authz_denials.clone(),
        );
        reg.register(
            "waypoint_authz_audits",
            "Requests and TCP connections an AUDIT policy matched, by policy",
            self.authz_audits.clone(),
        );
        reg.register(
            "waypoint_jwt_requests",
            "Requests a RequestAuthentication applied to, by result (authenticated, no_token, refused) and the reason of a refusal",
            self.jwt.clone(),
        );
        reg.register(
            "waypoint_downstream_connections",
            "Tunnelled connections being served as HTTP now",
            self.connections.clone(),
        );
    }

    pub fn tcp(&self, service: String, result: &str) {
        self.tcp
            .get_or_create(&TcpLabels {
                service,
                result: result.to_string(),
            })
            .inc();
    }

    pub fn upgraded(&self, service: String, result: &str) {
        self.upgrades
            .get_or_create(&TcpLabels {
                service,
                result: result.to_string(),
            })
            .inc();
    }

    pub fn mirrored(&self, result: &str, n: u64) {
        self.mirrors
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc_by(n);
    }

    pub fn retried(&self, route: &str, result: &str) {
        self.retries
            .get_or_create(&RetryLabels {
                route: route.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    pub fn jwt(&self, result: &str, reason: &str) {
        self.jwt
            .get_or_create(&JwtLabels {
                result: result.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn request(&self, service: String, code: u16, flag: &str) {
        self.requests
            .get_or_create(&RequestLabels {
                service,
                code,
                flag: flag.to_string(),
            })
            .inc();
    }
}
