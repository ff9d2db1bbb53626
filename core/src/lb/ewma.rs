//! Latency-aware choice: power of two choices over a peak-sensitive moving
//! average of each endpoint's latency, times its requests in flight (the
//! approach Finagle and Linkerd call "peak EWMA").
//!
//! Per endpoint: an `estimate` of its latency. A sample above the estimate
//! replaces it at once (peak: a slowing endpoint is avoided from its first
//! slow answer); one below pulls it down by a weight that grows with the
//! time since the last sample (`1 - e^(-elapsed/tau)`). Without samples the
//! estimate relaxes toward `default_rtt` with the same time constant, so an
//! endpoint once slow is tried again later rather than starved for good.
//! The cost of an endpoint is `estimate × (in flight + 1)`: of two equally
//! fast endpoints the less busy wins, and a fast one is preferred until
//! its queue makes it as slow as the other.
//!
//! Everything that depends on time takes `now`, so it is tested with
//! simulated clocks.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::p2c;

/// One endpoint's latency estimate and requests in flight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    /// Latency estimate, seconds.
    pub estimate: f64,
    /// When `estimate` was last set (a sample, or creation).
    pub at: Instant,
    pub in_flight: usize,
}

/// Time constant and the estimate of an endpoint never measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    pub tau: Duration,
    pub default_rtt: Duration,
}

impl Default for Params {
    /// 10 s (Linkerd's default decay); 10 ms for an unknown endpoint: low
    /// enough that a new endpoint gets traffic and so gets measured.
    fn default() -> Self {
        Params {
            tau: Duration::from_secs(10),
            default_rtt: Duration::from_millis(10),
        }
    }
}

impl Load {
    pub fn new(p: &Params, now: Instant) -> Self {
        Load {
            estimate: p.default_rtt.as_secs_f64(),
            at: now,
            in_flight: 0,
        }
    }

    /// The weight of what happened before, `elapsed` ago: `e^(-elapsed/tau)`.
    fn memory(p: &Params, elapsed: Duration) -> f64 {
        (-elapsed.as_secs_f64() / p.tau.as_secs_f64().max(1e-9)).exp()
    }

    /// The estimate at `now`: relaxed toward the default since the last
    /// sample.
    pub fn estimate_at(&self, p: &Params, now: Instant) -> f64 {
        let w = Self::memory(p, now.saturating_duration_since(self.at));
        let d = p.default_rtt.as_secs_f64();
        d + (self.estimate - d) * w
    }

    /// What choosing this endpoint at `now` costs.
    pub fn cost(&self, p: &Params, now: Instant) -> f64 {
        self.estimate_at(p, now) * (self.in_flight as f64 + 1.0)
    }

    /// Takes a latency sample. The moving average steps from the stored
    /// estimate (the relaxed one is only for comparing and costing: using
    /// it here would pull every estimate toward the default).
    pub fn observe(&mut self, p: &Params, rtt: Duration, now: Instant) {
        let rtt = rtt.as_secs_f64();
        self.estimate = if rtt > self.estimate_at(p, now) {
            rtt
        } else {
            let w = Self::memory(p, now.saturating_duration_since(self.at));
            self.estimate * w + rtt * (1.0 - w)
        };
        self.at = now;
    }
}

/// The loads of every endpoint in use, keyed by address. Entries go when
/// nothing is in flight and they relaxed back to the default (see
/// [`PeakEwma::forget_idle`]).
#[derive(Debug)]
pub struct PeakEwma<K> {
    params: Params,
    loads: Mutex<HashMap<K, Load>>,
}

/// A request in flight to the endpoint chosen for it: report its latency
/// with [`Pending::done`], or [`Pending::fail`] (charged as a slow answer,
/// so failing fast does not make an endpoint look fast). Dropped without
/// either (the client cancelled), it only leaves the in-flight count: a
/// client cannot make an endpoint look bad by hanging up.
pub struct Pending<K: Hash + Eq + Clone> {
    ewma: Arc<PeakEwma<K>>,
    key: K,
    started: Instant,
    done: bool,
}

/// What a failed request counts as.
const PENALTY: Duration = Duration::from_secs(1);

impl<K: Hash + Eq + Clone> PeakEwma<K> {
    pub fn new(params: Params) -> Arc<Self> {
        Arc::new(PeakEwma {
            params,
            loads: Mutex::new(HashMap::new()),
        })
    }

    fn loads(&self) -> std::sync::MutexGuard<'_, HashMap<K, Load>> {
        self.loads.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Chooses among `candidates` at `now` (`rand2`: two random numbers)
    /// and counts the request in flight.
    pub fn choose_at(
        self: &Arc<Self>,
        candidates: &[K],
        now: Instant,
        rand2: (usize, usize),
    ) -> Option<(usize, Pending<K>)> {
        let mut loads = self.loads();
        let p = self.params;
        let cost = |i: usize| {
            loads
                .get(&candidates[i])
                .map_or(p.default_rtt.as_secs_f64(), |l| l.cost(&p, now))
        };
        let i = p2c(candidates.len(), cost, rand2)?;
        let key = candidates[i].clone();
        loads
            .entry(key.clone())
            .or_insert_with(|| Load::new(&p, now))
            .in_flight += 1;
        Some((
            i,
            Pending {
                ewma: self.clone(),
                key,
                started: now,
                done: false,
            },
        ))
    }

    /// [`choose_at`](Self::choose_at) now, with random numbers.
    pub fn choose(self: &Arc<Self>, candidates: &[K]) -> Option<(usize, Pending<K>)> {
        self.choose_at(
            candidates,
            Instant::now(),
            (
                rand::random::<u64>() as usize,
                rand::random::<u64>() as usize,
            ),
        )
    }

    /// One request to `key` is over; `rtt` is its sample, if it gave one.
    fn finish(&self, key: &K, rtt: Option<Duration>, now: Instant) {
        let p = self.params;
        let mut loads = self.loads();
        if let Some(l) = loads.get_mut(key) {
            l.in_flight = l.in_flight.saturating_sub(1);
            if let Some(rtt) = rtt {
                l.observe(&p, rtt, now);
            }
        }
    }

    /// The load of `key` now, if known.
    pub fn load(&self, key: &K) -> Option<Load> {
        self.loads().get(key).copied()
    }

    /// Drops entries with nothing in flight whose estimate is back within
    /// 1 % of the default (they would be created afresh as they are):
    /// bounds the table by the endpoints recently in use.
    pub fn forget_idle(&self, now: Instant) {
        let p = self.params;
        let d = p.default_rtt.as_secs_f64();
        self.loads()
            .retain(|_, l| l.in_flight > 0 || (l.estimate_at(&p, now) - d).abs() > d * 0.01);
    }

    pub fn len(&self) -> usize {
        self.loads().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Hash + Eq + Clone> Pending<K> {
    /// The request failed (no answer, or a 5xx).
    pub fn fail(mut self) {
        self.done = true;
        let now = Instant::now();
        let rtt = now.saturating_duration_since(self.started).max(PENALTY);
        self.ewma.finish(&self.key, Some(rtt), now);
    }

    /// The request was answered (its response head arrived) at `now`.
    pub fn done_at(mut self, now: Instant) {
        self.done = true;
        self.ewma.finish(
            &self.key,
            Some(now.saturating_duration_since(self.started)),
            now,
        );
    }

    /// The request was answered now.
    pub fn done(self) {
        self.done_at(Instant::now());
    }
}

impl<K: Hash + Eq + Clone> Drop for Pending<K> {
    fn drop(&mut self) {
        if !self.done {
            self.ewma.finish(&self.key, None, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_slow_sample_counts_at_once_a_fast_one_by_elapsed_time() {
        let p = Params::default();
        let t0 = Instant::now();
        let mut l = Load::new(&p, t0);
        l.observe(&p, ms(100), t0 + ms(1));
        assert!(
            (l.estimate - 0.1).abs() < 1e-9,
            "peak taken: {}",
            l.estimate
        );
        // A fast sample right after barely moves it...
        l.observe(&p, ms(1), t0 + ms(2));
        assert!(l.estimate > 0.099, "{}", l.estimate);
        // ...one a whole time constant later moves it most of the way.
        l.observe(&p, ms(1), t0 + ms(2) + p.tau);
        assert!(l.estimate < 0.04, "{}", l.estimate);
    }

    #[test]
    fn without_samples_the_estimate_relaxes_to_the_default() {
        let p = Params::default();
        let t0 = Instant::now();
        let mut l = Load::new(&p, t0);
        l.observe(&p, Duration::from_secs(2), t0);
        assert!((l.estimate_at(&p, t0) - 2.0).abs() < 1e-9);
        let later = l.estimate_at(&p, t0 + p.tau * 5);
        assert!((later - 0.01).abs() < 0.02, "{later}");
        // Costs scale with requests in flight.
        let mut busy = Load::new(&p, t0);
        busy.in_flight = 3;
        assert!((busy.cost(&p, t0) - 4.0 * 0.01).abs() < 1e-9);
    }

    /// Two endpoints, one 1 ms and one 20 ms away. One request at a time
    /// (simulated clock): all but the first go to the fast one. Many at
    /// once: the fast one takes requests until its queue makes it as
    /// costly as the slow one, then they share.
    #[test]
    fn traffic_goes_to_the_faster_endpoint_until_it_queues() {
        let ewma = PeakEwma::new(Params::default());
        let eps = ["fast", "slow"];
        let mut now = Instant::now();
        // One sample each.
        for (k, rtt) in [(0usize, ms(1)), (1, ms(20))] {
            let (_, pending) = ewma.choose_at(&eps[k..=k], now, (0, 0)).unwrap();
            now += rtt;
            pending.done_at(now);
        }
        let mut to = [0u32; 2];
        for i in 0..1_000usize {
            let (k, pending) = ewma
                .choose_at(&eps, now, (i.wrapping_mul(7919), i.wrapping_mul(104_729)))
                .unwrap();
            now += if k == 0 { ms(1) } else { ms(20) };
            pending.done_at(now);
            to[k] += 1;
        }
        assert_eq!(to, [1_000, 0], "sequential");
        let held: Vec<_> = (0..60usize)
            .map(|i| ewma.choose_at(&eps, now, (i, i / 2)).unwrap())
            .collect();
        let fast = held.iter().filter(|(k, _)| *k == 0).count();
        // Costs meet near 20 in flight at the fast one, then alternate.
        assert!((35..=50).contains(&fast), "{fast} of 60 to the fast one");
    }

    /// Equal latencies: requests in flight decide, so concurrent requests
    /// spread.
    #[test]
    fn with_equal_latency_the_less_busy_wins() {
        let ewma = PeakEwma::new(Params::default());
        let eps = ["a", "b"];
        let now = Instant::now();
        let held: Vec<_> = (0..10)
            .map(|i| ewma.choose_at(&eps, now, (i, 0)).unwrap().1)
            .collect();
        assert_eq!(ewma.load(&"a").unwrap().in_flight, 5);
        assert_eq!(ewma.load(&"b").unwrap().in_flight, 5);
        drop(held);
    }

    #[test]
    fn a_fast_endpoint_settles_at_its_latency_not_between_it_and_the_default() {
        let p = Params::default();
        let mut t = Instant::now();
        let mut l = Load::new(&p, t);
        // Ten time constants of 1 ms samples every 10 ms (a biased
        // average would settle near 5.5 ms, halfway to the default).
        for _ in 0..10_000 {
            t += ms(10);
            l.observe(&p, ms(1), t);
        }
        assert!((l.estimate - 0.001).abs() < 0.0002, "{}", l.estimate);
    }

    #[test]
    fn a_cancelled_request_costs_nothing_a_failed_one_is_charged() {
        let ewma = PeakEwma::new(Params::default());
        let now = Instant::now();
        let (_, pending) = ewma.choose_at(&["a"], now, (0, 0)).unwrap();
        drop(pending);
        let l = ewma.load(&"a").unwrap();
        assert_eq!(l.in_flight, 0);
        assert!(
            (l.estimate - 0.01).abs() < 1e-9,
            "a cancel was charged: {}",
            l.estimate
        );
        let (_, pending) = ewma.choose_at(&["a"], now, (0, 0)).unwrap();
        pending.fail();
        let l = ewma.load(&"a").unwrap();
        assert_eq!(l.in_flight, 0);
        assert!(l.estimate >= 1.0, "a failure looked fast: {}", l.estimate);
        ewma.forget_idle(Instant::now());
        assert_eq!(ewma.len(), 1, "forgotten while still penalised");
        ewma.forget_idle(Instant::now() + Params::default().tau * 20);
        assert!(ewma.is_empty());
        assert!(ewma.choose_at(&[] as &[&str], now, (0, 0)).is_none());
    }
}
