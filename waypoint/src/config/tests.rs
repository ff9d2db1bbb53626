use quicmesh_proto::config::{Endpoint as PEndpoint, Service, ServicePort, Workload};

use super::*;
use crate::proxy::Directory;

fn res(name: &str, kind: resource::Kind) -> (String, Resource) {
    (
        name.to_string(),
        Resource {
            name: name.to_string(),
            version: 0,
            kind: Some(kind),
        },
    )
}

fn resources() -> BTreeMap<String, Resource> {
    let route = HttpRoute {
        namespace: "shop".into(),
        name: "r".into(),
        grpc: false,
        created: 0,
        rules: vec![],
    };
    let on_80 = RouteParent {
        namespace: "shop".into(),
        name: "web".into(),
        port: Some(80),
    };
    [
        res(
            "workload/w1",
            resource::Kind::Workload(Workload {
                uid: "w1".into(),
                identity: "spiffe://cluster.local/ns/shop/sa/web".into(),
                ..Default::default()
            }),
        ),
        res(
            "service/shop/web",
            resource::Kind::Service(Service {
                name: "web".into(),
                namespace: "shop".into(),
                vips: vec!["10.96.0.10".into()],
                ports: vec![
                    ServicePort {
                        name: "http".into(),
                        port: 80,
                        target_port: 0,
                        app_protocol: "http".into(),
                    },
                    ServicePort {
                        name: "admin".into(),
                        port: 9000,
                        target_port: 9001,
                        app_protocol: String::new(),
                    },
                ],
                endpoints: vec![
                    PEndpoint {
                        workload_uid: "w1".into(),
                        ip: "10.244.1.2".into(),
                        ready: true,
                        ports: [("http".to_string(), 8080)].into(),
                    },
                    PEndpoint {
                        workload_uid: "w1".into(),
                        ip: "10.244.1.3".into(),
                        ready: false,
                        ports: [("http".to_string(), 8080)].into(),
                    },
                    PEndpoint {
                        workload_uid: "unknown".into(),
                        ip: "10.244.1.4".into(),
                        ready: true,
                        ports: Default::default(),
                    },
                ],
                waypoint: None,
            }),
        ),
        res(
            "httproute/shop/r",
            resource::Kind::HttpRoute(wire::to_proto(&route, &[on_80])),
        ),
    ]
    .into_iter()
    .collect()
}

#[test]
fn services_become_parents_with_their_routes_and_ready_endpoints() {
    let t = tables(&resources(), "cluster.local", None).unwrap();
    let http = t.parents[&"10.96.0.10:80".parse().unwrap()].clone();
    assert_eq!(http.host, "web.shop.svc.cluster.local");
    assert_eq!(
        http.routes.routes().len(),
        1,
        "the route attached to port 80"
    );
    let admin = t.parents[&"10.96.0.10:9000".parse().unwrap()].clone();
    assert!(admin.routes.is_empty(), "not to port 9000");
    let eps = t.endpoints(&http.service);
    // Not the unready one, not the one whose workload is unknown.
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0].addr, "10.244.1.2:8080".parse().unwrap());
    assert_eq!(
        eps[0].identity.as_str(),
        "spiffe://cluster.local/ns/shop/sa/web"
    );
    // A numbered target port applies where the endpoint names none.
    let admin_eps = t.endpoints(&admin.service);
    assert_eq!(admin_eps[0].addr, "10.244.1.2:9001".parse().unwrap());
    // The port's protocol decides the upstream HTTP version.
    assert_eq!(eps[0].protocol, Protocol::Http1);
    assert_eq!(admin_eps[0].protocol, Protocol::Auto);
    assert_eq!(
        Protocol::of("HTTP"),
        Protocol::Http1,
        "case does not matter"
    );
    assert_eq!(Protocol::of("kubernetes.io/H2C"), Protocol::Http2);
    assert_eq!(Protocol::of("grpc-web"), Protocol::Http1);
    assert_eq!(Protocol::of("mysql"), Protocol::Tcp);
}

#[test]
fn consumer_routes_are_kept_apart_by_their_namespace() {
    let mut rs = resources();
    let consumer = HttpRoute {
        namespace: "front".into(),
        name: "c".into(),
        grpc: false,
        created: 0,
        rules: vec![],
    };
    let on_web = RouteParent {
        namespace: "shop".into(),
        name: "web".into(),
        port: None,
    };
    rs.extend([res(
        "httproute/front/c",
        resource::Kind::HttpRoute(wire::to_proto(&consumer, &[on_web])),
    )]);
    let t = tables(&rs, "cluster.local", None).unwrap();
    let http = t.parents[&"10.96.0.10:80".parse().unwrap()].clone();
    let names = |t: &RouteTable| {
        t.routes()
            .iter()
            .map(|r| format!("{}/{}", r.namespace, r.name))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&http.routes), ["shop/r"]);
    // Clients of front get front's routes only; anyone else the producer's.
    assert_eq!(names(http.routes_for(Some("front"))), ["front/c"]);
    assert_eq!(names(http.routes_for(Some("shop"))), ["shop/r"]);
    assert_eq!(names(http.routes_for(None)), ["shop/r"]);
    // Port 9000 (every port of web): the consumer route alone.
    let admin = t.parents[&"10.96.0.10:9000".parse().unwrap()].clone();
    assert!(admin.routes.is_empty());
    assert_eq!(names(admin.routes_for(Some("front"))), ["front/c"]);
}

#[test]
fn a_waypoint_serves_only_the_services_sent_to_it() {
    let mine = Scope {
        namespace: "shop".into(),
        name: "waypoint".into(),
    };
    let mut rs = resources();
    let t = tables(&rs, "cluster.local", Some(&mine)).unwrap();
    assert!(t.parents.is_empty(), "web does not use this waypoint");
    assert_eq!(t.endpoints.len(), 2, "its endpoints are known all the same");
    let Some(resource::Kind::Service(svc)) = &mut rs.get_mut("service/shop/web").unwrap().kind
    else {
        panic!()
    };
    svc.waypoint = Some(quicmesh_proto::config::Waypoint {
        namespace: "shop".into(),
        name: "waypoint".into(),
        ..Default::default()
    });
    let t = tables(&rs, "cluster.local", Some(&mine)).unwrap();
    assert_eq!(t.parents.len(), 2, "both ports of web");
    let other = Scope {
        namespace: "shop".into(),
        name: "edge".into(),
    };
    assert!(tables(&rs, "cluster.local", Some(&other))
        .unwrap()
        .parents
        .is_empty());
}

#[test]
fn a_waypoint_serves_the_addresses_of_the_workloads_that_name_it() {
    let mine = Scope {
        namespace: "shop".into(),
        name: "waypoint".into(),
    };
    let named = |ns: &str, name: &str| {
        Some(quicmesh_proto::config::Waypoint {
            namespace: ns.into(),
            name: name.into(),
            ..Default::default()
        })
    };
    let workload = |uid: &str, ns: &str, ip: &str, ready: bool, waypoint| {
        res(
            &format!("workload/{uid}"),
            resource::Kind::Workload(Workload {
                uid: uid.into(),
                namespace: ns.into(),
                ips: vec![ip.into()],
                ready,
                identity: format!("spiffe://cluster.local/ns/{ns}/sa/{uid}"),
                waypoint,
                ..Default::default()
            }),
        )
    };
    let mut rs = resources();
    rs.extend([
        // w1 is web's endpoint at 10.244.1.2, and names this waypoint.
        workload("w1", "shop", "10.244.1.2", true, named("shop", "waypoint")),
        workload("w2", "shop", "10.244.1.5", true, named("shop", "edge")),
        workload("w3", "shop", "10.244.1.6", true, None),
        workload("w4", "front", "10.244.1.7", true, named("shop", "waypoint")),
        // A finished pod whose IP w1 reuses: w1 (ready) wins.
        workload("w0", "shop", "10.244.1.2", false, named("shop", "waypoint")),
    ]);
    let live = Live::new("cluster.local", Some(mine.clone()));
    live.apply(1, &rs).unwrap();
    let t = live.tables();
    assert_eq!(t.workloads.0.len(), 1, "w1's address only");
    // The Directory, through the live config and the tables alike.
    for d in [&*live.directory() as &dyn Directory, &*t as &dyn Directory] {
        let http = d.parent("10.244.1.2:8080".parse().unwrap()).unwrap();
        assert!(http.routes.is_empty());
        assert_eq!(http.protocol, Protocol::Http1, "web's port http is there");
        let eps = d.endpoints(&http.service);
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].addr, "10.244.1.2:8080".parse().unwrap());
        assert_eq!(&*eps[0].workload, "w1");
        assert_eq!(
            eps[0].identity.as_str(),
            "spiffe://cluster.local/ns/shop/sa/w1"
        );
        assert!(d.access("w1").is_some(), "its policies are decided");
        // A port no Service declares: detected; admin's (9001, no
        // protocol) too.
        for port in [7777, 9001] {
            let p = d.parent(SocketAddr::new("10.244.1.2".parse().unwrap(), port));
            assert_eq!(p.unwrap().protocol, Protocol::Auto, "{port}");
        }
        // Workloads naming another waypoint, none, or of another
        // namespace: not served.
        for other in ["10.244.1.5:80", "10.244.1.6:80", "10.244.1.7:80"] {
            assert!(d.parent(other.parse().unwrap()).is_none(), "{other}");
        }
        // The Service is not served: web does not use this waypoint.
        assert!(d.parent("10.96.0.10:80".parse().unwrap()).is_none());
    }
    assert_eq!(
        live.dump()["workloads"]["10.244.1.2"]["ports"]["8080"],
        "Http1"
    );
    // An address that is not one is refused, for a served workload.
    let mut bad = rs.clone();
    bad.extend([workload(
        "w5",
        "shop",
        "pod-5",
        true,
        named("shop", "waypoint"),
    )]);
    let e = live.apply(2, &bad).unwrap_err();
    assert!(e.contains("workload/w5") && e.contains("pod-5"), "{e}");
    assert_eq!(live.version(), 1, "the previous view stays");
    // A declared protocol wins over an undeclared one for the port.
    let Some(resource::Kind::Service(svc)) = &mut rs.get_mut("service/shop/web").unwrap().kind
    else {
        panic!()
    };
    svc.endpoints[0].ports.clear();
    svc.ports[0].target_port = 8080;
    svc.ports[0].app_protocol = String::new();
    svc.ports[1].target_port = 8080;
    svc.ports[1].app_protocol = "grpc".into();
    let t = tables(&rs, "cluster.local", Some(&mine)).unwrap();
    assert_eq!(
        t.parent("10.244.1.2:8080".parse().unwrap())
            .unwrap()
            .protocol,
        Protocol::Http2
    );
}

#[test]
fn a_bad_update_is_refused_and_the_previous_view_stays() {
    let live = Live::new("cluster.local", None);
    live.apply(3, &resources()).unwrap();
    live.update_result("ack");
    let mut bad = resources();
    let Some(resource::Kind::HttpRoute(h)) = &mut bad.get_mut("httproute/shop/r").unwrap().kind
    else {
        panic!()
    };
    h.rules.push(Default::default());
    h.rules[0].matches.push(quicmesh_proto::config::RouteMatch {
        path_type: 3,
        path: "(".into(),
        ..Default::default()
    });
    let e = live.apply(4, &bad).unwrap_err();
    assert!(e.starts_with("httproute/shop/r: rules[0]"), "{e}");
    assert_eq!(live.version(), 3);
    assert!(live
        .directory()
        .parent("10.96.0.10:80".parse().unwrap())
        .is_some());
}

/// TrafficPolicies become each Service port's effective settings: the
/// port-level policy's parts over the whole-Service one's; one the
/// waypoint cannot read refuses the update.
#[test]
fn traffic_policies_give_each_service_port_its_settings() {
    use quicmesh_core::traffic::{Parts, Policy, Target, Timeouts};
    use std::time::Duration;
    let policy = |name: &str, port: Option<u16>, request_ms: u64, body: Option<u64>| Policy {
        namespace: "shop".into(),
        name: name.into(),
        created: 0,
        targets: vec![Target {
            service: "web".into(),
            port,
        }],
        parts: Parts {
            timeouts: Some(Timeouts {
                request: Some(Duration::from_millis(request_ms)),
                ..Timeouts::default()
            }),
            max_request_body_bytes: body,
            ..Parts::default()
        },
    };
    let mut rs = resources();
    for p in [
        policy("whole", None, 1000, Some(10)),
        policy("admin", Some(9000), 2000, None),
    ] {
        rs.extend([res(
            &format!("trafficpolicy/shop/{}", p.name),
            resource::Kind::TrafficPolicy(p.to_proto()),
        )]);
    }
    let live = Live::new("cluster.local", None);
    live.apply(1, &rs).unwrap();
    let d = live.directory();
    let web = |port| BackendRef {
        namespace: "shop".into(),
        name: "web".into(),
        port,
    };
    let http = d.traffic(&web(80)).expect("settings for port 80");
    assert_eq!(http.timeouts.as_ref().unwrap().policy, "shop/whole");
    let admin = d.traffic(&web(9000)).expect("settings for port 9000");
    let t = admin.timeouts.as_ref().unwrap();
    assert_eq!(
        (t.policy.as_str(), t.value.request),
        ("shop/admin", Some(Duration::from_secs(2)))
    );
    assert_eq!(
        admin.max_request_body_bytes.as_ref().unwrap().policy,
        "shop/whole",
        "a part the port's policy does not set comes from the Service's"
    );
    let dump = live.dump();
    assert_eq!(
        dump["trafficPolicies"]["shop/web:9000"]["timeouts"]["value"]["request"],
        "2000ms"
    );
    // A policy out of its bounds (a controller of another version).
    let mut bad = rs.clone();
    let Some(resource::Kind::TrafficPolicy(p)) =
        &mut bad.get_mut("trafficpolicy/shop/whole").unwrap().kind
    else {
        panic!()
    };
    p.max_request_body_bytes = u64::MAX;
    let e = live.apply(2, &bad).unwrap_err();
    assert!(
        e.starts_with("trafficpolicy/shop/whole: maxRequestBodyBytes"),
        "{e}"
    );
    assert_eq!(live.version(), 1, "the previous view stays");
}
