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
//! What traffic a waypoint takes is its Gateway's [`WAYPOINT_FOR_LABEL`]
//! ([`WaypointFor`]): traffic addressed to Services (`service`, the
//! default and what an implied waypoint takes), to workloads (`workload`:
//! a pod's IP, for the pods whose own or whose namespace's label names
//! it), `all` of both, or `none`. A value it does not know is reported
//! on the Gateway and taken as the default.
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
/// The Gateway label that says what traffic the waypoint takes
/// ([`WaypointFor`]), Istio's `istio.io/waypoint-for` under our prefix.
pub const WAYPOINT_FOR_LABEL: &str = "quicmesh.io/waypoint-for";
/// The label Gateway API implementations put on a Gateway's pods.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// What traffic a waypoint takes: the value of its Gateway's
/// [`WAYPOINT_FOR_LABEL`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WaypointFor {
    /// Traffic addressed to a Service (its VIP) that uses the waypoint.
    #[default]
    Service,
    /// Traffic addressed to a workload (its pod IP) that uses it.
    Workload,
    /// Both.
    All,
    /// Neither: the Gateway runs, nothing is sent to it.
    None,
}

impl WaypointFor {
    /// The label's values, as written.
    pub const VALUES: [&'static str; 4] = ["service", "workload", "all", "none"];

    /// The label's value (None: no label, the default). An unknown value
    /// is an error that says so; the caller takes the default and reports
    /// it.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value {
            None | Some("service") => Ok(WaypointFor::Service),
            Some("workload") => Ok(WaypointFor::Workload),
            Some("all") => Ok(WaypointFor::All),
            Some("none") => Ok(WaypointFor::None),
            Some(other) => Err(format!(
                "{WAYPOINT_FOR_LABEL}={:?} is not one of {}: taken as \"service\" (only traffic addressed to Services goes through this waypoint)",
                // Labels are bounded by Kubernetes (63 characters); a file
                // may carry anything, and this goes into status and logs.
                other.chars().take(63).collect::<String>(),
                Self::VALUES.join(", ")
            )),
        }
    }

    /// What a Gateway's labels say; a bad value is the default.
    fn of(gateway: &crate::model::Gateway) -> Self {
        Self::parse(gateway.labels.get(WAYPOINT_FOR_LABEL).map(String::as_str)).unwrap_or_default()
    }

    /// Whether traffic addressed to a Service goes through it.
    pub fn services(self) -> bool {
        matches!(self, WaypointFor::Service | WaypointFor::All)
    }

    /// Whether traffic addressed to a workload goes through it.
    pub fn workloads(self) -> bool {
        matches!(self, WaypointFor::Workload | WaypointFor::All)
    }
}

/// A waypoint of the mesh, declared or implied by a label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Waypoint {
    pub namespace: String,
    pub name: String,
    /// No Gateway object exists: a label asked for it.
    pub implied: bool,
    /// What traffic it takes (an implied one: Services').
    pub waypoint_for: WaypointFor,
}

impl Waypoint {
    fn declared(g: &crate::model::Gateway) -> Self {
        Waypoint {
            namespace: g.namespace.clone(),
            name: g.name.clone(),
            implied: false,
            waypoint_for: WaypointFor::of(g),
        }
    }

    fn implied(namespace: &str, name: &str) -> Self {
        Waypoint {
            namespace: namespace.to_string(),
            name: name.to_string(),
            implied: true,
            waypoint_for: WaypointFor::Service,
        }
    }

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
        Some(g) => Some(Waypoint::declared(g)),
        None => Some(Waypoint::implied(namespace, value)),
    }
}

/// The waypoint `svc`'s traffic goes through, if any: the one its own
/// label, else its namespace's, names, if that one takes Services'
/// traffic.
pub fn for_service(index: &Index, svc: &model::Service) -> Option<Waypoint> {
    let value = svc
        .labels
        .get(USE_WAYPOINT_LABEL)
        .map(String::as_str)
        .or_else(|| index.namespace(&svc.namespace)?.use_waypoint())?;
    named(index, &svc.namespace, value).filter(|w| w.waypoint_for.services())
}

/// The waypoint that traffic addressed to `pod` itself (its IP) goes
/// through, if any: the one its own label, else its namespace's, names
/// (`none` on the pod opts it out), if that one takes workloads' traffic.
/// Never for a pod outside the mesh (a waypoint reaches its destinations
/// over the tunnel only), nor for a waypoint's own pods.
pub fn for_workload(index: &Index, pod: &Pod) -> Option<Waypoint> {
    if !index.in_mesh(pod) || is_waypoint_pod(index, pod) {
        return None;
    }
    let value = pod
        .labels
        .get(USE_WAYPOINT_LABEL)
        .map(String::as_str)
        .or_else(|| index.namespace(&pod.namespace)?.use_waypoint())?;
    named(index, &pod.namespace, value).filter(|w| w.waypoint_for.workloads())
}

/// Whether `pod` is one of a waypoint's own.
fn is_waypoint_pod(index: &Index, pod: &Pod) -> bool {
    pod.labels
        .get(GATEWAY_NAME_LABEL)
        .and_then(|name| find(index, &pod.namespace, name))
        .is_some_and(|w| w.owns(pod))
}

/// Every waypoint: the Gateways of our class, and those labels imply.
pub fn all(index: &Index) -> Vec<Waypoint> {
    let mut out: Vec<Waypoint> = index
        .gateways()
        .filter(|g| g.class == WAYPOINT_CLASS)
        .map(Waypoint::declared)
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
        return (g.class == WAYPOINT_CLASS).then(|| Waypoint::declared(g));
    }
    let labeled = |v: Option<&str>| v == Some(name);
    let requested = labeled(index.namespace(namespace).and_then(|n| n.use_waypoint()))
        || index
            .services_in(namespace)
            .any(|s| labeled(s.labels.get(USE_WAYPOINT_LABEL).map(String::as_str)));
    (requested && name != NO_WAYPOINT && !name.is_empty())
        .then(|| Waypoint::implied(namespace, name))
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
/// them: `Accepted` (the class is ours; reason `UnsupportedValue`, still
/// true, when its [`WAYPOINT_FOR_LABEL`] has a value we do not know and
/// the default is taken) and `Programmed` (a waypoint pod is ready to
/// take traffic).
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
            message: "no waypoint pod is ready yet; traffic sent to it is refused until one is"
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
                message: "not accepted: traffic sent to it is refused".into(),
            },
        ];
    }
    let label = index
        .gateway(&w.namespace, &w.name)
        .filter(|_| !w.implied)
        .and_then(|g| g.labels.get(WAYPOINT_FOR_LABEL));
    let accepted = match WaypointFor::parse(label.map(String::as_str)) {
        Err(problem) => Condition {
            kind: "Accepted",
            status: true,
            reason: "UnsupportedValue",
            message: problem,
        },
        Ok(_) => Condition {
            kind: "Accepted",
            status: true,
            reason: "Accepted",
            message: if w.implied {
                format!("created for a {USE_WAYPOINT_LABEL} label")
            } else {
                String::new()
            },
        },
    };
    vec![accepted, programmed]
}

#[cfg(test)]
mod tests;
