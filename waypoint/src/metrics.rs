//! The waypoint's request metrics. Labels are bounded by the config (the
//! Service; for workload-addressed traffic, `<namespace>/pod-ip`, one
//! series for every pod address; the route), by HTTP (the status code;
//! the method, nine and `other`), by [`crate::response::Failure`] (the
//! response flag) and by a [`LabelCap`] (the client's SPIFFE ID and its
//! namespace, the first [`MAX_PRINCIPALS`](quicmesh_core::metrics::MAX_PRINCIPALS) seen): a flood of distinct
//! clients, methods or paths adds no series.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use quicmesh_core::identity::SpiffeId;
use quicmesh_core::metrics::LabelCap;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The Service the request was addressed to: `namespace/name:port`;
    /// for workload-addressed traffic `namespace/pod-ip` (any pod, any port).
    pub service: String,
    /// The route that matched (`namespace/name`, bounded by the config;
    /// `""`: none).
    pub route: String,
    /// The method, one of HTTP's nine or `other` ([`method_label`]).
    pub method: &'static str,
    pub code: u16,
    /// Why the waypoint answered itself (`""` when the backend answered).
    pub flag: String,
    #[prometheus(flatten)]
    pub source: SourceLabels,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DurationLabels {
    pub service: String,
    pub route: String,
    pub method: &'static str,
    #[prometheus(flatten)]
    pub source: SourceLabels,
}

/// Who sent a request, as its certificate proves it: the SPIFFE ID and
/// the Kubernetes namespace in it (`""` for an ID of another form); and
/// the SPIFFE ID of the backend endpoint it was sent to (the last one
/// tried; `""` when none was, e.g. a request refused at the waypoint).
/// Each capped ([`LabelCap`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub src_namespace: String,
    pub src_principal: String,
    pub dst_principal: String,
}

/// A bounded method label: a client inventing methods adds no series.
pub fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::CONNECT => "CONNECT",
        http::Method::TRACE => "TRACE",
        _ => "other",
    }
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
pub struct ReasonLabels {
    /// A fixed word.
    pub reason: String,
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    /// The Service port (`namespace/name:port`, bounded by the config).
    pub service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceReasonLabels {
    pub service: String,
    /// A fixed word (the overflow's, the ejection's).
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FaultLabels {
    pub service: String,
    /// `delay` or `abort`.
    pub fault: String,
}

#[derive(Default)]
pub struct RequestMetrics {
    /// Bounds the client labels of requests and durations.
    principals: LabelCap,
    namespaces: LabelCap,
    /// TrafficPolicy: refusals and faults, by Service port.
    pub rate_limited: Family<ServiceLabels, Counter>,
    pub overflows: Family<ServiceReasonLabels, Counter>,
    pub faults: Family<FaultLabels, Counter>,
    pub ejections: Family<ServiceReasonLabels, Counter>,
    /// Requests a RequestAuthentication applied to, by outcome.
    pub jwt: Family<JwtLabels, Counter>,
    pub authz_denials: Family<DenialLabels, Counter>,
    pub authz_audits: Family<PolicyLabels, Counter>,
    pub requests: Family<RequestLabels, Counter>,
    /// Time to the answer's head, by Service, route and method.
    pub durations: Family<DurationLabels, quicmesh_core::metrics::Seconds>,
    pub tcp: Family<TcpLabels, Counter>,
    /// WebSocket streams after the switch, by Service and how they ended.
    pub upgrades: Family<TcpLabels, Counter>,
    pub retries: Family<RetryLabels, Counter>,
    pub mirrors: Family<ResultLabels, Counter>,
    /// Tunnelled connections being served as HTTP.
    pub connections: Gauge,
    /// Downstream connections closed for what the client did, by reason.
    pub downstream_closed: Family<ReasonLabels, Counter>,
}

impl RequestMetrics {
    pub fn register(&self, reg: &mut Registry) {
        reg.register(
            "quicmesh_waypoint_requests",
            "HTTP requests answered, by destination Service, route, method, status code and response flag",
            self.requests.clone(),
        );
        reg.register(
            "quicmesh_waypoint_request_duration_seconds",
            "Time from a request's head to its answer's head (the backend's, or the waypoint's own), by destination Service, route and method",
            self.durations.clone(),
        );
        reg.register(
            "quicmesh_waypoint_tcp_connections",
            "Connections passed through as opaque TCP (ports declared as such, or not detected as HTTP), by Service and result",
            self.tcp.clone(),
        );
        reg.register(
            "quicmesh_waypoint_upgraded_streams",
            "WebSocket streams spliced after the backend switched protocols, by Service and result: ended, incomplete (a side's upgrade did not complete), authz_revoked (cut: a policy change denies it)",
            self.upgrades.clone(),
        );
        reg.register(
            "quicmesh_waypoint_retries",
            "Retries of requests to backends by route: sent, or refused by the route's retry budget",
            self.retries.clone(),
        );
        reg.register(
            "quicmesh_waypoint_mirrored_requests",
            "Copies of requests for RequestMirror filters: sent (answered), failed, dropped (too many in flight), not_replayable (a streamed body), no_healthy_endpoint, denied (the mirror's workload's policies refuse the client)",
            self.mirrors.clone(),
        );
        reg.register(
            "quicmesh_waypoint_authz_denials",
            "Requests and TCP connections refused by the destination's authorization policies, by policy and reason",
            self.authz_denials.clone(),
        );
        reg.register(
            "quicmesh_waypoint_authz_audits",
            "Requests and TCP connections an AUDIT policy matched, by policy",
            self.authz_audits.clone(),
        );
        reg.register(
            "quicmesh_waypoint_jwt_requests",
            "Requests a RequestAuthentication applied to, by result (authenticated, no_token, refused) and the reason of a refusal",
            self.jwt.clone(),
        );
        reg.register(
            "quicmesh_waypoint_rate_limited",
            "Requests refused (429) by the rate limit of the TrafficPolicy of the Service they were addressed to",
            self.rate_limited.clone(),
        );
        reg.register(
            "quicmesh_waypoint_overflows",
            "Requests refused (503) by the circuit breaker (connectionPool) of their backend's TrafficPolicy, by reason: max_concurrent_requests, max_pending_requests, pending_timeout",
            self.overflows.clone(),
        );
        reg.register(
            "quicmesh_waypoint_faults",
            "Faults injected by the TrafficPolicy of the Service requests were addressed to: delay, abort",
            self.faults.clone(),
        );
        reg.register(
            "quicmesh_waypoint_outlier_ejections",
            "Endpoints ejected by outlier detection, by backend Service port and reason: consecutive_5xx, consecutive_gateway_errors, success_rate",
            self.ejections.clone(),
        );
        reg.register(
            "quicmesh_waypoint_downstream_connections",
            "Tunnelled connections being served as HTTP now",
            self.connections.clone(),
        );
        reg.register(
            "quicmesh_waypoint_downstream_closed",
            "Downstream connections the waypoint closed for what the client did: http2_abuse (answered GOAWAY ENHANCE_YOUR_CALM: streams reset before they were served, i.e. rapid reset, CVE-2023-44487; too many stream errors; floods of small DATA frames; a header list far over the limit), protocol_error (another HTTP/2 connection error), head_too_large, malformed_request and header_timeout (HTTP/1.1), no_request (none within 10 s)",
            self.downstream_closed.clone(),
        );
    }

    pub fn downstream_closed(&self, reason: &str) {
        self.downstream_closed
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
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

    pub fn rate_limited(&self, service: &str) {
        self.rate_limited
            .get_or_create(&ServiceLabels {
                service: service.to_string(),
            })
            .inc();
    }

    pub fn overflow(&self, service: &str, reason: &str) {
        self.overflows
            .get_or_create(&ServiceReasonLabels {
                service: service.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn fault(&self, service: &str, fault: &str) {
        self.faults
            .get_or_create(&FaultLabels {
                service: service.to_string(),
                fault: fault.to_string(),
            })
            .inc();
    }

    pub fn ejected(&self, service: &str, reason: &str) {
        self.ejections
            .get_or_create(&ServiceReasonLabels {
                service: service.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// A request from `peer` to `service` by `route`, sent to the endpoint
    /// of identity `upstream` (if any), answered `code` (`flag`: why the
    /// waypoint answered itself) within `took` (to the answer's head).
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        &self,
        peer: &SpiffeId,
        upstream: Option<&SpiffeId>,
        service: String,
        route: &str,
        method: &http::Method,
        code: u16,
        flag: &str,
        took: std::time::Duration,
    ) {
        let method = method_label(method);
        let source = self.source(peer, upstream);
        self.durations
            .get_or_create(&DurationLabels {
                service: service.clone(),
                route: route.to_string(),
                method,
                source: source.clone(),
            })
            .observe(took);
        self.requests
            .get_or_create(&RequestLabels {
                service,
                route: route.to_string(),
                method,
                code,
                flag: flag.to_string(),
                source,
            })
            .inc();
    }

    fn source(&self, peer: &SpiffeId, upstream: Option<&SpiffeId>) -> SourceLabels {
        let namespace = peer
            .namespace_and_service_account()
            .map(|(ns, _)| ns)
            .unwrap_or("");
        SourceLabels {
            src_namespace: self.namespaces.admit(namespace),
            src_principal: self.principals.admit(peer.as_str()),
            dst_principal: upstream.map_or(String::new(), |u| self.principals.admit(u.as_str())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quicmesh_core::metrics::MAX_PRINCIPALS;

    fn series(m: &RequestMetrics) -> Vec<String> {
        let mut reg = Registry::default();
        m.register(&mut reg);
        quicmesh_core::metrics::encode(&reg)
            .lines()
            .filter(|l| l.starts_with("quicmesh_waypoint_requests_total{"))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn a_request_is_counted_by_its_proven_source() {
        let m = RequestMetrics::default();
        let peer = SpiffeId::parse("spiffe://cluster.local/ns/front/sa/web").unwrap();
        let backend = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/svc").unwrap();
        let took = std::time::Duration::from_millis(3);
        m.request(
            &peer,
            Some(&backend),
            "shop/svc:80".into(),
            "shop/r",
            &http::Method::GET,
            200,
            "",
            took,
        );
        assert_eq!(
            series(&m),
            [
                r#"quicmesh_waypoint_requests_total{service="shop/svc:80",route="shop/r",method="GET",code="200",flag="",src_namespace="front",src_principal="spiffe://cluster.local/ns/front/sa/web",dst_principal="spiffe://cluster.local/ns/shop/sa/svc"} 1"#
            ]
        );
    }

    #[test]
    fn distinct_clients_beyond_the_cap_share_one_series() {
        let m = RequestMetrics::default();
        let took = std::time::Duration::from_millis(1);
        for i in 0..10_000 {
            let peer = SpiffeId::parse(&format!("spiffe://cluster.local/ns/n{i}/sa/s{i}")).unwrap();
            m.request(
                &peer,
                None,
                "shop/svc:80".into(),
                "",
                &http::Method::GET,
                200,
                "",
                took,
            );
        }
        let s = series(&m);
        assert_eq!(s.len(), MAX_PRINCIPALS + 1, "{} series", s.len());
        let other = s
            .iter()
            .find(|l| l.contains(r#"src_namespace="other",src_principal="other""#))
            .expect("an `other` series");
        assert!(
            other.ends_with(&format!(" {}", 10_000 - MAX_PRINCIPALS)),
            "{other}"
        );
    }
}
