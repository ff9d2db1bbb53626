use super::*;

fn full() -> Policy {
    Policy {
        namespace: "shop".into(),
        name: "full".into(),
        created: 10,
        targets: vec![
            Target {
                service: "web".into(),
                port: None,
            },
            Target {
                service: "api".into(),
                port: Some(8080),
            },
        ],
        parts: Parts {
            outlier_detection: Some(Outlier {
                consecutive_5xx_errors: Some(5),
                consecutive_gateway_errors: Some(3),
                success_rate: Some(SuccessRate {
                    minimum_hosts: 2,
                    request_volume: 20,
                    threshold: 80,
                }),
                interval: Duration::from_secs(1),
                base_ejection_time: Duration::from_secs(30),
                max_ejection_percent: 50,
            }),
            connection_pool: Some(ConnectionPool {
                max_connections: Some(10),
                max_pending_requests: Some(5),
                max_requests_per_connection: Some(100),
                max_concurrent_requests: Some(20),
            }),
            rate_limit: Some(RateLimit {
                requests: 100,
                per: Duration::from_secs(1),
                burst: 20,
                key: RateKey::Header("x-user".into()),
            }),
            fault_injection: Some(Fault {
                delay: Some(FaultDelay {
                    per_million: 125_000,
                    fixed_delay: Duration::from_millis(200),
                }),
                abort: Some(FaultAbort {
                    per_million: 1,
                    with: AbortWith::Grpc(14),
                }),
                headers: vec![
                    FaultHeader {
                        name: "x-fault".into(),
                        value: Some("yes".into()),
                    },
                    FaultHeader {
                        name: "x-test".into(),
                        value: None,
                    },
                ],
            }),
            timeouts: Some(Timeouts {
                connect: Some(Duration::from_secs(2)),
                idle: Some(Duration::from_secs(60)),
                request: Some(Duration::from_secs(15)),
            }),
            max_request_body_bytes: Some(1 << 20),
        },
    }
}

#[test]
fn every_part_survives_the_wire() {
    let p = full();
    assert_eq!(Policy::from_proto(&p.to_proto()), Ok(p.clone()));
    assert_eq!(
        p.parts.names(),
        [
            "outlierDetection",
            "connectionPool",
            "rateLimit",
            "faultInjection",
            "timeouts",
            "maxRequestBodyBytes"
        ]
    );
    let empty = Policy {
        parts: Parts::default(),
        ..p
    };
    assert!(empty.parts.is_empty());
    assert_eq!(Policy::from_proto(&empty.to_proto()), Ok(empty));
}

#[test]
fn out_of_bounds_values_are_refused_naming_the_field() {
    type Edit = fn(&mut pb::TrafficPolicy);
    let cases: [(Edit, &str); 16] = [
        (
            |p| p.outlier_detection.as_mut().unwrap().max_ejection_percent = 101,
            "outlierDetection.maxEjectionPercent",
        ),
        (
            |p| p.outlier_detection.as_mut().unwrap().interval_ms = 1,
            "outlierDetection.interval",
        ),
        (
            |p| p.outlier_detection.as_mut().unwrap().consecutive_5xx_errors = 5000,
            "outlierDetection.consecutive5xxErrors",
        ),
        (
            |p| {
                p.outlier_detection
                    .as_mut()
                    .unwrap()
                    .success_rate
                    .as_mut()
                    .unwrap()
                    .threshold_percent = 0
            },
            "outlierDetection.successRate.threshold",
        ),
        (
            |p| {
                let o = p.outlier_detection.as_mut().unwrap();
                o.consecutive_5xx_errors = 0;
                o.consecutive_gateway_errors = 0;
                o.success_rate = None;
            },
            "outlierDetection: sets none",
        ),
        (
            |p| p.connection_pool = Some(Default::default()),
            "connectionPool: sets no limit",
        ),
        (
            |p| p.connection_pool.as_mut().unwrap().max_connections = 2_000_000,
            "connectionPool.maxConnections",
        ),
        (
            |p| p.rate_limit.as_mut().unwrap().requests = 0,
            "rateLimit.requests",
        ),
        (
            |p| p.rate_limit.as_mut().unwrap().per_ms = 7_200_000,
            "rateLimit.per",
        ),
        (
            |p| p.rate_limit.as_mut().unwrap().header = "X-User".into(),
            "rateLimit.key",
        ),
        (
            |p| {
                p.fault_injection
                    .as_mut()
                    .unwrap()
                    .abort
                    .as_mut()
                    .unwrap()
                    .http_status = 503
            },
            "faultInjection.abort: sets both",
        ),
        (
            |p| {
                p.fault_injection
                    .as_mut()
                    .unwrap()
                    .delay
                    .as_mut()
                    .unwrap()
                    .per_million = 1_000_001
            },
            "faultInjection.delay.percentage",
        ),
        (
            |p| {
                p.fault_injection
                    .as_mut()
                    .unwrap()
                    .delay
                    .as_mut()
                    .unwrap()
                    .fixed_delay_ms = 301_000
            },
            "faultInjection.delay.fixedDelay",
        ),
        (
            |p| p.fault_injection.as_mut().unwrap().headers[0].value = "a\nb".into(),
            "faultInjection.headers[0].value",
        ),
        (
            |p| p.timeouts = Some(Default::default()),
            "timeouts: sets none",
        ),
        (
            |p| p.max_request_body_bytes = (1 << 40) + 1,
            "maxRequestBodyBytes",
        ),
    ];
    for (edit, want) in cases {
        let mut p = full().to_proto();
        edit(&mut p);
        let err = Policy::from_proto(&p).unwrap_err();
        assert!(err.contains(want), "{err:?} lacks {want:?}");
    }
}

#[test]
fn percentages_become_millionths() {
    assert_eq!(per_million(50.0), Ok(500_000));
    assert_eq!(per_million(0.0001), Ok(1));
    assert_eq!(per_million(12.5), Ok(125_000));
    assert_eq!(per_million(100.0), Ok(PER_MILLION));
    for bad in [-1.0, 100.01, f64::NAN, f64::INFINITY] {
        assert!(per_million(bad).is_err(), "{bad}");
    }
    assert!(valid_header_name("x-user"));
    assert!(!valid_header_name("X-User") && !valid_header_name("") && !valid_header_name("a b"));
}

fn policy(name: &str, created: i64, target: (&str, Option<u16>), parts: Parts) -> Policy {
    Policy {
        namespace: "shop".into(),
        name: name.into(),
        created,
        targets: vec![Target {
            service: target.0.into(),
            port: target.1,
        }],
        parts,
    }
}

#[test]
fn a_port_takes_each_part_from_the_most_specific_then_oldest_policy() {
    let f = full().parts;
    let rate = |requests| Parts {
        rate_limit: Some(RateLimit {
            requests,
            ..f.rate_limit.clone().unwrap()
        }),
        ..Parts::default()
    };
    let timeouts = Parts {
        timeouts: f.timeouts,
        ..Parts::default()
    };
    let ps = [
        policy("whole-new", 20, ("web", None), rate(1)),
        policy("whole-old", 10, ("web", None), rate(2)),
        policy("port", 30, ("web", Some(80)), rate(3)),
        policy("timeouts", 40, ("web", None), timeouts),
        policy("other-port", 5, ("web", Some(81)), rate(4)),
    ];
    let e = effective(&ps, "shop", "web", 80).unwrap();
    let r = e.rate_limit.unwrap();
    assert_eq!((r.policy.as_str(), r.value.requests), ("shop/port", 3));
    assert_eq!(e.timeouts.unwrap().policy, "shop/timeouts");
    assert!(e.outlier_detection.is_none());
    // Another port: the whole-Service policies, the older first.
    let e = effective(&ps, "shop", "web", 443).unwrap();
    assert_eq!(e.rate_limit.unwrap().policy, "shop/whole-old");
    assert_eq!(
        effective(&ps, "shop", "web", 81)
            .unwrap()
            .rate_limit
            .unwrap()
            .value
            .requests,
        4
    );
    // No policy for it, or another namespace's.
    assert!(effective(&ps, "shop", "api", 80).is_none());
    assert!(effective(&ps, "other", "web", 80).is_none());
    let empty = [policy("empty", 1, ("web", None), Parts::default())];
    assert!(effective(&empty, "shop", "web", 80).is_none());
}
