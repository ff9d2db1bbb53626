//! Every way a request can fail at the waypoint, turned into a response in
//! one place: the status the client gets, and the response flag (a fixed
//! word) that the access log and the metrics carry.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use quicmesh_core::traffic::AbortWith;

/// The body type the waypoint answers with: a backend's streamed body, or
/// one of its own. Its error is any error (a request body over its
/// `maxRequestBodyBytes` ends with one of ours, which aborts it upstream).
pub type Body = BoxBody<Bytes, BoxError>;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A hyper body (a client's or a backend's) as a [`Body`].
pub fn boxed(b: hyper::body::Incoming) -> Body {
    b.map_err(BoxError::from).boxed()
}

/// Why the waypoint answered a request itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// A path that has no single meaning (an escaped slash, a malformed
    /// escape): refused before routing.
    #[error("ambiguous path: {0}")]
    BadPath(String),
    /// A redirect whose `Location` is not a valid header value (a host name
    /// from the route that no client could follow).
    #[error("redirect to an invalid location {0:?}")]
    BadRedirect(String),
    /// No rule of any route matched (Gateway API: 404).
    #[error("no route matched")]
    NoRoute,
    /// The rule has no backend with a weight (Gateway API: 500).
    #[error("the matched rule has no backend to send to")]
    NoBackend,
    /// The backend picked is a reference that cannot be used (Gateway API:
    /// 500 for its share of the requests).
    #[error("invalid backend: {0}")]
    InvalidBackend(String),
    /// The backend has no ready endpoint.
    #[error("no healthy endpoint of {0}")]
    NoHealthyEndpoint(String),
    /// `timeouts.request` (or `backendRequest`) passed.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The tunnel to the endpoint could not be opened.
    #[error("cannot reach the endpoint: {0}")]
    UpstreamConnect(String),
    /// The endpoint's ztunnel refused the tunnel (e.g. its policy).
    #[error("the endpoint refused the tunnel with {0}")]
    UpstreamRefused(u16),
    /// The connection to the endpoint broke or it sent no valid response.
    #[error("upstream connection failed: {0}")]
    UpstreamReset(String),
    /// The destination's authorization policies refuse the client (the
    /// decision, e.g. `deny (no_allow_match) by shop/web-from-client`,
    /// goes to the access log only).
    #[error("authorization: {0}")]
    Denied(String),
    /// A RequestAuthentication refuses the request: its token is invalid
    /// (or missing where an invalid RequestAuthentication applies). The
    /// reason goes to the log; the client learns only `invalid_token`.
    #[error("authentication: {reason}: {detail}")]
    Unauthenticated {
        /// The host the client asked for (the challenge's realm).
        realm: String,
        reason: &'static str,
        detail: String,
    },
    /// The waypoint has no SVID to present.
    #[error("no SVID for the waypoint: {0}")]
    Identity(String),
    /// The Service's TrafficPolicy rate limit refused it; a token comes
    /// in this many seconds (`Retry-After`).
    #[error("rate limited; a token in {0} s")]
    RateLimited(u64),
    /// The backend's circuit breaker refused it (`connectionPool`).
    #[error("circuit breaker overflow: {}", .0.label())]
    Overflow(crate::resilience::breaker::Overflow),
    /// Fault injection aborted it (`faultInjection.abort`).
    #[error("fault injected: {0:?}")]
    FaultAbort(quicmesh_core::traffic::AbortWith),
    /// The request body is over the Service's `maxRequestBodyBytes`.
    #[error("request body over {0} bytes")]
    BodyTooLarge(u64),
}

impl Failure {
    /// A hyper client error: a reset or malformed answer from the backend.
    pub fn upstream(e: hyper::Error) -> Self {
        Failure::UpstreamReset(e.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Failure::BadPath(_) => StatusCode::BAD_REQUEST,
            Failure::Denied(_) => StatusCode::FORBIDDEN,
            Failure::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            Failure::NoRoute => StatusCode::NOT_FOUND,
            Failure::NoBackend | Failure::InvalidBackend(_) | Failure::BadRedirect(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Failure::NoHealthyEndpoint(_)
            | Failure::UpstreamConnect(_)
            | Failure::UpstreamRefused(_)
            | Failure::Identity(_) => StatusCode::SERVICE_UNAVAILABLE,
            Failure::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Failure::UpstreamReset(_) => StatusCode::BAD_GATEWAY,
            Failure::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Failure::Overflow(_) => StatusCode::SERVICE_UNAVAILABLE,
            Failure::FaultAbort(AbortWith::Http(s)) => {
                StatusCode::from_u16(*s).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
            }
            // gRPC: the status is in `grpc-status`.
            Failure::FaultAbort(AbortWith::Grpc(_)) => StatusCode::OK,
            Failure::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// The response flag: a fixed word for logs and metric labels.
    pub fn flag(&self) -> &'static str {
        match self {
            Failure::BadPath(_) => "bad_path",
            Failure::BadRedirect(_) => "bad_redirect",
            Failure::NoRoute => "no_route",
            Failure::NoBackend => "no_backend",
            Failure::InvalidBackend(_) => "invalid_backend",
            Failure::NoHealthyEndpoint(_) => "no_healthy_endpoint",
            Failure::Timeout(_) => "timeout",
            Failure::UpstreamConnect(_) => "upstream_connect_failure",
            Failure::UpstreamRefused(_) => "upstream_refused",
            Failure::UpstreamReset(_) => "upstream_reset",
            Failure::Identity(_) => "no_identity",
            Failure::Denied(_) => "authz_denied",
            Failure::Unauthenticated { .. } => "jwt_invalid",
            Failure::RateLimited(_) => "rate_limited",
            Failure::Overflow(_) => "overflow",
            Failure::FaultAbort(_) => "fault_abort",
            Failure::BodyTooLarge(_) => "body_too_large",
        }
    }

    /// The answer: the status and a short text naming the flag (never the
    /// detail, which may name internal addresses; that goes to the log).
    pub fn response(&self) -> Response<Body> {
        if let Failure::FaultAbort(AbortWith::Grpc(code)) = self {
            // A trailers-only gRPC answer: the status in the head.
            let mut r = Response::new(text(""));
            let h = r.headers_mut();
            h.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/grpc"),
            );
            h.insert("grpc-status", http::HeaderValue::from(*code));
            h.insert(
                "grpc-message",
                http::HeaderValue::from_static("fault%20injected"),
            );
            return r;
        }
        let mut r = Response::new(text(format!("{}\n", self.flag())));
        *r.status_mut() = self.status();
        let h = r.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain"),
        );
        match self {
            Failure::RateLimited(secs) => {
                h.insert(http::header::RETRY_AFTER, http::HeaderValue::from(*secs));
            }
            Failure::Overflow(o) => {
                h.insert(OVERFLOW_HEADER, http::HeaderValue::from_static(o.label()));
            }
            Failure::Unauthenticated { realm, .. } => {
                // RFC 6750 §3: the challenge, without the reason.
                let realm: String = realm
                    .chars()
                    .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
                    .collect();
                let challenge = format!("Bearer realm=\"{realm}\", error=\"invalid_token\"");
                if let Ok(v) = http::HeaderValue::from_str(&challenge) {
                    h.insert(http::header::WWW_AUTHENTICATE, v);
                }
                *r.body_mut() = text("invalid_token\n");
            }
            _ => {}
        }
        r
    }
}

/// The header naming why the circuit breaker refused a request.
pub const OVERFLOW_HEADER: &str = "x-quicmesh-overflow";

/// A body the waypoint writes itself.
pub fn text(s: impl Into<Bytes>) -> Body {
    Full::new(s.into()).map_err(|never| match never {}).boxed()
}
