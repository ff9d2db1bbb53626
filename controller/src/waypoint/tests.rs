use super::*;
use crate::model::*;

fn labels(kv: &[(&str, &str)]) -> Labels {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn svc(ns: &str, name: &str, lbl: &[(&str, &str)]) -> Object {
    Object::Service(Service {
        name: name.into(),
        namespace: ns.into(),
        vips: vec![],
        ports: vec![],
        selector: None,
        labels: labels(lbl),
    })
}

fn gateway(ns: &str, name: &str, class: &str) -> Object {
    labeled_gateway(ns, name, class, &[])
}

fn labeled_gateway(ns: &str, name: &str, class: &str, lbl: &[(&str, &str)]) -> Object {
    Object::Gateway(Gateway {
        name: name.into(),
        namespace: ns.into(),
        class: class.into(),
        labels: labels(lbl),
        uid: String::new(),
        generation: 0,
    })
}

fn index() -> Index {
    let mut ix = Index::new();
    ix.upsert(Object::Namespace(Namespace {
        name: "shop".into(),
        labels: labels(&[(USE_WAYPOINT_LABEL, "waypoint")]),
    }));
    ix.upsert(Object::Namespace(Namespace {
        name: "plain".into(),
        labels: Labels::new(),
    }));
    ix.upsert(svc("shop", "web", &[]));
    ix.upsert(svc("shop", "direct", &[(USE_WAYPOINT_LABEL, NO_WAYPOINT)]));
    ix.upsert(svc("shop", "special", &[(USE_WAYPOINT_LABEL, "edge")]));
    ix.upsert(svc("plain", "db", &[]));
    ix.upsert(svc("plain", "other", &[(USE_WAYPOINT_LABEL, "foreign")]));
    ix.upsert(gateway("shop", "edge", WAYPOINT_CLASS));
    ix.upsert(gateway("plain", "foreign", "istio"));
    ix
}

fn waypoint_of(ix: &Index, ns: &str, name: &str) -> Option<(String, bool)> {
    for_service(ix, ix.service(ns, name).unwrap()).map(|w| (w.name, w.implied))
}

#[test]
fn labels_choose_the_waypoint_and_services_override_their_namespace() {
    let ix = index();
    assert_eq!(
        waypoint_of(&ix, "shop", "web"),
        Some(("waypoint".into(), true)),
        "the namespace label, implying a Gateway that does not exist"
    );
    assert_eq!(waypoint_of(&ix, "shop", "direct"), None, "none opts out");
    assert_eq!(
        waypoint_of(&ix, "shop", "special"),
        Some(("edge".into(), false)),
        "the Service's own label, naming a declared Gateway"
    );
    assert_eq!(
        waypoint_of(&ix, "plain", "db"),
        None,
        "no label, no waypoint"
    );
    assert_eq!(
        waypoint_of(&ix, "plain", "other"),
        None,
        "a Gateway of another class is not a waypoint"
    );
    let all: Vec<_> = all(&ix)
        .into_iter()
        .map(|w| format!("{}/{}:{}", w.namespace, w.name, w.implied))
        .collect();
    assert_eq!(all, ["shop/edge:false", "shop/waypoint:true"]);
}

#[test]
fn programmed_once_a_pod_of_its_own_is_ready() {
    let mut ix = index();
    let w = find(&ix, "shop", "waypoint").unwrap();
    let p = provision(&w);
    assert_eq!(p.service_account, "waypoint");
    assert_eq!(
        p.pod_labels.get(DATAPLANE_MODE_LABEL).map(String::as_str),
        Some(DATAPLANE_MODE_NONE),
        "waypoints are never captured"
    );
    let cond = |ix: &Index| {
        let c = conditions(ix, &w);
        (c[0].status, c[1].status, c[1].reason)
    };
    assert_eq!(cond(&ix), (true, false, "Pending"));
    let pod = |name: &str, sa: &str, ready: bool| {
        Object::Pod(Pod {
            uid: format!("u-{name}"),
            name: name.into(),
            namespace: "shop".into(),
            labels: p.pod_labels.clone(),
            annotations: Default::default(),
            service_account: sa.into(),
            node: Some("node1".into()),
            ips: vec!["10.244.1.9".parse().unwrap()],
            ready,
            containers: vec![],
        })
    };
    // The label without the service account is not the waypoint's pod.
    ix.upsert(pod("impostor", "default", true));
    assert_eq!(cond(&ix), (true, false, "Pending"));
    ix.upsert(pod("waypoint-0", "waypoint", false));
    assert_eq!(cond(&ix), (true, false, "Pending"));
    ix.upsert(pod("waypoint-0", "waypoint", true));
    assert_eq!(cond(&ix), (true, true, "Programmed"));
    assert_eq!(
        w.identity("cluster.local"),
        "spiffe://cluster.local/ns/shop/sa/waypoint"
    );
    // An app pod running as the waypoint's service account (without its
    // label): the identity is not the waypoint's alone; the waypoint is
    // not used, and its Gateway says why.
    let mut app = pod("app-0", "waypoint", true);
    if let Object::Pod(p) = &mut app {
        p.labels = Labels::new();
    }
    ix.upsert(app);
    assert!(!usable(&ix, &w));
    assert_eq!(ready_pods(&ix, &w).count(), 0, "no traffic goes to it");
    assert_eq!(cond(&ix), (false, false, "Invalid"));
    assert_eq!(conditions(&ix, &w)[0].reason, "ServiceAccountInUse");
    ix.delete(&Key {
        kind: Kind::Pod,
        namespace: "shop".into(),
        name: "app-0".into(),
    });
    assert!(usable(&ix, &w));
    assert_eq!(cond(&ix), (true, true, "Programmed"));
}

#[test]
fn waypoint_for_values_parse_and_unknown_ones_say_so() {
    assert_eq!(WaypointFor::parse(None), Ok(WaypointFor::Service));
    for (v, want) in [
        ("service", WaypointFor::Service),
        ("workload", WaypointFor::Workload),
        ("all", WaypointFor::All),
        ("none", WaypointFor::None),
    ] {
        assert_eq!(WaypointFor::parse(Some(v)), Ok(want), "{v}");
    }
    let (services, workloads): (Vec<bool>, Vec<bool>) = WaypointFor::VALUES
        .iter()
        .map(|v| {
            let f = WaypointFor::parse(Some(v)).unwrap();
            (f.services(), f.workloads())
        })
        .unzip();
    assert_eq!(services, [true, false, true, false]);
    assert_eq!(workloads, [false, true, true, false]);
    // Values are exact, as Istio's are: no case folding, no blanks.
    for bad in ["Workload", "workloads", " all", "", "service,workload"] {
        let e = WaypointFor::parse(Some(bad)).unwrap_err();
        assert!(
            e.contains(WAYPOINT_FOR_LABEL) && e.contains("taken as"),
            "{e}"
        );
    }
    let long = "x".repeat(1000);
    assert!(WaypointFor::parse(Some(&long)).unwrap_err().len() < 300);
}

/// shop: ambient, its namespace label naming `waypoint`, a Gateway
/// labeled `waypoint-for: <value>`; pods `web-0` (no label), `opted-out`
/// (`none`), `special` (naming `edge`, a Gateway for `all`), `to-svc`
/// (naming `svc-only`, a Gateway for Services).
fn workload_index(waypoint_for: Option<&str>) -> Index {
    let mut ix = Index::new();
    ix.upsert(Object::Namespace(Namespace {
        name: "shop".into(),
        labels: labels(&[
            (DATAPLANE_MODE_LABEL, DATAPLANE_MODE_AMBIENT),
            (USE_WAYPOINT_LABEL, "waypoint"),
        ]),
    }));
    let wp_labels: Vec<(&str, &str)> = waypoint_for
        .map(|v| vec![(WAYPOINT_FOR_LABEL, v)])
        .unwrap_or_default();
    ix.upsert(labeled_gateway(
        "shop",
        "waypoint",
        WAYPOINT_CLASS,
        &wp_labels,
    ));
    ix.upsert(labeled_gateway(
        "shop",
        "edge",
        WAYPOINT_CLASS,
        &[(WAYPOINT_FOR_LABEL, "all")],
    ));
    ix.upsert(gateway("shop", "svc-only", WAYPOINT_CLASS));
    ix.upsert(svc("shop", "web", &[]));
    for (name, lbl) in [
        ("web-0", vec![]),
        ("opted-out", vec![(USE_WAYPOINT_LABEL, NO_WAYPOINT)]),
        ("special", vec![(USE_WAYPOINT_LABEL, "edge")]),
        ("to-svc", vec![(USE_WAYPOINT_LABEL, "svc-only")]),
    ] {
        ix.upsert(app_pod("shop", name, &lbl));
    }
    ix
}

fn app_pod(ns: &str, name: &str, lbl: &[(&str, &str)]) -> Object {
    Object::Pod(Pod {
        uid: format!("u-{name}"),
        name: name.into(),
        namespace: ns.into(),
        labels: labels(lbl),
        annotations: Default::default(),
        service_account: "web".into(),
        node: Some("node1".into()),
        ips: vec!["10.244.1.5".parse().unwrap()],
        ready: true,
        containers: vec![],
    })
}

fn workload_waypoint(ix: &Index, ns: &str, pod: &str) -> Option<String> {
    for_workload(ix, ix.pod(ns, pod).unwrap()).map(|w| w.name)
}

#[test]
fn workloads_use_a_waypoint_for_workloads_by_their_own_label_or_their_namespaces() {
    for value in ["workload", "all"] {
        let ix = workload_index(Some(value));
        assert_eq!(
            workload_waypoint(&ix, "shop", "web-0").as_deref(),
            Some("waypoint"),
            "{value}: the namespace's label"
        );
        assert_eq!(
            workload_waypoint(&ix, "shop", "opted-out"),
            None,
            "{value}: none on the pod opts out"
        );
        assert_eq!(
            workload_waypoint(&ix, "shop", "special").as_deref(),
            Some("edge"),
            "{value}: the pod's own label wins"
        );
        assert_eq!(
            workload_waypoint(&ix, "shop", "to-svc"),
            None,
            "{value}: a waypoint for Services takes no pod-addressed traffic"
        );
    }
    // The default, `service`, `none` and an unknown value: no
    // pod-addressed traffic goes through `waypoint`.
    for value in [None, Some("service"), Some("none"), Some("pods")] {
        let ix = workload_index(value);
        assert_eq!(workload_waypoint(&ix, "shop", "web-0"), None, "{value:?}");
        // The pod naming `edge` (all) still does.
        assert_eq!(
            workload_waypoint(&ix, "shop", "special").as_deref(),
            Some("edge")
        );
    }
}

#[test]
fn waypoint_pods_pods_outside_the_mesh_and_implied_waypoints_take_no_workload_traffic() {
    let mut ix = workload_index(Some("all"));
    // The waypoint's own pod (not captured; and a waypoint even if it
    // were).
    let w = find(&ix, "shop", "waypoint").unwrap();
    assert_eq!(w.waypoint_for, WaypointFor::All);
    let mut own = provision(&w).pod_labels;
    ix.upsert(Object::Pod(Pod {
        uid: "u-wp".into(),
        name: "waypoint-0".into(),
        namespace: "shop".into(),
        labels: own.clone(),
        annotations: Default::default(),
        service_account: "waypoint".into(),
        node: Some("node1".into()),
        ips: vec!["10.244.1.9".parse().unwrap()],
        ready: true,
        containers: vec![],
    }));
    assert_eq!(workload_waypoint(&ix, "shop", "waypoint-0"), None);
    own.remove(DATAPLANE_MODE_LABEL);
    ix.upsert(Object::Pod(Pod {
        uid: "u-wp".into(),
        name: "waypoint-0".into(),
        namespace: "shop".into(),
        labels: own,
        annotations: Default::default(),
        service_account: "waypoint".into(),
        node: Some("node1".into()),
        ips: vec!["10.244.1.9".parse().unwrap()],
        ready: true,
        containers: vec![],
    }));
    assert_eq!(workload_waypoint(&ix, "shop", "waypoint-0"), None);
    // A pod that opted out of capture, and a namespace out of the mesh.
    ix.upsert(app_pod(
        "shop",
        "uncaptured",
        &[(DATAPLANE_MODE_LABEL, DATAPLANE_MODE_NONE)],
    ));
    assert_eq!(workload_waypoint(&ix, "shop", "uncaptured"), None);
    ix.upsert(Object::Namespace(Namespace {
        name: "plain".into(),
        labels: labels(&[(USE_WAYPOINT_LABEL, "waypoint")]),
    }));
    ix.upsert(labeled_gateway(
        "plain",
        "waypoint",
        WAYPOINT_CLASS,
        &[(WAYPOINT_FOR_LABEL, "all")],
    ));
    ix.upsert(app_pod("plain", "app", &[]));
    assert_eq!(workload_waypoint(&ix, "plain", "app"), None);
    // A label naming a Gateway that does not exist implies a waypoint
    // for Services only; one of another class is none.
    let mut ix = workload_index(Some("all"));
    ix.upsert(app_pod("shop", "ghost", &[(USE_WAYPOINT_LABEL, "nowhere")]));
    assert_eq!(workload_waypoint(&ix, "shop", "ghost"), None);
    assert!(
        !all(&ix).iter().any(|w| w.name == "nowhere"),
        "a pod's label implies no Gateway"
    );
    ix.upsert(gateway("shop", "foreign", "istio"));
    ix.upsert(app_pod("shop", "other", &[(USE_WAYPOINT_LABEL, "foreign")]));
    assert_eq!(workload_waypoint(&ix, "shop", "other"), None);
}

#[test]
fn services_go_through_a_waypoint_only_if_it_takes_services_traffic() {
    for (value, through) in [
        (None, true),
        (Some("service"), true),
        (Some("all"), true),
        (Some("workload"), false),
        (Some("none"), false),
        // Unknown: the default.
        (Some("bogus"), true),
    ] {
        let ix = workload_index(value);
        assert_eq!(
            waypoint_of(&ix, "shop", "web").is_some(),
            through,
            "waypoint-for {value:?}"
        );
    }
}

#[test]
fn an_unknown_waypoint_for_value_is_reported_on_the_gateway() {
    let ix = workload_index(Some("pods"));
    let w = find(&ix, "shop", "waypoint").unwrap();
    assert_eq!(w.waypoint_for, WaypointFor::Service, "the default is taken");
    let c = conditions(&ix, &w);
    assert_eq!(
        (c[0].kind, c[0].status, c[0].reason),
        ("Accepted", true, "UnsupportedValue")
    );
    assert!(
        c[0].message.contains("\"pods\"") && c[0].message.contains("service, workload, all, none"),
        "{}",
        c[0].message
    );
    // Known values are accepted plainly.
    for value in ["all", "workload", "none", "service"] {
        let ix = workload_index(Some(value));
        let c = conditions(&ix, &find(&ix, "shop", "waypoint").unwrap());
        assert_eq!((c[0].status, c[0].reason), (true, "Accepted"), "{value}");
    }
}
