//! A half-open QUIC handshake flood, for tests of the tunnel server's
//! handshake limits.
//!
//! Real QUIC Initials, made by quinn-proto's client state machine (no I/O of
//! its own: `Endpoint::connect`, `poll_transmit`), each a new connection
//! attempt, sent from one UDP socket, so one address. The handshake is never
//! continued: the server's answers are read and dropped, except that with
//! [`FloodSpec::answer_retry`] a QUIC Retry is fed back to its connection so
//! that the next Initial carries the token, as a real client's would. That
//! is the strongest half-open attacker one address can be: it proves its
//! address and still never finishes.
//!
//! Every loop is bounded (attempts, a wait for Retries), and it runs only
//! inside a network namespace other than the host's, towards a private IPv4
//! address: the lab's.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::BytesMut;
use quicmesh_core::netns::NetnsWorker;
use quinn_proto::{ClientConfig, ConnectionHandle, DatagramEvent, Endpoint, EndpointEvent};

/// How long an attempt waits for a Retry before it is forgotten.
const RETRY_WAIT: Duration = Duration::from_secs(2);
/// Attempts waiting for a Retry at most (the oldest is forgotten first).
const MAX_PENDING: usize = 4096;
/// Tries to send one datagram while the socket's buffer is full.
const SEND_TRIES: usize = 1000;

/// What to send.
#[derive(Debug, Clone)]
pub struct FloodSpec {
    /// A tunnel server (`<pod ip>:15008`) of the lab.
    pub target: SocketAddr,
    /// Connection attempts to start (each one Initial without a token).
    pub attempts: usize,
    /// Attempts per second, paced evenly; 0: as fast as the socket takes them.
    pub rate: u32,
    /// Answer Retry packets with the token-bearing Initial.
    pub answer_retry: bool,
    /// Source addresses, taking turns (each must be on an interface of the
    /// namespace); empty: one socket on the namespace's own address.
    pub sources: Vec<IpAddr>,
}

/// What happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FloodStats {
    /// Initials of new attempts (no token).
    pub initials: u64,
    /// Retry packets received.
    pub retries: u64,
    /// Initials sent in answer to a Retry (with its token).
    pub retried_initials: u64,
    /// Other datagrams from the server (its handshake flight, refusals).
    pub other_received: u64,
    /// Datagrams that could not be sent (socket buffer full).
    pub send_failures: u64,
    /// How long sending took.
    pub duration: Duration,
}

/// Runs a flood from inside the namespace of `worker` (an external host or a
/// pod of the lab): binds its UDP sockets there and sends on that thread.
pub async fn flood_from(worker: &NetnsWorker, spec: FloodSpec) -> Result<FloodStats> {
    worker
        .run(move || {
            ensure_lab(&spec.target)?;
            let sources = match spec.sources.is_empty() {
                true => vec![IpAddr::from([0, 0, 0, 0])],
                false => spec.sources.clone(),
            };
            let sockets = sources
                .iter()
                .map(|ip| {
                    let s = UdpSocket::bind((*ip, 0))
                        .with_context(|| format!("binding a flood socket on {ip}"))?;
                    s.set_nonblocking(true)?;
                    Ok(s)
                })
                .collect::<Result<Vec<_>>>()?;
            flood(&sockets, &spec)
        })
        .await?
}

/// Refuses to run outside a named network namespace other than the test
/// process's own (the lab's are), or towards a non-private address.
fn ensure_lab(target: &SocketAddr) -> Result<()> {
    let id = |p: &std::path::Path| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
    let here = id("/proc/thread-self/ns/net".as_ref()).context("reading this thread's netns")?;
    // The process's main thread stays in the namespace the tests run in.
    let home = id("/proc/self/ns/net".as_ref()).context("reading the process's netns")?;
    let named = std::fs::read_dir("/var/run/netns")
        .map(|d| d.flatten().any(|e| id(&e.path()).ok() == Some(here)))
        .unwrap_or(false);
    if here == home || !named {
        bail!("refusing to flood from outside the lab's network namespaces");
    }
    match target.ip() {
        IpAddr::V4(ip) if ip.is_private() => Ok(()),
        ip => bail!("refusing to flood {ip}: not a private IPv4 address of the lab"),
    }
}

/// An attempt waiting for a Retry.
struct Pending {
    conn: quinn_proto::Connection,
    started: Instant,
    /// Index of its socket.
    socket: usize,
}

struct Flood<'a> {
    sockets: &'a [UdpSocket],
    endpoint: Endpoint,
    pending: HashMap<ConnectionHandle, Pending>,
    order: VecDeque<ConnectionHandle>,
    stats: FloodStats,
    buf: Vec<u8>,
}

/// Sends the flood on `sockets` (non-blocking), attempts taking turns, and
/// returns what happened.
fn flood(sockets: &[UdpSocket], spec: &FloodSpec) -> Result<FloodStats> {
    if sockets.is_empty() {
        bail!("a flood needs a socket");
    }
    let config = client_config()?;
    let mut f = Flood {
        sockets,
        endpoint: Endpoint::new(Arc::default(), None, false, None),
        pending: HashMap::new(),
        order: VecDeque::new(),
        stats: FloodStats::default(),
        buf: Vec::with_capacity(64 << 10),
    };
    let start = Instant::now();
    for i in 0..spec.attempts {
        if spec.rate > 0 {
            // Pacing the sender, not waiting for a result.
            let due = start + Duration::from_secs_f64(i as f64 / f64::from(spec.rate));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let now = Instant::now();
        let socket = i % sockets.len();
        let (ch, mut conn) = f
            .endpoint
            .connect(now, config.clone(), spec.target, "tunnel.quicmesh")
            .context("starting an attempt")?;
        f.stats.initials += f.send(socket, &mut conn, now);
        if spec.answer_retry {
            let p = Pending {
                conn,
                started: now,
                socket,
            };
            f.pending.insert(ch, p);
            f.order.push_back(ch);
        } else {
            f.forget(ch);
        }
        f.receive(spec.answer_retry)?;
        f.expire(now);
    }
    f.stats.duration = start.elapsed();
    // The last Retries are still on their way.
    let deadline = Instant::now() + RETRY_WAIT;
    while !f.pending.is_empty() && Instant::now() < deadline {
        f.receive(spec.answer_retry)?;
        f.expire(Instant::now());
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(f.stats)
}

impl Flood<'_> {
    /// Sends what `conn` has to send now on socket `socket`; returns the
    /// datagrams sent.
    fn send(&mut self, socket: usize, conn: &mut quinn_proto::Connection, now: Instant) -> u64 {
        let mut sent = 0;
        // An attempt's first flight is one or two Initials.
        for _ in 0..4 {
            self.buf.clear();
            let Some(t) = conn.poll_transmit(now, 1, &mut self.buf) else {
                break;
            };
            if self.send_datagram(socket, &self.buf[..t.size], t.destination) {
                sent += 1;
            } else {
                self.stats.send_failures += 1;
            }
        }
        sent
    }

    fn send_datagram(&self, socket: usize, data: &[u8], to: SocketAddr) -> bool {
        for _ in 0..SEND_TRIES {
            match self.sockets[socket].send_to(data, to) {
                Ok(_) => return true,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_micros(100))
                }
                Err(_) => return false,
            }
        }
        false
    }

    /// Reads what the server sent; answers Retries when asked to.
    fn receive(&mut self, answer_retry: bool) -> Result<()> {
        for socket in 0..self.sockets.len() {
            self.receive_on(socket, answer_retry)?;
        }
        Ok(())
    }

    fn receive_on(&mut self, socket: usize, answer_retry: bool) -> Result<()> {
        let mut data = [0u8; 65536];
        loop {
            let (n, from) = match self.sockets[socket].recv_from(&mut data) {
                Ok(x) => x,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e).context("receiving"),
            };
            if !is_retry(&data[..n]) {
                // Never processed: the handshake must not move on.
                self.stats.other_received += 1;
                continue;
            }
            self.stats.retries += 1;
            if !answer_retry {
                continue;
            }
            let now = Instant::now();
            let event = self.endpoint.handle(
                now,
                from,
                None,
                None,
                BytesMut::from(&data[..n]),
                &mut self.buf,
            );
            let Some(DatagramEvent::ConnectionEvent(ch, event)) = event else {
                continue;
            };
            let Some(mut p) = self.pending.remove(&ch) else {
                continue;
            };
            p.conn.handle_event(event);
            self.stats.retried_initials += self.send(p.socket, &mut p.conn, now);
            self.forget(ch);
        }
    }

    /// Forgets attempts that waited too long for a Retry, or the oldest when
    /// too many wait.
    fn expire(&mut self, now: Instant) {
        while let Some(&ch) = self.order.front() {
            let gone = !self.pending.contains_key(&ch);
            let expired = self
                .pending
                .get(&ch)
                .is_some_and(|p| now.saturating_duration_since(p.started) > RETRY_WAIT);
            if !(gone || expired || self.pending.len() > MAX_PENDING) {
                break;
            }
            self.order.pop_front();
            if self.pending.remove(&ch).is_some() {
                self.forget(ch);
            }
        }
    }

    /// Drops an attempt's state in the endpoint.
    fn forget(&mut self, ch: ConnectionHandle) {
        let _ = self.endpoint.handle_event(ch, EndpointEvent::drained());
    }
}

/// A QUIC v1 Retry packet: long header, type 3.
fn is_retry(datagram: &[u8]) -> bool {
    datagram.len() > 5
        && datagram[0] & 0x80 != 0
        && (datagram[0] >> 4) & 0x03 == 3
        && datagram[1..5] == [0, 0, 0, 1]
}

/// A client config whose handshakes go as far as the server's first flight:
/// TLS 1.3, ALPN `h3` (so the server takes it for a tunnel client), no
/// certificate, and no roots (it never gets to verify anything).
fn client_config() -> Result<ClientConfig> {
    let mut tls = rustls::ClientConfig::builder_with_provider(quicmesh_core::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    tls.alpn_protocols = vec![quicmesh_core::tunnel::ALPN.to_vec()];
    let quic = quinn_proto::crypto::rustls::QuicClientConfig::try_from(tls)
        .context("QUIC client config")?;
    Ok(ClientConfig::new(Arc::new(quic)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_retry_packets() {
        // Long header (0xc0 | type 3 << 4), version 1.
        assert!(is_retry(&[0xf0, 0, 0, 0, 1, 8]));
        // An Initial (type 0) and a Handshake (type 2).
        assert!(!is_retry(&[0xc0, 0, 0, 0, 1, 8]));
        assert!(!is_retry(&[0xe0, 0, 0, 0, 1, 8]));
        // A short-header packet, and another version.
        assert!(!is_retry(&[0x70, 0, 0, 0, 1, 8]));
        assert!(!is_retry(&[0xf0, 0x6b, 0x33, 0x43, 0xcf, 8]));
    }

    #[test]
    fn refuses_to_run_outside_the_lab() {
        // The test runs in the process's own namespace.
        let e = ensure_lab(&"10.244.2.2:15008".parse().unwrap()).unwrap_err();
        assert!(e.to_string().contains("outside the lab"), "{e}");
    }

    /// A tunnel server on loopback (not in the lab: the test calls the
    /// flood directly) whose attempts go to `decide`.
    async fn server(
        decide: impl Fn(&quinn::Incoming) -> bool + Send + 'static,
    ) -> (
        SocketAddr,
        tokio::sync::mpsc::UnboundedReceiver<(bool, bool)>,
    ) {
        use quicmesh_core::identity::{ca::Ca, SpiffeId, TrustBundles};
        use quicmesh_core::tunnel::config;
        let ca = Ca::generate("cluster.local").unwrap();
        let id = SpiffeId::parse("spiffe://cluster.local/ns/a/sa/s").unwrap();
        let svid = ca.mint(&id, Duration::from_secs(600)).unwrap();
        let mut bundles = TrustBundles::new();
        bundles
            .insert("cluster.local", &[ca.cert_der().clone()])
            .unwrap();
        let settings = config::TunnelSettings::default();
        let metrics = quicmesh_core::metrics::TunnelMetrics::new();
        let cfg = config::server_config(
            &svid,
            Arc::new(bundles),
            Box::new(|_| true),
            &metrics,
            &settings,
        )
        .unwrap();
        let udp = config::bind_udp("127.0.0.1:0".parse().unwrap(), &settings).unwrap();
        let endpoint = config::endpoint(udp, Some(cfg), &settings).unwrap();
        let addr = endpoint.local_addr().unwrap();
        // (validated, handshake completed) per attempt.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                let validated = incoming.remote_address_validated();
                if !decide(&incoming) {
                    incoming.retry().unwrap();
                    continue;
                }
                let tx = tx.clone();
                tokio::spawn(async move {
                    let done = tokio::time::timeout(Duration::from_secs(1), incoming).await;
                    let _ = tx.send((validated, matches!(done, Ok(Ok(_)))));
                });
            }
        });
        (addr, rx)
    }

    fn loopback_sockets() -> Vec<UdpSocket> {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_nonblocking(true).unwrap();
        vec![s]
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn attempts_reach_the_server_and_never_complete() {
        let (addr, mut seen) = server(|_| true).await;
        let spec = FloodSpec {
            target: addr,
            attempts: 20,
            rate: 0,
            answer_retry: false,
            sources: Vec::new(),
        };
        let stats = tokio::task::spawn_blocking(move || flood(&loopback_sockets(), &spec))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stats.initials, 20, "{stats:?}");
        // Without Retries to wait for, the flood may end before any answer
        // arrives: what matters is that every attempt reached the server
        // and none completed.
        for _ in 0..20 {
            let (validated, completed) = seen.recv().await.unwrap();
            assert!(!validated && !completed);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retries_are_answered_with_their_token() {
        // Retry every unvalidated attempt: only answered Retries get through.
        let (addr, mut seen) = server(|i| i.remote_address_validated()).await;
        let spec = FloodSpec {
            target: addr,
            attempts: 20,
            rate: 0,
            answer_retry: true,
            sources: Vec::new(),
        };
        let stats = tokio::task::spawn_blocking(move || flood(&loopback_sockets(), &spec))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (stats.initials, stats.retries, stats.retried_initials),
            (20, 20, 20),
            "{stats:?}"
        );
        for _ in 0..20 {
            let (validated, completed) = seen.recv().await.unwrap();
            assert!(validated && !completed);
        }
    }
}
