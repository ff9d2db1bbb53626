//! Live inbound connections and what they were authorized on, so that a
//! config change re-checks them and cuts the ones no longer allowed (a
//! policy added or changed, a namespace switched to strict mTLS).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use quicmesh_core::authz::{Connection, Decision, DenyReason, Verdict};
use quicmesh_core::identity::TrustBundles;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::state::State;

/// The decision for `conn` to pod `pod_uid` (in `namespace`) now: refused
/// when the peer's trust domain has no bundle any more (a federation
/// removed after the peer authenticated), else the policies'.
pub fn decide(
    state: &State,
    bundles: &TrustBundles,
    pod_uid: &str,
    namespace: &str,
    conn: &Connection,
) -> Decision {
    if let Some(p) = &conn.principal {
        if bundles.get(p.trust_domain()).is_none() {
            return Decision::deny(DenyReason::UntrustedDomain, "-");
        }
    }
    quicmesh_core::authz::set::decide(
        &state.authorization,
        &state.destination(pod_uid, namespace),
        conn,
    )
}

#[derive(Clone)]
struct Live {
    pod_uid: String,
    namespace: String,
    conn: Connection,
    /// For the log line.
    src: SocketAddr,
    dst: SocketAddr,
    stop: CancellationToken,
}

#[derive(Default)]
pub struct LiveConns {
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Live>>,
}

/// Removes its connection from the registry when dropped.
pub struct LiveGuard {
    id: u64,
    registry: Arc<LiveConns>,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.registry
            .conns
            .lock()
            .expect("not poisoned")
            .remove(&self.id);
    }
}

impl LiveConns {
    /// Registers a connection to pod `pod_uid`. The returned token is
    /// cancelled when a later check denies it; the guard deregisters it.
    pub fn register(
        self: &Arc<Self>,
        pod_uid: &str,
        namespace: &str,
        conn: Connection,
        src: SocketAddr,
        dst: SocketAddr,
    ) -> (LiveGuard, CancellationToken) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let stop = CancellationToken::new();
        self.conns.lock().expect("not poisoned").insert(
            id,
            Live {
                pod_uid: pod_uid.to_string(),
                namespace: namespace.to_string(),
                conn,
                src,
                dst,
                stop: stop.clone(),
            },
        );
        (
            LiveGuard {
                id,
                registry: self.clone(),
            },
            stop,
        )
    }

    pub fn len(&self) -> usize {
        self.conns.lock().expect("not poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Re-decides every live connection against `state` and `bundles`;
    /// cuts, logs and counts the ones now denied. Returns how many were cut.
    /// Decides on a copy, so the data path (registering, deregistering)
    /// never waits for it.
    pub fn recheck(&self, state: &State, bundles: &TrustBundles, metrics: &Metrics) -> usize {
        let live: Vec<Live> = self
            .conns
            .lock()
            .expect("not poisoned")
            .values()
            .filter(|l| !l.stop.is_cancelled())
            .cloned()
            .collect();
        let mut cut = 0;
        for live in &live {
            let d = decide(state, bundles, &live.pod_uid, &live.namespace, &live.conn);
            if let Verdict::Deny { reason, policy } = &d.verdict {
                tracing::warn!(
                    src.identity = live.conn.principal.as_ref().map_or("", |p| p.as_str()),
                    src.addr = %live.src,
                    dst.addr = %live.dst,
                    authz = %d,
                    "live connection no longer allowed; closing it"
                );
                metrics.authz_closed(policy, reason.label());
                live.stop.cancel();
                cut += 1;
            }
        }
        cut
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use quicmesh_core::identity::SpiffeId;
    use quicmesh_proto::config::{
        resource, Authorization, AuthorizationAction, AuthorizationRule, AuthorizationScope,
        AuthorizationSource, Resource,
    };

    use super::*;

    fn state_with(policies: &[Authorization]) -> State {
        let resources: BTreeMap<String, Resource> = policies
            .iter()
            .map(|a| {
                let name = format!("authorization/{}/{}", a.namespace, a.name);
                let r = Resource {
                    name: name.clone(),
                    version: 1,
                    kind: Some(resource::Kind::Authorization(a.clone())),
                };
                (name, r)
            })
            .collect();
        State::from_resources("cluster.local", 1, &resources).unwrap()
    }

    fn deny_namespace(ns: &str) -> Authorization {
        Authorization {
            name: format!("deny-{ns}"),
            namespace: "shop".into(),
            scope: AuthorizationScope::Namespace.into(),
            action: AuthorizationAction::Deny.into(),
            rules: vec![AuthorizationRule {
                from: vec![AuthorizationSource {
                    namespaces: vec![ns.into()],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn bundles(domains: &[&str]) -> TrustBundles {
        let mut b = TrustBundles::new();
        for td in domains {
            let ca = quicmesh_core::identity::ca::Ca::generate(td).unwrap();
            b.insert(td, &[ca.cert_der().clone()]).unwrap();
        }
        b
    }

    #[test]
    fn recheck_cuts_the_peers_of_a_withdrawn_trust_domain() {
        let live = Arc::new(LiveConns::default());
        let metrics = Metrics::default();
        let addr: SocketAddr = "10.0.0.1:1000".parse().unwrap();
        let west = SpiffeId::workload("west.example", "shop", "client").unwrap();
        let ours = SpiffeId::workload("cluster.local", "front", "client").unwrap();
        let conn = |p: &SpiffeId| Connection::new(Some(p.clone()), "cluster.local", addr.ip(), 80);
        let (_g1, from_west) = live.register("uid-web", "shop", conn(&west), addr, addr);
        let (_g2, from_ours) = live.register("uid-web", "shop", conn(&ours), addr, addr);
        let allow = Authorization {
            name: "allow-clients".into(),
            namespace: "shop".into(),
            scope: AuthorizationScope::Namespace.into(),
            action: AuthorizationAction::Allow.into(),
            rules: vec![AuthorizationRule {
                from: vec![AuthorizationSource {
                    principals: vec![west.to_string(), ours.to_string()],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let state = state_with(&[allow]);
        let federated = bundles(&["cluster.local", "west.example"]);
        assert_eq!(live.recheck(&state, &federated, &metrics), 0);
        let d = decide(&state, &federated, "uid-web", "shop", &conn(&west));
        assert!(matches!(d.verdict, Verdict::Allow { .. }), "{d}");
        // The federation is removed: the policy still names west's client,
        // but nothing vouches for its domain any more.
        let local = bundles(&["cluster.local"]);
        let d = decide(&state, &local, "uid-web", "shop", &conn(&west));
        assert_eq!(
            d.verdict,
            Verdict::Deny {
                reason: DenyReason::UntrustedDomain,
                policy: "-".into()
            }
        );
        assert_eq!(live.recheck(&state, &local, &metrics), 1);
        assert!(from_west.is_cancelled() && !from_ours.is_cancelled());
        let closed = metrics
            .authz_closed
            .get_or_create(&crate::metrics::AuthzLabels {
                policy: "-".into(),
                reason: "untrusted_trust_domain".into(),
            })
            .get();
        assert_eq!(closed, 1);
    }

    #[test]
    fn recheck_cuts_only_what_policy_no_longer_allows() {
        let live = Arc::new(LiveConns::default());
        let metrics = Metrics::default();
        let addr: SocketAddr = "10.0.0.1:1000".parse().unwrap();
        let conn = |ns: &str| {
            Connection::new(
                Some(SpiffeId::workload("cluster.local", ns, "sa").unwrap()),
                "cluster.local",
                addr.ip(),
                80,
            )
        };
        let local = bundles(&["cluster.local"]);
        let (g1, from_ops) = live.register("uid-web", "shop", conn("ops"), addr, addr);
        let (_g2, from_front) = live.register("uid-web", "shop", conn("front"), addr, addr);
        // Another namespace's pod: a shop policy does not reach it.
        let (_g3, to_other) = live.register("uid-x", "other", conn("ops"), addr, addr);
        assert_eq!(live.recheck(&state_with(&[]), &local, &metrics), 0);
        assert_eq!(
            live.recheck(&state_with(&[deny_namespace("ops")]), &local, &metrics),
            1
        );
        assert!(from_ops.is_cancelled());
        assert!(!from_front.is_cancelled() && !to_other.is_cancelled());
        let closed = metrics
            .authz_closed
            .get_or_create(&crate::metrics::AuthzLabels {
                policy: "shop/deny-ops".into(),
                reason: "deny_policy".into(),
            })
            .get();
        assert_eq!(closed, 1);
        // Already cut: not counted twice. A dropped guard leaves the registry.
        assert_eq!(
            live.recheck(&state_with(&[deny_namespace("ops")]), &local, &metrics),
            0
        );
        drop(g1);
        assert_eq!(live.len(), 2);
    }
}
