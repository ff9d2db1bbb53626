//! Retry budgets: retries may add at most a fixed share of a route's
//! requests, plus a small floor per second, so that a failing backend does
//! not see its load multiplied by the attempts (a retry storm).
//!
//! As Linkerd's: every request deposits `ratio` of a token, every retry
//! withdraws one; deposits fade with a time constant (10 s), so a quiet
//! period cannot save up a storm. A floor bucket of `min_per_second` tokens
//! (refilled continuously, holding at most one second's worth) lets a
//! route with little traffic retry at all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Share of the requests that retries may add.
pub const RATIO: f64 = 0.2;
/// Retries allowed per second regardless of the ratio.
pub const MIN_PER_SECOND: f64 = 10.0;
/// How long a deposit counts (its weight falls to 1/e after this).
pub const DEPOSIT_LIFETIME: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct State {
    deposits: f64,
    floor: f64,
    at: Instant,
}

/// One route's budget.
#[derive(Debug)]
pub struct Budget {
    ratio: f64,
    min_per_second: f64,
    state: Mutex<State>,
}

impl Budget {
    pub fn new(ratio: f64, min_per_second: f64) -> Self {
        Budget {
            ratio,
            min_per_second,
            state: Mutex::new(State {
                deposits: 0.0,
                floor: min_per_second,
                at: Instant::now(),
            }),
        }
    }

    fn advance(&self, s: &mut State, now: Instant) {
        let dt = now.saturating_duration_since(s.at).as_secs_f64();
        s.deposits *= (-dt / DEPOSIT_LIFETIME.as_secs_f64()).exp();
        s.floor = (s.floor + dt * self.min_per_second).min(self.min_per_second);
        s.at = now;
    }

    /// A request arrived (its first attempt).
    pub fn deposit(&self, now: Instant) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.advance(&mut s, now);
        s.deposits += self.ratio;
    }

    /// Whether a retry may go now (taking its token).
    pub fn withdraw(&self, now: Instant) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.advance(&mut s, now);
        if s.deposits >= 1.0 {
            s.deposits -= 1.0;
            true
        } else if s.floor >= 1.0 {
            s.floor -= 1.0;
            true
        } else {
            false
        }
    }

    fn idle_since(&self) -> Instant {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).at
    }
}

/// The budgets of every route with retries, by `namespace/name`.
#[derive(Debug, Default)]
pub struct Budgets(Mutex<HashMap<String, Arc<Budget>>>);

impl Budgets {
    pub fn of(&self, route: &str) -> Arc<Budget> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(route.to_string())
            .or_insert_with(|| Arc::new(Budget::new(RATIO, MIN_PER_SECOND)))
            .clone()
    }

    /// Drops budgets unused for a minute (routes that went away).
    pub fn forget_idle(&self, now: Instant) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, b| now.saturating_duration_since(b.idle_since()) < Duration::from_secs(60));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_add_at_most_the_ratio_plus_the_floor() {
        let b = Budget::new(0.2, 10.0);
        let t0 = Instant::now();
        // 1,000 requests in one second, each wanting a retry.
        let mut retried = 0;
        for i in 0..1000u32 {
            let now = t0 + Duration::from_millis(u64::from(i));
            b.deposit(now);
            if b.withdraw(now) {
                retried += 1;
            }
        }
        // 20 % of 1,000 (less what faded in a second), plus the floor: its
        // 10 and one second's refill.
        assert!((190..=225).contains(&retried), "{retried}");
    }

    #[test]
    fn a_quiet_route_still_retries_a_little_and_savings_fade() {
        let b = Budget::new(0.2, 10.0);
        let t0 = Instant::now();
        // No requests: the floor only, one second's worth.
        let n = (0..50).filter(|_| b.withdraw(t0)).count();
        assert_eq!(n, 10);
        // 10,000 requests, then a minute of quiet: the deposits have faded.
        for _ in 0..10_000 {
            b.deposit(t0);
        }
        let later = t0 + Duration::from_secs(60);
        let n = (0..5_000).filter(|_| b.withdraw(later)).count();
        assert!(n <= 10 + 5, "{n}");
    }
}
