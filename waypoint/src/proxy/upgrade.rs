//! HTTP/1.1 upgrades to WebSocket: the request is routed, filtered and
//! authorized like any other, sent on an upstream connection of its own,
//! and when the backend switches protocols (101) both sides are spliced
//! into one byte stream until either ends. Only `websocket` is upgraded
//! (an `h2c` upgrade, or anything else, goes on as a plain request: the
//! `Upgrade` header is hop-by-hop and stops here).

use http::{HeaderValue, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use quicmesh_core::route::Backend;

use super::{prepare_upstream, strip_hop_by_hop, Conn, Directory, RequestLog, Waypoint};
use crate::authz::RequestFacts;
use crate::response::{text, Body, Failure};
use crate::upstream::Version;

/// The `Upgrade` value of a WebSocket upgrade request (HTTP/1.1, the
/// `Connection` header naming `upgrade`), before hop-by-hop headers go.
pub(super) fn websocket<B>(req: &Request<B>) -> Option<HeaderValue> {
    let connection_upgrade = req
        .headers()
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let value = req.headers().get(http::header::UPGRADE)?;
    (req.version() == http::Version::HTTP_11
        && connection_upgrade
        && value.as_bytes().eq_ignore_ascii_case(b"websocket"))
    .then(|| value.clone())
}

fn mark_upgrade(headers: &mut http::HeaderMap, value: &HeaderValue) {
    headers.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("upgrade"),
    );
    headers.insert(http::header::UPGRADE, value.clone());
}

/// An upgrade as the client asked for it.
pub(super) struct Asked<'a> {
    /// The `Upgrade` header's value.
    pub value: HeaderValue,
    /// Limits the wait for the backend's answer (not the stream after it).
    pub bound: Option<std::time::Duration>,
    /// What policies read of the request.
    pub facts: Option<&'a RequestFacts>,
}

impl<D: Directory> Waypoint<D> {
    /// Forwards a WebSocket upgrade to an endpoint of `backend`.
    pub(super) async fn upgrade(
        &self,
        conn: &Conn,
        backend: &Backend,
        mut req: Request<Body>,
        asked: Asked<'_>,
        log: &mut RequestLog,
    ) -> Result<Response<Body>, Failure> {
        let Asked {
            value,
            bound,
            facts,
        } = asked;
        // Told of every config from before the endpoint is decided on: the
        // stream is decided again on each (see `tcp::splice`).
        let changes = self.directory.changes();
        let (ep, pending) = self.pick(conn, &backend.target, log, facts)?;
        let ep = &ep;
        // The client's side of the upgrade, taken before the request goes.
        let client = hyper::upgrade::on(&mut req);
        prepare_upstream(&mut req, Version::Http1);
        mark_upgrade(req.headers_mut(), &value);
        let send = self.upstreams.send_upgrade(ep, req);
        let sent = match bound {
            Some(t) => tokio::time::timeout(t, send)
                .await
                .unwrap_or(Err(Failure::Timeout(t))),
            None => send.await,
        };
        let mut resp = match sent {
            Ok(r) => {
                pending.done();
                r
            }
            Err(f) => {
                pending.fail();
                return Err(f);
            }
        };
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            // The backend declined: its answer, as any other.
            strip_hop_by_hop(resp.headers_mut());
            return Ok(resp.map(crate::response::boxed));
        }
        let upstream = hyper::upgrade::on(&mut resp);
        let peer = conn.peer.clone();
        let addr = ep.addr;
        let (directory, who, ep) = (self.directory.clone(), conn.client.clone(), ep.clone());
        let (authority, facts) = (conn.authority, facts.cloned());
        let (metrics, service) = (self.metrics.clone(), conn.parent.metric_label());
        tokio::spawn(async move {
            let (client, upstream) = match tokio::join!(client, upstream) {
                (Ok(c), Ok(u)) => (c, u),
                (c, u) => {
                    tracing::debug!(src.identity = %peer, upstream = %addr, client = c.is_ok(), backend = u.is_ok(), "an upgrade did not complete");
                    metrics.upgraded(service, "incomplete");
                    return;
                }
            };
            let (mut c, mut u) = (TokioIo::new(client), TokioIo::new(upstream));
            // Like TCP passthrough: no timeout, not cut by a drain (the
            // tunnel server's drain deadline closes it).
            let decided = super::tcp::Decided {
                client: &who,
                authority,
                endpoint: &ep,
                facts: facts.as_ref(),
            };
            match super::tcp::splice(&*directory, decided, changes, &mut c, &mut u).await {
                super::tcp::Spliced::Ended(copied) => {
                    tracing::debug!(src.identity = %peer, upstream = %addr, ?copied, "upgraded stream ended");
                    metrics.upgraded(service, "ended");
                }
                super::tcp::Spliced::Revoked(why) => {
                    tracing::warn!(src.identity = %peer, upstream = %addr, authz = %why, "upgraded stream cut at the waypoint: a policy change denies it");
                    metrics.upgraded(service, "authz_revoked");
                }
            }
        });
        let (mut parts, _) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        mark_upgrade(&mut parts.headers, &value);
        Ok(Response::from_parts(parts, text("")))
    }
}
