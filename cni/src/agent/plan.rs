//! What the agent should do about the pods of its node, decided from its
//! view of the cluster (the controller's [`Index`]) and what it holds of
//! each pod. Pure: the node loop ([`super::node`]) carries it out.
//!
//! The rule, the one ztunnel's config follows ([`Index::in_mesh`]): a pod
//! is enrolled while it is scheduled on this node, its namespace is
//! labeled `quicmesh.io/dataplane-mode=ambient` and it did not opt out
//! (`quicmesh.io/dataplane-mode=none`, which waypoints carry). A pod can
//! only be enrolled while the agent holds its network namespace (handed
//! over by the plugin's ADD or CHECK, or found for a pod that predates the
//! agent).

use quicmesh_controller::index::Index;
use quicmesh_controller::model::Pod;
use quicmesh_proto::enrollment::Pod as Enroll;

/// What the agent holds of one pod, as [`plan`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub uid: String,
    /// What it was (or would be) enrolled as.
    pub sent: Enroll,
    /// The IPs the plugin reported (its `prevResult`); empty: the store's.
    pub cni_ips: Vec<String>,
    /// Enrolled in the ztunnel the agent is connected to.
    pub enrolled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Enroll (or re-enroll, its identity changed) the held pod as this.
    Enroll(Enroll),
    /// Remove the pod from ztunnel; keep its namespace (it may come back
    /// into the mesh).
    Remove(String),
    /// The pod is gone from the cluster: remove it from ztunnel if it is
    /// there, and let go of its namespace.
    Forget { uid: String, enrolled: bool },
}

/// Whether `pod` should be enrolled by the agent of `node`.
pub fn wanted(index: &Index, node: &str, pod: &Pod) -> bool {
    pod.node.as_deref() == Some(node) && index.in_mesh(pod)
}

/// What `pod` is enrolled as: the cluster's identity, the plugin's IPs
/// when it gave some.
pub fn message(pod: &Pod, cni_ips: &[String]) -> Enroll {
    let ips = if cni_ips.is_empty() {
        pod.ips.iter().map(|ip| ip.to_string()).collect()
    } else {
        cni_ips.to_vec()
    };
    Enroll {
        uid: pod.uid.clone(),
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        service_account: pod.service_account.clone(),
        ips,
    }
}

/// The actions that bring the held pods in line with the cluster.
pub fn plan<'a>(
    index: &Index,
    node: &str,
    held: impl IntoIterator<Item = &'a Held>,
) -> Vec<Action> {
    let mut out = Vec::new();
    for h in held {
        let Some(pod) = index.pod_by_uid(&h.uid) else {
            out.push(Action::Forget {
                uid: h.uid.clone(),
                enrolled: h.enrolled,
            });
            continue;
        };
        let want = wanted(index, node, pod);
        let msg = message(pod, &h.cni_ips);
        if want && (!h.enrolled || msg != h.sent) {
            out.push(Action::Enroll(msg));
        } else if !want && h.enrolled {
            out.push(Action::Remove(h.uid.clone()));
        }
    }
    out
}

/// Pods that should be enrolled but whose namespace the agent does not
/// hold (they predate it, or their ADD has not come yet), by uid.
pub fn unheld(index: &Index, node: &str, is_held: impl Fn(&str) -> bool) -> Vec<String> {
    index
        .pods()
        .filter(|p| wanted(index, node, p) && !is_held(&p.uid))
        .map(|p| p.uid.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use quicmesh_controller::model::{Labels, Namespace, Object};

    fn ns(name: &str, ambient: bool) -> Object {
        let mut labels = Labels::new();
        if ambient {
            labels.insert("quicmesh.io/dataplane-mode".into(), "ambient".into());
        }
        Object::Namespace(Namespace {
            name: name.into(),
            labels,
        })
    }

    fn pod(ns: &str, name: &str, node: &str, labels: &[(&str, &str)]) -> Pod {
        Pod {
            uid: format!("uid-{name}"),
            name: name.into(),
            namespace: ns.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: Default::default(),
            service_account: "sa".into(),
            node: Some(node.into()),
            ips: vec!["10.0.0.7".parse().unwrap()],
            ready: true,
            containers: vec![],
        }
    }

    fn held(p: &Pod, enrolled: bool) -> Held {
        Held {
            uid: p.uid.clone(),
            sent: message(p, &[]),
            cni_ips: vec![],
            enrolled,
        }
    }

    #[test]
    fn pods_follow_their_namespace_label_their_own_opt_out_and_their_node() {
        let mut ix = Index::new();
        ix.upsert(ns("mesh", true));
        ix.upsert(ns("plain", false));
        let a = pod("mesh", "a", "n1", &[]);
        let b = pod("plain", "b", "n1", &[]);
        let w = pod("mesh", "w", "n1", &[("quicmesh.io/dataplane-mode", "none")]);
        let far = pod("mesh", "far", "n2", &[]);
        for p in [&a, &b, &w, &far] {
            ix.upsert(Object::Pod(p.clone()));
        }
        // Nothing enrolled yet: only `a` is wanted.
        let all = [
            held(&a, false),
            held(&b, false),
            held(&w, false),
            held(&far, false),
        ];
        assert_eq!(
            plan(&ix, "n1", &all),
            vec![Action::Enroll(message(&a, &[]))]
        );
        // All enrolled: everything but `a` comes out.
        let all = [
            held(&a, true),
            held(&b, true),
            held(&w, true),
            held(&far, true),
        ];
        assert_eq!(
            plan(&ix, "n1", &all),
            vec![
                Action::Remove(b.uid.clone()),
                Action::Remove(w.uid.clone()),
                Action::Remove(far.uid.clone()),
            ]
        );
        assert_eq!(unheld(&ix, "n1", |_| false), vec![a.uid.clone()]);
        assert!(unheld(&ix, "n1", |u| u == a.uid).is_empty());

        // The namespace's label flips: `a` comes out, and back in.
        ix.upsert(ns("mesh", false));
        assert_eq!(
            plan(&ix, "n1", &[held(&a, true)]),
            vec![Action::Remove(a.uid.clone())]
        );
        ix.upsert(ns("mesh", true));
        assert!(plan(&ix, "n1", &[held(&a, true)]).is_empty());
    }

    #[test]
    fn a_pod_gone_from_the_cluster_is_forgotten_and_a_changed_identity_re_enrolled() {
        let mut ix = Index::new();
        ix.upsert(ns("mesh", true));
        let a = pod("mesh", "a", "n1", &[]);
        ix.upsert(Object::Pod(a.clone()));
        let gone = pod("mesh", "gone", "n1", &[]);
        assert_eq!(
            plan(&ix, "n1", &[held(&gone, true)]),
            vec![Action::Forget {
                uid: gone.uid.clone(),
                enrolled: true
            }]
        );
        // The plugin's IPs win over the store's.
        let mut h = held(&a, true);
        h.cni_ips = vec!["10.0.0.9".into()];
        let want = message(&a, &h.cni_ips);
        assert_eq!(want.ips, ["10.0.0.9"]);
        assert_eq!(
            plan(&ix, "n1", &[h.clone()]),
            vec![Action::Enroll(want.clone())]
        );
        h.sent = want;
        assert!(plan(&ix, "n1", &[h]).is_empty());
    }
}
