//! The decision: a table of cases, every load of a small grid checked against
//! the module's rules, properties for any limits; and the counts: tickets,
//! the per-source map, the gauge, under any sequence of admits and drops.

use super::*;
use proptest::prelude::*;

const LIMITS: Limits = Limits {
    max_in_flight: 8,
    per_source: 2,
    retry_threshold: 4,
};

fn load(validated: usize, unvalidated: usize) -> SourceLoad {
    SourceLoad {
        validated,
        unvalidated,
    }
}

const GLOBAL: Decision = Decision::Refuse(Refusal::GlobalLimit);
const SOURCE: Decision = Decision::Refuse(Refusal::SourceLimit);

/// (case, total in flight, source's load, validated, expected)
fn table() -> Vec<(&'static str, usize, SourceLoad, bool, Decision)> {
    use Decision::*;
    vec![
        (
            "idle, unvalidated: no Retry when quiet",
            0,
            load(0, 0),
            false,
            Accept,
        ),
        ("idle, validated", 0, load(0, 0), true, Accept),
        (
            "just below the Retry threshold",
            3,
            load(0, 1),
            false,
            Accept,
        ),
        (
            "at the Retry threshold, unvalidated",
            4,
            load(0, 0),
            false,
            Retry,
        ),
        (
            "at the Retry threshold, validated",
            4,
            load(0, 0),
            true,
            Accept,
        ),
        (
            "quiet, but the source has its unvalidated share",
            1,
            load(0, 2),
            false,
            Retry,
        ),
        (
            "the source's unvalidated share does not hold back its validated attempts",
            2,
            load(0, 2),
            true,
            Accept,
        ),
        ("validated source at its share", 2, load(2, 0), true, SOURCE),
        (
            "validated source below its share",
            2,
            load(1, 1),
            true,
            Accept,
        ),
        (
            "the validated share does not hold back unvalidated attempts while quiet",
            2,
            load(2, 0),
            false,
            Accept,
        ),
        ("global cap, validated", 8, load(0, 0), true, GLOBAL),
        (
            "global cap, unvalidated: Retry (stateless), not refused",
            8,
            load(0, 0),
            false,
            Retry,
        ),
        (
            "global cap beats the source limit",
            8,
            load(2, 0),
            true,
            GLOBAL,
        ),
        (
            "over the global cap (limits lowered)",
            20,
            load(0, 0),
            true,
            GLOBAL,
        ),
    ]
}

#[test]
fn decision_table() {
    for (case, total, source, validated, want) in table() {
        assert_eq!(
            decide(total, source, validated, &LIMITS),
            want,
            "{case}: total {total}, {source:?}, validated {validated}"
        );
    }
}

#[test]
fn retry_threshold_above_the_cap_refuses_unvalidated_at_the_cap() {
    let no_retry = Limits {
        retry_threshold: usize::MAX,
        ..LIMITS
    };
    assert_eq!(decide(8, load(0, 0), false, &no_retry), GLOBAL);
    assert_eq!(decide(7, load(0, 0), false, &no_retry), Decision::Accept);
    // A source over its unvalidated share is still asked to prove itself.
    assert_eq!(decide(0, load(0, 2), false, &no_retry), Decision::Retry);
}

/// The numbered rules of the module doc, as checks of one decision.
fn check_rules(total: usize, s: SourceLoad, validated: bool, l: &Limits) -> Result<(), String> {
    let d = decide(total, s, validated, l);
    let ctx = || format!("total {total}, {s:?}, validated {validated}, {l:?} -> {d:?}");
    // 1. Retry exactly for unvalidated addresses under load or over their share.
    let retry = !validated && (total >= l.retry_threshold || s.unvalidated >= l.per_source);
    if (d == Decision::Retry) != retry {
        return Err(format!("rule 1: {}", ctx()));
    }
    // 2. Never past the global cap.
    if d == Decision::Accept && total >= l.max_in_flight {
        return Err(format!("rule 2: accepted at the cap: {}", ctx()));
    }
    if d == GLOBAL && total < l.max_in_flight {
        return Err(format!("rule 2: refused below the cap: {}", ctx()));
    }
    // 3. Source refusals only for validated addresses at their share.
    if d == SOURCE && !(validated && s.validated >= l.per_source) {
        return Err(format!("rule 3: {}", ctx()));
    }
    if d == Decision::Accept && validated && s.validated >= l.per_source {
        return Err(format!("rule 3: accepted at the share: {}", ctx()));
    }
    // 4. Everything else is accepted.
    let accept = !retry && total < l.max_in_flight && !(validated && s.validated >= l.per_source);
    if (d == Decision::Accept) != accept {
        return Err(format!("rule 4: {}", ctx()));
    }
    // A validated attempt is decided without the source's unvalidated count:
    // attempts spoofing its address cannot lock it out.
    if validated {
        let spoofed = decide(total, load(s.validated, s.unvalidated + 100), true, l);
        if spoofed != d {
            return Err(format!(
                "spoofed attempts changed it to {spoofed:?}: {}",
                ctx()
            ));
        }
    }
    Ok(())
}

#[test]
fn every_load_of_a_small_grid_follows_the_rules() {
    let limit_sets = [
        LIMITS,
        Limits {
            max_in_flight: 0,
            per_source: 2,
            retry_threshold: 0,
        },
        Limits {
            max_in_flight: 3,
            per_source: 1,
            retry_threshold: 5,
        },
        Limits {
            max_in_flight: 6,
            per_source: 6,
            retry_threshold: 0,
        },
        Limits {
            max_in_flight: 6,
            per_source: 0,
            retry_threshold: 3,
        },
    ];
    let mut checked = 0;
    for l in &limit_sets {
        for total in 0..=10 {
            for v in 0..=4 {
                for u in 0..=4 {
                    for validated in [false, true] {
                        check_rules(total, load(v, u), validated, l).unwrap();
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, 5 * 11 * 5 * 5 * 2);
}

fn arb_limits() -> impl Strategy<Value = Limits> {
    (0usize..64, 0usize..16, 0usize..80).prop_map(|(max_in_flight, per_source, retry_threshold)| {
        Limits {
            max_in_flight,
            per_source,
            retry_threshold,
        }
    })
}

proptest! {
    #[test]
    fn any_decision_follows_the_rules(
        l in arb_limits(),
        total in 0usize..100,
        v in 0usize..20,
        u in 0usize..20,
        validated: bool,
    ) {
        prop_assert_eq!(check_rules(total, load(v, u), validated, &l), Ok(()));
    }

    /// Less load never makes an accepted attempt worse off.
    #[test]
    fn accepting_is_monotone_in_the_load(
        l in arb_limits(),
        total in 0usize..100,
        v in 0usize..20,
        u in 0usize..20,
        validated: bool,
        (dt, dv, du) in (0usize..100, 0usize..20, 0usize..20),
    ) {
        if decide(total, load(v, u), validated, &l) == Decision::Accept {
            let lighter = load(v.saturating_sub(dv), u.saturating_sub(du));
            prop_assert_eq!(
                decide(total.saturating_sub(dt), lighter, validated, &l),
                Decision::Accept
            );
        }
    }

    /// Any sequence of attempts and finished handshakes: the counts match
    /// the tickets held, the caps hold, the per-source map holds only
    /// sources with a ticket, and the gauge follows.
    #[test]
    fn counts_follow_the_tickets(
        l in arb_limits(),
        ops in prop::collection::vec((0u8..6, any::<bool>(), any::<bool>(), any::<prop::sample::Index>()), 0..200),
    ) {
        let metrics = TunnelMetrics::new();
        let a = Admission::new(l, metrics.clone());
        let mut held: Vec<Ticket> = Vec::new();
        for (ip, validated, finish, which) in ops {
            if finish && !held.is_empty() {
                held.swap_remove(which.index(held.len()));
            } else {
                let src = IpAddr::from([10, 0, 0, ip]);
                let before = a.counts().sources.get(&src).copied().unwrap_or_default();
                let want = decide(a.in_flight(), before, validated, &l);
                match a.admit(src, validated) {
                    Admitted::Accept(t) => {
                        prop_assert_eq!(want, Decision::Accept);
                        held.push(t);
                    }
                    Admitted::Retry => prop_assert_eq!(want, Decision::Retry),
                    Admitted::Refuse(r) => prop_assert_eq!(want, Decision::Refuse(r)),
                }
            }
            prop_assert_eq!(a.in_flight(), held.len());
            prop_assert!(a.in_flight() <= l.max_in_flight);
            prop_assert_eq!(metrics.handshakes_in_flight.get(), held.len() as i64);
            let mut per: HashMap<(IpAddr, bool), usize> = HashMap::new();
            for t in &held {
                *per.entry((t.source, t.validated)).or_default() += 1;
            }
            prop_assert!(per.values().all(|&n| n <= l.per_source));
            let sources: std::collections::HashSet<_> = held.iter().map(|t| t.source).collect();
            prop_assert_eq!(a.sources(), sources.len());
            for (src, got) in a.counts().sources.iter() {
                prop_assert!(!got.is_empty());
                let want = load(
                    per.get(&(*src, true)).copied().unwrap_or(0),
                    per.get(&(*src, false)).copied().unwrap_or(0),
                );
                prop_assert_eq!(*got, want);
            }
        }
        drop(held);
        prop_assert_eq!(a.in_flight(), 0);
        prop_assert_eq!(a.sources(), 0);
        prop_assert_eq!(metrics.handshakes_in_flight.get(), 0);
    }
}

#[test]
fn a_ticket_holds_its_slot_until_dropped() {
    let a = Admission::new(LIMITS, TunnelMetrics::new());
    let ip: IpAddr = "10.0.0.1".parse().unwrap();
    let t1 = match a.admit(ip, true) {
        Admitted::Accept(t) => t,
        other => panic!("{other:?}"),
    };
    let _t2 = match a.admit(ip, true) {
        Admitted::Accept(t) => t,
        other => panic!("{other:?}"),
    };
    assert!(matches!(
        a.admit(ip, true),
        Admitted::Refuse(Refusal::SourceLimit)
    ));
    drop(t1);
    assert!(matches!(a.admit(ip, true), Admitted::Accept(_)));
}

#[test]
fn ipv4_mapped_addresses_are_the_same_source() {
    let a = Admission::new(LIMITS, TunnelMetrics::new());
    let v4: IpAddr = "10.0.0.1".parse().unwrap();
    let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
    let _t = [a.admit(v4, true), a.admit(mapped, true)];
    assert_eq!(a.sources(), 1);
    assert!(matches!(
        a.admit(mapped, true),
        Admitted::Refuse(Refusal::SourceLimit)
    ));
}

#[test]
fn warnings_are_throttled_per_result() {
    let t = Throttle::new(Duration::from_secs(10));
    let t0 = Instant::now();
    assert_eq!(t.allow("timeout", t0), Some(0));
    assert_eq!(t.allow("timeout", t0 + Duration::from_secs(1)), None);
    assert_eq!(t.allow("timeout", t0 + Duration::from_secs(9)), None);
    // Another result has its own window.
    assert_eq!(
        t.allow("refused_source_limit", t0 + Duration::from_secs(9)),
        Some(0)
    );
    assert_eq!(t.allow("timeout", t0 + Duration::from_secs(10)), Some(2));
    assert_eq!(t.allow("timeout", t0 + Duration::from_secs(11)), None);
}

#[test]
fn limits_come_from_the_settings() {
    let s = TunnelSettings::default();
    let l = Limits::from(&s);
    assert_eq!(l.max_in_flight, s.max_handshakes);
    assert_eq!(l.per_source, s.max_handshakes_per_source);
    assert_eq!(l.retry_threshold, s.handshake_retry_threshold);
    // Retry kicks in before the cap refuses anyone.
    assert!(l.retry_threshold <= l.max_in_flight);
    assert!(2 * l.per_source <= l.max_in_flight);
}

/// Accepts one handshake from each of `n` sources; the caller holds them.
fn admit_from_many(a: &Arc<Admission>, n: usize) -> Vec<Ticket> {
    (0..n)
        .map(|i| {
            let ip = IpAddr::from([10, 1, (i / 256) as u8, (i % 256) as u8]);
            match a.admit(ip, true) {
                Admitted::Accept(t) => t,
                other => panic!("{other:?}"),
            }
        })
        .collect()
}

/// Whether the end of a burst was signalled (a permit is waiting).
async fn burst_ended(a: &Admission) -> bool {
    tokio::time::timeout(Duration::from_millis(50), a.quiet.notified())
        .await
        .is_ok()
}

#[tokio::test]
async fn the_end_of_a_burst_is_signalled_once_and_small_ones_are_not() {
    let limits = Limits {
        max_in_flight: 1_000,
        per_source: 16,
        retry_threshold: 1_000,
    };
    let a = Admission::new(limits, TunnelMetrics::new());
    // Handshakes one after another, however many, are no burst.
    for _ in 0..BURST * 2 {
        drop(admit_from_many(&a, 1));
    }
    assert!(!burst_ended(&a).await);
    // A burst: signalled when its last slot is given back, not before.
    let mut burst = admit_from_many(&a, BURST);
    burst.truncate(1);
    assert!(!burst_ended(&a).await);
    drop(burst);
    assert!(burst_ended(&a).await);
    assert!(!burst_ended(&a).await, "signalled twice");
    // The next burst counts from zero.
    drop(admit_from_many(&a, BURST - 1));
    assert!(!burst_ended(&a).await);
}
