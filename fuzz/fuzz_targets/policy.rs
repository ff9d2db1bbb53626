//! An `AuthorizationPolicy` spec as users write it (YAML, or JSON as the
//! Kubernetes API hands it over), compiled by the controller
//! (`controller/src/policy.rs`), sent through translation to ztunnel and
//! compiled there again. The first byte picks YAML or JSON and the
//! policy's namespace (its own or the mesh root); the rest is the spec.
//!
//! Holds: no panic; compiling the stored spec again gives the same policy;
//! ztunnel ends up with exactly the policy the controller compiled, so both
//! decide every connection alike; an invalid ALLOW or DENY policy denies
//! every connection.
#![no_main]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use quicmesh_controller::index::{Index, DEFAULT_ROOT_NAMESPACE};
use quicmesh_controller::model::{Object, Pod};
use quicmesh_controller::policy::compile;
use quicmesh_controller::translate::{self, Mesh};
use quicmesh_core::authz::{evaluate, Action, Connection, Policy, StringMatch};
use quicmesh_core::identity::SpiffeId;
use ztunnel::state::State;

const TRUST_DOMAIN: &str = "cluster.local";

/// Connections worth deciding: fixed ones, and ones made from what the
/// policy names (so that its rules can match).
fn connections(p: &Policy) -> Vec<Connection> {
    let mut principals = vec![
        None,
        Some("spiffe://cluster.local/ns/demo-client/sa/client".to_string()),
        Some("spiffe://other.example/ns/demo-client/sa/client".to_string()),
    ];
    let mut ips = vec![
        IpAddr::V4(Ipv4Addr::new(10, 244, 1, 2)),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    let mut ports = vec![8080u16, 1];
    for s in p.rules.iter().flat_map(|r| &r.from).take(4) {
        for m in s.principals.iter().chain(&s.not_principals).take(4) {
            let (StringMatch::Exact(v) | StringMatch::Prefix(v) | StringMatch::Suffix(v)) = m
            else {
                continue;
            };
            principals.push(Some(format!("spiffe://{v}")));
        }
        for m in s.namespaces.iter().chain(&s.not_namespaces).take(4) {
            let (StringMatch::Exact(v) | StringMatch::Prefix(v) | StringMatch::Suffix(v)) = m
            else {
                continue;
            };
            principals.push(Some(format!("spiffe://{TRUST_DOMAIN}/ns/{v}/sa/x")));
        }
        for n in s.ip_blocks.iter().chain(&s.not_ip_blocks).take(4) {
            if let Some((a, _)) = n.to_string().split_once('/') {
                ips.extend(a.parse::<IpAddr>().ok());
            }
        }
    }
    for o in p.rules.iter().flat_map(|r| &r.to).take(4) {
        ports.extend(o.ports.iter().chain(&o.not_ports).take(4));
    }
    let mut out = Vec::new();
    for pr in &principals {
        let id = pr.as_deref().and_then(|s| SpiffeId::parse(s).ok());
        for ip in &ips {
            for port in &ports {
                out.push(Connection::new(id.clone(), TRUST_DOMAIN, *ip, *port));
            }
        }
    }
    out.truncate(256);
    out
}

fuzz_target!(
    init: quicmesh_fuzz::write_seeds_if_asked("policy", quicmesh_fuzz::seeds::policy),
    |data: &[u8]| {
        let Some((&flags, rest)) = data.split_first() else {
            return;
        };
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        let spec: serde_json::Value = if flags & 1 == 0 {
            let Ok(v) = serde_yaml::from_str::<serde_yaml::Value>(text) else {
                return;
            };
            // As the manifest source converts a spec.
            match serde_json::to_value(v) {
                Ok(s) => s,
                Err(_) => return,
            }
        } else {
            match serde_json::from_str(text) {
                Ok(s) => s,
                Err(_) => return,
            }
        };
        let namespace = if flags & 2 == 0 { "demo-server" } else { DEFAULT_ROOT_NAMESPACE };
        let ap = compile(namespace, "fuzz", &spec);
        assert_eq!(compile(namespace, "fuzz", &ap.spec).policy, ap.policy, "recompiles alike");

        // Through translation to ztunnel, with a pod the selector may pick.
        let mut index = Index::new();
        index.upsert(Object::Pod(Pod {
            uid: "uid-1".into(),
            name: "hello".into(),
            namespace: "demo-server".into(),
            labels: BTreeMap::from([("app".to_string(), "hello".to_string())]),
            annotations: BTreeMap::new(),
            service_account: "hello".into(),
            node: None,
            ips: vec![IpAddr::V4(Ipv4Addr::new(10, 244, 2, 3))],
            ready: true,
            containers: vec![],
        }));
        index.upsert(Object::AuthorizationPolicy(ap.clone()));
        let resources = translate::all(&index, &Mesh::new(TRUST_DOMAIN));
        let state = match State::from_resources(TRUST_DOMAIN, 1, &resources) {
            Ok(s) => s,
            Err(e) => panic!("ztunnel refuses the controller's policy: {e}"),
        };
        let proxy = state
            .authorization
            .by_name
            .get(&ap.policy.name)
            .expect("the policy reaches ztunnel");
        assert_eq!(**proxy, ap.policy, "ztunnel enforces what the controller compiled");
        let poisoned = ap.policy.invalid.is_some() && ap.policy.action != Action::Audit;
        for conn in connections(&ap.policy) {
            let d = evaluate([&ap.policy], &conn);
            assert_eq!(d, evaluate([&**proxy], &conn));
            if poisoned {
                assert!(!d.allowed());
            }
        }
    }
);
