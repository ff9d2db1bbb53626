//! Load balancing over a Service's endpoints: power of two choices. The
//! choice is pure; [`Balancer`] keeps counts of active connections (least
//! loaded wins: ztunnel's L4 choice), [`ewma::PeakEwma`] latency estimates
//! times requests in flight (the waypoint's per-request choice).

pub mod ewma;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Picks an index among `n` candidates: two distinct random ones, the less
/// loaded wins (the first on a tie). `rand2` gives two random numbers.
pub fn p2c<L: PartialOrd>(
    n: usize,
    load: impl Fn(usize) -> L,
    rand2: (usize, usize),
) -> Option<usize> {
    match n {
        0 => None,
        1 => Some(0),
        _ => {
            let a = rand2.0 % n;
            // A second candidate distinct from the first.
            let b = (a + 1 + rand2.1 % (n - 1)) % n;
            Some(if load(b) < load(a) { b } else { a })
        }
    }
}

/// Active connections per endpoint address.
#[derive(Default)]
pub struct Balancer {
    active: Mutex<HashMap<IpAddr, usize>>,
}

/// Counts a connection against its endpoint while alive.
pub struct Lease {
    balancer: Arc<Balancer>,
    ip: IpAddr,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut m = self.balancer.active.lock().expect("not poisoned");
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

impl Balancer {
    /// Chooses among `candidates` and leases the choice.
    pub fn choose(self: &Arc<Self>, candidates: &[IpAddr]) -> Option<(usize, Lease)> {
        let mut m = self.active.lock().expect("not poisoned");
        let load = |i: usize| m.get(&candidates[i]).copied().unwrap_or(0);
        let i = p2c(
            candidates.len(),
            load,
            (
                rand::random::<u64>() as usize,
                rand::random::<u64>() as usize,
            ),
        )?;
        *m.entry(candidates[i]).or_default() += 1;
        Some((
            i,
            Lease {
                balancer: self.clone(),
                ip: candidates[i],
            },
        ))
    }

    pub fn active(&self, ip: IpAddr) -> usize {
        self.active
            .lock()
            .expect("not poisoned")
            .get(&ip)
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prefers_the_less_loaded_of_two() {
        let loads = [5, 1, 3];
        assert_eq!(p2c(3, |i| loads[i], (0, 0)), Some(1));
        assert_eq!(p2c(3, |i| loads[i], (2, 0)), Some(2), "2 vs 0: 3 < 5");
        assert_eq!(p2c(0, |_| 0, (0, 0)), None);
        assert_eq!(p2c(1, |_| 9, (7, 7)), Some(0));
    }

    #[test]
    fn leases_count_and_release() {
        let b = Arc::new(Balancer::default());
        let ips: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()];
        let leases: Vec<_> = (0..10).map(|_| b.choose(&ips).unwrap().1).collect();
        // Two choices among two: always the less loaded, so they stay even.
        assert_eq!(b.active(ips[0]), 5);
        assert_eq!(b.active(ips[1]), 5);
        drop(leases);
        assert_eq!(b.active(ips[0]) + b.active(ips[1]), 0);
    }

    proptest! {
        #[test]
        fn never_picks_the_more_loaded_of_its_two(
            loads in proptest::collection::vec(0usize..100, 2..20), r0 in any::<usize>(), r1 in any::<usize>(),
        ) {
            let n = loads.len();
            let i = p2c(n, |i| loads[i], (r0, r1)).unwrap();
            let a = r0 % n;
            let b = (a + 1 + r1 % (n - 1)) % n;
            prop_assert!(a != b);
            prop_assert!(i == a || i == b);
            prop_assert!(loads[i] <= loads[a].min(loads[b]) || loads[a] == loads[b]);
        }
    }
}
