//! Local rate limiting: token buckets. A bucket holds at most `burst`
//! tokens and starts full; it gains `requests / per` tokens a second; a
//! request takes one or is refused with the time until the next token
//! (its `Retry-After`). Over any interval of length `t` a bucket admits at
//! most `burst + rate × t` requests.
//!
//! Buckets are keyed (see [`quicmesh_core::traffic::RateKey`]) and at most
//! [`MAX_BUCKETS`] are kept per Service port: a bucket that has refilled
//! to `burst` is the same as a new one, so it is forgotten when room is
//! needed (at most once a second); while none has refilled, keys without
//! a bucket share one *overflow* bucket of the same rate. So a flood of
//! distinct header values costs at most that many buckets and is limited
//! together, never admitted beyond the limit.
//!
//! Keys are hashed with a per-limiter random key (SipHash), so a key's
//! length costs nothing beyond its hashing and a client cannot choose
//! collisions. Every function takes `now`: tested with a simulated clock.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use quicmesh_core::traffic::RateLimit;

/// Buckets kept per limiter at most.
pub const MAX_BUCKETS: usize = 10_000;
/// A full table is swept for refilled buckets at most this often.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(capacity: f64, now: Instant) -> Self {
        Bucket {
            tokens: capacity,
            at: now,
        }
    }

    fn refill(&mut self, rate: f64, capacity: f64, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(capacity);
        self.at = now.max(self.at);
    }

    /// Takes a token, or says how long until there is one.
    fn take(&mut self, rate: f64, capacity: f64, now: Instant) -> Result<(), Duration> {
        self.refill(rate, capacity, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }

    fn is_full(&self, rate: f64, capacity: f64, now: Instant) -> bool {
        let mut b = *self;
        b.refill(rate, capacity, now);
        b.tokens >= capacity
    }
}

#[derive(Debug)]
struct Table {
    buckets: HashMap<u64, Bucket>,
    overflow: Bucket,
    swept: Option<Instant>,
}

/// Which bucket a request took from, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    Own,
    /// The table was full: the shared overflow bucket.
    Overflow,
}

/// One Service port's buckets.
#[derive(Debug)]
pub struct Limiter {
    rate: f64,
    capacity: f64,
    hasher: std::collections::hash_map::RandomState,
    table: Mutex<Table>,
}

impl Limiter {
    pub fn new(cfg: &RateLimit, now: Instant) -> Self {
        let capacity = f64::from(cfg.burst);
        Limiter {
            rate: cfg.rate(),
            capacity,
            hasher: Default::default(),
            table: Mutex::new(Table {
                buckets: HashMap::new(),
                overflow: Bucket::full(capacity, now),
                swept: None,
            }),
        }
    }

    fn hash(&self, key: Option<&[u8]>) -> u64 {
        let mut h = self.hasher.build_hasher();
        match key {
            None => h.write_u8(0),
            Some(k) => {
                h.write_u8(1);
                h.write(k);
            }
        }
        h.finish()
    }

    /// Takes a token from the bucket of `key` (None: the request has no
    /// value for the key, e.g. lacks the header; those share a bucket) at
    /// `now`; refused: how long until that bucket has one.
    pub fn check(&self, key: Option<&[u8]>, now: Instant) -> Result<Taken, Duration> {
        let h = self.hash(key);
        let (rate, capacity) = (self.rate, self.capacity);
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = t.buckets.get_mut(&h) {
            return b.take(rate, capacity, now).map(|()| Taken::Own);
        }
        if t.buckets.len() >= MAX_BUCKETS
            && t.swept
                .is_none_or(|s| now.saturating_duration_since(s) >= SWEEP_EVERY)
        {
            t.swept = Some(now);
            t.buckets.retain(|_, b| !b.is_full(rate, capacity, now));
        }
        if t.buckets.len() >= MAX_BUCKETS {
            return t
                .overflow
                .take(rate, capacity, now)
                .map(|()| Taken::Overflow);
        }
        let mut b = Bucket::full(capacity, now);
        let taken = b.take(rate, capacity, now);
        t.buckets.insert(h, b);
        taken.map(|()| Taken::Own)
    }

    /// Buckets held now.
    pub fn len(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .buckets
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `Retry-After` for a wait: whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let s = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    s.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use quicmesh_core::traffic::RateKey;

    fn cfg(requests: u32, per_ms: u64, burst: u32) -> RateLimit {
        RateLimit {
            requests,
            per: Duration::from_millis(per_ms),
            burst,
            key: RateKey::Service,
        }
    }

    #[test]
    fn a_bucket_admits_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let l = Limiter::new(&cfg(10, 1000, 5), t0);
        let admitted = (0..20).filter(|_| l.check(None, t0).is_ok()).count();
        assert_eq!(admitted, 5, "the burst, at once");
        // A token every 100 ms: refused with the wait until it.
        let wait = l.check(None, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        assert_eq!(retry_after_secs(wait), 1);
        assert!(l.check(None, t0 + Duration::from_millis(100)).is_ok());
        assert!(l.check(None, t0 + Duration::from_millis(150)).is_err());
        // After a long pause, the burst again, never more.
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| l.check(None, later).is_ok()).count(), 5);
        // A slow limit: the wait in whole seconds, rounded up.
        let slow = Limiter::new(&cfg(1, 60_000, 1), t0);
        assert!(slow.check(None, t0).is_ok());
        let wait = slow
            .check(None, t0 + Duration::from_millis(500))
            .unwrap_err();
        assert_eq!(retry_after_secs(wait), 60);
    }

    #[test]
    fn keys_have_their_own_buckets_and_absent_is_not_empty() {
        let t0 = Instant::now();
        let l = Limiter::new(&cfg(1, 1000, 1), t0);
        assert!(l.check(Some(b"alice"), t0).is_ok());
        assert!(l.check(Some(b"alice"), t0).is_err());
        assert!(l.check(Some(b"bob"), t0).is_ok());
        assert!(l.check(None, t0).is_ok());
        assert!(l.check(Some(b""), t0).is_ok(), "empty is a value");
        assert!(l.check(None, t0).is_err());
        assert_eq!(l.len(), 4);
    }

    /// A million distinct keys: the table stays bounded, and once it is
    /// full of buckets that have not refilled, new keys share one bucket.
    #[test]
    fn distinct_keys_cannot_exhaust_memory_or_the_limit() {
        let t0 = Instant::now();
        // 1 token per 10 s, burst 1: a used bucket takes 10 s to refill.
        let l = Limiter::new(&cfg(1, 10_000, 1), t0);
        let mut admitted = 0;
        let mut overflowed = 0;
        for i in 0..1_000_000u32 {
            // All within one second.
            let now = t0 + Duration::from_micros(u64::from(i));
            match l.check(Some(&i.to_be_bytes()), now) {
                Ok(Taken::Own) => admitted += 1,
                Ok(Taken::Overflow) => overflowed += 1,
                Err(_) => {}
            }
        }
        assert_eq!(l.len(), MAX_BUCKETS);
        assert_eq!(admitted, MAX_BUCKETS);
        assert_eq!(overflowed, 1, "the overflow bucket's burst, then its rate");
        // Ten seconds on, the buckets have refilled: they are swept and
        // new keys get their own again.
        let later = t0 + Duration::from_secs(11);
        assert_eq!(l.check(Some(b"new"), later), Ok(Taken::Own));
        assert_eq!(l.len(), 1);
    }

    proptest! {
        /// Over any run of requests, a bucket never admits more than
        /// `burst + rate × elapsed`.
        #[test]
        fn never_more_than_burst_plus_rate_times_elapsed(
            requests in 1u32..1000, per_ms in 1u64..5000, burst in 1u32..100,
            gaps in proptest::collection::vec(0u64..50_000, 1..400),
        ) {
            let t0 = Instant::now();
            let c = cfg(requests, per_ms, burst);
            let l = Limiter::new(&c, t0);
            let mut now = t0;
            let mut admitted = 0u64;
            for g in gaps {
                now += Duration::from_micros(g);
                if l.check(None, now).is_ok() {
                    admitted += 1;
                }
                let bound = f64::from(burst) + c.rate() * now.duration_since(t0).as_secs_f64();
                prop_assert!(admitted as f64 <= bound + 1e-6, "{admitted} > {bound}");
            }
        }
    }
}
