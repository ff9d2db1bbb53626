//! Translation: index → proxy config resources. Pure and deterministic, so
//! the same index always yields byte-identical resources.

use std::collections::BTreeMap;

use quicmesh_proto::config::{resource, Endpoint, Resource, Service, ServicePort, Workload};

use crate::index::{service_name, workload_name, Index};
use crate::model::{self, selects, TargetPort};

/// The resource called `name` as the index says it is now; None if it does
/// not (or no longer) exist.
pub fn resource(index: &Index, name: &str, trust_domain: &str) -> Option<Resource> {
    let kind = if let Some(uid) = name.strip_prefix("workload/") {
        resource::Kind::Workload(workload(index, index.pod_by_uid(uid)?, trust_domain)?)
    } else if let Some(rest) = name.strip_prefix("service/") {
        let (ns, svc) = rest.split_once('/')?;
        resource::Kind::Service(service(index, index.service(ns, svc)?))
    } else {
        return None;
    };
    Some(Resource {
        name: name.to_string(),
        version: 0,
        kind: Some(kind),
    })
}

/// Every resource of the index, by name.
pub fn all(index: &Index, trust_domain: &str) -> BTreeMap<String, Resource> {
    let names = index.pods().map(|p| workload_name(&p.uid)).chain(
        index
            .services()
            .map(|s| service_name(&s.namespace, &s.name)),
    );
    names
        .filter_map(|n| resource(index, &n, trust_domain).map(|r| (n, r)))
        .collect()
}

fn workload(index: &Index, pod: &model::Pod, trust_domain: &str) -> Option<Workload> {
    // A pod without an address cannot be reached: not a resource yet.
    if pod.ips.is_empty() {
        return None;
    }
    Some(Workload {
        uid: pod.uid.clone(),
        name: pod.name.clone(),
        namespace: pod.namespace.clone(),
        service_account: pod.service_account.clone(),
        node: pod.node.clone().unwrap_or_default(),
        ips: pod.ips.iter().map(|ip| ip.to_string()).collect(),
        ready: pod.ready,
        in_mesh: index.namespace(&pod.namespace).is_some_and(|n| n.ambient()),
        identity: format!(
            "spiffe://{trust_domain}/ns/{}/sa/{}",
            pod.namespace, pod.service_account
        ),
    })
}

fn service(index: &Index, svc: &model::Service) -> Service {
    let ports = svc
        .ports
        .iter()
        .map(|p| ServicePort {
            name: p.name.clone(),
            port: p.port.into(),
            target_port: match p.target {
                TargetPort::Number(n) => n.into(),
                TargetPort::Name(_) => 0,
            },
        })
        .collect();
    Service {
        name: svc.name.clone(),
        namespace: svc.namespace.clone(),
        vips: svc.vips.iter().map(|ip| ip.to_string()).collect(),
        ports,
        endpoints: endpoints(index, svc),
    }
}

/// Endpoints from EndpointSlices when the service has any; otherwise from
/// its selector (file mode, where nothing writes slices).
fn endpoints(index: &Index, svc: &model::Service) -> Vec<Endpoint> {
    let mut out = Vec::new();
    let mut slices = index.slices_for(&svc.namespace, &svc.name).peekable();
    if slices.peek().is_some() {
        for slice in slices {
            for ep in &slice.endpoints {
                for ip in &ep.ips {
                    let uid = ep
                        .pod
                        .as_ref()
                        .and_then(|name| index.pods_in(&svc.namespace).find(|p| &p.name == name))
                        .or_else(|| index.pods().find(|p| p.ips.contains(ip)))
                        .map(|p| p.uid.clone())
                        .unwrap_or_default();
                    out.push(Endpoint {
                        workload_uid: uid,
                        ip: ip.to_string(),
                        ready: ep.ready,
                        ports: slice
                            .ports
                            .iter()
                            .map(|(n, p)| (n.clone(), u32::from(*p)))
                            .collect(),
                    });
                }
            }
        }
    } else if let Some(sel) = &svc.selector {
        for pod in index
            .pods_in(&svc.namespace)
            .filter(|p| selects(sel, &p.labels))
        {
            let ports: std::collections::HashMap<String, u32> = svc
                .ports
                .iter()
                .filter_map(|sp| {
                    let port = match &sp.target {
                        TargetPort::Number(n) => Some(*n),
                        TargetPort::Name(name) => pod.named_port(name),
                    }?;
                    Some((sp.name.clone(), u32::from(port)))
                })
                .collect();
            for ip in &pod.ips {
                out.push(Endpoint {
                    workload_uid: pod.uid.clone(),
                    ip: ip.to_string(),
                    ready: pod.ready,
                    ports: ports.clone(),
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.ip, &a.workload_uid).cmp(&(&b.ip, &b.workload_uid)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    fn labels(kv: &[(&str, &str)]) -> Labels {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pod(name: &str, lbl: &[(&str, &str)], ip: &str, ready: bool) -> Object {
        Object::Pod(Pod {
            uid: format!("uid-{name}"),
            name: name.into(),
            namespace: "shop".into(),
            labels: labels(lbl),
            service_account: "web".into(),
            node: Some("node1".into()),
            ips: if ip.is_empty() {
                vec![]
            } else {
                vec![ip.parse().unwrap()]
            },
            ready,
            containers: vec![Container {
                name: "c".into(),
                command: vec![],
                args: vec![],
                env: vec![],
                ports: vec![ContainerPort {
                    name: Some("http".into()),
                    port: 8080,
                }],
            }],
        })
    }

    fn index() -> Index {
        let mut ix = Index::new();
        ix.upsert(Object::Namespace(Namespace {
            name: "shop".into(),
            labels: labels(&[(DATAPLANE_MODE_LABEL, DATAPLANE_MODE_AMBIENT)]),
        }));
        ix.upsert(pod("web-1", &[("app", "web")], "10.244.1.2", true));
        ix.upsert(pod("web-2", &[("app", "web")], "10.244.2.2", false));
        ix.upsert(pod("db-1", &[("app", "db")], "10.244.2.3", true));
        ix.upsert(pod("pending", &[("app", "web")], "", false));
        ix.upsert(Object::Service(model::Service {
            name: "web".into(),
            namespace: "shop".into(),
            vips: vec!["10.96.0.10".parse().unwrap()],
            ports: vec![
                model::ServicePort {
                    name: "http".into(),
                    port: 80,
                    target: TargetPort::Name("http".into()),
                },
                model::ServicePort {
                    name: "admin".into(),
                    port: 9000,
                    target: TargetPort::Number(9001),
                },
            ],
            selector: Some(labels(&[("app", "web")])),
        }));
        ix
    }

    #[test]
    fn workloads_carry_identity_and_mesh_membership() {
        let ix = index();
        let all = all(&ix, "cluster.local");
        let Some(resource::Kind::Workload(w)) = &all["workload/uid-web-1"].kind else {
            panic!()
        };
        assert_eq!(w.identity, "spiffe://cluster.local/ns/shop/sa/web");
        assert!(w.in_mesh && w.ready);
        assert_eq!(w.ips, ["10.244.1.2"]);
        assert!(
            !all.contains_key("workload/uid-pending"),
            "a pod without IP is no resource"
        );
    }

    #[test]
    fn selector_endpoints_resolve_named_and_numbered_target_ports() {
        let ix = index();
        let r = resource(&ix, "service/shop/web", "cluster.local").unwrap();
        let Some(resource::Kind::Service(s)) = r.kind else {
            panic!()
        };
        assert_eq!(s.vips, ["10.96.0.10"]);
        assert_eq!(s.ports[0].target_port, 0, "named: resolved per endpoint");
        assert_eq!(s.ports[1].target_port, 9001);
        let ips: Vec<_> = s
            .endpoints
            .iter()
            .map(|e| (e.ip.as_str(), e.ready))
            .collect();
        assert_eq!(
            ips,
            [("10.244.1.2", true), ("10.244.2.2", false)],
            "pending and db excluded"
        );
        assert_eq!(s.endpoints[0].ports["http"], 8080);
        assert_eq!(s.endpoints[0].ports["admin"], 9001);
    }

    #[test]
    fn slices_win_over_selectors() {
        let mut ix = index();
        ix.upsert(Object::EndpointSlice(EndpointSlice {
            name: "web-abc".into(),
            namespace: "shop".into(),
            service: "web".into(),
            ports: vec![("http".into(), 8080)],
            endpoints: vec![SliceEndpoint {
                ips: vec!["10.244.2.3".parse().unwrap()],
                ready: true,
                pod: Some("db-1".into()),
                node: Some("node2".into()),
            }],
        }));
        let Some(resource::Kind::Service(s)) =
            resource(&ix, "service/shop/web", "td").unwrap().kind
        else {
            panic!()
        };
        assert_eq!(s.endpoints.len(), 1);
        assert_eq!(s.endpoints[0].workload_uid, "uid-db-1");
    }

    #[test]
    fn namespace_label_controls_membership_and_translation_is_deterministic() {
        let mut ix = index();
        ix.upsert(Object::Namespace(Namespace {
            name: "shop".into(),
            labels: Labels::new(),
        }));
        let a = all(&ix, "td");
        let Some(resource::Kind::Workload(w)) = &a["workload/uid-web-1"].kind else {
            panic!()
        };
        assert!(!w.in_mesh);
        assert_eq!(a, all(&ix, "td"));
        assert!(resource(&ix, "service/shop/nope", "td").is_none());
        assert!(resource(&ix, "bogus/x", "td").is_none());
    }
}
