//! Handshake admission: which QUIC connection attempts a tunnel server spends
//! a handshake on.
//!
//! Anyone who can reach udp/15008 can send a QUIC Initial: one datagram for
//! them, a connection's state (TLS, transport, stream bookkeeping) and a task
//! for the server until the handshake ends. Nothing is authenticated yet, so
//! the only things to go by are the source address, whether QUIC has proven
//! that address (a Retry token), and how many handshakes are in flight.
//!
//! This module owns the decision ([`decide`], pure), the counts it is made
//! from ([`Admission`], one per proxy and shared by all its endpoints: ztunnel
//! has one endpoint per pod, and the limits bound the whole process), and what
//! happens to an attempt that is not accepted. It must not look at identities
//! (none is proven yet) nor hold any state for an attempt it did not accept.
//!
//! Semantics, for an attempt from source IP `s`; counts are of handshakes in
//! flight (accepted, not yet established with the peer's identity read, not
//! timed out), and `s`'s validated and unvalidated ones are counted apart:
//!
//! 1. An attempt whose address is not validated gets a QUIC Retry when the
//!    total is at or above `retry_threshold` (the server is under load), or
//!    when `s` already has `per_source` unvalidated handshakes in flight.
//!    A Retry costs the server nothing (the token is stateless), a spoofed
//!    source never gets past it, a real one pays one round trip. Below the
//!    threshold nothing is retried: cold connects keep their latency.
//! 2. Otherwise, an attempt is refused (`global_limit`) when the total is at
//!    `max_in_flight`.
//! 3. Otherwise, a validated attempt is refused (`source_limit`) when `s` has
//!    `per_source` validated handshakes in flight. An unvalidated attempt is
//!    never refused for its source: its address may be spoofed, and refusing
//!    it would let anyone lock a victim's address out.
//! 4. Otherwise it is accepted and holds a [`Ticket`] until its handshake
//!    ends; dropping the ticket gives the slot back.
//!
//! So one source holds at most `2 × per_source` handshakes (half of them from
//! an address it proved it can receive on), and the process `max_in_flight`.
//! Sources are whole IP addresses: in a mesh an address is assigned by the CNI,
//! and one a sender does not own cannot answer a Retry.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::config::TunnelSettings;
use crate::metrics::TunnelMetrics;

/// The limits [`decide`] applies (from [`TunnelSettings`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Handshakes in flight at once, all sources together.
    pub max_in_flight: usize,
    /// Handshakes in flight from one source IP, for validated and for
    /// unvalidated addresses each.
    pub per_source: usize,
    /// In-flight level at or above which unvalidated addresses get a Retry.
    pub retry_threshold: usize,
}

impl From<&TunnelSettings> for Limits {
    fn from(s: &TunnelSettings) -> Self {
        Limits {
            max_in_flight: s.max_handshakes,
            per_source: s.max_handshakes_per_source,
            retry_threshold: s.handshake_retry_threshold,
        }
    }
}

/// One source's handshakes in flight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceLoad {
    /// From an address QUIC validated (the Initial carried a Retry or
    /// NEW_TOKEN token for it).
    pub validated: usize,
    pub unvalidated: usize,
}

impl SourceLoad {
    fn is_empty(&self) -> bool {
        self.validated == 0 && self.unvalidated == 0
    }

    fn slot(&mut self, validated: bool) -> &mut usize {
        if validated {
            &mut self.validated
        } else {
            &mut self.unvalidated
        }
    }
}

/// Why an attempt was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// `max_in_flight` handshakes are in flight.
    GlobalLimit,
    /// The (validated) source has `per_source` validated handshakes in flight.
    SourceLimit,
}

impl Refusal {
    /// The `result` label of `quicmesh_quic_handshakes_total`.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::GlobalLimit => "refused_global_limit",
            Refusal::SourceLimit => "refused_source_limit",
        }
    }
}

/// What to do with a connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start the handshake.
    Accept,
    /// Answer with a QUIC Retry: the client must prove its address first.
    Retry,
    /// Answer CONNECTION_REFUSED.
    Refuse(Refusal),
}

/// The admission decision (see the module doc). Pure.
///
/// `total`: handshakes in flight now, all sources; `source`: those from the
/// attempt's source IP; `validated`: whether QUIC validated the attempt's
/// address.
pub fn decide(total: usize, source: SourceLoad, validated: bool, limits: &Limits) -> Decision {
    if !validated && (total >= limits.retry_threshold || source.unvalidated >= limits.per_source) {
        return Decision::Retry;
    }
    if total >= limits.max_in_flight {
        return Decision::Refuse(Refusal::GlobalLimit);
    }
    if validated && source.validated >= limits.per_source {
        return Decision::Refuse(Refusal::SourceLimit);
    }
    Decision::Accept
}

/// Counts of handshakes in flight.
#[derive(Debug, Default)]
struct Counts {
    total: usize,
    /// Only sources with a handshake in flight: an entry goes when its counts
    /// reach zero, so the map is never larger than `total`.
    sources: HashMap<IpAddr, SourceLoad>,
    /// Accepted since `total` was last zero: how big the current burst is.
    admitted_since_quiet: usize,
}

/// What [`Admission::admit`] decided, with the slot when accepted.
#[derive(Debug)]
pub enum Admitted {
    Accept(Ticket),
    Retry,
    Refuse(Refusal),
}

/// Handshake admission for one proxy: the counts behind [`decide`], and the
/// metrics and logs of every decision. Shared (`Arc`) by all endpoints.
pub struct Admission {
    limits: Limits,
    counts: Mutex<Counts>,
    metrics: Arc<TunnelMetrics>,
    warnings: Throttle,
    /// Woken when the count comes back to zero after a [`BURST`].
    quiet: tokio::sync::Notify,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("limits", &self.limits)
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

/// A handshake's slot; dropping it gives the slot back.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    source: IpAddr,
    validated: bool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.release(self.source, self.validated);
    }
}

/// A burst of handshakes, for [`Admission::release_memory_after_bursts`]:
/// this many accepted before the count is back to zero. One source's
/// caps (`2 × per_source`, 16 each by default) make a flood from it one.
const BURST: usize = 16;

/// How long after a burst its memory is given back: the connections of its
/// handshakes are freed only once their close has drained (three probe
/// timeouts), a little after their slots.
const SETTLE: Duration = Duration::from_secs(8);

/// The least time between two trims.
const TRIM_EVERY: Duration = Duration::from_secs(60);

/// Warnings about the same result at most this often; each event is logged
/// at debug level and counted in the metric.
const WARN_EVERY: Duration = Duration::from_secs(10);

impl Admission {
    /// Admission with `limits`, counting into `metrics` (its in-flight gauge
    /// and `quicmesh_quic_handshakes_total{side="server"}`).
    pub fn new(limits: Limits, metrics: Arc<TunnelMetrics>) -> Arc<Self> {
        Arc::new(Admission {
            limits,
            counts: Mutex::new(Counts::default()),
            metrics,
            warnings: Throttle::new(WARN_EVERY),
            quiet: tokio::sync::Notify::new(),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // The counts stay consistent under a panic elsewhere (each update
        // is one statement), so a poisoned lock is still usable.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Handshakes in flight now.
    pub fn in_flight(&self) -> usize {
        self.counts().total
    }

    /// Sources with a handshake in flight now.
    pub fn sources(&self) -> usize {
        self.counts().sources.len()
    }

    /// Decides on an attempt from `source` and, when accepted, takes its slot.
    pub fn admit(self: &Arc<Self>, source: IpAddr, validated: bool) -> Admitted {
        let source = source.to_canonical();
        let mut counts = self.counts();
        let load = counts.sources.get(&source).copied().unwrap_or_default();
        match decide(counts.total, load, validated, &self.limits) {
            Decision::Retry => Admitted::Retry,
            Decision::Refuse(r) => Admitted::Refuse(r),
            Decision::Accept => {
                counts.total += 1;
                counts.admitted_since_quiet += 1;
                *counts.sources.entry(source).or_default().slot(validated) += 1;
                drop(counts);
                self.metrics.handshakes_in_flight.inc();
                Admitted::Accept(Ticket {
                    admission: self.clone(),
                    source,
                    validated,
                })
            }
        }
    }

    fn release(&self, source: IpAddr, validated: bool) {
        let mut counts = self.counts();
        counts.total -= 1;
        if let Some(load) = counts.sources.get_mut(&source) {
            *load.slot(validated) -= 1;
            if load.is_empty() {
                counts.sources.remove(&source);
            }
        }
        let burst_over =
            counts.total == 0 && std::mem::take(&mut counts.admitted_since_quiet) >= BURST;
        drop(counts);
        self.metrics.handshakes_in_flight.dec();
        if burst_over {
            self.quiet.notify_one();
        }
    }

    /// Runs forever: [`SETTLE`] after each burst of handshakes has ended
    /// (at least [`BURST`] accepted before none was in flight again), gives
    /// the heap it used back to the kernel. Without this the peak a flood
    /// caused stays resident (glibc keeps freed pages). Spawn one per proxy.
    pub async fn release_memory_after_bursts(self: Arc<Self>) {
        let mut last: Option<Instant> = None;
        loop {
            self.quiet.notified().await;
            // At most one trim per TRIM_EVERY: bursts are cheap to cause
            // (failed handshakes count), and a trim walks every arena.
            let since = last.map_or(TRIM_EVERY, |t| t.elapsed());
            tokio::time::sleep(SETTLE.max(TRIM_EVERY.saturating_sub(since))).await;
            last = Some(Instant::now());
            let started = Instant::now();
            let released = tokio::task::spawn_blocking(crate::memory::release_free_heap)
                .await
                .unwrap_or(false);
            tracing::info!(
                released,
                took = ?started.elapsed(),
                "handshake burst over: gave its freed heap back to the kernel"
            );
        }
    }

    /// Screens a connection attempt on a server endpoint: answers it with a
    /// Retry or a refusal (counted and logged), or returns it with its slot.
    pub fn screen(
        self: &Arc<Self>,
        incoming: quinn::Incoming,
    ) -> Option<(quinn::Incoming, Ticket)> {
        let peer = incoming.remote_address();
        match self.admit(peer.ip(), incoming.remote_address_validated()) {
            Admitted::Accept(ticket) => Some((incoming, ticket)),
            Admitted::Retry => {
                // quinn: an unvalidated attempt may always be retried, and
                // only unvalidated ones are; refuse should that ever change.
                match incoming.retry() {
                    Ok(()) => self.report("retry", peer, None),
                    Err(e) => {
                        e.into_incoming().refuse();
                        self.report("refused_retry_impossible", peer, None);
                    }
                }
                None
            }
            Admitted::Refuse(r) => {
                incoming.refuse();
                self.report(r.label(), peer, None);
                None
            }
        }
    }

    /// Counts a handshake `result` (a fixed word, the metric label) and logs
    /// it: every one at debug level, and all but `retry` (normal under load)
    /// also as a warning at most once per [`WARN_EVERY`] per result, with
    /// how many were not warned about since.
    pub fn report(
        &self,
        result: &'static str,
        peer: SocketAddr,
        error: Option<&dyn std::fmt::Display>,
    ) {
        self.metrics.handshake("server", result);
        let in_flight = self.in_flight();
        let error = error.map(|e| e.to_string());
        tracing::debug!(%peer, result, error, in_flight, "tunnel handshake not completed");
        if result == "retry" {
            return;
        }
        if let Some(suppressed) = self.warnings.allow(result, Instant::now()) {
            tracing::warn!(
                %peer,
                result,
                error,
                in_flight,
                suppressed,
                limits = ?self.limits,
                "tunnel handshake not completed (further ones logged at debug for {}s; all counted in quicmesh_quic_handshakes_total)",
                WARN_EVERY.as_secs()
            );
        }
    }
}

/// Lets one event per key through per window, counting the ones held back.
#[derive(Debug)]
struct Throttle {
    every: Duration,
    /// Per key: when the last event went through, and how many were held
    /// back since. Keys are the few fixed result words.
    last: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl Throttle {
    fn new(every: Duration) -> Self {
        Throttle {
            every,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(held back since the last one)` when an event for `key` at `now`
    /// may go through.
    fn allow(&self, key: &'static str, now: Instant) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match last.get_mut(key) {
            Some((at, held)) if now.saturating_duration_since(*at) < self.every => {
                *held += 1;
                None
            }
            Some((at, held)) => {
                let n = *held;
                (*at, *held) = (now, 0);
                Some(n)
            }
            None => {
                last.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests;
