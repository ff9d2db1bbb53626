use super::*;
use proptest::prelude::*;
use quicmesh_core::traffic::SuccessRate;

fn cfg(c5xx: Option<u32>, gateway: Option<u32>, percent: u32) -> Outlier {
    Outlier {
        consecutive_5xx_errors: c5xx,
        consecutive_gateway_errors: gateway,
        success_rate: None,
        interval: Duration::from_secs(10),
        base_ejection_time: Duration::from_secs(30),
        max_ejection_percent: percent,
    }
}

fn addrs(n: u8) -> Vec<SocketAddr> {
    (1..=n)
        .map(|i| SocketAddr::from(([10, 0, 0, i], 8080)))
        .collect()
}

fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn errors_in_a_row_eject_and_the_endpoint_returns_after_its_time() {
    let t0 = Instant::now();
    let d = Detector::new(&cfg(Some(3), None, 50), t0);
    let eps = addrs(2);
    assert_eq!(d.available(&eps, t0), [0, 1]);
    // Two errors, a success, two errors: no ejection (not in a row).
    for o in [
        Outcome::ServerError(500),
        Outcome::LocalFailure,
        Outcome::Success,
        Outcome::ServerError(500),
        Outcome::ServerError(500),
    ] {
        assert!(d.record(eps[0], o, t0).is_empty());
    }
    let e = d.record(eps[0], Outcome::ServerError(503), t0);
    assert_eq!(
        e,
        [Ejection {
            endpoint: eps[0],
            reason: Reason::Consecutive5xx,
            duration: s(30),
            count: 1
        }]
    );
    assert_eq!(d.available(&eps, t0 + s(29)), [1], "ejected");
    assert_eq!(d.ejected(t0 + s(20)), [(eps[0], s(10), 1)]);
    assert_eq!(d.available(&eps, t0 + s(30)), [0, 1], "back after its time");
    assert!(d.ejected(t0 + s(30)).is_empty());
    // Failing again at once: the second ejection lasts twice as long.
    let t1 = t0 + s(31);
    d.record(eps[0], Outcome::ServerError(500), t1);
    d.record(eps[0], Outcome::ServerError(500), t1);
    let e = d.record(eps[0], Outcome::ServerError(500), t1);
    assert_eq!((e[0].duration, e[0].count), (s(60), 2));
    // An answer still under way when it was ejected counts for nothing.
    assert!(d
        .record(eps[0], Outcome::ServerError(500), t1 + s(1))
        .is_empty());
}

#[test]
fn ejections_grow_to_a_cap_and_their_count_decays_while_healthy() {
    let t0 = Instant::now();
    let d = Detector::new(&cfg(Some(1), None, 50), t0);
    let eps = addrs(2);
    d.available(&eps, t0);
    let mut now = t0;
    let mut last = Duration::ZERO;
    for n in 1..=12u32 {
        let e = d.record(eps[0], Outcome::ServerError(500), now);
        assert_eq!(e.len(), 1, "ejection {n}");
        last = e[0].duration;
        assert!(last <= MAX_EJECTION_TIME);
        now += last;
        // Not healthy for a whole interval in between: no decay.
    }
    assert_eq!(last, MAX_EJECTION_TIME, "capped at 300 s");
    // Healthy for many intervals (answers keep the intervals coming):
    // the multiplier goes back down to none.
    for _ in 0..20 {
        now += s(10);
        d.record(eps[0], Outcome::Success, now);
        d.record(eps[1], Outcome::Success, now);
    }
    let e = d.record(eps[0], Outcome::ServerError(500), now);
    assert_eq!((e[0].count, e[0].duration), (1, s(30)));
}

#[test]
fn an_endpoint_failing_again_when_an_interval_ends_keeps_its_multiplier() {
    let t0 = Instant::now();
    let d = Detector::new(&cfg(Some(3), None, 50), t0);
    let eps = addrs(2);
    d.available(&eps, t0);
    for _ in 0..3 {
        d.record(eps[0], Outcome::ServerError(500), t0);
    }
    // Back after 30 s; one error, then the interval ends (its tick runs on
    // the next answer) before the next two errors.
    let back = t0 + s(30);
    d.record(eps[0], Outcome::ServerError(500), back);
    d.record(eps[1], Outcome::Success, back + s(10));
    d.record(eps[0], Outcome::ServerError(500), back + s(10));
    let e = d.record(eps[0], Outcome::ServerError(500), back + s(10));
    assert_eq!((e[0].count, e[0].duration), (2, s(60)), "{e:?}");
}

#[test]
fn gateway_errors_are_502_503_504_and_failures_to_answer() {
    let t0 = Instant::now();
    let d = Detector::new(&cfg(None, Some(2), 50), t0);
    let eps = addrs(2);
    d.available(&eps, t0);
    // 500s are not gateway errors, and break a run of them.
    for o in [
        Outcome::ServerError(503),
        Outcome::ServerError(500),
        Outcome::ServerError(502),
        Outcome::ServerError(500),
    ] {
        assert!(d.record(eps[0], o, t0).is_empty());
    }
    let e = d.record(eps[1], Outcome::LocalFailure, t0);
    assert!(e.is_empty());
    let e = d.record(eps[1], Outcome::ServerError(504), t0);
    assert_eq!(e[0].reason, Reason::ConsecutiveGateway);
    assert_eq!(e[0].endpoint, eps[1]);
}

#[test]
fn a_low_success_rate_over_an_interval_ejects() {
    let t0 = Instant::now();
    let mut c = cfg(None, None, 50);
    c.success_rate = Some(SuccessRate {
        minimum_hosts: 2,
        request_volume: 10,
        threshold: 80,
    });
    let d = Detector::new(&c, t0);
    let eps = addrs(3);
    d.available(&eps, t0);
    // eps[0]: 100 %; eps[1]: 70 %; eps[2]: 0 %, but only 5 requests (not
    // judged).
    for i in 0..10 {
        d.record(eps[0], Outcome::Success, t0);
        let o = if i < 7 {
            Outcome::Success
        } else {
            Outcome::ServerError(500)
        };
        d.record(eps[1], o, t0);
    }
    for _ in 0..5 {
        d.record(eps[2], Outcome::ServerError(500), t0);
    }
    // Judged once the interval is over, on the next answer.
    let e = d.record(eps[0], Outcome::Success, t0 + s(10));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].endpoint, e[0].reason), (eps[1], Reason::SuccessRate));
    // Fewer than minimumHosts with enough requests: nobody is judged.
    for _ in 0..20 {
        d.record(eps[2], Outcome::ServerError(500), t0 + s(11));
    }
    assert!(d.record(eps[0], Outcome::Success, t0 + s(21)).is_empty());
}

#[test]
fn the_cap_keeps_endpoints_in_and_never_ejects_them_all() {
    assert_eq!(max_ejected(1, 100), 0, "a lone endpoint stays");
    assert_eq!(max_ejected(2, 10), 1, "at least one may go");
    assert_eq!(max_ejected(2, 100), 1, "never all");
    assert_eq!(max_ejected(10, 20), 2);
    assert_eq!(max_ejected(10, 0), 0, "0 % ejects none");
    assert_eq!(max_ejected(0, 50), 0);
    let t0 = Instant::now();
    let d = Detector::new(&cfg(Some(1), None, 100), t0);
    let eps = addrs(3);
    d.available(&eps, t0);
    for a in &eps {
        d.record(*a, Outcome::ServerError(500), t0);
    }
    assert_eq!(d.ejected(t0).len(), 2);
    assert_eq!(d.available(&eps, t0).len(), 1);
    // The set shrinks to the ejected ones: they are chosen anyway.
    let ejected: Vec<_> = d.ejected(t0).into_iter().map(|(a, _, _)| a).collect();
    assert_eq!(d.available(&ejected, t0), [0, 1]);
}

proptest! {
    /// Whatever the answers, at no time are more endpoints ejected than
    /// the cap allows, and one is always available.
    #[test]
    fn ejection_never_exceeds_max_ejection_percent(
        n in 1u8..12, percent in 0u32..=100,
        events in proptest::collection::vec((0u8..12, 0u8..4, 0u64..20_000), 1..300),
    ) {
        let t0 = Instant::now();
        let mut c = cfg(Some(2), Some(2), percent);
        c.success_rate = Some(SuccessRate { minimum_hosts: 1, request_volume: 1, threshold: 90 });
        c.interval = Duration::from_secs(1);
        c.base_ejection_time = Duration::from_secs(5);
        let d = Detector::new(&c, t0);
        let eps = addrs(n);
        let mut now = t0;
        for (who, what, gap) in events {
            now += Duration::from_millis(gap);
            let open = d.available(&eps, now);
            prop_assert!(!open.is_empty());
            let ep = eps[who as usize % eps.len()];
            let o = match what {
                0 => Outcome::Success,
                1 => Outcome::ServerError(500),
                2 => Outcome::ServerError(503),
                _ => Outcome::LocalFailure,
            };
            d.record(ep, o, now);
            let ejected = d.ejected(now).len();
            prop_assert!(ejected <= max_ejected(eps.len(), percent), "{ejected} of {n} at {percent}%");
        }
    }
}
