//! The tunnel client: a pool of QUIC connections keyed by (source identity,
//! destination identity, destination address), each carrying many CONNECT
//! streams.
//!
//! One pool serves one QUIC endpoint (in ztunnel: one pod's network namespace,
//! so tunnels leave from the pod's own address). Connections are made lazily,
//! once per key even under concurrent demand (callers for the same key wait
//! for the one handshake), re-made after failure, and closed after
//! `pool_idle` without streams. Opening a stream waits while the peer's stream
//! limit is reached: no unbounded queue.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;

use super::config::{client_config, TunnelSettings};
use super::connect::ConnectStream;
use super::http3::message;
use super::http3::stream::{send_head, FrameReader, HeadError, RecvData, SendData};
use super::http3::{code, Http3, Side};
use crate::identity::{SharedBundles, SpiffeId, Svid};
use crate::metrics::TunnelMetrics;

/// What a pooled connection is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolKey {
    pub src: SpiffeId,
    pub dst: SpiffeId,
    /// The peer's tunnel address (`ip:15008`).
    pub addr: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("TLS config for {0}: {1}")]
    Config(SpiffeId, String),
    #[error("QUIC connect to {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    #[error("QUIC handshake with {addr} timed out")]
    HandshakeTimeout { addr: SocketAddr },
    #[error("handshake with {addr} failed: {reason}")]
    Handshake { addr: SocketAddr, reason: String },
    #[error("HTTP/3 with {addr}: {reason}")]
    H3 { addr: SocketAddr, reason: String },
    #[error("{addr} did not answer the CONNECT within {after:?}")]
    ResponseTimeout { addr: SocketAddr, after: Duration },
    #[error("peer refused the tunnel to {authority}: {status}")]
    Status {
        authority: SocketAddr,
        status: StatusCode,
    },
}

impl TunnelError {
    /// Fixed word for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            TunnelError::Config(..) => "config",
            TunnelError::Connect { .. } => "connect",
            TunnelError::HandshakeTimeout { .. } => "handshake_timeout",
            TunnelError::Handshake { .. } => "handshake",
            TunnelError::H3 { .. } => "h3",
            TunnelError::ResponseTimeout { .. } => "response_timeout",
            TunnelError::Status { .. } => "upstream_status",
        }
    }
}

struct Conn {
    quic: quinn::Connection,
    h3: Arc<Http3>,
    active: Arc<AtomicUsize>,
    last_used: Mutex<Instant>,
    /// UDP bytes per second over the last `RATE_SAMPLE`, kept by the
    /// connection's watcher while the connection carries streams.
    rate: Mutex<f64>,
    /// Wakes the watcher when the connection goes from idle to busy.
    busy: tokio::sync::Notify,
}

/// A connection moving more than this is carrying a bulk transfer: new
/// streams prefer a quieter one, so small exchanges do not queue behind it
/// (in its congestion window and its receive path).
const BULK_BYTES_PER_SEC: f64 = 8e6;

/// How often a busy connection's byte rate is sampled.
const RATE_SAMPLE: Duration = Duration::from_millis(250);

impl Conn {
    /// Whether new streams may go here: open, and no GOAWAY from the peer.
    fn alive(&self) -> bool {
        self.quic.close_reason().is_none() && !self.h3.going_away()
    }

    fn udp_bytes(&self) -> u64 {
        let s = self.quic.stats();
        s.udp_tx.bytes + s.udp_rx.bytes
    }

    /// What the stream choice looks at: whether the connection carries bulk
    /// traffic now, and how many streams it carries. A connection without
    /// streams carries nothing, whatever it moved before.
    fn load(&self) -> Load {
        let streams = self.active.load(Ordering::Acquire);
        Load {
            bulk: streams > 0 && *self.rate.lock().expect("not poisoned") >= BULK_BYTES_PER_SEC,
            streams,
        }
    }
}

/// Ordered: a connection without bulk traffic comes first, then the one
/// with fewer streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Load {
    bulk: bool,
    streams: usize,
}

/// Where a new stream goes: the index of the least loaded connection, and
/// whether a new connection should be made instead (every existing one is
/// busy and there is room for another).
fn choose(loads: &[Load], max: usize) -> (Option<usize>, bool) {
    let least = loads
        .iter()
        .enumerate()
        .min_by_key(|(_, l)| **l)
        .map(|(i, _)| i);
    let idle_one = least.is_some_and(|i| loads[i].streams == 0);
    let full = loads.len() >= max.max(1);
    (least, !idle_one && !full)
}

/// The live connections of one key (at most `max_connections_per_key`).
type Slot = Arc<tokio::sync::Mutex<Vec<Arc<Conn>>>>;

/// A pool of tunnel connections from one endpoint.
pub struct Pool {
    endpoint: quinn::Endpoint,
    bundles: SharedBundles,
    settings: TunnelSettings,
    metrics: Arc<TunnelMetrics>,
    slots: Mutex<HashMap<PoolKey, Slot>>,
}

/// Counts a stream as active on its connection while alive.
struct StreamGuard(Arc<Conn>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
        *self.0.last_used.lock().expect("not poisoned") = Instant::now();
    }
}

impl Pool {
    pub fn new(
        endpoint: quinn::Endpoint,
        bundles: impl Into<SharedBundles>,
        settings: TunnelSettings,
        metrics: Arc<TunnelMetrics>,
    ) -> Arc<Self> {
        Arc::new(Pool {
            endpoint,
            bundles: bundles.into(),
            settings,
            metrics,
            slots: Mutex::new(HashMap::new()),
        })
    }

    /// Number of live pooled connections.
    pub fn connections(&self) -> usize {
        let slots = self.slots.lock().expect("not poisoned");
        slots
            .values()
            .map(|s| {
                s.try_lock()
                    .map(|c| c.iter().filter(|c| c.alive()).count())
                    .unwrap_or(1)
            })
            .sum()
    }

    /// Opens a CONNECT stream to `authority` over a pooled connection for
    /// `key`, presenting `svid` (whose identity must be `key.src`). Returns
    /// once the peer answered 200. One retry on a fresh connection if the
    /// pooled one turned out dead.
    pub async fn open(
        self: &Arc<Self>,
        key: &PoolKey,
        svid: &Svid,
        authority: SocketAddr,
        headers: http::HeaderMap,
    ) -> Result<ConnectStream, TunnelError> {
        let mut last = None;
        for _attempt in 0..2 {
            let guard = self.connection(key, svid).await?;
            let conn = guard.0.clone();
            match self.request(guard, key, authority, headers.clone()).await {
                Ok(t) => return Ok(t),
                Err(e @ TunnelError::Status { .. }) => return Err(e),
                Err(e) => {
                    // The connection failed under us: drop it and retry once.
                    conn.quic.close(0u32.into(), b"stream failed");
                    last = Some(e);
                }
            }
        }
        Err(last.expect("loop ran"))
    }

    /// A connection for a new stream, counted as busy with it: the least
    /// loaded of the key's connections (no bulk transfer first, then fewest
    /// streams), or a new one while every existing one carries streams and
    /// the key has fewer than `max_connections_per_key`. Spreading the
    /// streams of one key over a few connections spreads their work over
    /// cores and keeps small exchanges out of a bulk transfer's congestion
    /// window.
    async fn connection(
        self: &Arc<Self>,
        key: &PoolKey,
        svid: &Svid,
    ) -> Result<StreamGuard, TunnelError> {
        let slot = {
            let mut slots = self.slots.lock().expect("not poisoned");
            slots.entry(key.clone()).or_default().clone()
        };
        let mut conns = slot.lock().await;
        conns.retain(|c| c.alive());
        // The peer was verified against its trust domain's bundle when the
        // connection was made; with that bundle gone (a federation
        // removed), nothing vouches for it any more: a new stream makes a
        // new handshake, refused by the verifier.
        if !conns.is_empty() && self.bundles.load().get(key.dst.trust_domain()).is_none() {
            tracing::info!(dst = %key.dst, addr = %key.addr, "closing tunnel connections: the peer's trust domain is no longer trusted");
            for c in conns.drain(..) {
                c.quic.close(0u32.into(), b"trust domain no longer trusted");
            }
        }
        let loads: Vec<Load> = conns.iter().map(|c| c.load()).collect();
        let (least, make_new) = choose(&loads, self.settings.max_connections_per_key);
        let conn = match least.map(|i| conns[i].clone()) {
            Some(c) if !make_new => c,
            _ => match self.handshake(key, svid).await {
                Ok(c) => {
                    let c = Arc::new(c);
                    conns.push(c.clone());
                    self.watch(key.clone(), slot.clone(), c.clone());
                    c
                }
                // One more connection failed: the existing ones still serve.
                Err(e) => match least.map(|i| &conns[i]) {
                    Some(c) => {
                        tracing::debug!(error = %e, "extra tunnel connection failed; reusing a busy one");
                        c.clone()
                    }
                    None => return Err(e),
                },
            },
        };
        if conn.active.fetch_add(1, Ordering::AcqRel) == 0 {
            conn.busy.notify_one();
        }
        Ok(StreamGuard(conn))
    }

    async fn handshake(&self, key: &PoolKey, svid: &Svid) -> Result<Conn, TunnelError> {
        let addr = key.addr;
        let cfg = client_config(
            svid,
            self.bundles.clone(),
            key.dst.clone(),
            &self.metrics,
            &self.settings,
        )
        .map_err(|e| TunnelError::Config(key.src.clone(), e.to_string()))?;
        // quinn's connection driver keeps the span current at connect for
        // the connection's life; a pooled connection outlives the stream
        // (and the trace span) that opened it, so it gets one of its own,
        // a root: the first stream's span ends when that stream does.
        let span = tracing::info_span!(parent: None, "tunnel_conn", peer_addr = %addr, src.identity = %key.src, dst.identity = %key.dst);
        // The server name is not used for verification (SVIDs carry only a
        // URI SAN; the verifier checks the SPIFFE ID); it must merely parse.
        let connecting = span
            .in_scope(|| self.endpoint.connect_with(cfg, addr, "tunnel.quicmesh"))
            .map_err(|e| TunnelError::Connect {
                addr,
                reason: e.to_string(),
            })?;
        let started = std::time::Instant::now();
        let quic = match tokio::time::timeout(self.settings.handshake_timeout, connecting).await {
            Err(_) => {
                self.metrics.handshake("client", "timeout");
                return Err(TunnelError::HandshakeTimeout { addr });
            }
            Ok(Err(e)) => {
                self.metrics.handshake("client", "failed");
                return Err(TunnelError::Handshake {
                    addr,
                    reason: e.to_string(),
                });
            }
            Ok(Ok(c)) => c,
        };
        self.metrics.handshake("client", "ok");
        self.metrics.handshake_took("client", started.elapsed());
        let h3 = Http3::start(
            quic.clone(),
            Side::Client,
            self.settings.max_header_bytes,
            self.metrics.clone(),
        )
        .await
        .map_err(|e| TunnelError::H3 {
            addr,
            reason: e.to_string(),
        })?;
        tracing::debug!(%addr, src = %key.src, dst = %key.dst, "tunnel connection established");
        Ok(Conn {
            quic,
            h3,
            active: Arc::new(AtomicUsize::new(0)),
            last_used: Mutex::new(Instant::now()),
            rate: Mutex::new(0.0),
            busy: tokio::sync::Notify::new(),
        })
    }

    /// Closes the connection when it dies or stays unused for `pool_idle`,
    /// and forgets it.
    fn watch(self: &Arc<Self>, key: PoolKey, slot: Slot, conn: Arc<Conn>) {
        let pool = Arc::downgrade(self);
        let idle = self.settings.pool_idle;
        let metrics = self.metrics.clone();
        metrics.quic_connections_active.inc();
        tokio::spawn(async move {
            let tick = (idle / 4).max(Duration::from_millis(100));
            let mut idle_check = Instant::now() + tick;
            // (when, UDP bytes) at the last rate sample of this busy period.
            let mut sample: Option<(Instant, u64)> = None;
            loop {
                let busy = conn.active.load(Ordering::Acquire) > 0;
                let wait = if busy {
                    RATE_SAMPLE
                } else {
                    idle_check.saturating_duration_since(Instant::now())
                };
                tokio::select! {
                    _ = conn.quic.closed() => break,
                    _ = conn.busy.notified(), if !busy => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                let now = Instant::now();
                if conn.active.load(Ordering::Acquire) > 0 {
                    let bytes = conn.udp_bytes();
                    if let Some((at, before)) = sample {
                        let dt = now.duration_since(at).as_secs_f64();
                        *conn.rate.lock().expect("not poisoned") =
                            bytes.saturating_sub(before) as f64 / dt.max(1e-3);
                    }
                    sample = Some((now, bytes));
                } else {
                    sample = None;
                    *conn.rate.lock().expect("not poisoned") = 0.0;
                }
                if now >= idle_check {
                    idle_check = now + tick;
                    let unused = conn.active.load(Ordering::Acquire) == 0
                        && conn.last_used.lock().expect("not poisoned").elapsed() >= idle;
                    if unused {
                        conn.quic.close(0u32.into(), b"idle");
                        break;
                    }
                }
            }
            metrics.quic_connections_active.dec();
            let mut conns = slot.lock().await;
            conns.retain(|c| !Arc::ptr_eq(c, &conn));
            if conns.is_empty() {
                drop(conns);
                if let Some(pool) = pool.upgrade() {
                    let mut slots = pool.slots.lock().expect("not poisoned");
                    if slots.get(&key).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                        slots.remove(&key);
                    }
                }
            }
        });
    }

    async fn request(
        &self,
        guard: StreamGuard,
        key: &PoolKey,
        authority: SocketAddr,
        headers: http::HeaderMap,
    ) -> Result<ConnectStream, TunnelError> {
        let addr = key.addr;
        let h3_err = |reason: String| TunnelError::H3 { addr, reason };
        let conn = guard.0.clone();
        let (mut send, recv) = conn
            .quic
            .open_bi()
            .await
            .map_err(|e| h3_err(e.to_string()))?;
        let authority_text = authority.to_string();
        send_head(
            &mut send,
            message::connect_fields(&authority_text, &headers),
        )
        .await
        .map_err(|e| h3_err(e.to_string()))?;
        let mut reader = FrameReader::new(recv);
        let wait = self.settings.response_timeout;
        let head =
            match tokio::time::timeout(wait, reader.head(self.settings.max_header_bytes)).await {
                Err(_) => {
                    let _ = send.reset(code::H3_REQUEST_CANCELLED.into());
                    let _ = reader.stream().stop(code::H3_REQUEST_CANCELLED.into());
                    return Err(TunnelError::ResponseTimeout { addr, after: wait });
                }
                Ok(Err(HeadError::Stream(e))) => return Err(h3_err(e.to_string())),
                Ok(Err(e)) => {
                    // A response we cannot take: malformed or oversized.
                    let _ = send.reset(code::H3_MESSAGE_ERROR.into());
                    let _ = reader.stream().stop(code::H3_MESSAGE_ERROR.into());
                    self.metrics.refused("outbound", "bad_response");
                    return Err(h3_err(format!("response: {e}")));
                }
                Ok(Ok(fields)) => message::response(&fields).map_err(|m| {
                    let _ = send.reset(code::H3_MESSAGE_ERROR.into());
                    self.metrics.refused("outbound", m.label());
                    h3_err(format!("malformed response: {m}"))
                })?,
            };
        if head.status != StatusCode::OK {
            let _ = send.reset(code::H3_REQUEST_CANCELLED.into());
            let _ = reader.stream().stop(code::H3_NO_ERROR.into());
            return Err(TunnelError::Status {
                authority,
                status: head.status,
            });
        }
        Ok(ConnectStream::new(
            SendData::new(send),
            RecvData::new(reader),
            self.metrics.clone(),
            self.metrics
                .stream_labels("outbound", key.src.as_str(), key.dst.as_str()),
            Box::new(guard),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;
    use tokio::net::TcpStream;
    use tokio_util::sync::CancellationToken;

    fn key(src: &str, dst: &str, addr: &str) -> PoolKey {
        PoolKey {
            src: SpiffeId::parse(src).unwrap(),
            dst: SpiffeId::parse(dst).unwrap(),
            addr: addr.parse().unwrap(),
        }
    }

    #[test]
    fn keys_differ_by_each_part() {
        let a = key(
            "spiffe://td/ns/a/sa/x",
            "spiffe://td/ns/b/sa/y",
            "10.0.0.1:15008",
        );
        let set: HashSet<_> = [
            a.clone(),
            key(
                "spiffe://td/ns/a/sa/z",
                "spiffe://td/ns/b/sa/y",
                "10.0.0.1:15008",
            ),
            key(
                "spiffe://td/ns/a/sa/x",
                "spiffe://td/ns/b/sa/z",
                "10.0.0.1:15008",
            ),
            key(
                "spiffe://td/ns/a/sa/x",
                "spiffe://td/ns/b/sa/y",
                "10.0.0.2:15008",
            ),
            a.clone(),
        ]
        .into_iter()
        .collect();
        assert_eq!(set.len(), 4);
    }

    /// The tunnel server side of the test: every CONNECT goes to a local
    /// TCP sink that reads and discards.
    struct Sink(SocketAddr);

    impl super::super::server::Inbound for Sink {
        fn local_identity(&self) -> SpiffeId {
            SpiffeId::parse("spiffe://cluster.local/ns/b/sa/s").unwrap()
        }
        async fn connect(
            &self,
            _: &super::super::server::InboundRequest,
        ) -> Result<super::super::server::Upstream, super::super::server::Refused> {
            let tcp = TcpStream::connect(self.0).await.unwrap();
            Ok(super::super::server::Upstream::plain(tcp))
        }
    }

    /// A stream opened while another connection of the key carries a bulk
    /// transfer goes to the quiet connection, even when both carry one
    /// stream (which "fewest streams" alone would break by order).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_stream_avoids_the_connection_carrying_bulk() {
        use crate::tunnel::config::Loopback;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let settings = TunnelSettings::default();
        let lo = Loopback::new(&settings);
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();

        // Upstream sink.
        let sink = tokio::net::TcpListener::bind(loopback).await.unwrap();
        let sink_addr = sink.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = sink.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 << 10];
                    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                });
            }
        });
        // Tunnel server.
        let addr = lo.server.local_addr().unwrap();
        let stop = lo.serve(Sink(sink_addr), &settings);
        // Pool and the app side of each tunnelled connection.
        let (pool, key) = lo.pool(settings);
        assert_eq!(key.addr, addr);
        let apps = tokio::net::TcpListener::bind(loopback).await.unwrap();
        let app_addr = apps.local_addr().unwrap();
        let open = || async {
            let t = pool
                .open(&key, &lo.client_svid, sink_addr, http::HeaderMap::new())
                .await
                .unwrap();
            let conn = t
                .guard::<StreamGuard>()
                .expect("the pool's guard")
                .0
                .clone();
            let app = TcpStream::connect(app_addr).await.unwrap();
            let (captured, _) = apps.accept().await.unwrap();
            tokio::spawn(t.pump(captured, CancellationToken::new()));
            (conn, app)
        };

        let (bulk_conn, mut bulk_app) = open().await;
        let writer = tokio::spawn(async move {
            let chunk = vec![1u8; 256 << 10];
            // Bounded: ~5 s at most, far more than the test needs.
            for _ in 0..20_000 {
                if bulk_app.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        });
        // A second stream while the first is busy opens the second connection.
        let (quiet_conn, _quiet_app) = open().await;
        assert!(!Arc::ptr_eq(&bulk_conn, &quiet_conn));
        // Both carry one stream now; give the watcher two samples.
        tokio::time::sleep(RATE_SAMPLE * 3).await;
        assert!(bulk_conn.load().bulk, "{:?}", bulk_conn.load());
        assert!(!quiet_conn.load().bulk, "{:?}", quiet_conn.load());
        let (third, _app3) = open().await;
        assert!(
            Arc::ptr_eq(&third, &quiet_conn),
            "the new stream went to the bulk connection"
        );
        writer.abort();
        stop.cancel();
    }

    /// A federation removed on the client's side: the pooled connection
    /// to a peer of that domain is closed at the next stream, and the new
    /// handshake is refused by the verifier (nothing vouches for the peer).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_withdrawn_trust_domain_closes_its_pooled_connections() {
        use crate::tunnel::config::Loopback;

        let settings = TunnelSettings::default();
        let lo = Loopback::new(&settings);
        let sink = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink_addr = sink.local_addr().unwrap();
        tokio::spawn(async move { while sink.accept().await.is_ok() {} });
        let stop = lo.serve(Sink(sink_addr), &settings);
        let bundles = SharedBundles::new((*lo.bundles).clone());
        let pool = Pool::new(
            lo.client.clone(),
            bundles.clone(),
            settings,
            lo.metrics.clone(),
        );
        let key = PoolKey {
            src: lo.client_svid.id.clone(),
            dst: lo.server_id.clone(),
            addr: lo.server.local_addr().unwrap(),
        };
        let open = || pool.open(&key, &lo.client_svid, sink_addr, http::HeaderMap::new());
        let t = open().await.unwrap();
        let first = t
            .guard::<StreamGuard>()
            .expect("the pool's guard")
            .0
            .clone();
        drop(t);
        assert_eq!(pool.connections(), 1);

        let changed = bundles
            .replace_domains(&[], [key.dst.trust_domain()])
            .unwrap();
        assert_eq!(changed, [key.dst.trust_domain()]);
        let err = open().await.err().expect("refused without a bundle");
        assert!(matches!(err, TunnelError::Handshake { .. }), "{err}");
        assert!(
            first.quic.close_reason().is_some(),
            "the pooled one was closed"
        );
        // (Its watcher may hold the slot a moment as it forgets it.)
        let deadline = Instant::now() + Duration::from_secs(5);
        while pool.connections() != 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(pool.connections(), 0);
        stop.cancel();
    }

    fn l(bulk: bool, streams: usize) -> Load {
        Load { bulk, streams }
    }

    #[test]
    fn new_streams_avoid_a_bulk_connection() {
        // A bulk transfer with 2 streams on connection 0, small exchanges on 1.
        assert_eq!(choose(&[l(true, 2), l(false, 2)], 2), (Some(1), false));
        assert_eq!(choose(&[l(true, 1), l(false, 7)], 2), (Some(1), false));
        // Both carry bulk: the fewer streams.
        assert_eq!(choose(&[l(true, 3), l(true, 2)], 2), (Some(1), false));
        // No bulk anywhere: the fewer streams, the first on a tie.
        assert_eq!(choose(&[l(false, 2), l(false, 2)], 2), (Some(0), false));
    }

    #[test]
    fn a_new_connection_while_all_are_busy_and_there_is_room() {
        assert_eq!(choose(&[], 2), (None, true));
        assert_eq!(choose(&[l(true, 1)], 2), (Some(0), true));
        assert_eq!(choose(&[l(false, 1)], 2), (Some(0), true));
        // An idle connection is reused, even one that just carried bulk.
        assert_eq!(choose(&[l(true, 0)], 2), (Some(0), false));
        assert_eq!(choose(&[l(false, 3), l(false, 0)], 3), (Some(1), false));
        // Full: reuse the least loaded.
        assert_eq!(choose(&[l(true, 1), l(false, 4)], 2), (Some(1), false));
        assert_eq!(choose(&[l(false, 1)], 1), (Some(0), false));
        assert_eq!(choose(&[l(false, 1)], 0), (Some(0), false), "0 means 1");
    }

    proptest! {
        /// The choice is always an existing connection when one exists, and
        /// none is ever better by the load order.
        #[test]
        fn choice_is_a_least_loaded_one(
            loads in proptest::collection::vec((any::<bool>(), 0usize..6), 0..5),
            max in 0usize..5,
        ) {
            let loads: Vec<Load> = loads.into_iter().map(|(b, s)| l(b, s)).collect();
            let (least, make_new) = choose(&loads, max);
            match least {
                None => prop_assert!(loads.is_empty() && make_new),
                Some(i) => {
                    prop_assert!(loads.iter().all(|x| loads[i] <= *x));
                    prop_assert_eq!(make_new, loads[i].streams > 0 && loads.len() < max.max(1));
                }
            }
        }

        #[test]
        fn equal_parts_make_equal_keys(
            s in "[a-z]{1,8}", d in "[a-z]{1,8}", ip in any::<[u8; 4]>(), port in 1u16..,
        ) {
            let addr = format!("{}.{}.{}.{}:{port}", ip[0], ip[1], ip[2], ip[3]);
            let k1 = key(&format!("spiffe://td/ns/{s}/sa/{s}"), &format!("spiffe://td/ns/{d}/sa/{d}"), &addr);
            let k2 = key(&format!("spiffe://td/ns/{s}/sa/{s}"), &format!("spiffe://td/ns/{d}/sa/{d}"), &addr);
            prop_assert_eq!(&k1, &k2);
            let mut h1 = std::collections::hash_map::DefaultHasher::new();
            let mut h2 = std::collections::hash_map::DefaultHasher::new();
            std::hash::Hash::hash(&k1, &mut h1);
            std::hash::Hash::hash(&k2, &mut h2);
            prop_assert_eq!(std::hash::Hasher::finish(&h1), std::hash::Hasher::finish(&h2));
        }
    }
}
