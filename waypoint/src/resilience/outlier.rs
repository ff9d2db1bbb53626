//! Outlier detection: endpoints of a backend that fail are ejected (not
//! chosen) for a while, then tried again.
//!
//! 1. Every answer is recorded against its endpoint: a status below 500 is
//!    a success; a 5xx is an error, and a 502, 503 or 504 also a gateway
//!    error; a failure to get an answer (connect failure, refused tunnel,
//!    reset, timeout) is both.
//! 2. `consecutive5xxErrors` errors in a row, or
//!    `consecutiveGatewayErrors` gateway errors in a row, eject the
//!    endpoint at once.
//! 3. Every `interval`, each endpoint that got at least `requestVolume`
//!    requests in it is judged, provided at least `minimumHosts` did: one
//!    whose success rate is below `threshold` % is ejected.
//! 4. An ejection lasts `baseEjectionTime × n` for the endpoint's `n`th
//!    ejection, at most `max(baseEjectionTime, 300 s)`; each interval an
//!    endpoint is not ejected, `n` goes down by one. When its time is up
//!    the endpoint is chosen again (its error counts start afresh).
//! 5. At most `max(1, ⌊endpoints × maxEjectionPercent / 100⌋)` endpoints
//!    are ejected at once (none when the percentage is 0), and never all:
//!    at least one stays. An ejection beyond that is not made.
//! 6. Should every current endpoint be ejected (the set shrank), ejection
//!    is ignored for the choice: traffic is never refused because of it.
//!
//! Intervals are evaluated when an answer is recorded after one is due
//! (without traffic there is nothing to judge). Every function takes
//! `now`: tested with a simulated clock.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use quicmesh_core::traffic::Outlier;

/// The longest ejection, unless `baseEjectionTime` is longer.
pub const MAX_EJECTION_TIME: Duration = Duration::from_secs(300);

/// What an attempt at an endpoint came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered below 500.
    Success,
    /// Answered with this 5xx.
    ServerError(u16),
    /// No answer: connect failure, refused tunnel, reset, timeout.
    LocalFailure,
}

/// Why an endpoint was ejected (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Consecutive5xx,
    ConsecutiveGateway,
    SuccessRate,
}

impl Reason {
    pub fn label(self) -> &'static str {
        match self {
            Reason::Consecutive5xx => "consecutive_5xx",
            Reason::ConsecutiveGateway => "consecutive_gateway_errors",
            Reason::SuccessRate => "success_rate",
        }
    }
}

/// An ejection made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ejection {
    pub endpoint: SocketAddr,
    pub reason: Reason,
    /// How long it lasts.
    pub duration: Duration,
    /// Which ejection of this endpoint it is (the multiplier).
    pub count: u32,
}

#[derive(Debug, Default, Clone)]
struct Host {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    /// This interval's answers and successes.
    total: u32,
    ok: u32,
    ejected_until: Option<Instant>,
    /// The ejection multiplier.
    ejections: u32,
}

impl Host {
    fn ejected(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|t| t > now)
    }
}

#[derive(Debug)]
struct State {
    hosts: HashMap<SocketAddr, Host>,
    /// The endpoints of the backend, as last chosen among.
    current: Vec<SocketAddr>,
    next_tick: Instant,
}

/// One backend's detector.
#[derive(Debug)]
pub struct Detector {
    cfg: Outlier,
    state: Mutex<State>,
}

/// How many of `n` endpoints may be ejected at once.
pub fn max_ejected(n: usize, percent: u32) -> usize {
    if percent == 0 || n <= 1 {
        return 0;
    }
    (n * percent as usize / 100).max(1).min(n - 1)
}

impl Detector {
    pub fn new(cfg: &Outlier, now: Instant) -> Self {
        Detector {
            cfg: cfg.clone(),
            state: Mutex::new(State {
                hosts: HashMap::new(),
                current: Vec::new(),
                next_tick: now + cfg.interval,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The indices of `candidates` (the backend's endpoints now) that may
    /// be chosen at `now`: those not ejected, or all of them if every one
    /// is. Endpoints no longer among them are forgotten.
    pub fn available(&self, candidates: &[SocketAddr], now: Instant) -> Vec<usize> {
        let mut s = self.lock();
        if s.current != candidates {
            s.current = candidates.to_vec();
            let keep: std::collections::HashSet<_> = candidates.iter().collect();
            s.hosts.retain(|a, _| keep.contains(a));
        }
        let open: Vec<usize> = (0..candidates.len())
            .filter(|i| !s.hosts.get(&candidates[*i]).is_some_and(|h| h.ejected(now)))
            .collect();
        if open.is_empty() {
            (0..candidates.len()).collect()
        } else {
            open
        }
    }

    /// Records an attempt's outcome at `endpoint`; returns the ejections
    /// it (or an interval that came due) made.
    pub fn record(&self, endpoint: SocketAddr, outcome: Outcome, now: Instant) -> Vec<Ejection> {
        let mut s = self.lock();
        let mut out = Vec::new();
        if now >= s.next_tick {
            self.tick(&mut s, now, &mut out);
        }
        let cfg = &self.cfg;
        let h = s.hosts.entry(endpoint).or_default();
        if h.ejected_until.is_some_and(|t| t <= now) {
            // Back: its counts start afresh.
            h.ejected_until = None;
            h.consecutive_5xx = 0;
            h.consecutive_gateway = 0;
        }
        if h.ejected(now) {
            // An attempt that was under way when it was ejected.
            return out;
        }
        h.total += 1;
        let (error, gateway) = match outcome {
            Outcome::Success => (false, false),
            Outcome::ServerError(code) => (true, matches!(code, 502..=504)),
            Outcome::LocalFailure => (true, true),
        };
        if error {
            h.consecutive_5xx += 1;
        } else {
            h.ok += 1;
            h.consecutive_5xx = 0;
        }
        if gateway {
            h.consecutive_gateway += 1;
        } else {
            h.consecutive_gateway = 0;
        }
        let reason = if cfg
            .consecutive_5xx_errors
            .is_some_and(|n| h.consecutive_5xx >= n)
        {
            Some(Reason::Consecutive5xx)
        } else if cfg
            .consecutive_gateway_errors
            .is_some_and(|n| h.consecutive_gateway >= n)
        {
            Some(Reason::ConsecutiveGateway)
        } else {
            None
        };
        if let Some(reason) = reason {
            out.extend(self.eject(&mut s, endpoint, reason, now));
        }
        out
    }

    /// Ejects `endpoint` if the cap allows.
    fn eject(
        &self,
        s: &mut State,
        endpoint: SocketAddr,
        reason: Reason,
        now: Instant,
    ) -> Option<Ejection> {
        let n = s.current.len().max(s.hosts.len());
        let ejected = s.hosts.values().filter(|h| h.ejected(now)).count();
        let h = s.hosts.get_mut(&endpoint)?;
        // Counted anew either way: an ejection refused by the cap is not
        // retried on every following error.
        h.consecutive_5xx = 0;
        h.consecutive_gateway = 0;
        if ejected >= max_ejected(n, self.cfg.max_ejection_percent) {
            return None;
        }
        h.ejections = h.ejections.saturating_add(1);
        let cap = MAX_EJECTION_TIME.max(self.cfg.base_ejection_time);
        let duration = self
            .cfg
            .base_ejection_time
            .saturating_mul(h.ejections)
            .min(cap);
        h.ejected_until = Some(now + duration);
        Some(Ejection {
            endpoint,
            reason,
            duration,
            count: h.ejections,
        })
    }

    /// An interval is over: multipliers of healthy hosts decay, success
    /// rates are judged, counts start afresh. A host is healthy when it is
    /// not ejected and its latest answer was not an error: one that came
    /// back and is failing again keeps its multiplier, so its next
    /// ejection is longer, whenever the interval falls.
    fn tick(&self, s: &mut State, now: Instant, out: &mut Vec<Ejection>) {
        for h in s.hosts.values_mut() {
            if h.ejected_until.is_some_and(|t| t <= now) {
                h.ejected_until = None;
                h.consecutive_5xx = 0;
                h.consecutive_gateway = 0;
            } else if h.ejected_until.is_none()
                && h.consecutive_5xx == 0
                && h.consecutive_gateway == 0
            {
                h.ejections = h.ejections.saturating_sub(1);
            }
        }
        if let Some(sr) = self.cfg.success_rate {
            let judged: Vec<(SocketAddr, u32, u32)> = s
                .hosts
                .iter()
                .filter(|(_, h)| !h.ejected(now) && h.total >= sr.request_volume)
                .map(|(a, h)| (*a, h.ok, h.total))
                .collect();
            if judged.len() >= sr.minimum_hosts as usize {
                let mut failing: Vec<_> = judged
                    .into_iter()
                    .filter(|(_, ok, total)| {
                        u64::from(*ok) * 100 < u64::from(sr.threshold) * u64::from(*total)
                    })
                    .collect();
                // The worst first, should the cap stop some.
                failing.sort_by_key(|(a, ok, total)| {
                    (u64::from(*ok) * 1_000_000 / u64::from((*total).max(1)), *a)
                });
                for (a, _, _) in failing {
                    out.extend(self.eject(s, a, Reason::SuccessRate, now));
                }
            }
        }
        for h in s.hosts.values_mut() {
            h.total = 0;
            h.ok = 0;
        }
        // The next interval from now (one evaluation for a quiet stretch:
        // only the last interval's answers were counted anyway).
        s.next_tick = now + self.cfg.interval;
    }

    /// The endpoints ejected at `now`, with the time left and the
    /// multiplier, for the admin dump.
    pub fn ejected(&self, now: Instant) -> Vec<(SocketAddr, Duration, u32)> {
        let s = self.lock();
        let mut v: Vec<_> = s
            .hosts
            .iter()
            .filter(|(_, h)| h.ejected(now))
            .map(|(a, h)| {
                (
                    *a,
                    h.ejected_until.map_or(Duration::ZERO, |t| t - now),
                    h.ejections,
                )
            })
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests;
