//! Waypoints: which Services send their traffic through one, which pods
//! are a waypoint's, what a cluster runs for one, and the Gateway status.
//!
//! A waypoint is a Gateway API `Gateway` of class [`WAYPOINT_CLASS`]. A
//! namespace opts in with the label `quicmesh.io/use-waypoint=<name>`; a
//! Service's own label overrides its namespace's, and `none` opts out. A
//! label naming a Gateway that does not exist *implies* it: the controller
//! provisions it as if it had been applied (the lab runs its pod; in
//! Kubernetes the controller creates the Gateway, see [`crate::provision`]).
//! A label naming a Gateway of another class names no waypoint.
//!
//! A waypoint runs as pods labeled [`GATEWAY_NAME_LABEL`]`=<name>` with
//! the service account `<name>` (so its identity is
//! `spiffe://<td>/ns/<namespace>/sa/<name>`), not captured by ztunnel
//! ([`crate::model::DATAPLANE_MODE_NONE`]): they terminate the tunnel
//! themselves on UDP 15008.

use crate::gamma::Condition;
use crate::index::Index;
use crate::model::{self, Labels, Pod};

pub const USE_WAYPOINT_LABEL: &str = "quicmesh.io/use-waypoint";
/// The value of [`USE_WAYPOINT_LABEL`] that opts a Service out.
pub const NO_WAYPOINT: &str = "none";
pub const WAYPOINT_CLASS: &str = "quicmesh-waypoint";
/// The label Gateway API implementations put on a Gateway's pods.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// A waypoint of the mesh, declared or implied by a label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Waypoint {
    pub namespace: String,
    pub name: String,
    /// No Gateway object exists: a label asked for it.
    pub implied: bool,
}

impl Waypoint {
    /// The service account its pods run as.
    pub fn service_account(&self) -> &str {
        &self.name
    }

    pub fn identity(&self, trust_domain: &str) -> String {
        format!(
            "spiffe://{trust_domain}/ns/{}/sa/{}",
            self.namespace,
            self.service_account()
        )
    }

    /// Whether `pod` is one of this waypoint's.
    pub fn owns(&self, pod: &Pod) -> bool {
        pod.namespace == self.namespace
            && pod.service_account == self.service_account()
            && pod.labels.get(GATEWAY_NAME_LABEL) == Some(&self.name)
    }
}

/// What a cluster runs for a waypoint: a Deployment of this pod template
/// (and, in Kubernetes, a Service and a ServiceAccount of the same name).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Provision {
    pub namespace: String,
    pub name: String,
    pub service_account: String,
    pub pod_labels: Labels,
}

pub fn provision(w: &Waypoint) -> Provision {
    let pod_labels = [
        (GATEWAY_NAME_LABEL, w.name.as_str()),
        (model::DATAPLANE_MODE_LABEL, model::DATAPLANE_MODE_NONE),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Provision {
        namespace: w.namespace.clone(),
        name: w.name.clone(),
        service_account: w.service_account().to_string(),
        pod_labels,
    }
}

/// What a `use-waypoint` label value asks for in `namespace`: None for
/// `none`, or for a Gateway of another class.
fn named(index: &Index, namespace: &str, value: &str) -> Option<Waypoint> {
    if value == NO_WAYPOINT || value.is_empty() {
        return None;
    }
    match index.gateway(namespace, value) {
        Some(g) if g.class != WAYPOINT_CLASS => None,
        g => Some(Waypoint {
            namespace: namespace.to_string(),
            name: value.to_string(),
            implied: g.is_none(),
        }),
    }
}

/// The waypoint `svc`'s traffic goes through, if any.
pub fn for_service(index: &Index, svc: &model::Service) -> Option<Waypoint> {
    let value = svc
        .labels
        .get(USE_WAYPOINT_LABEL)
        .map(String::as_str)
        .or_else(|| index.namespace(&svc.namespace)?.use_waypoint())?;
    named(index, &svc.namespace, value)
}

/// Every waypoint: the Gateways of our class, and those labels imply.
pub fn all(index: &Index) -> Vec<Waypoint> {
    let mut out: Vec<Waypoint> = index
        .gateways()
        .filter(|g| g.class == WAYPOINT_CLASS)
        .map(|g| Waypoint {
            namespace: g.namespace.clone(),
            name: g.name.clone(),
            implied: false,
        })
        .collect();
    for (ns, value) in requested(index) {
        if let Some(w) = named(index, &ns, &value).filter(|w| w.implied) {
            out.push(w);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The waypoints `use-waypoint` labels ask for (namespace, name), whether
/// or not their Gateway exists.
pub fn requested(index: &Index) -> std::collections::BTreeSet<(String, String)> {
    index
        .namespaces()
        .filter_map(|n| Some((n.name.as_str(), n.use_waypoint()?)))
        .chain(index.services().filter_map(|s| {
            Some((
                s.namespace.as_str(),
                s.labels.get(USE_WAYPOINT_LABEL)?.as_str(),
            ))
        }))
        .filter(|(_, v)| !v.is_empty() && *v != NO_WAYPOINT)
        .map(|(ns, v)| (ns.to_string(), v.to_string()))
        .collect()
}

/// The waypoint named `namespace/name`, if the mesh has it.
pub fn find(index: &Index, namespace: &str, name: &str) -> Option<Waypoint> {
    if let Some(g) = index.gateway(namespace, name) {
        return (g.class == WAYPOINT_CLASS).then(|| Waypoint {
            namespace: namespace.to_string(),
            name: name.to_string(),
            implied: false,
        });
    }
    let labeled = |v: Option<&str>| v == Some(name);
    let requested = labeled(index.namespace(namespace).and_then(|n| n.use_waypoint()))
        || index
            .services_in(namespace)
            .any(|s| labeled(s.labels.get(USE_WAYPOINT_LABEL).map(String::as_str)));
    (requested && name != NO_WAYPOINT && !name.is_empty()).then(|| Waypoint {
        namespace: namespace.to_string(),
        name: name.to_string(),
        implied: true,
    })
}

/// Its pods that are ready, with an address. None while the waypoint is
/// not [`usable`].
pub fn ready_pods<'a>(index: &'a Index, w: &'a Waypoint) -> impl Iterator<Item = &'a Pod> + 'a {
    let usable = usable(index, w);
    index
        .pods_in(&w.namespace)
        .filter(move |p| usable && w.owns(p) && p.ready && !p.ips.is_empty())
}

/// Pods that run as the waypoint's service account without being its own.
fn impostors<'a>(index: &'a Index, w: &'a Waypoint) -> impl Iterator<Item = &'a Pod> + 'a {
    index
        .pods_in(&w.namespace)
        .filter(move |p| p.service_account == w.service_account() && !w.owns(p))
}

/// Whether the waypoint's identity is its own. ztunnels admit a waypoint's
/// tunnels without deciding policy (it decided them), so while any other
/// pod runs as its service account (say, a Gateway named `default`) the
/// waypoint is not used: no traffic is sent to it (its Services' traffic
/// is refused, never sent around it), no ztunnel vouches for it, the CA
/// issues its identity to the nodes of those pods as an ordinary one,
/// and its Gateway says why.
pub fn usable(index: &Index, w: &Waypoint) -> bool {
    impostors(index, w).next().is_none()
}

/// The Gateway's status conditions, as a Gateway API controller writes
/// them: `Accepted` (the class is ours) and `Programmed` (a waypoint pod
/// is ready to take traffic).
pub fn conditions(index: &Index, w: &Waypoint) -> Vec<Condition> {
    let ready = ready_pods(index, w).count();
    let programmed = if ready > 0 {
        Condition {
            kind: "Programmed",
            status: true,
            reason: "Programmed",
            message: format!("{ready} waypoint pod(s) ready"),
        }
    } else {
        Condition {
            kind: "Programmed",
            status: false,
            reason: "Pending",
            message:
                "no waypoint pod is ready yet; traffic for its Services is refused until one is"
                    .into(),
        }
    };
    if let Some(p) = impostors(index, w).next() {
        return vec![
            Condition {
                kind: "Accepted",
                status: false,
                reason: "ServiceAccountInUse",
                message: format!(
                    "pod {}/{} runs as service account {}, the waypoint's identity; rename the Gateway or give those pods another service account",
                    p.namespace,
                    p.name,
                    w.service_account()
                ),
            },
            Condition {
                kind: "Programmed",
                status: false,
                reason: "Invalid",
                message: "not accepted: traffic for its Services is refused".into(),
            },
        ];
    }
    vec![
        Condition {
            kind: "Accepted",
            status: true,
            reason: "Accepted",
            message: if w.implied {
                format!("created for a {USE_WAYPOINT_LABEL} label")
            } else {
                String::new()
            },
        },
        programmed,
    ]
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
        Object::Gateway(Gateway {
            name: name.into(),
            namespace: ns.into(),
            class: class.into(),
            labels: Labels::new(),
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
}
