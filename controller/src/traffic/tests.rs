use super::*;
use crate::model::{Object, Service, ServicePort, TargetPort};
use serde_json::json;

fn yaml(s: &str) -> Value {
    serde_yaml::from_str(s).unwrap()
}

fn policy(name: &str, created: i64, spec: Value) -> model::TrafficPolicy {
    compile("shop", name, created, 1, &spec)
}

const FULL: &str = r#"
targetRefs:
- {group: "", kind: Service, name: web}
- {group: "", kind: Service, name: web, sectionName: grpc}
outlierDetection:
  consecutive5xxErrors: 5
  consecutiveGatewayErrors: 3
  successRate: {minimumHosts: 2, requestVolume: 20, threshold: 80}
  interval: 5s
  baseEjectionTime: 1m
  maxEjectionPercent: 50
connectionPool: {maxConnections: 100, maxPendingRequests: 10, maxRequestsPerConnection: 1000, maxConcurrentRequests: 50}
rateLimit: {requests: 100, per: 1s, burst: 20, key: "header:X-User"}
faultInjection:
  delay: {percentage: 12.5, fixedDelay: 250ms}
  abort: {percentage: 0.1, httpStatus: 503}
  headers: [{name: X-Fault, value: "yes"}, {name: x-test}]
timeouts: {connect: 2s, idle: 1h, request: 15s}
maxRequestBodyBytes: 1048576
"#;

#[test]
fn every_field_compiles_into_the_waypoints_model() {
    let p = policy("full", 1, yaml(FULL));
    let parts = p.parts.clone().unwrap();
    let o = parts.outlier_detection.unwrap();
    assert_eq!(o.consecutive_5xx_errors, Some(5));
    assert_eq!(o.consecutive_gateway_errors, Some(3));
    assert_eq!(
        o.success_rate,
        Some(tp::SuccessRate {
            minimum_hosts: 2,
            request_volume: 20,
            threshold: 80
        })
    );
    assert_eq!(
        (o.interval, o.base_ejection_time),
        (Duration::from_secs(5), Duration::from_secs(60))
    );
    assert_eq!(o.max_ejection_percent, 50);
    let c = parts.connection_pool.unwrap();
    assert_eq!(
        (
            c.max_connections,
            c.max_pending_requests,
            c.max_requests_per_connection,
            c.max_concurrent_requests
        ),
        (Some(100), Some(10), Some(1000), Some(50))
    );
    let r = parts.rate_limit.unwrap();
    assert_eq!(
        (r.requests, r.per, r.burst),
        (100, Duration::from_secs(1), 20)
    );
    assert_eq!(
        r.key,
        tp::RateKey::Header("x-user".into()),
        "header names lower-cased"
    );
    let f = parts.fault_injection.unwrap();
    assert_eq!(f.delay.unwrap().per_million, 125_000);
    assert_eq!(f.delay.unwrap().fixed_delay, Duration::from_millis(250));
    assert_eq!(f.abort.unwrap().per_million, 1_000);
    assert_eq!(f.abort.unwrap().with, tp::AbortWith::Http(503));
    assert_eq!(f.headers[0].name, "x-fault");
    assert_eq!(f.headers[0].value.as_deref(), Some("yes"));
    assert_eq!(f.headers[1].value, None, "present with any value");
    let t = parts.timeouts.unwrap();
    assert_eq!(t.connect, Some(Duration::from_secs(2)));
    assert_eq!(t.idle, Some(Duration::from_secs(3600)));
    assert_eq!(t.request, Some(Duration::from_secs(15)));
    assert_eq!(parts.max_request_body_bytes, Some(1 << 20));
    assert_eq!(p.targets.len(), 2);
    assert_eq!(p.targets[1].target, Ok(("web".into(), Some("grpc".into()))));
}

#[test]
fn defaults_are_filled_in() {
    let p = policy(
        "d",
        1,
        yaml(
            r#"
targetRefs: [{group: "", kind: Service, name: web}]
outlierDetection: {consecutive5xxErrors: 5, successRate: {threshold: 90}}
rateLimit: {requests: 10, per: 1m}
faultInjection: {abort: {percentage: 50, grpcStatus: 14}}
"#,
        ),
    );
    let parts = p.parts.unwrap();
    let o = parts.outlier_detection.unwrap();
    assert_eq!(o.interval, tp::DEFAULT_INTERVAL);
    assert_eq!(o.base_ejection_time, tp::DEFAULT_BASE_EJECTION);
    assert_eq!(o.max_ejection_percent, 10);
    let sr = o.success_rate.unwrap();
    assert_eq!((sr.minimum_hosts, sr.request_volume), (5, 100));
    let r = parts.rate_limit.unwrap();
    assert_eq!(
        (r.burst, r.key),
        (10, tp::RateKey::Service),
        "burst: requests"
    );
    assert_eq!(
        parts.fault_injection.unwrap().abort.unwrap().with,
        tp::AbortWith::Grpc(14)
    );
}

/// Each malformed spec is invalid, and says where.
#[test]
fn malformed_policies_are_invalid_naming_the_field() {
    let target = json!([{"group": "", "kind": "Service", "name": "web"}]);
    let with = |k: &str, v: Value| {
        let mut s = json!({"targetRefs": target});
        s[k] = v;
        s
    };
    let cases = [
        (json!({}), "spec.targetRefs: is required"),
        (json!({"targetRefs": "web"}), "spec.targetRefs: not a list"),
        (json!({"targetRefs": []}), "spec.targetRefs: 0 targets"),
        (
            with(
                "rateLimit",
                json!({"requests": 10, "per": "1s", "brust": 5}),
            ),
            "spec.rateLimit.brust: unknown field `brust`",
        ),
        (with("rateLimits", json!({})), "unknown field `rateLimits`"),
        (
            with("rateLimit", json!({"requests": 10, "per": "soon"})),
            "spec.rateLimit.per",
        ),
        (
            with("rateLimit", json!({"requests": 0, "per": "1s"})),
            "spec.rateLimit.requests",
        ),
        (
            with("rateLimit", json!({"requests": 10, "per": "2h"})),
            "spec.rateLimit.per",
        ),
        (
            with(
                "rateLimit",
                json!({"requests": 10, "per": "1s", "key": "cookie"}),
            ),
            "spec.rateLimit.key",
        ),
        (
            with(
                "rateLimit",
                json!({"requests": 10, "per": "1s", "key": "header:a b"}),
            ),
            "spec.rateLimit.key",
        ),
        (
            with("rateLimit", json!({"requests": -1, "per": "1s"})),
            "spec.rateLimit.requests",
        ),
        (
            with("outlierDetection", json!({"interval": "1s"})),
            "spec.outlierDetection: sets none",
        ),
        (
            with(
                "outlierDetection",
                json!({"consecutive5xxErrors": 5, "maxEjectionPercent": 120}),
            ),
            "spec.outlierDetection.maxEjectionPercent",
        ),
        (
            with(
                "outlierDetection",
                json!({"consecutive5xxErrors": 5, "interval": "0s"}),
            ),
            "spec.outlierDetection.interval",
        ),
        (
            with(
                "outlierDetection",
                json!({"consecutive5xxErrors": 5, "baseEjectionTime": "2h"}),
            ),
            "spec.outlierDetection.baseEjectionTime",
        ),
        (
            with("outlierDetection", json!({"successRate": {"threshold": 0}})),
            "spec.outlierDetection.successRate.threshold",
        ),
        (
            with("outlierDetection", json!({"successRate": {}})),
            "spec.outlierDetection.successRate: missing field `threshold`",
        ),
        (
            with("connectionPool", json!({})),
            "spec.connectionPool: sets no limit",
        ),
        (
            with("connectionPool", json!({"maxConnections": 0})),
            "spec.connectionPool.maxConnections",
        ),
        (
            with("faultInjection", json!({})),
            "spec.faultInjection: sets neither",
        ),
        (
            with(
                "faultInjection",
                json!({"delay": {"percentage": 101, "fixedDelay": "1s"}}),
            ),
            "spec.faultInjection.delay.percentage",
        ),
        (
            with(
                "faultInjection",
                json!({"delay": {"percentage": 10, "fixedDelay": "10m"}}),
            ),
            "spec.faultInjection.delay.fixedDelay",
        ),
        (
            with("faultInjection", json!({"abort": {"percentage": 10}})),
            "spec.faultInjection.abort: sets neither",
        ),
        (
            with(
                "faultInjection",
                json!({"abort": {"percentage": 10, "httpStatus": 200}}),
            ),
            "spec.faultInjection.abort.httpStatus",
        ),
        (
            with(
                "faultInjection",
                json!({"abort": {"percentage": 10, "grpcStatus": 17}}),
            ),
            "spec.faultInjection.abort.grpcStatus",
        ),
        (
            with(
                "faultInjection",
                json!({"abort": {"percentage": 10, "httpStatus": 503}, "headers": [{"name": "a b"}]}),
            ),
            "spec.faultInjection.headers[0].name",
        ),
        (
            with("timeouts", json!({"connect": "0s"})),
            "spec.timeouts.connect",
        ),
        (with("timeouts", json!({})), "spec.timeouts: sets none"),
        (
            with("timeouts", json!({"connect": "10m"})),
            "spec.timeouts.connect",
        ),
        (
            with("maxRequestBodyBytes", json!(0)),
            "spec.maxRequestBodyBytes",
        ),
        (
            with("maxRequestBodyBytes", json!("1Mi")),
            "spec.maxRequestBodyBytes",
        ),
    ];
    for (spec, want) in cases {
        let p = compile("shop", "bad", 0, 1, &spec);
        let why = p.parts.as_ref().err().cloned().unwrap_or_default();
        assert!(why.contains(want), "{spec}: {why:?} lacks {want:?}");
    }
}

fn svc(name: &str, ports: &[(&str, u16)]) -> Object {
    Object::Service(Service {
        name: name.into(),
        namespace: "shop".into(),
        vips: vec!["10.96.0.10".parse().unwrap()],
        ports: ports
            .iter()
            .map(|(n, p)| ServicePort {
                name: n.to_string(),
                port: *p,
                target: TargetPort::Number(8080),
                app_protocol: None,
            })
            .collect(),
        selector: None,
        labels: Default::default(),
    })
}

fn index_with(policies: Vec<model::TrafficPolicy>) -> Index {
    let mut ix = Index::new();
    ix.upsert(svc("web", &[("http", 80), ("grpc", 9090)]));
    for p in policies {
        ix.upsert(Object::TrafficPolicy(p));
    }
    ix
}

fn conditions(r: &Resolved) -> Vec<(String, &'static str)> {
    r.ancestors
        .iter()
        .map(|(a, c)| {
            let target = format!(
                "{}{}",
                a["name"].as_str().unwrap_or_default(),
                a.get("sectionName")
                    .and_then(Value::as_str)
                    .map(|s| format!(":{s}"))
                    .unwrap_or_default()
            );
            (target, c[0].reason)
        })
        .collect()
}

fn spec(targets: Value, parts: Value) -> Value {
    let mut s = parts;
    s["targetRefs"] = targets;
    s
}

fn web(section: Option<&str>) -> Value {
    let mut t = json!({"group": "", "kind": "Service", "name": "web"});
    if let Some(s) = section {
        t["sectionName"] = json!(s);
    }
    t
}

#[test]
fn targets_must_exist_and_be_services_of_the_namespace() {
    let ix = index_with(vec![policy(
        "p",
        1,
        spec(
            json!([
                web(None),
                web(Some("grpc")),
                web(Some("admin")),
                {"group": "", "kind": "Service", "name": "gone"},
                {"group": "apps", "kind": "Deployment", "name": "web"},
                {"group": "", "kind": "Service", "name": 7},
                web(None),
            ]),
            json!({"timeouts": {"request": "5s"}}),
        ),
    )]);
    let r = resolve_namespace(&ix, "shop").remove("p").unwrap();
    assert_eq!(
        conditions(&r),
        [
            ("web".into(), reason::ACCEPTED),
            ("web:grpc".into(), reason::ACCEPTED),
            ("web:admin".into(), reason::TARGET_NOT_FOUND),
            ("gone".into(), reason::TARGET_NOT_FOUND),
            ("web".into(), reason::INVALID),
            ("".into(), reason::INVALID),
        ],
        "the duplicate counts once"
    );
    assert!(
        r.ancestors[4].1[0].message.contains("spec.targetRefs[4]"),
        "{:?}",
        r.ancestors[4]
    );
    assert!(
        r.ancestors[5].1[0]
            .message
            .contains("spec.targetRefs[5].name"),
        "{:?}",
        r.ancestors[5]
    );
    assert_eq!(
        r.targets,
        [
            tp::Target {
                service: "web".into(),
                port: None
            },
            tp::Target {
                service: "web".into(),
                port: Some(9090)
            },
        ]
    );
    // Sent with those targets only.
    let p = translate(&ix, ix.traffic_policy("shop", "p").unwrap()).unwrap();
    assert_eq!(p.targets.len(), 2);
    assert_eq!(p.timeouts.unwrap().request_ms, 5000);
}

#[test]
fn the_older_policy_wins_a_part_both_set_for_a_target() {
    let rate = json!({"rateLimit": {"requests": 1, "per": "1s"}});
    let both = json!({"rateLimit": {"requests": 2, "per": "1s"}, "timeouts": {"request": "1s"}});
    let timeouts = json!({"timeouts": {"request": "2s"}});
    let body = json!({"maxRequestBodyBytes": 10});
    let ix = index_with(vec![
        policy("older", 10, spec(json!([web(None)]), rate.clone())),
        policy("newer", 20, spec(json!([web(None)]), both)),
        // Its timeouts do not conflict: the newer one that also set them
        // does not apply.
        policy("later", 30, spec(json!([web(None)]), timeouts.clone())),
        // A port's policy does not conflict with the Service's.
        policy("port", 40, spec(json!([web(Some("http"))]), rate)),
        // Disjoint parts: both apply.
        policy("body", 50, spec(json!([web(None)]), body)),
        // Same age, the name decides: "a-same" wins over "b-same".
        policy(
            "b-same",
            60,
            spec(json!([web(Some("grpc"))]), timeouts.clone()),
        ),
        policy("a-same", 60, spec(json!([web(Some("grpc"))]), timeouts)),
    ]);
    let all = resolve_namespace(&ix, "shop");
    let reason_of = |n: &str| all[n].ancestors[0].1[0].reason;
    assert_eq!(reason_of("older"), reason::ACCEPTED);
    assert_eq!(reason_of("newer"), reason::CONFLICTED);
    let message = &all["newer"].ancestors[0].1[0].message;
    assert!(
        message.contains("spec.rateLimit (set by the older shop/older)"),
        "{message}"
    );
    assert!(!message.contains("timeouts"), "{message}");
    for n in ["later", "port", "body", "a-same"] {
        assert_eq!(reason_of(n), reason::ACCEPTED, "{n}");
    }
    assert_eq!(reason_of("b-same"), reason::CONFLICTED);
    // The conflicted one is not sent; the others are.
    assert!(translate(&ix, ix.traffic_policy("shop", "newer").unwrap()).is_none());
    assert!(translate(&ix, ix.traffic_policy("shop", "later").unwrap()).is_some());
    // What the waypoint makes of them for web:80: older's rate limit over
    // the port's? No: the port's policy is more specific.
    let sent: Vec<tp::Policy> = ix
        .traffic_policies()
        .filter_map(|p| translate(&ix, p))
        .map(|p| tp::Policy::from_proto(&p).unwrap())
        .collect();
    let e = tp::effective(&sent, "shop", "web", 80).unwrap();
    assert_eq!(e.rate_limit.unwrap().policy, "shop/port");
    assert_eq!(e.timeouts.unwrap().policy, "shop/later");
    assert_eq!(e.max_request_body_bytes.unwrap().policy, "shop/body");
}

#[test]
fn an_invalid_policy_is_reported_for_its_targets_and_not_sent() {
    let ix = index_with(vec![policy(
        "bad",
        1,
        spec(json!([web(None)]), json!({"rateLimit": {"requests": 1}})),
    )]);
    let r = resolve_namespace(&ix, "shop").remove("bad").unwrap();
    assert_eq!(conditions(&r), [("web".into(), reason::INVALID)]);
    assert!(r.ancestors[0].1[0].message.contains("missing field `per`"));
    assert!(translate(&ix, ix.traffic_policy("shop", "bad").unwrap()).is_none());
    // An unserved version is invalid, and stays so when handed on.
    let failed = compile_failed(
        "shop",
        "v2",
        0,
        &json!({"targetRefs": [web(None)]}),
        "apiVersion \"quicmesh.io/v2\" is not served".into(),
    );
    assert_eq!(failed.targets.len(), 1);
    assert!(compile("shop", "v2", 0, 1, &failed.spec).parts.is_err());
}

#[test]
fn services_and_policies_touch_the_policies_of_their_namespace() {
    let mut ix = index_with(vec![policy(
        "p",
        1,
        spec(
            json!([{"group": "", "kind": "Service", "name": "api"}]),
            json!({"maxRequestBodyBytes": 5}),
        ),
    )]);
    assert!(
        translate(&ix, ix.traffic_policy("shop", "p").unwrap()).is_none(),
        "api does not exist"
    );
    let d = ix.upsert(svc("api", &[("http", 80)]));
    assert!(d.contains("trafficpolicy/shop/p"), "{d:?}");
    assert!(translate(&ix, ix.traffic_policy("shop", "p").unwrap()).is_some());
    let d = ix.upsert(Object::TrafficPolicy(policy(
        "q",
        0,
        spec(
            json!([{"group": "", "kind": "Service", "name": "api"}]),
            json!({"maxRequestBodyBytes": 6}),
        ),
    )));
    assert!(
        d.contains("trafficpolicy/shop/p") && d.contains("trafficpolicy/shop/q"),
        "{d:?}"
    );
    assert!(
        translate(&ix, ix.traffic_policy("shop", "p").unwrap()).is_none(),
        "q is older: p conflicts"
    );
    let all = crate::translate::all(&ix, &crate::translate::Mesh::new("td"));
    assert!(all.contains_key("trafficpolicy/shop/q") && !all.contains_key("trafficpolicy/shop/p"));
}

#[test]
fn the_crd_names_the_group_kind_and_status() {
    let y = crd_yaml();
    assert!(y.contains("name: trafficpolicies.quicmesh.io"), "{y}");
    assert!(y.contains("status: {}"), "the status subresource: {y}");
    assert!(y.contains("consecutive5xxErrors"), "{y}");
    // Every object level of the spec keeps unknown fields, so typos reach
    // compile() (11 spec types).
    assert_eq!(
        y.matches("x-kubernetes-preserve-unknown-fields: true")
            .count(),
        11,
        "{y}"
    );
}
