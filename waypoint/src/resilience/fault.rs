//! Fault injection: a share of the requests (those with the policy's
//! headers, when it names any) is delayed, and a share aborted with a
//! status of the policy's choosing, before it goes to a backend. The delay
//! and the abort are sampled independently; a request may get both (the
//! delay, then the abort). Percentages are carried in millionths, so
//! `0.0001` % is the finest share. Pure: the caller passes the random
//! numbers.

use std::time::Duration;

use quicmesh_core::traffic::{AbortWith, Fault};

/// What to do to one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decision {
    pub delay: Option<Duration>,
    pub abort: Option<AbortWith>,
}

/// Whether the request's headers are those the faults are for: every
/// header the policy names is present (with its value, when it gives one;
/// of a repeated header, any value).
pub fn applies(f: &Fault, headers: &http::HeaderMap) -> bool {
    f.headers.iter().all(|h| {
        let mut values = headers.get_all(h.name.as_str()).iter().peekable();
        match &h.value {
            None => values.peek().is_some(),
            Some(want) => values.any(|v| v.as_bytes() == want.as_bytes()),
        }
    })
}

/// Whether a roll (uniform over `u64`) falls within `per_million`.
pub fn sampled(per_million: u32, roll: u64) -> bool {
    roll % u64::from(quicmesh_core::traffic::PER_MILLION) < u64::from(per_million)
}

/// The faults for a request with `headers`; `rolls` are two independent
/// random numbers (the delay's, the abort's).
pub fn decide(f: &Fault, headers: &http::HeaderMap, rolls: (u64, u64)) -> Decision {
    if !applies(f, headers) {
        return Decision::default();
    }
    Decision {
        delay: f
            .delay
            .filter(|d| sampled(d.per_million, rolls.0))
            .map(|d| d.fixed_delay),
        abort: f
            .abort
            .filter(|a| sampled(a.per_million, rolls.1))
            .map(|a| a.with),
    }
}

/// A gRPC status name for the access log.
pub fn grpc_code_name(code: u32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES.get(code as usize).copied().unwrap_or("UNKNOWN")
}

#[cfg(test)]
mod tests {
    use super::*;
    use quicmesh_core::traffic::{FaultAbort, FaultDelay, FaultHeader};

    fn fault(delay_pm: u32, abort_pm: u32, headers: Vec<FaultHeader>) -> Fault {
        Fault {
            delay: Some(FaultDelay {
                per_million: delay_pm,
                fixed_delay: Duration::from_millis(250),
            }),
            abort: Some(FaultAbort {
                per_million: abort_pm,
                with: AbortWith::Http(503),
            }),
            headers,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn shares_are_exact_over_the_roll_space() {
        // Rolls 0..1,000,000 cover each residue once: exactly the share.
        for pm in [0, 1, 125_000, 500_000, 999_999, 1_000_000] {
            let hits = (0..1_000_000u64).filter(|r| sampled(pm, *r)).count();
            assert_eq!(hits, pm as usize);
        }
        assert!(sampled(1_000_000, u64::MAX), "100 % is every roll");
        assert!(!sampled(0, 0), "0 % is none");
    }

    #[test]
    fn delay_and_abort_are_sampled_independently() {
        let f = fault(500_000, 250_000, vec![]);
        let h = headers(&[]);
        let (mut delayed, mut aborted, mut both) = (0, 0, 0);
        for a in 0..1000u64 {
            for b in 0..1000u64 {
                let d = decide(&f, &h, (a * 1000, b * 1000));
                delayed += usize::from(d.delay.is_some());
                aborted += usize::from(d.abort.is_some());
                both += usize::from(d.delay.is_some() && d.abort.is_some());
            }
        }
        assert_eq!((delayed, aborted, both), (500_000, 250_000, 125_000));
        let d = decide(&f, &h, (0, 0));
        assert_eq!(d.delay, Some(Duration::from_millis(250)));
        assert_eq!(d.abort, Some(AbortWith::Http(503)));
    }

    #[test]
    fn only_requests_with_the_headers_get_faults() {
        let f = fault(
            1_000_000,
            1_000_000,
            vec![
                FaultHeader {
                    name: "x-fault".into(),
                    value: Some("yes".into()),
                },
                FaultHeader {
                    name: "x-test".into(),
                    value: None,
                },
            ],
        );
        let all = (0, 0);
        assert_eq!(decide(&f, &headers(&[]), all), Decision::default());
        assert_eq!(
            decide(&f, &headers(&[("x-fault", "yes")]), all),
            Decision::default(),
            "both must match"
        );
        assert_eq!(
            decide(&f, &headers(&[("x-fault", "no"), ("x-test", "")]), all),
            Decision::default()
        );
        assert_eq!(
            decide(&f, &headers(&[("x-fault", "YES"), ("x-test", "1")]), all),
            Decision::default(),
            "values are exact"
        );
        let d = decide(
            &f,
            &headers(&[("x-fault", "no"), ("x-fault", "yes"), ("x-test", "1")]),
            all,
        );
        assert!(
            d.delay.is_some() && d.abort.is_some(),
            "any value of a repeated header"
        );
        assert_eq!(grpc_code_name(14), "UNAVAILABLE");
        assert_eq!(grpc_code_name(99), "UNKNOWN");
    }
}
