//! What the waypoint does to a request's head on its way: the headers it
//! strips, sets or vouches for, the canonical path, rewrites, the form a
//! backend's HTTP version wants, and the copies kept for retries and
//! mirrors.

use http::{Request, Uri};
use hyper::body::Incoming;
use quicmesh_core::identity::SpiffeId;
use quicmesh_core::route::{Backend, BackendRef, Rule};

use crate::response::{text, Body, Failure};
use crate::upstream::Version;

/// A copy of a request with `body`.
pub(super) fn copy_of<B>(req: &Request<B>, body: bytes::Bytes) -> Request<Body> {
    let mut r = Request::new(text(body));
    *r.method_mut() = req.method().clone();
    *r.uri_mut() = req.uri().clone();
    *r.version_mut() = req.version();
    *r.headers_mut() = req.headers().clone();
    r
}

/// A request's head, without its body.
pub(super) fn head_of<B>(req: &Request<B>) -> Request<()> {
    let mut r = Request::new(());
    *r.method_mut() = req.method().clone();
    *r.uri_mut() = req.uri().clone();
    *r.version_mut() = req.version();
    *r.headers_mut() = req.headers().clone();
    r
}

/// Bodies kept (for retries and mirrors) by all requests together, at most.
pub const MAX_KEPT_BYTES: usize = 16 << 20;

/// The allowance units (KiB, at least one) a body of `len` bytes takes.
pub(super) fn kept_units(len: u64) -> u32 {
    u32::try_from(len.div_ceil(1024).max(1)).unwrap_or(u32::MAX)
}

/// Bodies kept for a retry: at most this long.
pub const MAX_RETRY_BODY: u64 = 64 * 1024;

/// The body's length if the request can be kept to be sent again: no
/// body, or a body of a known length within [`MAX_RETRY_BODY`] (an HTTP/2
/// request that ended with its headers has an exact hint of 0).
pub(super) fn replayable(req: &Request<Incoming>) -> Option<u64> {
    use hyper::body::Body as _;
    req.body()
        .size_hint()
        .exact()
        .filter(|n| *n <= MAX_RETRY_BODY)
}

/// The header in which the waypoint tells the destination who the client
/// was (Envoy's format, which Istio users' apps already read): `By=` the
/// waypoint, `URI=` the source's SPIFFE ID, proven by its certificate. A
/// client's own copy is removed first: only the waypoint's reaches the app.
pub const FORWARDED_CLIENT_CERT: &str = "x-forwarded-client-cert";

pub(super) fn vouch_for_source(
    headers: &mut http::HeaderMap,
    waypoint: &SpiffeId,
    source: &SpiffeId,
) {
    headers.remove(FORWARDED_CLIENT_CERT);
    // SPIFFE IDs are printable ASCII without `;`, `,` or `"`.
    if let Ok(v) = http::HeaderValue::from_str(&format!("By={waypoint};URI={source}")) {
        headers.insert(FORWARDED_CLIENT_CERT, v);
    }
}

/// The rule for a Service without routes: all of it to the Service.
pub(super) fn implicit_rule(service: &BackendRef) -> Rule {
    Rule {
        backends: vec![Backend {
            target: service.clone(),
            weight: 1,
            filters: vec![],
            invalid: None,
        }],
        ..Rule::default()
    }
}

/// The host the client asked for, without a port.
pub(super) fn request_host(req: &Request<Incoming>) -> Option<String> {
    let authority = req
        .uri()
        .authority()
        .map(|a| a.host().to_string())
        .or_else(|| {
            let h = req.headers().get(http::header::HOST)?.to_str().ok()?;
            // As an authority, so `[::1]:80` is the host `[::1]`.
            let a: http::uri::Authority = h.parse().ok()?;
            Some(a.host().to_string())
        })?;
    Some(authority)
}

/// Replaces the request's path with its canonical form (the query stays).
pub(super) fn canonical_path(req: &mut Request<Incoming>) -> Result<(), Failure> {
    let path = req.uri().path();
    let canonical =
        quicmesh_core::route::path::normalize(path).map_err(|e| Failure::BadPath(e.to_string()))?;
    if canonical != path {
        let pq = match req.uri().query() {
            Some(q) => format!("{canonical}?{q}"),
            None => canonical,
        };
        let mut parts = req.uri().clone().into_parts();
        parts.path_and_query = Some(
            pq.parse()
                .map_err(|_| Failure::BadPath("unparsable".into()))?,
        );
        *req.uri_mut() =
            Uri::from_parts(parts).map_err(|_| Failure::BadPath("unparsable".into()))?;
    }
    Ok(())
}

/// Applies a `URLRewrite`: the host (Host header and authority) and path.
pub(super) fn rewrite(
    req: &mut Request<Incoming>,
    rw: &quicmesh_core::route::Rewrite,
    matched: &quicmesh_core::route::PathMatch,
) {
    let mut parts = req.uri().clone().into_parts();
    if let Some(m) = &rw.path {
        let path = m.apply(req.uri().path(), matched);
        let pq = match req.uri().query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        parts.path_and_query = pq.parse().ok();
    }
    if let Some(host) = &rw.hostname {
        if let Ok(v) = http::HeaderValue::from_str(host) {
            req.headers_mut().insert(http::header::HOST, v);
        }
        if parts.authority.is_some() {
            parts.authority = host.parse().ok();
        }
    }
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
}

/// Removes the hop-by-hop headers of one connection (RFC 9110 §7.6.1):
/// those the `Connection` header names, and the fixed ones. `TE: trailers`
/// is end to end (gRPC needs it) and stays.
pub(super) fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    let named: Vec<http::HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| http::HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for h in named {
        headers.remove(h);
    }
    let te_trailers = headers
        .get(http::header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for h in [
        http::header::CONNECTION,
        http::header::TE,
        http::header::TRANSFER_ENCODING,
        http::header::UPGRADE,
        http::header::PROXY_AUTHENTICATE,
        http::header::PROXY_AUTHORIZATION,
    ] {
        headers.remove(h);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
    if te_trailers {
        headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    }
}

/// Makes a request arriving from a client fit to send to a backend: the
/// form of the target URI each HTTP version wants (its hop-by-hop headers
/// were removed on arrival).
pub(super) fn prepare_upstream(req: &mut Request<Body>, version: Version) {
    match version {
        // HTTP/1.1: origin form; the Host header carries the authority.
        Version::Http1 => {
            if let Some(a) = req.uri().authority().cloned() {
                if !req.headers().contains_key(http::header::HOST) {
                    if let Ok(v) = http::HeaderValue::from_str(a.as_str()) {
                        req.headers_mut().insert(http::header::HOST, v);
                    }
                }
            }
            let pq = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into());
            if let Ok(uri) = pq.parse() {
                *req.uri_mut() = uri;
            }
            *req.version_mut() = http::Version::HTTP_11;
        }
        // HTTP/2: absolute form (`:scheme`, `:authority` from the URI).
        Version::Http2 => {
            let authority = req.uri().authority().map(|a| a.to_string()).or_else(|| {
                req.headers()
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(String::from)
            });
            if let Some(a) = authority {
                let pq = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "/".into());
                if let Ok(uri) = format!("http://{a}{pq}").parse() {
                    *req.uri_mut() = uri;
                }
            }
        }
    }
}
