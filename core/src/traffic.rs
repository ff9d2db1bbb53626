//! `TrafficPolicy` (resilience) as the waypoint runs it: the checked model
//! of one policy, its bounds, its wire form, and the merge that gives each
//! Service port its effective settings. Shared by the controller (which
//! builds the wire form from the CRD and checks it with
//! [`Policy::from_proto`], so what it accepts is what the waypoint runs)
//! and the waypoint. Pure: the mechanisms that enforce it live in the
//! waypoint (`waypoint::resilience`).
//!
//! Semantics, numbered as docs/resilience.md explains them:
//!
//! 1. A policy has *parts* (`outlierDetection`, `connectionPool`,
//!    `rateLimit`, `faultInjection`, `timeouts`, `maxRequestBodyBytes`)
//!    and *targets* (a Service of its namespace, or one port of it).
//! 2. A Service port's effective settings take each part from the policy
//!    that targets that port (a `sectionName`), else from the policy that
//!    targets the whole Service: the more specific wins, part by part.
//! 3. Two policies at the same level that set the same part for one
//!    target conflict: the controller sends the older one only for that
//!    target (Gateway API policy attachment, GEP-713); here at most one
//!    policy per level sets a part, and if more arrive (a controller of
//!    another version) the oldest wins, then `namespace/name`.
//! 4. Request-level parts (`rateLimit`, `faultInjection`,
//!    `timeouts.request`, `maxRequestBodyBytes`) apply by the Service a
//!    request is addressed to; endpoint-level parts (`outlierDetection`,
//!    `connectionPool`, `timeouts.connect`, `timeouts.idle`) by the
//!    Service whose endpoints are picked (a route's backend).

use std::time::Duration;

use quicmesh_proto::config as pb;
use serde::Serialize;

/// Targets per policy at most (Gateway API's `targetRefs` bound).
pub const MAX_TARGETS: usize = 16;
/// Fault header matches per policy at most.
pub const MAX_FAULT_HEADERS: usize = 16;
/// Header names and values in a policy: bytes at most.
pub const MAX_HEADER_NAME: usize = 256;
pub const MAX_HEADER_VALUE: usize = 4096;
/// Counts (errors in a row, requests, connections...): at most.
pub const MAX_COUNT: u32 = 1_000_000;
/// Outlier detection: errors in a row at most.
pub const MAX_CONSECUTIVE: u32 = 1000;
/// The shortest interval, ejection or delay; the longest of each.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
pub const MAX_EJECTION: Duration = Duration::from_secs(3600);
pub const MAX_FAULT_DELAY: Duration = Duration::from_secs(300);
pub const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(300);
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
pub const MAX_RATE_PERIOD: Duration = Duration::from_secs(3600);
/// `maxRequestBodyBytes` at most (1 TiB).
pub const MAX_BODY_LIMIT: u64 = 1 << 40;
/// 100 % in the millionths fault percentages are carried in.
pub const PER_MILLION: u32 = 1_000_000;

/// Defaults the controller fills in.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_BASE_EJECTION: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_EJECTION_PERCENT: u32 = 10;
pub const DEFAULT_MINIMUM_HOSTS: u32 = 5;
pub const DEFAULT_REQUEST_VOLUME: u32 = 100;

/// A policy, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub namespace: String,
    pub name: String,
    /// Seconds since the epoch (older first in precedence).
    pub created: i64,
    pub targets: Vec<Target>,
    pub parts: Parts,
}

/// A Service of the policy's namespace, or one of its ports.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Target {
    pub service: String,
    /// None: every port.
    pub port: Option<u16>,
}

/// What a policy sets; None: not set by it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Parts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<Outlier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault_injection: Option<Fault>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_request_body_bytes: Option<u64>,
}

impl Parts {
    /// The spec field names of the parts set, in spec order.
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        let set = [
            (self.outlier_detection.is_some(), "outlierDetection"),
            (self.connection_pool.is_some(), "connectionPool"),
            (self.rate_limit.is_some(), "rateLimit"),
            (self.fault_injection.is_some(), "faultInjection"),
            (self.timeouts.is_some(), "timeouts"),
            (self.max_request_body_bytes.is_some(), "maxRequestBodyBytes"),
        ];
        for (on, name) in set {
            if on {
                v.push(name);
            }
        }
        v
    }

    pub fn is_empty(&self) -> bool {
        self.names().is_empty()
    }
}

fn ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    crate::duration::text::serialize(d, s)
}

fn opt_ms<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => crate::duration::text::serialize(d, s),
        None => s.serialize_none(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outlier {
    /// 5xx answers (and failures to get one) in a row that eject; None: off.
    pub consecutive_5xx_errors: Option<u32>,
    /// 502, 503, 504 and failures to reach the endpoint in a row; None: off.
    pub consecutive_gateway_errors: Option<u32>,
    pub success_rate: Option<SuccessRate>,
    #[serde(serialize_with = "ms")]
    pub interval: Duration,
    #[serde(serialize_with = "ms")]
    pub base_ejection_time: Duration,
    pub max_ejection_percent: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SuccessRate {
    /// Endpoints with `request_volume` requests in the interval needed to
    /// judge any.
    pub minimum_hosts: u32,
    pub request_volume: u32,
    /// Below this success percentage an endpoint is ejected.
    pub threshold: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionPool {
    /// None: no limit.
    pub max_connections: Option<u32>,
    pub max_pending_requests: Option<u32>,
    pub max_requests_per_connection: Option<u32>,
    pub max_concurrent_requests: Option<u32>,
}

/// What a rate limit's buckets are keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RateKey {
    /// One bucket for the Service port.
    Service,
    /// One per route (`namespace/name`; requests of no route share one).
    Route,
    /// One per client SPIFFE ID.
    SourceIdentity,
    /// One per value of a request header (lower-case name); requests
    /// without it share one.
    Header(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Tokens added per `per`.
    pub requests: u32,
    #[serde(serialize_with = "ms")]
    pub per: Duration,
    /// What a bucket holds at most (and starts with).
    pub burst: u32,
    pub key: RateKey,
}

impl RateLimit {
    /// Tokens per second.
    pub fn rate(&self) -> f64 {
        f64::from(self.requests) / self.per.as_secs_f64()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    pub delay: Option<FaultDelay>,
    pub abort: Option<FaultAbort>,
    /// All must match (AND); empty: every request.
    pub headers: Vec<FaultHeader>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultDelay {
    /// Share of requests in millionths.
    pub per_million: u32,
    #[serde(serialize_with = "ms")]
    pub fixed_delay: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AbortWith {
    Http(u16),
    Grpc(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultAbort {
    pub per_million: u32,
    pub with: AbortWith,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultHeader {
    /// Lower case.
    pub name: String,
    /// None: present with any value.
    pub value: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    #[serde(serialize_with = "opt_ms")]
    pub connect: Option<Duration>,
    #[serde(serialize_with = "opt_ms")]
    pub idle: Option<Duration>,
    /// For routes without `timeouts.request` of their own.
    #[serde(serialize_with = "opt_ms")]
    pub request: Option<Duration>,
}

/// Whether `name` is a header name a policy may use: a lower-case token.
pub fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_HEADER_NAME
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}

/// A percentage (0 to 100, fractions allowed) as millionths, rounded to
/// the nearest.
pub fn per_million(percent: f64) -> Result<u32, String> {
    if !percent.is_finite() || !(0.0..=100.0).contains(&percent) {
        return Err(format!("{percent} is not a percentage (0 to 100)"));
    }
    Ok((percent * 10_000.0).round() as u32)
}

fn within(what: &str, d: Duration, min: Duration, max: Duration) -> Result<Duration, String> {
    if d < min || d > max {
        return Err(format!(
            "{what}: {}ms is not within {}ms and {}ms",
            d.as_millis(),
            min.as_millis(),
            max.as_millis()
        ));
    }
    Ok(d)
}

fn count(what: &str, n: u32, max: u32) -> Result<Option<u32>, String> {
    match n {
        0 => Ok(None),
        n if n > max => Err(format!("{what}: {n} is over {max}")),
        n => Ok(Some(n)),
    }
}

fn opt_duration(
    what: &str,
    ms: u64,
    min: Duration,
    max: Duration,
) -> Result<Option<Duration>, String> {
    match ms {
        0 => Ok(None),
        ms => within(what, Duration::from_millis(ms), min, max).map(Some),
    }
}

impl Policy {
    /// The policy the wire form carries, checked against every bound; the
    /// error names the field.
    pub fn from_proto(p: &pb::TrafficPolicy) -> Result<Policy, String> {
        if p.targets.len() > MAX_TARGETS {
            return Err(format!(
                "targets: {} is over {MAX_TARGETS}",
                p.targets.len()
            ));
        }
        let targets = p
            .targets
            .iter()
            .map(|t| {
                let port = match t.port {
                    0 => None,
                    n => Some(u16::try_from(n).map_err(|_| format!("targets: {n} is not a port"))?),
                };
                if t.service.is_empty() {
                    return Err("targets: a target without a Service".to_string());
                }
                Ok(Target {
                    service: t.service.clone(),
                    port,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let parts = Parts {
            outlier_detection: p.outlier_detection.as_ref().map(outlier).transpose()?,
            connection_pool: p.connection_pool.as_ref().map(pool).transpose()?,
            rate_limit: p.rate_limit.as_ref().map(rate_limit).transpose()?,
            fault_injection: p.fault_injection.as_ref().map(fault).transpose()?,
            timeouts: p.timeouts.as_ref().map(timeouts).transpose()?,
            max_request_body_bytes: match p.max_request_body_bytes {
                0 => None,
                n if n > MAX_BODY_LIMIT => {
                    return Err(format!("maxRequestBodyBytes: {n} is over {MAX_BODY_LIMIT}"))
                }
                n => Some(n),
            },
        };
        Ok(Policy {
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            created: p.created,
            targets,
            parts,
        })
    }

    /// The wire form (what [`Policy::from_proto`] reads back).
    pub fn to_proto(&self) -> pb::TrafficPolicy {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let oms = |d: Option<Duration>| d.map_or(0, ms);
        let p = &self.parts;
        pb::TrafficPolicy {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            created: self.created,
            targets: self
                .targets
                .iter()
                .map(|t| pb::TrafficTarget {
                    service: t.service.clone(),
                    port: t.port.map_or(0, u32::from),
                })
                .collect(),
            outlier_detection: p.outlier_detection.as_ref().map(|o| pb::OutlierDetection {
                consecutive_5xx_errors: o.consecutive_5xx_errors.unwrap_or(0),
                consecutive_gateway_errors: o.consecutive_gateway_errors.unwrap_or(0),
                success_rate: o.success_rate.map(|s| pb::SuccessRate {
                    minimum_hosts: s.minimum_hosts,
                    request_volume: s.request_volume,
                    threshold_percent: s.threshold,
                }),
                interval_ms: ms(o.interval),
                base_ejection_time_ms: ms(o.base_ejection_time),
                max_ejection_percent: o.max_ejection_percent,
            }),
            connection_pool: p.connection_pool.map(|c| pb::ConnectionPool {
                max_connections: c.max_connections.unwrap_or(0),
                max_pending_requests: c.max_pending_requests.unwrap_or(0),
                max_requests_per_connection: c.max_requests_per_connection.unwrap_or(0),
                max_concurrent_requests: c.max_concurrent_requests.unwrap_or(0),
            }),
            rate_limit: p.rate_limit.as_ref().map(|r| {
                let (key, header) = match &r.key {
                    RateKey::Service => (pb::RateLimitKey::Unspecified, String::new()),
                    RateKey::Route => (pb::RateLimitKey::Route, String::new()),
                    RateKey::SourceIdentity => (pb::RateLimitKey::SourceIdentity, String::new()),
                    RateKey::Header(h) => (pb::RateLimitKey::Header, h.clone()),
                };
                pb::RateLimit {
                    requests: r.requests,
                    per_ms: ms(r.per),
                    burst: r.burst,
                    key: key.into(),
                    header,
                }
            }),
            fault_injection: p.fault_injection.as_ref().map(|f| pb::FaultInjection {
                delay: f.delay.map(|d| pb::FaultDelay {
                    per_million: d.per_million,
                    fixed_delay_ms: ms(d.fixed_delay),
                }),
                abort: f.abort.map(|a| {
                    let (http_status, grpc_status) = match a.with {
                        AbortWith::Http(s) => (u32::from(s), 0),
                        AbortWith::Grpc(g) => (0, g),
                    };
                    pb::FaultAbort {
                        per_million: a.per_million,
                        http_status,
                        grpc_status,
                    }
                }),
                headers: f
                    .headers
                    .iter()
                    .map(|h| pb::FaultHeader {
                        name: h.name.clone(),
                        value: h.value.clone().unwrap_or_default(),
                        present_only: h.value.is_none(),
                    })
                    .collect(),
            }),
            timeouts: p.timeouts.map(|t| pb::TrafficTimeouts {
                connect_ms: oms(t.connect),
                idle_ms: oms(t.idle),
                request_ms: oms(t.request),
            }),
            max_request_body_bytes: p.max_request_body_bytes.unwrap_or(0),
        }
    }

    /// Whether it targets port `port` of `service` exactly (`Some(true)`),
    /// the whole Service (`Some(false)`), or neither.
    fn reaches(&self, service: &str, port: u16) -> Option<bool> {
        let mut whole = false;
        for t in self.targets.iter().filter(|t| t.service == service) {
            match t.port {
                Some(p) if p == port => return Some(true),
                Some(_) => {}
                None => whole = true,
            }
        }
        whole.then_some(false)
    }
}

fn outlier(o: &pb::OutlierDetection) -> Result<Outlier, String> {
    let p = "outlierDetection";
    let success_rate = match &o.success_rate {
        None => None,
        Some(s) => {
            let minimum_hosts = count(
                &format!("{p}.successRate.minimumHosts"),
                s.minimum_hosts,
                10_000,
            )?
            .ok_or(format!("{p}.successRate.minimumHosts: must be at least 1"))?;
            let request_volume = count(
                &format!("{p}.successRate.requestVolume"),
                s.request_volume,
                MAX_COUNT,
            )?
            .ok_or(format!("{p}.successRate.requestVolume: must be at least 1"))?;
            if !(1..=100).contains(&s.threshold_percent) {
                return Err(format!(
                    "{p}.successRate.threshold: {} is not a percentage (1 to 100)",
                    s.threshold_percent
                ));
            }
            Some(SuccessRate {
                minimum_hosts,
                request_volume,
                threshold: s.threshold_percent,
            })
        }
    };
    let consecutive_5xx_errors = count(
        &format!("{p}.consecutive5xxErrors"),
        o.consecutive_5xx_errors,
        MAX_CONSECUTIVE,
    )?;
    let consecutive_gateway_errors = count(
        &format!("{p}.consecutiveGatewayErrors"),
        o.consecutive_gateway_errors,
        MAX_CONSECUTIVE,
    )?;
    if consecutive_5xx_errors.is_none()
        && consecutive_gateway_errors.is_none()
        && success_rate.is_none()
    {
        return Err(format!(
            "{p}: sets none of consecutive5xxErrors, consecutiveGatewayErrors, successRate"
        ));
    }
    if o.max_ejection_percent > 100 {
        return Err(format!(
            "{p}.maxEjectionPercent: {} is over 100",
            o.max_ejection_percent
        ));
    }
    Ok(Outlier {
        consecutive_5xx_errors,
        consecutive_gateway_errors,
        success_rate,
        interval: within(
            &format!("{p}.interval"),
            Duration::from_millis(o.interval_ms),
            MIN_INTERVAL,
            MAX_INTERVAL,
        )?,
        base_ejection_time: within(
            &format!("{p}.baseEjectionTime"),
            Duration::from_millis(o.base_ejection_time_ms),
            MIN_INTERVAL,
            MAX_EJECTION,
        )?,
        max_ejection_percent: o.max_ejection_percent,
    })
}

fn pool(c: &pb::ConnectionPool) -> Result<ConnectionPool, String> {
    let p = "connectionPool";
    let pool = ConnectionPool {
        max_connections: count(&format!("{p}.maxConnections"), c.max_connections, MAX_COUNT)?,
        max_pending_requests: count(
            &format!("{p}.maxPendingRequests"),
            c.max_pending_requests,
            MAX_COUNT,
        )?,
        max_requests_per_connection: count(
            &format!("{p}.maxRequestsPerConnection"),
            c.max_requests_per_connection,
            MAX_COUNT,
        )?,
        max_concurrent_requests: count(
            &format!("{p}.maxConcurrentRequests"),
            c.max_concurrent_requests,
            MAX_COUNT,
        )?,
    };
    if pool == ConnectionPool::default() {
        return Err(format!("{p}: sets no limit"));
    }
    Ok(pool)
}

fn rate_limit(r: &pb::RateLimit) -> Result<RateLimit, String> {
    let p = "rateLimit";
    let requests = count(&format!("{p}.requests"), r.requests, MAX_COUNT)?
        .ok_or(format!("{p}.requests: must be at least 1"))?;
    let burst = count(&format!("{p}.burst"), r.burst, MAX_COUNT)?
        .ok_or(format!("{p}.burst: must be at least 1"))?;
    let per = within(
        &format!("{p}.per"),
        Duration::from_millis(r.per_ms),
        Duration::from_millis(1),
        MAX_RATE_PERIOD,
    )?;
    let key = match pb::RateLimitKey::try_from(r.key) {
        Ok(pb::RateLimitKey::Unspecified) => RateKey::Service,
        Ok(pb::RateLimitKey::Route) => RateKey::Route,
        Ok(pb::RateLimitKey::SourceIdentity) => RateKey::SourceIdentity,
        Ok(pb::RateLimitKey::Header) if valid_header_name(&r.header) => {
            RateKey::Header(r.header.clone())
        }
        Ok(pb::RateLimitKey::Header) => {
            return Err(format!(
                "{p}.key: {:?} is not a lower-case header name",
                r.header
            ))
        }
        Err(_) => return Err(format!("{p}.key: unknown key {}", r.key)),
    };
    Ok(RateLimit {
        requests,
        per,
        burst,
        key,
    })
}

fn fault(f: &pb::FaultInjection) -> Result<Fault, String> {
    let p = "faultInjection";
    let share = |what: &str, n: u32| {
        if n > PER_MILLION {
            Err(format!("{p}.{what}.percentage: over 100"))
        } else {
            Ok(n)
        }
    };
    let delay = f
        .delay
        .as_ref()
        .map(|d| {
            Ok::<_, String>(FaultDelay {
                per_million: share("delay", d.per_million)?,
                fixed_delay: within(
                    &format!("{p}.delay.fixedDelay"),
                    Duration::from_millis(d.fixed_delay_ms),
                    Duration::from_millis(1),
                    MAX_FAULT_DELAY,
                )?,
            })
        })
        .transpose()?;
    let abort = f
        .abort
        .as_ref()
        .map(|a| {
            let with = match (a.http_status, a.grpc_status) {
                (s @ 400..=599, 0) => AbortWith::Http(s as u16),
                (0, g @ 1..=16) => AbortWith::Grpc(g),
                (0, 0) => return Err(format!("{p}.abort: sets neither httpStatus nor grpcStatus")),
                (s, 0) => {
                    return Err(format!(
                        "{p}.abort.httpStatus: {s} is not within 400 and 599"
                    ))
                }
                (0, g) => return Err(format!("{p}.abort.grpcStatus: {g} is not within 1 and 16")),
                _ => return Err(format!("{p}.abort: sets both httpStatus and grpcStatus")),
            };
            Ok(FaultAbort {
                per_million: share("abort", a.per_million)?,
                with,
            })
        })
        .transpose()?;
    if delay.is_none() && abort.is_none() {
        return Err(format!("{p}: sets neither delay nor abort"));
    }
    if f.headers.len() > MAX_FAULT_HEADERS {
        return Err(format!(
            "{p}.headers: {} is over {MAX_FAULT_HEADERS}",
            f.headers.len()
        ));
    }
    let headers = f
        .headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            if !valid_header_name(&h.name) {
                return Err(format!(
                    "{p}.headers[{i}].name: {:?} is not a lower-case header name",
                    h.name
                ));
            }
            if h.value.len() > MAX_HEADER_VALUE || http::HeaderValue::from_str(&h.value).is_err() {
                return Err(format!("{p}.headers[{i}].value: not a header value of at most {MAX_HEADER_VALUE} bytes"));
            }
            Ok(FaultHeader {
                name: h.name.clone(),
                value: (!h.present_only).then(|| h.value.clone()),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Fault {
        delay,
        abort,
        headers,
    })
}

fn timeouts(t: &pb::TrafficTimeouts) -> Result<Timeouts, String> {
    let p = "timeouts";
    let one = Duration::from_millis(1);
    let t = Timeouts {
        connect: opt_duration(
            &format!("{p}.connect"),
            t.connect_ms,
            one,
            MAX_CONNECT_TIMEOUT,
        )?,
        idle: opt_duration(&format!("{p}.idle"), t.idle_ms, one, MAX_TIMEOUT)?,
        request: opt_duration(&format!("{p}.request"), t.request_ms, one, MAX_TIMEOUT)?,
    };
    if t == Timeouts::default() {
        return Err(format!("{p}: sets none of connect, idle, request"));
    }
    Ok(t)
}

/// A part of a Service port's effective settings, with the policy
/// (`namespace/name`) it comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sourced<T> {
    pub policy: String,
    pub value: T,
}

/// One Service port's effective settings, part by part.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Effective {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<Sourced<Outlier>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<Sourced<ConnectionPool>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<Sourced<RateLimit>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault_injection: Option<Sourced<Fault>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Sourced<Timeouts>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_request_body_bytes: Option<Sourced<u64>>,
}

/// The effective settings of port `port` of Service `namespace/service`
/// from `policies` (any; those of other namespaces are skipped): each part
/// from the oldest policy naming that port, else from the oldest naming
/// the whole Service. None when no policy sets anything for it.
pub fn effective<'a>(
    policies: impl IntoIterator<Item = &'a Policy>,
    namespace: &str,
    service: &str,
    port: u16,
) -> Option<Effective> {
    let mut reaching: Vec<(bool, &Policy)> = policies
        .into_iter()
        .filter(|p| p.namespace == namespace)
        .filter_map(|p| Some((p.reaches(service, port)?, p)))
        .collect();
    if reaching.is_empty() {
        return None;
    }
    // Port-level first, then the oldest, then by name.
    reaching.sort_by(|(a_port, a), (b_port, b)| {
        b_port
            .cmp(a_port)
            .then(a.created.cmp(&b.created))
            .then_with(|| a.name.cmp(&b.name))
    });
    fn pick<T: Clone>(
        reaching: &[(bool, &Policy)],
        part: impl Fn(&Parts) -> Option<&T>,
    ) -> Option<Sourced<T>> {
        reaching.iter().find_map(|(_, p)| {
            part(&p.parts).map(|v| Sourced {
                policy: format!("{}/{}", p.namespace, p.name),
                value: v.clone(),
            })
        })
    }
    let e = Effective {
        outlier_detection: pick(&reaching, |p| p.outlier_detection.as_ref()),
        connection_pool: pick(&reaching, |p| p.connection_pool.as_ref()),
        rate_limit: pick(&reaching, |p| p.rate_limit.as_ref()),
        fault_injection: pick(&reaching, |p| p.fault_injection.as_ref()),
        timeouts: pick(&reaching, |p| p.timeouts.as_ref()),
        max_request_body_bytes: pick(&reaching, |p| p.max_request_body_bytes.as_ref()),
    };
    (e != Effective::default()).then_some(e)
}

#[cfg(test)]
mod tests;
