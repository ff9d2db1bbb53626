//! Who a caller of the CA is, in Kubernetes: a bearer token checked with
//! TokenReview (audience `quicmesh`), then mapped to a caller the CA knows.
//! Only the node agent's service account (ztunnel's, in the install
//! namespace) acts for a node, the node its bound pod runs on; a waypoint's
//! acts for that waypoint from its own pods; every other token is refused.

use std::collections::BTreeMap;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use kube::api::{Api, PostParams};

use crate::ca::{NodeAgent, Refusal};
use crate::model;

/// The `extra` key under which bound service account tokens carry the node
/// of the pod they were issued to.
pub const NODE_NAME_EXTRA: &str = "authentication.kubernetes.io/node-name";

/// The audience tokens for quicmesh's CA must be issued for (projected
/// service-account tokens with `audience: quicmesh`): a token for the API
/// server, or for anything else, is refused.
pub const TOKEN_AUDIENCE: &str = "quicmesh";

/// The `extra` key under which bound tokens carry the pod's name.
pub const POD_NAME_EXTRA: &str = "authentication.kubernetes.io/pod-name";

/// The `extra` key under which bound tokens carry the pod's uid.
pub const POD_UID_EXTRA: &str = "authentication.kubernetes.io/pod-uid";

/// Who a service account token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub namespace: String,
    pub service_account: String,
    /// The node of the pod the token was bound to (bound tokens only).
    pub node: Option<String>,
    /// The pod the token was bound to (bound tokens only).
    pub pod: Option<String>,
    /// That pod's uid (bound tokens only).
    pub pod_uid: Option<String>,
}

impl Caller {
    /// Who the caller is to the CA. A waypoint's service account acts for
    /// that waypoint, and only from one of its own pods; the node agent's
    /// (ztunnel's) acts for the node its pod runs on, as the controller
    /// knows it from the pod; any other token gets nothing.
    pub fn for_ca(
        &self,
        index: &crate::index::Index,
        agent: &NodeAgent,
    ) -> Result<crate::ca::Caller, Refusal> {
        let who = format!("{}/{}", self.namespace, self.service_account);
        if let Some(w) = crate::waypoint::find(index, &self.namespace, &self.service_account) {
            let own = self.bound_pod(index).is_some_and(|p| w.owns(p));
            return if own {
                Ok(crate::ca::Caller::ServiceAccount {
                    namespace: self.namespace.clone(),
                    name: self.service_account.clone(),
                })
            } else {
                Err(Refusal::new(
                    "not_bound_to_its_pod",
                    format!(
                        "token of {who}, waypoint {}/{}'s service account, is not bound to one of its pods",
                        w.namespace, w.name
                    ),
                ))
            };
        }
        if self.namespace != agent.namespace || self.service_account != agent.service_account {
            return Err(Refusal::new(
                "not_a_node_agent",
                format!("token of {who}: only {agent}'s tokens act for a node (and a waypoint's for itself)"),
            ));
        }
        let (Some(name), Some(_)) = (&self.pod, &self.pod_uid) else {
            return Err(Refusal::new(
                "not_bound_to_its_pod",
                format!("token of {who} is not bound to a pod: project one (serviceAccountToken, audience {TOKEN_AUDIENCE})"),
            ));
        };
        let pod = self.bound_pod(index).ok_or_else(|| {
            Refusal::new(
                "not_bound_to_its_pod",
                format!("token of {who} is bound to pod {name}, which the controller does not know (yet), or to an earlier pod of that name"),
            )
        })?;
        let node = pod.node.as_deref().ok_or_else(|| {
            Refusal::new(
                "not_bound_to_its_pod",
                format!("pod {who} {name} is not scheduled"),
            )
        })?;
        if self.node.as_deref().is_some_and(|n| n != node) {
            return Err(Refusal::new(
                "not_bound_to_its_pod",
                format!(
                    "token of {who} names node {}, but its pod {name} runs on {node}",
                    self.node.as_deref().unwrap_or_default()
                ),
            ));
        }
        Ok(crate::ca::Caller::Node(node.to_string()))
    }

    /// The pod the token is bound to, as the index has it: same name, same
    /// uid (not an earlier pod of that name), same service account.
    fn bound_pod<'a>(&self, index: &'a crate::index::Index) -> Option<&'a model::Pod> {
        let p = index.pod(&self.namespace, self.pod.as_deref()?)?;
        (Some(&p.uid) == self.pod_uid.as_ref() && p.service_account == self.service_account)
            .then_some(p)
    }
}

/// Asks the API server who `token` belongs to (an `authentication.k8s.io/v1`
/// TokenReview for audience [`TOKEN_AUDIENCE`]). Refused when the token is
/// not authenticated, not for that audience, or not a service account's.
pub async fn token_review(client: &kube::Client, token: &str) -> Result<Caller, Refusal> {
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_string()),
            audiences: Some(vec![TOKEN_AUDIENCE.to_string()]),
        },
        ..Default::default()
    };
    let answer = Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| Refusal::new("token_review_failed", format!("TokenReview failed: {e}")))?;
    let status = answer.status.ok_or_else(|| {
        Refusal::new(
            "token_review_failed",
            "TokenReview answered without a status",
        )
    })?;
    caller(&status)
}

fn caller(status: &TokenReviewStatus) -> Result<Caller, Refusal> {
    if status.authenticated != Some(true) {
        let why = match status.error.as_deref().filter(|e| !e.is_empty()) {
            Some(e) => format!("token not authenticated: {e}"),
            None => "token not authenticated".to_string(),
        };
        return Err(Refusal::new("token_not_authenticated", why));
    }
    // The API server answers with the requested audiences the token is
    // valid for.
    if !status
        .audiences
        .iter()
        .flatten()
        .any(|a| a == TOKEN_AUDIENCE)
    {
        return Err(Refusal::new(
            "wrong_audience",
            format!("the token is not for audience {TOKEN_AUDIENCE:?} (project one with audience: {TOKEN_AUDIENCE})"),
        ));
    }
    let not_sa = |who: &str| {
        Refusal::new(
            "not_a_service_account",
            format!("token of {who:?} is not a service account's"),
        )
    };
    let user = status.user.as_ref().ok_or_else(|| not_sa(""))?;
    let username = user.username.as_deref().unwrap_or_default();
    let (namespace, service_account) = username
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
        .filter(|(ns, sa)| !ns.is_empty() && !sa.is_empty() && !sa.contains(':'))
        .ok_or_else(|| not_sa(username))?;
    let extra = |key: &str| {
        user.extra
            .as_ref()
            .and_then(|x: &BTreeMap<String, Vec<String>>| x.get(key))
            .and_then(|v| v.first())
            .filter(|n| !n.is_empty())
            .cloned()
    };
    Ok(Caller {
        namespace: namespace.to_string(),
        service_account: service_account.to_string(),
        node: extra(NODE_NAME_EXTRA),
        pod: extra(POD_NAME_EXTRA),
        pod_uid: extra(POD_UID_EXTRA),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::authentication::v1::UserInfo;

    #[test]
    fn token_review_status_to_caller() {
        let user = |name: &str, node: Option<&str>| UserInfo {
            username: Some(name.into()),
            extra: node.map(|n| [(NODE_NAME_EXTRA.to_string(), vec![n.to_string()])].into()),
            ..Default::default()
        };
        let ok = |u| TokenReviewStatus {
            authenticated: Some(true),
            user: Some(u),
            audiences: Some(vec![TOKEN_AUDIENCE.into()]),
            ..Default::default()
        };
        // A token for another audience (say, the API server's) is refused.
        let other = TokenReviewStatus {
            audiences: Some(vec!["https://kubernetes.default.svc".into()]),
            ..ok(user("system:serviceaccount:shop:web", Some("node-a")))
        };
        let e = caller(&other).unwrap_err();
        assert_eq!(e.reason, "wrong_audience");
        assert!(e.message.contains("audience"), "{e}");
        assert!(caller(&TokenReviewStatus {
            audiences: None,
            ..other
        })
        .is_err());
        let c = caller(&ok(user("system:serviceaccount:shop:web", Some("node-a")))).unwrap();
        assert_eq!(
            c,
            Caller {
                namespace: "shop".into(),
                service_account: "web".into(),
                node: Some("node-a".into()),
                pod: None,
                pod_uid: None,
            }
        );
        assert_eq!(
            caller(&ok(user("system:serviceaccount:shop:web", None)))
                .unwrap()
                .node,
            None
        );
        assert_eq!(
            caller(&ok(user("alice", None))).unwrap_err().reason,
            "not_a_service_account"
        );
        assert!(caller(&ok(user("system:serviceaccount:shop", None))).is_err());
        let refused = TokenReviewStatus {
            authenticated: Some(false),
            error: Some("token expired".into()),
            ..Default::default()
        };
        let e = caller(&refused).unwrap_err();
        assert_eq!(e.reason, "token_not_authenticated");
        let e = e.to_string();
        assert!(
            e.contains("not authenticated") && e.contains("token expired"),
            "{e}"
        );
        assert!(caller(&TokenReviewStatus::default()).is_err());
    }

    fn pod(
        namespace: &str,
        name: &str,
        sa: &str,
        node: &str,
        labels: model::Labels,
    ) -> model::Object {
        model::Object::Pod(model::Pod {
            uid: format!("u-{name}"),
            name: name.into(),
            namespace: namespace.into(),
            labels,
            annotations: Default::default(),
            service_account: sa.into(),
            node: Some(node.into()),
            ips: vec![],
            ready: true,
            containers: vec![],
        })
    }

    /// A token of `namespace/sa` bound to pod `name` (with the uid the
    /// index has for it) on node-a.
    fn token(namespace: &str, sa: &str, name: Option<&str>) -> Caller {
        Caller {
            namespace: namespace.into(),
            service_account: sa.into(),
            node: Some("node-a".into()),
            pod: name.map(Into::into),
            pod_uid: name.map(|n| format!("u-{n}")),
        }
    }

    fn agent() -> NodeAgent {
        NodeAgent {
            namespace: "quicmesh-system".into(),
            service_account: "ztunnel".into(),
        }
    }

    #[test]
    fn a_waypoints_token_acts_for_the_waypoint_from_its_own_pods_only() {
        use crate::model::{Gateway, Labels, Object};
        let mut ix = crate::index::Index::new();
        ix.upsert(Object::Gateway(Gateway {
            name: "waypoint".into(),
            namespace: "shop".into(),
            class: crate::waypoint::WAYPOINT_CLASS.into(),
            labels: Labels::new(),
            uid: "g1".into(),
            generation: 1,
        }));
        let w = crate::waypoint::find(&ix, "shop", "waypoint").unwrap();
        let labels = crate::waypoint::provision(&w).pod_labels;
        ix.upsert(pod("shop", "waypoint-abc", "waypoint", "node-a", labels));
        ix.upsert(pod(
            "shop",
            "not-a-waypoint",
            "waypoint",
            "node-a",
            Labels::new(),
        ));
        assert_eq!(
            token("shop", "waypoint", Some("waypoint-abc")).for_ca(&ix, &agent()),
            Ok(crate::ca::Caller::ServiceAccount {
                namespace: "shop".into(),
                name: "waypoint".into()
            })
        );
        // Its service account, another pod (or none, or an earlier pod of
        // that name): refused, not a node.
        let earlier = Caller {
            pod_uid: Some("u-replaced".into()),
            ..token("shop", "waypoint", Some("waypoint-abc"))
        };
        for t in [
            token("shop", "waypoint", Some("not-a-waypoint")),
            token("shop", "waypoint", Some("gone")),
            token("shop", "waypoint", None),
            earlier,
        ] {
            let e = t.for_ca(&ix, &agent()).unwrap_err();
            assert_eq!(e.reason, "not_bound_to_its_pod", "{t:?}");
            assert!(e.message.contains("not bound to one of its pods"), "{e}");
        }
    }

    /// The hole this closes: any pod's bound token used to act for its
    /// pod's node, and so get every co-scheduled workload's SVID.
    #[test]
    fn only_the_node_agents_bound_token_acts_for_a_node_and_the_node_is_its_pods() {
        use crate::model::Labels;
        let mut ix = crate::index::Index::new();
        ix.upsert(pod("shop", "web-1", "web", "node-a", Labels::new()));
        ix.upsert(pod(
            "quicmesh-system",
            "ztunnel-x1",
            "ztunnel",
            "node-a",
            Labels::new(),
        ));
        ix.upsert(pod(
            "quicmesh-system",
            "other-1",
            "other",
            "node-a",
            Labels::new(),
        ));
        assert_eq!(
            token("quicmesh-system", "ztunnel", Some("ztunnel-x1")).for_ca(&ix, &agent()),
            Ok(crate::ca::Caller::Node("node-a".into()))
        );
        // An app's token, another service account of the install
        // namespace, the ztunnel account's name in another namespace.
        for t in [
            token("shop", "web", Some("web-1")),
            token("quicmesh-system", "other", Some("other-1")),
            token("shop", "ztunnel", Some("web-1")),
        ] {
            let e = t.for_ca(&ix, &agent()).unwrap_err();
            assert_eq!(e.reason, "not_a_node_agent", "{t:?}: {e}");
        }
        // The ztunnel's account, but not bound to a pod; bound to a pod the
        // controller does not know, to an earlier pod of that name, to a
        // pod of another account; or naming a node its pod is not on.
        let unbound = token("quicmesh-system", "ztunnel", None);
        let unknown = token("quicmesh-system", "ztunnel", Some("ztunnel-gone"));
        let earlier = Caller {
            pod_uid: Some("u-ztunnel-old".into()),
            ..token("quicmesh-system", "ztunnel", Some("ztunnel-x1"))
        };
        let foreign_pod = Caller {
            pod_uid: Some("u-other-1".into()),
            ..token("quicmesh-system", "ztunnel", Some("other-1"))
        };
        let wrong_node = Caller {
            node: Some("node-b".into()),
            ..token("quicmesh-system", "ztunnel", Some("ztunnel-x1"))
        };
        for t in [unbound, unknown, earlier, foreign_pod, wrong_node] {
            let e = t.for_ca(&ix, &agent()).unwrap_err();
            assert_eq!(e.reason, "not_bound_to_its_pod", "{t:?}: {e}");
        }
        // A token without the node (older API servers) takes the pod's.
        let no_node = Caller {
            node: None,
            ..token("quicmesh-system", "ztunnel", Some("ztunnel-x1"))
        };
        assert_eq!(
            no_node.for_ca(&ix, &agent()),
            Ok(crate::ca::Caller::Node("node-a".into()))
        );
    }
}
