//! Every way a request can fail at the waypoint, turned into a response in
//! one place: the status the client gets, and the response flag (a fixed
//! word) that the access log and the metrics carry.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

/// The body type the waypoint answers with: a backend's streamed body, or
/// one of its own.
pub type Body = BoxBody<Bytes, hyper::Error>;

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
        }
    }

    /// The answer: the status and a short text naming the flag (never the
    /// detail, which may name internal addresses; that goes to the log).
    pub fn response(&self) -> Response<Body> {
        let mut r = Response::new(text(format!("{}\n", self.flag())));
        *r.status_mut() = self.status();
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain"),
        );
        if let Failure::Unauthenticated { realm, .. } = self {
            // RFC 6750 §3: the challenge, without the reason.
            let realm: String = realm
                .chars()
                .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
                .collect();
            let challenge = format!("Bearer realm=\"{realm}\", error=\"invalid_token\"");
            if let Ok(v) = http::HeaderValue::from_str(&challenge) {
                r.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
            }
            *r.body_mut() = text("invalid_token\n");
        }
        r
    }
}

/// A body the waypoint writes itself.
pub fn text(s: impl Into<Bytes>) -> Body {
    Full::new(s.into()).map_err(|never| match never {}).boxed()
}
