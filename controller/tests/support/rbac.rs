//! The RBAC rules the chart grants the controller and the CNI node agent
//! (`helm/quicmesh/rbac-expected.yaml`, the one list of the API calls each
//! makes), and whether a request to the API server is allowed by them: the
//! verb from the HTTP method (and `watch=true`, and whether the path names
//! an object), the group and resource (with its subresource) and the
//! namespace and name from the path, as the API server's authorizer sees
//! them. A mock API server checks every request of its scenarios with
//! [`check_as`] (the caller's own rules: the agent's requests are held to the
//! agent's rules, not the controller's), so a call the chart does not grant
//! fails the test that makes it.
//!
//! Include it in a test file with
//! `#[path = "support/rbac.rs"] mod rbac;`.

use std::sync::OnceLock;

/// The namespace the Role rules hold in (the release namespace in the
/// chart; scenarios use this one for the controller's own objects).
pub const SYSTEM_NAMESPACE: &str = "quicmesh-system";

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    pub by: String,
    #[serde(default)]
    pub when: Option<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    #[serde(default)]
    pub resource_names: Vec<String>,
    pub verbs: Vec<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rules {
    /// The controller's, in every namespace.
    pub cluster_role: Vec<Rule>,
    /// The controller's, in [`SYSTEM_NAMESPACE`].
    pub role: Vec<Rule>,
    /// The CNI node agent's, in every namespace.
    pub cni_cluster_role: Vec<Rule>,
    /// The CNI node agent's, in [`SYSTEM_NAMESPACE`].
    pub cni_role: Vec<Rule>,
}

/// Who makes a request: each has its ServiceAccount and rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// ServiceAccount `quicmesh-controller` (templates/controller-rbac.yaml).
    Controller,
    /// ServiceAccount `quicmesh-cni`, the CNI node agent (templates/cni.yaml).
    CniAgent,
}

impl Subject {
    fn template(self) -> &'static str {
        match self {
            Subject::Controller => "templates/controller-rbac.yaml",
            Subject::CniAgent => "templates/cni.yaml",
        }
    }
}

/// The rules, read once.
pub fn rules() -> &'static Rules {
    static RULES: OnceLock<Rules> = OnceLock::new();
    RULES.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../helm/quicmesh/rbac-expected.yaml"
        );
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    })
}

/// One request as the authorizer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub verb: &'static str,
    pub group: String,
    /// `resource` or `resource/subresource`.
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        write!(f, "{} {group}/{}", self.verb, self.resource)?;
        if let Some(ns) = &self.namespace {
            write!(f, " in {ns}")?;
        }
        if let Some(n) = &self.name {
            write!(f, " named {n}")?;
        }
        Ok(())
    }
}

/// What `method path?query` asks for; `None` for a path that is not a
/// resource (discovery, /version).
pub fn access(method: &http::Method, path: &str, query: Option<&str>) -> Option<Access> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (resource, name, sub) = match rest {
        [r] => (*r, None, None),
        [r, n] => (*r, Some(n.to_string()), None),
        [r, n, s] => (*r, Some(n.to_string()), Some(*s)),
        _ => return None,
    };
    let watch = query
        .unwrap_or_default()
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1");
    let verb = match (method.as_str(), name.is_some()) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return None,
    };
    Some(Access {
        verb,
        group: group.to_string(),
        resource: match sub {
            Some(s) => format!("{resource}/{s}"),
            None => resource.to_string(),
        },
        namespace,
        name,
    })
}

fn grants(rule: &Rule, a: &Access) -> bool {
    rule.api_groups.contains(&a.group)
        && rule.resources.contains(&a.resource)
        && rule.verbs.iter().any(|v| v == a.verb)
        && (rule.resource_names.is_empty()
            || a.name
                .as_ref()
                .is_some_and(|n| rule.resource_names.contains(n)))
}

impl Rules {
    /// The rule of `subject` that allows `a`, if any (every rule, whatever
    /// its `when`: the scenarios run with every feature on).
    pub fn allowing_as(&self, subject: Subject, a: &Access) -> Option<&Rule> {
        let (cluster, role): (&[Rule], &[Rule]) = match subject {
            Subject::Controller => (&self.cluster_role, &self.role),
            Subject::CniAgent => (&self.cni_cluster_role, &self.cni_role),
        };
        cluster.iter().find(|r| grants(r, a)).or_else(|| {
            if a.namespace.as_deref() == Some(SYSTEM_NAMESPACE) {
                role.iter().find(|r| grants(r, a))
            } else {
                None
            }
        })
    }
}

/// Panics unless the chart's rules for `subject` allow the request.
pub fn check_as<B>(subject: Subject, req: &http::Request<B>) {
    let uri = req.uri();
    let Some(a) = access(req.method(), uri.path(), uri.query()) else {
        return;
    };
    assert!(
        rules().allowing_as(subject, &a).is_some(),
        "{subject:?} made a request the chart's RBAC does not allow it: {} {uri} ({a}); \
         grant it in helm/quicmesh/rbac-expected.yaml and {}",
        req.method(),
        subject.template()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn allowed(method: Method, uri: &str) -> bool {
        allowed_as(Subject::Controller, method, uri)
    }

    fn allowed_as(subject: Subject, method: Method, uri: &str) -> bool {
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        let a = access(&method, path, Some(query)).expect("a resource path");
        rules().allowing_as(subject, &a).is_some()
    }

    #[test]
    fn requests_map_to_the_authorizers_verbs_and_resources() {
        let a = |m: Method, uri: &str| {
            let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
            access(&m, path, Some(query)).unwrap()
        };
        let w = a(Method::GET, "/api/v1/pods?watch=true&resourceVersion=1");
        assert_eq!(
            (w.verb, w.group.as_str(), w.resource.as_str()),
            ("watch", "", "pods")
        );
        assert_eq!(a(Method::GET, "/api/v1/namespaces").verb, "list");
        let g = a(Method::GET, "/api/v1/namespaces/shop");
        assert_eq!(
            (g.verb, g.resource.as_str(), g.name.as_deref()),
            ("get", "namespaces", Some("shop"))
        );
        let s = a(
            Method::PATCH,
            "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/web/status",
        );
        assert_eq!(
            (
                s.verb,
                s.group.as_str(),
                s.resource.as_str(),
                s.namespace.as_deref()
            ),
            (
                "patch",
                "gateway.networking.k8s.io",
                "httproutes/status",
                Some("shop")
            )
        );
        assert_eq!(
            a(Method::DELETE, "/apis/apps/v1/namespaces/shop/deployments").verb,
            "deletecollection"
        );
        assert_eq!(access(&Method::GET, "/version", None), None);
    }

    #[test]
    fn every_rule_says_which_code_needs_it() {
        let r = rules();
        for rule in r
            .cluster_role
            .iter()
            .chain(&r.role)
            .chain(&r.cni_cluster_role)
            .chain(&r.cni_role)
        {
            assert!(!rule.by.trim().is_empty(), "{rule:?}");
            assert!(
                matches!(
                    rule.when.as_deref(),
                    None | Some("waypointProvisioning") | Some("leaderElection")
                ),
                "{rule:?}"
            );
        }
    }

    #[test]
    fn the_check_refuses_what_the_chart_does_not_grant() {
        assert!(allowed(Method::GET, "/api/v1/pods?watch=true"));
        assert!(allowed(
            Method::POST,
            "/apis/authentication.k8s.io/v1/tokenreviews"
        ));
        // Reading is list and watch, never get, of what is watched.
        assert!(!allowed(Method::GET, "/api/v1/namespaces/shop/pods/web-0"));
        // No Secrets but the CA's, and only in the system namespace.
        assert!(allowed(
            Method::GET,
            "/api/v1/namespaces/quicmesh-system/secrets/quicmesh-ca"
        ));
        assert!(!allowed(
            Method::GET,
            "/api/v1/namespaces/quicmesh-system/secrets/other"
        ));
        assert!(!allowed(
            Method::GET,
            "/api/v1/namespaces/shop/secrets/quicmesh-ca"
        ));
        // Secrets are listed and watched (the JWKS ones, by a label
        // selector RBAC cannot narrow), never read one by one but the CA's.
        assert!(allowed(
            Method::GET,
            "/api/v1/secrets?labelSelector=quicmesh.io%2Fjwks%3Dtrue"
        ));
        assert!(!allowed(
            Method::GET,
            "/api/v1/namespaces/shop/secrets/keys"
        ));
        assert!(!allowed(
            Method::PATCH,
            "/api/v1/namespaces/quicmesh-system/secrets/quicmesh-ca"
        ));
        // Objects are applied (patch), never replaced (update) or deleted,
        // except the Gateways labels implied.
        assert!(!allowed(
            Method::PUT,
            "/apis/apps/v1/namespaces/shop/deployments/waypoint"
        ));
        assert!(!allowed(
            Method::DELETE,
            "/apis/apps/v1/namespaces/shop/deployments/waypoint"
        ));
        assert!(allowed(
            Method::DELETE,
            "/apis/gateway.networking.k8s.io/v1/namespaces/shop/gateways/waypoint"
        ));
        // The Lease: its own, in the system namespace.
        assert!(allowed(
            Method::PUT,
            "/apis/coordination.k8s.io/v1/namespaces/quicmesh-system/leases/quicmesh-controller"
        ));
        assert!(!allowed(
            Method::PUT,
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/quicmesh-controller"
        ));
    }

    #[test]
    fn the_node_agent_may_only_list_and_watch_pods_and_namespaces() {
        let agent = |m: Method, uri: &str| allowed_as(Subject::CniAgent, m, uri);
        assert!(agent(
            Method::GET,
            "/api/v1/pods?fieldSelector=spec.nodeName%3Dkind-worker&watch=true"
        ));
        assert!(agent(Method::GET, "/api/v1/namespaces"));
        assert!(!agent(Method::GET, "/api/v1/namespaces/shop/pods/web-0"));
        assert!(!agent(Method::GET, "/api/v1/services"));
        assert!(!agent(
            Method::POST,
            "/apis/authentication.k8s.io/v1/tokenreviews"
        ));
        // None of the controller's Role in the system namespace either.
        assert!(!agent(
            Method::GET,
            "/api/v1/namespaces/quicmesh-system/secrets/quicmesh-ca"
        ));
        assert!(!agent(
            Method::GET,
            "/api/v1/namespaces/quicmesh-system/configmaps/quicmesh-ca-root"
        ));
    }
}
