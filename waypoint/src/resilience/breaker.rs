//! Circuit breaking (`connectionPool`): limits on what one backend's
//! endpoints are asked to carry at once, per Service port.
//!
//! - `maxConcurrentRequests`: requests in flight to the backend, from the
//!   choice of an endpoint until the response's body has ended (retries
//!   of a request count as that one request). One more is refused at once.
//! - `maxConnections`: connections open to the backend's endpoints. A
//!   request that needs a new one at the limit waits (it is *pending*) for
//!   a connection of the backend to become free, or to close; idle
//!   connections to other endpoints of the backend are closed to make
//!   room.
//! - `maxPendingRequests`: requests waiting that way; one more is refused
//!   at once, and none waits longer than [`MAX_PENDING_WAIT`].
//! - `maxRequestsPerConnection`: a connection that has carried that many
//!   requests is not used again (it closes once its last one is done).
//!
//! A refusal is an [`Overflow`]: the waypoint answers 503 with
//! `x-quicmesh-overflow: <reason>` and counts it.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use quicmesh_core::traffic::ConnectionPool;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// A pending request waits this long at most.
pub const MAX_PENDING_WAIT: Duration = Duration::from_secs(10);

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    MaxConcurrentRequests,
    MaxPendingRequests,
    /// It waited [`MAX_PENDING_WAIT`] for a connection.
    PendingTimeout,
}

impl Overflow {
    /// The `x-quicmesh-overflow` value and metric label.
    pub fn label(self) -> &'static str {
        match self {
            Overflow::MaxConcurrentRequests => "max_concurrent_requests",
            Overflow::MaxPendingRequests => "max_pending_requests",
            Overflow::PendingTimeout => "pending_timeout",
        }
    }
}

/// One backend's limits and counts.
#[derive(Debug)]
pub struct Breaker {
    id: u64,
    cfg: ConnectionPool,
    in_flight: Arc<AtomicUsize>,
    connections: Option<Arc<Semaphore>>,
    pending: AtomicUsize,
    /// Told when a connection of this backend is free again.
    freed: Notify,
}

/// A request counted in flight while it lives.
#[derive(Debug)]
pub struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What [`Breaker::connection`] found: a connection to reuse, or leave to
/// open one (with the permit it must hold while open, if limited).
pub enum Got<T> {
    Reused(T),
    New(Option<OwnedSemaphorePermit>),
}

impl Breaker {
    pub fn new(cfg: &ConnectionPool) -> Arc<Self> {
        static IDS: AtomicU64 = AtomicU64::new(1);
        Arc::new(Breaker {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            cfg: *cfg,
            in_flight: Arc::default(),
            connections: cfg
                .max_connections
                .map(|n| Arc::new(Semaphore::new(n as usize))),
            pending: AtomicUsize::new(0),
            freed: Notify::new(),
        })
    }

    /// Unique among breakers: connections opened under it are kept apart
    /// from others (their permits are its).
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn config(&self) -> &ConnectionPool {
        &self.cfg
    }

    /// Whether connections are limited (a pool must then tell
    /// [`Breaker::freed`] of every connection that is free again).
    pub fn limits_connections(&self) -> bool {
        self.connections.is_some()
    }

    /// Counts a request in flight, or refuses it.
    pub fn admit(&self) -> Result<Slot, Overflow> {
        let max = self
            .cfg
            .max_concurrent_requests
            .map_or(usize::MAX, |n| n as usize);
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| Overflow::MaxConcurrentRequests)?;
        Ok(Slot(self.in_flight.clone()))
    }

    /// A connection for a request: `reuse` gives a free one if there is;
    /// else a new one may be opened if the limit allows; else the request
    /// waits as pending, calling `evict_idle` (true: it closed an idle
    /// connection of this backend, whose permit comes back) and trying
    /// `reuse` again whenever a connection is freed.
    pub async fn connection<T>(
        &self,
        mut reuse: impl FnMut() -> Option<T>,
        mut evict_idle: impl FnMut() -> bool,
        wait: Duration,
    ) -> Result<Got<T>, Overflow> {
        if let Some(t) = reuse() {
            return Ok(Got::Reused(t));
        }
        let Some(sem) = &self.connections else {
            return Ok(Got::New(None));
        };
        if let Ok(p) = sem.clone().try_acquire_owned() {
            return Ok(Got::New(Some(p)));
        }
        let max_pending = self
            .cfg
            .max_pending_requests
            .map_or(usize::MAX, |n| n as usize);
        self.pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max_pending).then_some(n + 1)
            })
            .map_err(|_| Overflow::MaxPendingRequests)?;
        struct Pending<'a>(&'a AtomicUsize);
        impl Drop for Pending<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let _counted = Pending(&self.pending);
        let deadline = tokio::time::Instant::now() + wait.min(MAX_PENDING_WAIT);
        loop {
            let notified = self.freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(t) = reuse() {
                return Ok(Got::Reused(t));
            }
            evict_idle();
            tokio::select! {
                p = sem.clone().acquire_owned() => {
                    return Ok(Got::New(Some(p.expect("the semaphore is never closed"))));
                }
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => return Err(Overflow::PendingTimeout),
            }
        }
    }

    /// A connection of this backend is free again (put back idle).
    pub fn freed(&self) {
        self.freed.notify_one();
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Requests waiting for a connection now.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Connections open now (when limited).
    pub fn open_connections(&self) -> Option<usize> {
        let max = self.cfg.max_connections? as usize;
        Some(max - self.connections.as_ref()?.available_permits())
    }
}

/// A body that holds `guard` until it ends or is dropped (a response's
/// [`Slot`], so a request counts in flight until its answer is through).
pub struct Guarded<B, G> {
    inner: B,
    guard: Option<G>,
}

impl<B, G> Guarded<B, G> {
    pub fn new(inner: B, guard: G) -> Self {
        Guarded {
            inner,
            guard: Some(guard),
        }
    }
}

impl<B, G> hyper::body::Body for Guarded<B, G>
where
    B: hyper::body::Body + Unpin,
    G: Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.guard = None;
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `f` once.
    fn now_or_never<F: std::future::Future>(f: F) -> Option<F::Output> {
        futures::FutureExt::now_or_never(f)
    }

    fn pool(conns: Option<u32>, pending: Option<u32>, concurrent: Option<u32>) -> Arc<Breaker> {
        Breaker::new(&ConnectionPool {
            max_connections: conns,
            max_pending_requests: pending,
            max_requests_per_connection: None,
            max_concurrent_requests: concurrent,
        })
    }

    #[test]
    fn concurrent_requests_beyond_the_limit_are_refused_until_one_ends() {
        let b = pool(None, None, Some(2));
        let a = b.admit().unwrap();
        let c = b.admit().unwrap();
        assert_eq!(b.admit().unwrap_err(), Overflow::MaxConcurrentRequests);
        assert_eq!(b.in_flight(), 2, "a refusal is not counted");
        drop(a);
        let d = b.admit().unwrap();
        drop((c, d));
        assert_eq!(b.in_flight(), 0);
        // Unlimited.
        let u = pool(None, None, None);
        let held: Vec<_> = (0..1000).map(|_| u.admit().unwrap()).collect();
        assert_eq!(u.in_flight(), 1000);
        drop(held);
        assert_ne!(b.id(), u.id());
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_connection_limit_requests_wait_then_overflow() {
        let b = pool(Some(1), Some(1), None);
        let first = match b
            .connection(|| None::<()>, || false, MAX_PENDING_WAIT)
            .await
        {
            Ok(Got::New(Some(p))) => p,
            _ => panic!("the first opens a connection"),
        };
        assert_eq!(b.open_connections(), Some(1));
        // The second waits; a third finds the one pending place taken.
        let b2 = b.clone();
        let second = tokio::spawn(async move {
            matches!(
                b2.connection(|| None::<()>, || false, MAX_PENDING_WAIT)
                    .await,
                Ok(Got::New(Some(_)))
            )
        });
        tokio::task::yield_now().await;
        assert_eq!(b.pending(), 1);
        assert!(matches!(
            now_or_never(b.connection(|| None::<()>, || false, MAX_PENDING_WAIT)),
            Some(Err(Overflow::MaxPendingRequests))
        ));
        // The connection closes: the waiting one opens its own.
        drop(first);
        assert!(second.await.unwrap());
        assert_eq!(b.pending(), 0);
        assert_eq!(b.open_connections(), Some(0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pending_request_takes_a_freed_connection_or_times_out() {
        let b = pool(Some(1), None, None);
        let _held = b
            .connection(|| None::<()>, || false, MAX_PENDING_WAIT)
            .await;
        // Freed (put back idle): the waiting request reuses it.
        let free = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (b2, f2) = (b.clone(), free.clone());
        let waiting = tokio::spawn(async move {
            let reuse = || f2.load(Ordering::Acquire).then_some("kept");
            matches!(
                b2.connection(reuse, || false, MAX_PENDING_WAIT).await,
                Ok(Got::Reused("kept"))
            )
        });
        tokio::task::yield_now().await;
        free.store(true, Ordering::Release);
        b.freed();
        assert!(waiting.await.unwrap());
        // Nothing frees up: refused after the wait (at most MAX_PENDING_WAIT).
        let started = tokio::time::Instant::now();
        let r = b
            .connection(|| None::<()>, || false, Duration::from_secs(3600))
            .await;
        assert!(matches!(r, Err(Overflow::PendingTimeout)));
        assert_eq!(started.elapsed(), MAX_PENDING_WAIT);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_are_closed_to_make_room() {
        let b = pool(Some(1), None, None);
        let idle = match b
            .connection(|| None::<()>, || false, MAX_PENDING_WAIT)
            .await
        {
            Ok(Got::New(Some(p))) => std::sync::Mutex::new(Some(p)),
            _ => panic!(),
        };
        // The one connection is idle (to another endpoint): evicting it
        // gives its permit to the request.
        let evict = || idle.lock().unwrap().take().is_some();
        let r = b.connection(|| None::<()>, evict, MAX_PENDING_WAIT).await;
        assert!(matches!(r, Ok(Got::New(Some(_)))));
    }

    #[test]
    fn a_guarded_body_releases_its_slot_when_it_ends() {
        use http_body_util::BodyExt;
        let b = pool(None, None, Some(1));
        let slot = b.admit().unwrap();
        let body = Guarded::new(http_body_util::Full::new(bytes::Bytes::from("x")), slot);
        assert_eq!(b.in_flight(), 1);
        let collected = now_or_never(body.collect()).unwrap().unwrap();
        assert_eq!(collected.to_bytes(), "x");
        assert_eq!(b.in_flight(), 0);
        let slot = b.admit().unwrap();
        drop(Guarded::new(
            http_body_util::Empty::<bytes::Bytes>::new(),
            slot,
        ));
        assert_eq!(b.in_flight(), 0, "dropped unread");
    }
}
