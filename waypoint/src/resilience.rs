//! Resilience at the waypoint: the `TrafficPolicy` settings of each
//! Service port ([`quicmesh_core::traffic::Effective`], built by
//! [`crate::config`]) enforced on the request path.
//!
//! What owns what:
//! - [`ratelimit`]: token buckets (429 with `Retry-After`);
//! - [`fault`]: delays and aborts for a share of requests;
//! - [`breaker`]: limits on requests and connections per backend (503
//!   with `x-quicmesh-overflow`), and the body guard that holds a
//!   request's place until its answer is through;
//! - [`outlier`]: ejection of failing endpoints from the choice;
//! - [`body`]: `maxRequestBodyBytes` (413);
//! - here: the state of each Service port, kept across config updates
//!   while its settings stay the same (a changed part starts afresh: new
//!   buckets, no ejections), and the few calls the proxy makes.
//!
//! Which Service's settings apply: the one a request is addressed to for
//! request-level parts (rate limit, faults, request timeout, body limit),
//! the one whose endpoints are picked (a route's backend) for
//! endpoint-level parts (outlier detection, connection pool, connect and
//! idle timeouts). Nothing here does I/O but the fault delay's sleep.

pub mod body;
pub mod breaker;
pub mod fault;
pub mod outlier;
pub mod ratelimit;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::Request;
use hyper::body::Incoming;
use quicmesh_core::identity::SpiffeId;
use quicmesh_core::route::{BackendRef, Timeouts};
use quicmesh_core::traffic::{Effective, RateKey};

use crate::metrics::RequestMetrics;
use crate::response::{Body, Failure};
use crate::upstream::Limits;

/// One Service port's settings and the state enforcing them.
#[derive(Debug)]
pub struct ServiceState {
    pub config: Arc<Effective>,
    pub limiter: Option<Arc<ratelimit::Limiter>>,
    pub outlier: Option<Arc<outlier::Detector>>,
    pub breaker: Option<Arc<breaker::Breaker>>,
}

impl ServiceState {
    /// State for `config`, keeping `old`'s for every part that did not
    /// change.
    fn new(config: Arc<Effective>, old: Option<&ServiceState>, now: Instant) -> Self {
        let same = |f: &dyn Fn(&Effective) -> bool| old.is_some_and(|o| f(&o.config));
        let limiter =
            config
                .rate_limit
                .as_ref()
                .map(|r| match old.and_then(|o| o.limiter.clone()) {
                    Some(l) if same(&|o| o.rate_limit == config.rate_limit) => l,
                    _ => Arc::new(ratelimit::Limiter::new(&r.value, now)),
                });
        let outlier =
            config
                .outlier_detection
                .as_ref()
                .map(|c| match old.and_then(|o| o.outlier.clone()) {
                    Some(d) if same(&|o| o.outlier_detection == config.outlier_detection) => d,
                    _ => Arc::new(outlier::Detector::new(&c.value, now)),
                });
        let breaker =
            config
                .connection_pool
                .as_ref()
                .map(|c| match old.and_then(|o| o.breaker.clone()) {
                    Some(b) if same(&|o| o.connection_pool == config.connection_pool) => b,
                    _ => breaker::Breaker::new(&c.value),
                });
        ServiceState {
            config,
            limiter,
            outlier,
            breaker,
        }
    }
}

/// The state of every Service port with settings that has seen traffic.
#[derive(Debug, Default)]
pub struct Resilience {
    services: Mutex<HashMap<BackendRef, Arc<ServiceState>>>,
}

/// The `service` label of a Service port's counters.
pub fn label(s: &BackendRef) -> String {
    format!("{}/{}:{}", s.namespace, s.name, s.port)
}

impl Resilience {
    /// The state of `service` for its settings now (`config`, from the
    /// directory); None when it has none.
    pub fn of(
        &self,
        service: &BackendRef,
        config: Option<Arc<Effective>>,
    ) -> Option<Arc<ServiceState>> {
        let config = config?;
        let mut m = self.services.lock().unwrap_or_else(|e| e.into_inner());
        match m.get(service) {
            Some(s) if Arc::ptr_eq(&s.config, &config) => Some(s.clone()),
            // A new config (every update rebuilds them): the parts that
            // stayed the same keep their state; the new config is kept,
            // so the next request finds it by pointer.
            old => {
                let s = Arc::new(ServiceState::new(config, old.map(|o| &**o), Instant::now()));
                m.insert(service.clone(), s.clone());
                Some(s)
            }
        }
    }

    /// Forgets the state of Service ports that no longer have settings.
    pub fn forget(&self, has_settings: impl Fn(&BackendRef) -> bool) {
        self.services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|s, _| has_settings(s));
    }

    /// What is being enforced now, for the admin dump: per Service port,
    /// its ejected endpoints, requests in flight and waiting, buckets.
    pub fn dump(&self) -> serde_json::Value {
        let now = Instant::now();
        let m = self.services.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = serde_json::Map::new();
        for (service, s) in m.iter() {
            let mut v = serde_json::Map::new();
            if let Some(d) = &s.outlier {
                let ejected: Vec<_> = d
                    .ejected(now)
                    .into_iter()
                    .map(|(addr, left, n)| {
                        serde_json::json!({"endpoint": addr.to_string(), "remainingMs": left.as_millis() as u64, "ejections": n})
                    })
                    .collect();
                v.insert("ejected".into(), ejected.into());
            }
            if let Some(b) = &s.breaker {
                v.insert("inFlight".into(), b.in_flight().into());
                v.insert("pending".into(), b.pending().into());
                if let Some(n) = b.open_connections() {
                    v.insert("connections".into(), n.into());
                }
            }
            if let Some(l) = &s.limiter {
                v.insert("buckets".into(), l.len().into());
            }
            out.insert(label(service), v.into());
        }
        out.into()
    }
}

/// The checks on a request to a Service with settings, before it goes
/// on: its body's announced length, its rate limit, its faults (a delay
/// is slept here). Returns the body limit to apply while streaming.
#[allow(clippy::too_many_arguments)]
pub async fn admit_request(
    state: &ServiceState,
    service: &str,
    route: &str,
    source: &SpiffeId,
    req: &Request<Incoming>,
    metrics: &RequestMetrics,
    fault_log: &mut &'static str,
) -> Result<Option<u64>, Failure> {
    let cfg = &state.config;
    let limit = cfg.max_request_body_bytes.as_ref().map(|l| l.value);
    if let Some(limit) = limit {
        use hyper::body::Body as _;
        if body::announced_over(&req.body().size_hint(), limit) {
            return Err(Failure::BodyTooLarge(limit));
        }
    }
    if let (Some(l), Some(rl)) = (&state.limiter, &cfg.rate_limit) {
        let key: Option<&[u8]> = match &rl.value.key {
            RateKey::Service => Some(b""),
            RateKey::Route => Some(route.as_bytes()),
            RateKey::SourceIdentity => Some(source.as_str().as_bytes()),
            RateKey::Header(h) => req.headers().get(h.as_str()).map(|v| v.as_bytes()),
        };
        match l.check(key, Instant::now()) {
            Ok(ratelimit::Taken::Own) => {}
            Ok(ratelimit::Taken::Overflow) => {
                tracing::debug!(%service, "rate limit table full: a shared bucket admitted the request");
            }
            Err(wait) => {
                metrics.rate_limited(service);
                return Err(Failure::RateLimited(ratelimit::retry_after_secs(wait)));
            }
        }
    }
    if let Some(f) = &cfg.fault_injection {
        let d = fault::decide(
            &f.value,
            req.headers(),
            (rand::random::<u64>(), rand::random::<u64>()),
        );
        if let Some(delay) = d.delay {
            metrics.fault(service, "delay");
            *fault_log = "delay";
            tokio::time::sleep(delay).await;
        }
        if let Some(abort) = d.abort {
            metrics.fault(service, "abort");
            *fault_log = "abort";
            return Err(Failure::FaultAbort(abort));
        }
    }
    Ok(limit)
}

/// The route's timeouts, with the Service's `timeouts.request` for a
/// route that has none of its own (the route wins).
pub fn timeouts(route: &Timeouts, state: Option<&ServiceState>) -> Timeouts {
    let default = state
        .and_then(|s| s.config.timeouts.as_ref())
        .and_then(|t| t.value.request);
    Timeouts {
        request: route.request.or(default),
        backend_request: route.backend_request,
    }
}

/// A backend's connection limits and timeouts.
pub fn limits(state: Option<&ServiceState>) -> Limits {
    let Some(s) = state else {
        return Limits::default();
    };
    let t = s.config.timeouts.as_ref().map(|t| t.value);
    Limits {
        breaker: s.breaker.clone(),
        connect: t.and_then(|t| t.connect),
        idle: t.and_then(|t| t.idle),
    }
}

/// Takes a place among the backend's requests in flight (held until the
/// answer's body ends), or refuses the request.
pub fn admit_backend(
    state: Option<&ServiceState>,
    service: &str,
    metrics: &RequestMetrics,
) -> Result<Option<breaker::Slot>, Failure> {
    let Some(b) = state.and_then(|s| s.breaker.as_ref()) else {
        return Ok(None);
    };
    b.admit().map(Some).map_err(|o| {
        metrics.overflow(service, o.label());
        Failure::Overflow(o)
    })
}

/// The endpoints (indices of `addrs`) outlier detection leaves to choose
/// from.
pub fn available(state: Option<&ServiceState>, addrs: &[SocketAddr]) -> Option<Vec<usize>> {
    let d = state?.outlier.as_ref()?;
    Some(d.available(addrs, Instant::now()))
}

/// Records an attempt's outcome for outlier detection; ejections are
/// logged and counted. An abort of ours (the body limit) or a failure not
/// the endpoint's (no SVID) is not recorded.
pub fn record(
    state: Option<&ServiceState>,
    service: &str,
    endpoint: SocketAddr,
    sent: &Result<http::Response<Incoming>, Failure>,
    ours: bool,
    metrics: &RequestMetrics,
) {
    let Some(d) = state.and_then(|s| s.outlier.as_ref()) else {
        return;
    };
    let outcome = match sent {
        _ if ours => return,
        Ok(r) if r.status().is_server_error() => outlier::Outcome::ServerError(r.status().as_u16()),
        Ok(_) => outlier::Outcome::Success,
        Err(
            Failure::UpstreamConnect(_)
            | Failure::UpstreamRefused(_)
            | Failure::UpstreamReset(_)
            | Failure::Timeout(_),
        ) => outlier::Outcome::LocalFailure,
        Err(_) => return,
    };
    for e in d.record(endpoint, outcome, Instant::now()) {
        metrics.ejected(service, e.reason.label());
        tracing::warn!(
            %service,
            endpoint = %e.endpoint,
            reason = e.reason.label(),
            ejection = e.count,
            duration_ms = e.duration.as_millis() as u64,
            "outlier detection ejected an endpoint"
        );
    }
}

/// A request body for a backend, cut off at `limit` (None: as it is);
/// the flag says whether it was.
pub fn limit_body(b: Incoming, limit: Option<u64>) -> (Body, Option<Arc<AtomicBool>>) {
    use http_body_util::BodyExt;
    match limit {
        None => (crate::response::boxed(b), None),
        Some(limit) => {
            let (limited, tripped) = body::Limited::new(b, limit);
            (limited.boxed(), Some(tripped))
        }
    }
}

/// Whether `tripped` (from [`limit_body`]) was set.
pub fn tripped(flag: &Option<Arc<AtomicBool>>) -> bool {
    flag.as_ref()
        .is_some_and(|f| f.load(std::sync::atomic::Ordering::Acquire))
}

#[cfg(test)]
mod tests {
    use super::*;
    use quicmesh_core::traffic::{Parts, Policy, Target};
    use std::time::Duration;

    fn settings(requests: u32, outlier: bool) -> Arc<Effective> {
        let parts = Parts {
            rate_limit: Some(quicmesh_core::traffic::RateLimit {
                requests,
                per: Duration::from_secs(1),
                burst: requests,
                key: RateKey::Service,
            }),
            outlier_detection: outlier.then(|| quicmesh_core::traffic::Outlier {
                consecutive_5xx_errors: Some(1),
                consecutive_gateway_errors: None,
                success_rate: None,
                interval: Duration::from_secs(10),
                base_ejection_time: Duration::from_secs(30),
                max_ejection_percent: 50,
            }),
            ..Parts::default()
        };
        let p = Policy {
            namespace: "shop".into(),
            name: "p".into(),
            created: 0,
            targets: vec![Target {
                service: "web".into(),
                port: None,
            }],
            parts,
        };
        Arc::new(quicmesh_core::traffic::effective([&p], "shop", "web", 80).unwrap())
    }

    /// A config update that leaves a part as it was keeps its state (the
    /// bucket stays drained); a changed part starts afresh; a Service
    /// that loses its settings is forgotten.
    #[test]
    fn state_survives_updates_that_keep_its_part() {
        let r = Resilience::default();
        let web = BackendRef {
            namespace: "shop".into(),
            name: "web".into(),
            port: 80,
        };
        let s1 = r.of(&web, Some(settings(1, true))).unwrap();
        let now = Instant::now();
        assert!(s1.limiter.as_ref().unwrap().check(Some(b""), now).is_ok());
        assert!(s1.limiter.as_ref().unwrap().check(Some(b""), now).is_err());
        // The same settings, rebuilt (a new Arc): the same bucket.
        let s2 = r.of(&web, Some(settings(1, true))).unwrap();
        assert!(Arc::ptr_eq(
            s1.limiter.as_ref().unwrap(),
            s2.limiter.as_ref().unwrap()
        ));
        let again = r.of(&web, Some(s2.config.clone())).unwrap();
        assert!(Arc::ptr_eq(&again, &s2), "found by pointer afterwards");
        // The rate changes: a new bucket; outlier detection is kept.
        let s3 = r.of(&web, Some(settings(5, true))).unwrap();
        assert!(!Arc::ptr_eq(
            s1.limiter.as_ref().unwrap(),
            s3.limiter.as_ref().unwrap()
        ));
        assert!(Arc::ptr_eq(
            s1.outlier.as_ref().unwrap(),
            s3.outlier.as_ref().unwrap()
        ));
        assert!(r.of(&web, None).is_none());
        r.forget(|_| false);
        assert_eq!(r.dump(), serde_json::json!({}));
    }
}
