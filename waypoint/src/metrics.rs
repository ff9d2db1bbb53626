//! The waypoint's request metrics. Labels are bounded by the config (the
//! Service), by HTTP (the status code) and by [`crate::response::Failure`]
//! (the response flag): a flood of distinct clients or paths adds no series.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The Service the request was addressed to: `namespace/name:port`.
    pub service: String,
    pub code: u16,
    /// Why the waypoint answered itself (`""` when the backend answered).
    pub flag: String,
}

#[derive(Default)]
pub struct RequestMetrics {
    pub requests: Family<RequestLabels, Counter>,
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
            "waypoint_downstream_connections",
            "Tunnelled connections being served as HTTP now",
            self.connections.clone(),
        );
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
