//! The Kubernetes source: one watcher per kind (Namespace, Pod, Service,
//! EndpointSlice, ServiceAccount, quicmesh's own AuthorizationPolicy and
//! RequestAuthentication with the Secrets labeled `quicmesh.io/jwks`
//! ([`authn`]), TrafficPolicy, and the Gateway API's Gateway, HTTPRoute and
//! GRPCRoute), across all namespaces, feeding the [`Store`]; and
//! TokenReview, to learn who a
//! caller's token belongs to.
//!
//! Each watcher lists, then watches from the list's resourceVersion. A list
//! (the first one, or a re-list after the API server answered 410 Gone)
//! replaces every object of its kind at once, so objects deleted while the
//! watch was down disappear. Errors are logged and retried with backoff;
//! they never stop the source, nor the watchers of other kinds (a cluster
//! without the AuthorizationPolicy CRD answers 404 for that kind only).
//!
//! [`run_for_node`] is the CNI node agent's narrower view: Namespaces, and
//! only the Pods of its node (`spec.nodeName`), through the same watchers.
//!
//! Each kind is a source of its own for the store's sync gate
//! ([`Store::expect_sync`], named by [`sync_name`]): synced after its first
//! successful list. Kinds of custom resources (AuthorizationPolicy, the
//! Gateway API's) are also synced by a 404 to their list (no CRD: there can
//! be none), but not by a 403 or any other error: policies may exist that
//! the controller cannot see, and serving config without them would let
//! through what they deny.

use std::fmt::Debug;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use futures::StreamExt;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::model::{self, Key, Kind, Object};
use crate::policy;
use crate::store::Store;

mod authn;
mod node;
mod tokens;
pub use authn::{
    jwks_secret, jwks_secrets, request_authentication, watch_jwks_secrets,
    watch_request_authentications,
};
pub use node::{node_pods, run_for_node, NODE_KINDS};
pub use tokens::{
    token_review, Caller, NODE_NAME_EXTRA, POD_NAME_EXTRA, POD_UID_EXTRA, TOKEN_AUDIENCE,
};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// How long to wait before re-listing when a watch is refused with HTTP 410
/// (the watcher only re-lists by itself on an in-stream 410 event).
const GONE_RELIST_DELAY: Duration = Duration::from_secs(1);

/// The CRD to apply for AuthorizationPolicies to be read (and enforced).
pub const POLICY_CRD_FILE: &str = "controller/crds/authorizationpolicies.quicmesh.io.yaml";
/// The CRD to apply for TrafficPolicies to be read.
pub const TRAFFIC_CRD_FILE: &str = "controller/crds/trafficpolicies.quicmesh.io.yaml";

/// The CRD to apply for TrustDomainFederations to be read.
pub const FEDERATION_CRD_FILE: &str = "controller/crds/trustdomainfederations.quicmesh.io.yaml";

/// The kinds [`run`] watches.
pub const KINDS: [Kind; 14] = [
    Kind::Namespace,
    Kind::Pod,
    Kind::Service,
    Kind::EndpointSlice,
    Kind::ServiceAccount,
    Kind::AuthorizationPolicy,
    Kind::Gateway,
    Kind::HttpRoute,
    Kind::GrpcRoute,
    Kind::RequestAuthentication,
    Kind::Secret,
    Kind::TrafficPolicy,
    Kind::WorkloadEntry,
    Kind::TrustDomainFederation,
];

/// Kinds defined by a CRD: a 404 to their list means none can exist.
fn custom(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::AuthorizationPolicy
            | Kind::RequestAuthentication
            | Kind::Gateway
            | Kind::HttpRoute
            | Kind::GrpcRoute
            | Kind::TrafficPolicy
            | Kind::WorkloadEntry
            | Kind::TrustDomainFederation
    )
}

/// Kinds whose objects, unseen, only take settings away that fail open
/// (TrafficPolicy: resilience; TrustDomainFederation: unseen, a peer
/// trust domain's workloads are refused, failing closed): the config
/// stream does not wait for them when the controller may not list them.
fn optional(kind: Kind) -> bool {
    kind == Kind::TrafficPolicy || kind == Kind::TrustDomainFederation
}

/// The Gateway API resource of `kind` (gateway.networking.k8s.io/v1).
pub fn gateway_api(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "gateway.networking.k8s.io".into(),
        version: "v1".into(),
        api_version: "gateway.networking.k8s.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// The name under which the watcher of `kind` registers with the store's
/// sync gate (`/status` lists the pending ones), e.g. `kube/Pod`.
pub fn sync_name(kind: Kind) -> String {
    format!("kube/{kind:?}")
}

/// Watches the kinds quicmesh reads ([`KINDS`]), in all namespaces, and feeds
/// `store`. Runs until cancelled; transient errors are retried with backoff.
///
/// Every kind is registered with the store's sync gate when this is called,
/// before the returned future first runs, so that no config subscriber can
/// slip in between.
pub fn run(
    client: kube::Client,
    store: Arc<Store>,
) -> impl Future<Output = anyhow::Result<()>> + Send {
    for kind in KINDS {
        store.expect_sync(&sync_name(kind));
    }
    async move { watch_all(client, store).await }
}

async fn watch_all(client: kube::Client, store: Arc<Store>) -> anyhow::Result<()> {
    tokio::try_join!(
        watch_namespaces(client.clone(), store.clone()),
        watch_pods(client.clone(), store.clone(), watcher::Config::default()),
        watch_kind(
            Api::<core::Service>::all(client.clone()),
            store.clone(),
            Kind::Service,
            |o| { service(o).map(Object::Service) }
        ),
        watch_kind(
            Api::<discovery::EndpointSlice>::all(client.clone()),
            store.clone(),
            Kind::EndpointSlice,
            |o| endpoint_slice(o).map(Object::EndpointSlice),
        ),
        watch_kind(
            Api::<core::ServiceAccount>::all(client.clone()),
            store.clone(),
            Kind::ServiceAccount,
            |o| { service_account(o).map(Object::ServiceAccount) }
        ),
        watch_authorization_policies(client.clone(), store.clone()),
        watch_request_authentications(client.clone(), store.clone()),
        watch_jwks_secrets(client.clone(), store.clone()),
        watch_traffic_policies(client.clone(), store.clone()),
        watch_federations(client.clone(), store.clone()),
        watch_kind(
            Api::<DynamicObject>::all_with(
                client.clone(),
                &ApiResource::erase::<crate::workload_entry::WorkloadEntry>(&())
            ),
            store.clone(),
            Kind::WorkloadEntry,
            |o| crate::workload_entry::from_dynamic(o).map(Object::WorkloadEntry),
        ),
        watch_kind(
            Api::<DynamicObject>::all_with(client.clone(), &gateway_api("Gateway", "gateways")),
            store.clone(),
            Kind::Gateway,
            |o| gateway(o).map(Object::Gateway),
        ),
        watch_kind(
            Api::<DynamicObject>::all_with(client.clone(), &gateway_api("HTTPRoute", "httproutes")),
            store.clone(),
            Kind::HttpRoute,
            |o| route(model::RouteKind::Http, o).map(Object::Route),
        ),
        watch_kind(
            Api::<DynamicObject>::all_with(client, &gateway_api("GRPCRoute", "grpcroutes")),
            store,
            Kind::GrpcRoute,
            |o| route(model::RouteKind::Grpc, o).map(Object::Route),
        ),
    )?;
    Ok(())
}

/// Watches Namespaces (all of them) and feeds `store`.
async fn watch_namespaces(client: kube::Client, store: Arc<Store>) -> anyhow::Result<()> {
    watch_kind(
        Api::<core::Namespace>::all(client),
        store,
        Kind::Namespace,
        |o| namespace(o).map(Object::Namespace),
    )
    .await
}

/// Watches the Pods `config` selects, in all namespaces, and feeds `store`.
async fn watch_pods(
    client: kube::Client,
    store: Arc<Store>,
    config: watcher::Config,
) -> anyhow::Result<()> {
    watch_kind_with(
        Api::<core::Pod>::all(client),
        config,
        store,
        Kind::Pod,
        |o| pod(o).map(Object::Pod),
    )
    .await
}

/// Watches `AuthorizationPolicy` (`quicmesh.io/v1alpha1`) objects in all
/// namespaces. They are read as [`DynamicObject`]s, not as the typed
/// [`policy::AuthorizationPolicy`], so that a malformed one is not dropped
/// as a decoding error (which would fail open) but compiled into an invalid
/// policy that fails closed. Runs until cancelled; without the CRD it warns
/// and retries with backoff.
pub async fn watch_authorization_policies(
    client: kube::Client,
    store: Arc<Store>,
) -> anyhow::Result<()> {
    let resource = ApiResource::erase::<policy::AuthorizationPolicy>(&());
    watch_kind(
        Api::<DynamicObject>::all_with(client, &resource),
        store,
        Kind::AuthorizationPolicy,
        |o| authorization_policy(o).map(Object::AuthorizationPolicy),
    )
    .await
}

/// Watches `TrafficPolicy` (`quicmesh.io/v1alpha1`) objects in all
/// namespaces, as [`DynamicObject`]s: a malformed one is compiled into an
/// invalid policy that says why in its status, not dropped as a decoding
/// error.
pub async fn watch_traffic_policies(client: kube::Client, store: Arc<Store>) -> anyhow::Result<()> {
    let resource = ApiResource::erase::<crate::traffic::TrafficPolicy>(&());
    watch_kind(
        Api::<DynamicObject>::all_with(client, &resource),
        store,
        Kind::TrafficPolicy,
        |o| traffic_policy(o).map(Object::TrafficPolicy),
    )
    .await
}

/// Watches `TrustDomainFederation` (`quicmesh.io/v1alpha1`, cluster-scoped)
/// objects, as [`DynamicObject`]s: a malformed one is kept, invalid, and
/// says why in its status.
pub async fn watch_federations(client: kube::Client, store: Arc<Store>) -> anyhow::Result<()> {
    let resource = ApiResource::erase::<crate::federation::TrustDomainFederation>(&());
    watch_kind(
        Api::<DynamicObject>::all_with(client, &resource),
        store,
        Kind::TrustDomainFederation,
        |o| federation(o).map(Object::TrustDomainFederation),
    )
    .await
}

/// Watches one kind through `api` and feeds `store`, converting each object
/// with `convert` (None: skip it). Runs until cancelled. Registers the kind
/// with the store's sync gate ([`sync_name`]) and marks it synced after its
/// first list (or, for custom resources, a 404: no CRD).
pub async fn watch_kind<K, F>(
    api: Api<K>,
    store: Arc<Store>,
    kind: Kind,
    convert: F,
) -> anyhow::Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    F: Fn(&K) -> Option<Object>,
{
    watch_kind_with(api, watcher::Config::default(), store, kind, convert).await
}

/// [`watch_kind`] of only the objects `config` selects (a field or label
/// selector, sent with the list and every watch). The list replaces every
/// object of `kind` in `store`, so the store must hold no others of that
/// kind (one watcher per kind and store).
pub async fn watch_kind_with<K, F>(
    api: Api<K>,
    config: watcher::Config,
    store: Arc<Store>,
    kind: Kind,
    convert: F,
) -> anyhow::Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    F: Fn(&K) -> Option<Object>,
{
    let source = sync_name(kind);
    store.expect_sync(&source);
    // Whether this kind has given the store its first full view.
    let mut synced = false;
    loop {
        let mut events = std::pin::pin!(watcher(api.clone(), config.clone()).default_backoff());
        // Objects of an ongoing list; None when not listing.
        let mut listing: Option<Vec<Object>> = None;
        let gone = loop {
            let Some(event) = events.next().await else {
                bail!("the {kind:?} watch stream ended");
            };
            match event {
                Ok(Event::Init) => listing = Some(Vec::new()),
                Ok(Event::InitApply(o)) => {
                    if let Some(obj) = convert(&o) {
                        listing.get_or_insert_with(Vec::new).push(obj);
                    }
                }
                Ok(Event::InitDone) => {
                    let objs = listing.take().unwrap_or_default();
                    let count = objs.len();
                    let delta = store.apply(|ix| ix.replace(&[kind], objs));
                    tracing::info!(?kind, count, version = delta.map(|d| d.version), "listed");
                    synced = true;
                    store.mark_synced(&source);
                }
                Ok(Event::Apply(o)) => {
                    match convert(&o) {
                        Some(obj) => store.apply(|ix| ix.upsert(obj)),
                        // Unusable now: forget the version we had.
                        None => match key(kind, &o) {
                            Some(k) => store.apply(|ix| ix.delete(&k)),
                            None => None,
                        },
                    };
                }
                Ok(Event::Delete(o)) => {
                    if let Some(k) = key(kind, &o) {
                        store.apply(|ix| ix.delete(&k));
                    }
                }
                Err(e) => {
                    // One error per attempt; the backoff paces the attempts
                    // (0.8 s doubling up to 30 s), so this never floods.
                    match consequence(kind, &e, synced) {
                        Some(what) => tracing::warn!(?kind, error = %e, "{what}; retrying"),
                        None => tracing::warn!(?kind, error = %e, "watch error; retrying"),
                    }
                    let status = api_status(&e);
                    if !synced
                        && custom(kind)
                        && (status == Some(404) || (optional(kind) && status == Some(403)))
                    {
                        // No CRD, so there is no such object: a full view
                        // of none. (A 403 is not: some may exist unseen;
                        // but of a kind whose absence only loses
                        // resilience settings, config is not held back.)
                        synced = true;
                        store.mark_synced(&source);
                    }
                    if refused_as_gone(&e) {
                        break true;
                    }
                }
            }
        };
        if gone {
            // A fresh watcher starts with a list.
            tokio::time::sleep(GONE_RELIST_DELAY).await;
        }
    }
}

/// A watch refused with HTTP 410: the resourceVersion is too old, and the
/// watcher would retry it as is.
fn refused_as_gone(e: &watcher::Error) -> bool {
    matches!(e, watcher::Error::WatchStartFailed(kube::Error::Api(s)) if s.code == 410)
}

/// The HTTP status of an error the API server answered with.
fn api_status(e: &watcher::Error) -> Option<u16> {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some(s.code),
        watcher::Error::WatchError(s) => Some(s.code),
        _ => None,
    }
}

/// What a failed list or watch of `kind` means for the mesh, when it means
/// more than "retrying". `synced`: the kind has been listed before (until
/// it is, the config stream holds config back from proxies).
fn consequence(kind: Kind, e: &watcher::Error, synced: bool) -> Option<String> {
    match (kind, api_status(e)?, synced) {
        (Kind::AuthorizationPolicy, 404, _) => Some(format!(
            "the AuthorizationPolicy CRD (authorizationpolicies.quicmesh.io/v1alpha1) is not \
             installed: AuthorizationPolicies are not enforced until it is \
             (kubectl apply -f {POLICY_CRD_FILE})"
        )),
        (Kind::AuthorizationPolicy, 403, false) => Some(
            "the controller may not read authorizationpolicies.quicmesh.io: proxies get no \
             config until its ClusterRole grants get, list and watch on them (policies may \
             exist that it cannot see)"
                .to_string(),
        ),
        (Kind::AuthorizationPolicy, 403, true) => Some(
            "the controller may not read authorizationpolicies.quicmesh.io: new and \
             changed AuthorizationPolicies are not enforced until its ClusterRole grants \
             get, list and watch on them"
                .to_string(),
        ),
        (Kind::RequestAuthentication, 404, _) => Some(
            "the RequestAuthentication CRD (requestauthentications.quicmesh.io/v1alpha1) is \
             not installed: no JWT is checked until it is (kubectl apply -f \
             controller/crds/requestauthentications.quicmesh.io.yaml)"
                .to_string(),
        ),
        (Kind::TrafficPolicy, 404, _) => Some(format!(
            "the TrafficPolicy CRD (trafficpolicies.quicmesh.io/v1alpha1) is not installed: \
             no TrafficPolicies are read until it is (kubectl apply -f {TRAFFIC_CRD_FILE})"
        )),
        (Kind::TrafficPolicy, 403, _) => Some(
            "the controller may not read trafficpolicies.quicmesh.io: TrafficPolicies are \
             not applied (config is served without them) until its ClusterRole grants list \
             and watch on them"
                .to_string(),
        ),
        (Kind::TrustDomainFederation, 404, _) => Some(format!(
            "the TrustDomainFederation CRD (trustdomainfederations.quicmesh.io/v1alpha1) is \
             not installed: no trust domain is federated until it is (kubectl apply -f \
             {FEDERATION_CRD_FILE})"
        )),
        (Kind::TrustDomainFederation, 403, _) => Some(
            "the controller may not read trustdomainfederations.quicmesh.io: no trust domain \
             is federated (their workloads are refused) until its ClusterRole grants list and \
             watch on them"
                .to_string(),
        ),
        (Kind::Gateway | Kind::HttpRoute | Kind::GrpcRoute, 404, _) => Some(format!(
            "the Gateway API CRD for {kind:?} (gateway.networking.k8s.io/v1, standard channel) \
             is not installed: no waypoint Gateways or routes of that kind are read until it \
             is (labels still provision waypoints)"
        )),
        (_, 403, false) => Some(format!(
            "the controller may not list {kind:?} objects: proxies get no config until its \
             ClusterRole grants get, list and watch on them"
        )),
        _ => None,
    }
}

/// The index key of a Kubernetes object of `kind`.
fn key<K: Resource>(kind: Kind, o: &K) -> Option<Key> {
    let name = o.meta().name.clone()?;
    Some(Key {
        kind,
        namespace: o.meta().namespace.clone().unwrap_or_default(),
        name,
    })
}

/// `namespace/name` of an object, for messages.
fn describe<K: Resource<DynamicType = ()>>(o: &K) -> String {
    let m = o.meta();
    match (&m.namespace, &m.name) {
        (Some(ns), Some(n)) => format!("{} {ns}/{n}", K::kind(&())),
        (None, Some(n)) => format!("{} {n}", K::kind(&())),
        _ => format!("{} without a name", K::kind(&())),
    }
}

/// Name and namespace, or a warning and None.
fn name_and_namespace<K: Resource<DynamicType = ()>>(o: &K) -> Option<(String, String)> {
    match (&o.meta().name, &o.meta().namespace) {
        (Some(n), Some(ns)) => Some((n.clone(), ns.clone())),
        _ => {
            tracing::warn!(object = describe(o), "skipped: no name or namespace");
            None
        }
    }
}

fn parse_ips<'a>(what: &str, ips: impl IntoIterator<Item = &'a str>) -> Vec<IpAddr> {
    ips.into_iter()
        .filter(|s| !s.is_empty() && *s != "None")
        .filter_map(|s| match s.parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                tracing::warn!(
                    object = what,
                    address = s,
                    "ignored an address that is not an IP"
                );
                None
            }
        })
        .collect()
}

fn port(p: i32) -> Option<u16> {
    u16::try_from(p).ok().filter(|p| *p != 0)
}

pub fn namespace(n: &core::Namespace) -> Option<model::Namespace> {
    let Some(name) = n.metadata.name.clone() else {
        tracing::warn!("skipped a Namespace without a name");
        return None;
    };
    Some(model::Namespace {
        name,
        labels: n.labels().clone(),
    })
}

/// An AuthorizationPolicy, compiled from its raw `spec` (a missing or null
/// spec is `{}`). A spec that cannot be understood is not skipped: it
/// compiles into an invalid policy, which denies what it targets.
pub fn authorization_policy(o: &DynamicObject) -> Option<model::AuthorizationPolicy> {
    let (Some(name), Some(namespace)) = (&o.metadata.name, &o.metadata.namespace) else {
        tracing::warn!(
            name = o.metadata.name.as_deref().unwrap_or_default(),
            "skipped an AuthorizationPolicy without a name or namespace"
        );
        return None;
    };
    let empty = json!({});
    let spec = match o.data.get("spec") {
        None | Some(Value::Null) => &empty,
        Some(spec) => spec,
    };
    Some(model::AuthorizationPolicy {
        generation: o.metadata.generation.unwrap_or(0),
        ..policy::compile(namespace, name, spec)
    })
}

/// A TrafficPolicy, compiled from its raw `spec` (a missing or null spec
/// is `{}`, which is invalid: it targets nothing).
pub fn traffic_policy(o: &DynamicObject) -> Option<model::TrafficPolicy> {
    let (name, namespace) = dynamic_name("TrafficPolicy", o)?;
    let empty = json!({});
    let spec = match o.data.get("spec") {
        None | Some(Value::Null) => &empty,
        Some(spec) => spec,
    };
    Some(crate::traffic::compile(
        &namespace,
        &name,
        o.metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_second()),
        o.metadata.generation.unwrap_or(0),
        spec,
    ))
}

/// A TrustDomainFederation (cluster-scoped), checked from its raw `spec`.
pub fn federation(o: &DynamicObject) -> Option<model::TrustDomainFederation> {
    let Some(name) = &o.metadata.name else {
        tracing::warn!("skipped a TrustDomainFederation without a name");
        return None;
    };
    let empty = json!({});
    let spec = match o.data.get("spec") {
        None | Some(Value::Null) => &empty,
        Some(spec) => spec,
    };
    Some(crate::federation::compile(
        name,
        o.metadata.generation.unwrap_or(0),
        spec,
    ))
}

/// `metadata.name` and `metadata.namespace` of a custom resource, or a
/// warning and None.
fn dynamic_name(kind: &str, o: &DynamicObject) -> Option<(String, String)> {
    match (&o.metadata.name, &o.metadata.namespace) {
        (Some(n), Some(ns)) => Some((n.clone(), ns.clone())),
        _ => {
            tracing::warn!(
                name = o.metadata.name.as_deref().unwrap_or_default(),
                "skipped a {kind} without a name or namespace"
            );
            None
        }
    }
}

pub fn gateway(o: &DynamicObject) -> Option<model::Gateway> {
    let (name, namespace) = dynamic_name("Gateway", o)?;
    let Some(class) = o
        .data
        .pointer("/spec/gatewayClassName")
        .and_then(Value::as_str)
    else {
        tracing::warn!(gateway = %format!("{namespace}/{name}"), "skipped a Gateway without spec.gatewayClassName");
        return None;
    };
    Some(model::Gateway {
        name,
        namespace,
        class: class.to_string(),
        labels: o.metadata.labels.clone().unwrap_or_default(),
        uid: o.metadata.uid.clone().unwrap_or_default(),
        generation: o.metadata.generation.unwrap_or(0),
    })
}

/// An HTTPRoute or GRPCRoute as written: its spec is read (and refused
/// with a status, never dropped) by [`crate::gamma`].
pub fn route(kind: model::RouteKind, o: &DynamicObject) -> Option<model::Route> {
    let (name, namespace) = dynamic_name(kind.api_kind(), o)?;
    Some(model::Route {
        kind,
        name,
        namespace,
        created: o
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_second()),
        generation: o.metadata.generation.unwrap_or(0),
        spec: o.data.get("spec").cloned().unwrap_or_else(|| json!({})),
    })
}

pub fn service_account(sa: &core::ServiceAccount) -> Option<model::ServiceAccount> {
    let (name, namespace) = name_and_namespace(sa)?;
    Some(model::ServiceAccount { name, namespace })
}

/// A pod. A pod that has terminated (phase Succeeded or Failed) keeps its
/// status but no longer owns its IPs (they may be given to a new pod): it is
/// converted without IPs and not ready.
pub fn pod(p: &core::Pod) -> Option<model::Pod> {
    let (name, namespace) = name_and_namespace(p)?;
    let Some(uid) = p.metadata.uid.clone().filter(|u| !u.is_empty()) else {
        tracing::warn!(object = describe(p), "skipped: no uid");
        return None;
    };
    let what = describe(p);
    let spec = p.spec.as_ref();
    let status = p.status.as_ref();
    let terminated = status
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|ph| ph == "Succeeded" || ph == "Failed");
    // A hostNetwork pod's IPs are its node's (shared by every such pod on
    // it): no workload has them.
    let host_network = spec.and_then(|s| s.host_network) == Some(true);
    let ips = match status {
        Some(_) if terminated || host_network => Vec::new(),
        Some(s) => match s.pod_ips.as_deref() {
            Some(ips) if !ips.is_empty() => parse_ips(&what, ips.iter().map(|i| i.ip.as_str())),
            _ => parse_ips(&what, s.pod_ip.as_deref()),
        },
        None => Vec::new(),
    };
    let ready = !terminated
        && status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let containers = spec
        .map(|s| s.containers.iter().map(|c| container(&what, c)).collect())
        .unwrap_or_default();
    Some(model::Pod {
        uid,
        name,
        namespace,
        labels: p.labels().clone(),
        annotations: p.annotations().clone(),
        service_account: spec
            .and_then(|s| s.service_account_name.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into()),
        node: spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        ips,
        ready,
        containers,
    })
}

fn container(what: &str, c: &core::Container) -> model::Container {
    model::Container {
        name: c.name.clone(),
        command: c.command.clone().unwrap_or_default(),
        args: c.args.clone().unwrap_or_default(),
        // Only literal values: valueFrom needs other objects.
        env: c
            .env
            .iter()
            .flatten()
            .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
            .collect(),
        ports: c
            .ports
            .iter()
            .flatten()
            .filter_map(|p| match port(p.container_port) {
                Some(port) => Some(model::ContainerPort {
                    name: p.name.clone(),
                    port,
                }),
                None => {
                    tracing::warn!(
                        object = what,
                        port = p.container_port,
                        "ignored an invalid container port"
                    );
                    None
                }
            })
            .collect(),
    }
}

pub fn service(s: &core::Service) -> Option<model::Service> {
    let (name, namespace) = name_and_namespace(s)?;
    let what = describe(s);
    let Some(spec) = s.spec.as_ref() else {
        return Some(model::Service {
            name,
            namespace,
            vips: Vec::new(),
            ports: Vec::new(),
            selector: None,
            labels: s.labels().clone(),
        });
    };
    let vips = match spec.cluster_ips.as_deref() {
        Some(ips) if !ips.is_empty() => parse_ips(&what, ips.iter().map(String::as_str)),
        _ => parse_ips(&what, spec.cluster_ip.as_deref()),
    };
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            let Some(number) = port(p.port) else {
                tracing::warn!(
                    object = what,
                    port = p.port,
                    "ignored an invalid service port"
                );
                return None;
            };
            let target = match &p.target_port {
                Some(IntOrString::Int(t)) => model::TargetPort::Number(port(*t).unwrap_or(number)),
                Some(IntOrString::String(t)) if !t.is_empty() => match t.parse::<u16>() {
                    Ok(t) if t != 0 => model::TargetPort::Number(t),
                    _ => model::TargetPort::Name(t.clone()),
                },
                _ => model::TargetPort::Number(number),
            };
            Some(model::ServicePort {
                name: p.name.clone().unwrap_or_default(),
                port: number,
                target,
                app_protocol: p.app_protocol.clone(),
            })
        })
        .collect();
    let selector = spec.selector.clone().filter(|s| !s.is_empty());
    Some(model::Service {
        name,
        namespace,
        vips,
        ports,
        selector,
        labels: s.labels().clone(),
    })
}

pub fn endpoint_slice(es: &discovery::EndpointSlice) -> Option<model::EndpointSlice> {
    let (name, namespace) = name_and_namespace(es)?;
    let what = describe(es);
    let Some(service) = es
        .labels()
        .get(SERVICE_NAME_LABEL)
        .filter(|s| !s.is_empty())
        .cloned()
    else {
        tracing::warn!(object = what, "skipped: no {SERVICE_NAME_LABEL} label");
        return None;
    };
    // A port without a number means "all ports": nothing to route to.
    let ports = es
        .ports
        .iter()
        .flatten()
        .filter_map(|p| Some((p.name.clone().unwrap_or_default(), port(p.port?)?)))
        .collect();
    let endpoints = es
        .endpoints
        .iter()
        .map(|e| model::SliceEndpoint {
            ips: if es.address_type == "FQDN" {
                Vec::new()
            } else {
                parse_ips(&what, e.addresses.iter().map(String::as_str))
            },
            ready: e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
            pod: e
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref().is_none_or(|k| k == "Pod"))
                .and_then(|r| r.name.clone()),
            node: e.node_name.clone(),
        })
        .filter(|e| !e.ips.is_empty())
        .collect();
    Some(model::EndpointSlice {
        name,
        namespace,
        service,
        ports,
        endpoints,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{SliceEndpoint, TargetPort};
    use serde_json::json;

    fn from_json<T: DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).expect("valid object")
    }

    #[test]
    fn pods_convert_with_status_and_containers() {
        let p: core::Pod = from_json(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1", "labels": {"app": "web"}},
            "spec": {
                "serviceAccountName": "web",
                "nodeName": "node-a",
                "containers": [{
                    "name": "app", "image": "web:1",
                    "command": ["/web"], "args": ["--port", "8080"],
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                    "ports": [{"name": "http", "containerPort": 8080}, {"containerPort": 9090, "protocol": "TCP"}]
                }]
            },
            "status": {
                "phase": "Running",
                "podIP": "10.244.1.5",
                "podIPs": [{"ip": "10.244.1.5"}, {"ip": "fd00::5"}],
                "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]
            }
        }));
        let m = pod(&p).unwrap();
        assert_eq!(
            (m.uid.as_str(), m.name.as_str(), m.namespace.as_str()),
            ("u-1", "web-1", "shop")
        );
        assert_eq!(m.labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(m.service_account, "web");
        assert_eq!(m.node.as_deref(), Some("node-a"));
        assert_eq!(
            m.ips,
            [
                "10.244.1.5".parse::<IpAddr>().unwrap(),
                "fd00::5".parse().unwrap()
            ]
        );
        assert!(m.ready);
        let c = &m.containers[0];
        assert_eq!(
            (c.name.as_str(), c.command.as_slice(), c.args.len()),
            ("app", &["/web".to_string()][..], 2)
        );
        assert_eq!(c.env, [("A".to_string(), "1".to_string())]);
        assert_eq!(m.named_port("http"), Some(8080));
        assert_eq!(
            c.ports[1],
            model::ContainerPort {
                name: None,
                port: 9090
            }
        );
        // hostNetwork: its IPs are the node's, which no workload has.
        let mut host = p.clone();
        host.spec.as_mut().unwrap().host_network = Some(true);
        let m = pod(&host).unwrap();
        assert!(m.ips.is_empty(), "{:?}", m.ips);
        assert_eq!(m.node.as_deref(), Some("node-a"));
    }

    #[test]
    fn pod_defaults_and_refusals() {
        // Pending: no node, no IP, default service account, not ready.
        let p: core::Pod = from_json(json!({
            "metadata": {"name": "p", "namespace": "a", "uid": "u"},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]}
        }));
        let m = pod(&p).unwrap();
        assert_eq!(
            (
                m.service_account.as_str(),
                m.node.as_deref(),
                m.ips.len(),
                m.ready
            ),
            ("default", None, 0, false)
        );
        // Only podIP (older clusters).
        let p: core::Pod = from_json(json!({
            "metadata": {"name": "p", "namespace": "a", "uid": "u"},
            "status": {"podIP": "10.0.0.9"}
        }));
        assert_eq!(
            pod(&p).unwrap().ips,
            ["10.0.0.9".parse::<IpAddr>().unwrap()]
        );
        // Terminated: no IPs, not ready.
        let p: core::Pod = from_json(json!({
            "metadata": {"name": "p", "namespace": "a", "uid": "u"},
            "status": {"phase": "Succeeded", "podIP": "10.0.0.9", "conditions": [{"type": "Ready", "status": "True"}]}
        }));
        let m = pod(&p).unwrap();
        assert!(m.ips.is_empty() && !m.ready);
        // No uid, no namespace: skipped.
        let p: core::Pod = from_json(json!({"metadata": {"name": "p", "namespace": "a"}}));
        assert!(pod(&p).is_none());
        let p: core::Pod = from_json(json!({"metadata": {"name": "p", "uid": "u"}}));
        assert!(pod(&p).is_none());
    }

    #[test]
    fn services_convert_ports_vips_and_selector() {
        let s: core::Service = from_json(json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10", "fd00:96::10"],
                "selector": {"app": "web"},
                "ports": [
                    {"name": "http", "port": 80, "targetPort": "http"},
                    {"name": "admin", "port": 81, "targetPort": 9000},
                    {"port": 82},
                    {"port": 83, "targetPort": "8083"}
                ]
            }
        }));
        let m = service(&s).unwrap();
        assert_eq!(
            m.vips,
            [
                "10.96.0.10".parse::<IpAddr>().unwrap(),
                "fd00:96::10".parse().unwrap()
            ]
        );
        assert_eq!(
            m.selector,
            Some([("app".to_string(), "web".to_string())].into())
        );
        let ports: Vec<_> = m
            .ports
            .iter()
            .map(|p| (p.name.as_str(), p.port, p.target.clone()))
            .collect();
        assert_eq!(
            ports,
            [
                ("http", 80, TargetPort::Name("http".into())),
                ("admin", 81, TargetPort::Number(9000)),
                ("", 82, TargetPort::Number(82)),
                ("", 83, TargetPort::Number(8083)),
            ]
        );
        // Headless, no selector.
        let s: core::Service = from_json(json!({
            "metadata": {"name": "db", "namespace": "shop"},
            "spec": {"clusterIP": "None", "clusterIPs": ["None"], "ports": [{"port": 5432}]}
        }));
        let m = service(&s).unwrap();
        assert!(m.vips.is_empty());
        assert_eq!(m.selector, None);
        // Only clusterIP.
        let s: core::Service = from_json(json!({
            "metadata": {"name": "x", "namespace": "a"}, "spec": {"clusterIP": "10.96.1.1", "selector": {}}
        }));
        let m = service(&s).unwrap();
        assert_eq!((m.vips.len(), m.selector.is_none()), (1, true));
        let s: core::Service = from_json(json!({"metadata": {"name": "x"}}));
        assert!(service(&s).is_none());
    }

    #[test]
    fn endpoint_slices_convert() {
        let es: discovery::EndpointSlice = from_json(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-abc", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"port": 9000}, {"name": "all"}],
            "endpoints": [
                {"addresses": ["10.244.1.5"], "conditions": {"ready": true}, "nodeName": "node-a",
                 "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "shop", "uid": "u-1"}},
                {"addresses": ["10.244.2.6"], "conditions": {"ready": false}},
                {"addresses": ["10.244.2.7"]}
            ]
        }));
        let m = endpoint_slice(&es).unwrap();
        assert_eq!((m.name.as_str(), m.service.as_str()), ("web-abc", "web"));
        assert_eq!(m.ports, [("http".to_string(), 8080), (String::new(), 9000)]);
        assert_eq!(
            m.endpoints[0],
            SliceEndpoint {
                ips: vec!["10.244.1.5".parse().unwrap()],
                ready: true,
                pod: Some("web-1".into()),
                node: Some("node-a".into()),
            }
        );
        assert_eq!(
            (m.endpoints[1].ready, m.endpoints[1].pod.as_deref()),
            (false, None)
        );
        assert!(m.endpoints[2].ready, "ready defaults to true");
        // Without the service label: skipped.
        let es: discovery::EndpointSlice = from_json(json!({
            "metadata": {"name": "x", "namespace": "shop"}, "addressType": "IPv4", "endpoints": []
        }));
        assert!(endpoint_slice(&es).is_none());
    }

    #[test]
    fn namespaces_and_service_accounts_convert() {
        let n: core::Namespace = from_json(json!({
            "metadata": {"name": "shop", "labels": {"quicmesh.io/dataplane-mode": "ambient"}}
        }));
        assert!(namespace(&n).unwrap().ambient());
        let sa: core::ServiceAccount =
            from_json(json!({"metadata": {"name": "web", "namespace": "shop"}}));
        assert_eq!(
            service_account(&sa),
            Some(model::ServiceAccount {
                name: "web".into(),
                namespace: "shop".into()
            })
        );
        let key = key(Kind::Namespace, &n).unwrap();
        assert_eq!((key.namespace.as_str(), key.name.as_str()), ("", "shop"));
    }

    #[test]
    fn authorization_policies_compile_from_the_raw_spec() {
        let policy = |v: serde_json::Value| {
            let o: DynamicObject = from_json(v);
            authorization_policy(&o)
        };
        let meta = json!({"name": "web-allow", "namespace": "shop", "uid": "u-9"});
        let p = policy(json!({
            "apiVersion": "quicmesh.io/v1alpha1", "kind": "AuthorizationPolicy", "metadata": meta,
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "action": "ALLOW",
                     "rules": [{"from": [{"source": {"namespaces": ["frontend"]}}]}]}
        }))
        .unwrap();
        assert_eq!(
            (p.namespace.as_str(), p.name.as_str()),
            ("shop", "web-allow")
        );
        assert_eq!(p.policy.invalid, None);
        assert_eq!(p.policy.rules.len(), 1);
        assert!(matches!(p.target, model::PolicyTarget::Selector(_)));
        // Malformed: kept, invalid, with the reason.
        let p = policy(json!({"metadata": meta, "spec": {"rules": "x"}})).unwrap();
        let why = p.policy.invalid.unwrap_or_default();
        assert!(why.contains("spec.rules"), "{why:?}");
        let p = policy(json!({"metadata": meta, "spec": {"rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/33"]}}]}]}}))
            .unwrap();
        assert!(p.policy.invalid.is_some());
        // No spec, or a null one: `{}` (allows nothing in its namespace).
        for v in [
            json!({"metadata": meta}),
            json!({"metadata": meta, "spec": null}),
        ] {
            let p = policy(v).unwrap();
            assert_eq!(p.policy.invalid, None);
            assert!(p.policy.rules.is_empty());
            assert_eq!(p.target, model::PolicyTarget::Namespace);
        }
        assert!(policy(json!({"metadata": {"name": "p"}})).is_none());
    }

    #[test]
    fn a_missing_policy_crd_is_explained() {
        let status = |code| {
            kube::core::Status::failure("404 page not found", "Failed to parse error data")
                .with_code(code)
                .boxed()
        };
        let listed = |code| watcher::Error::InitialListFailed(kube::Error::Api(status(code)));
        for synced in [false, true] {
            let why = consequence(Kind::AuthorizationPolicy, &listed(404), synced).unwrap();
            assert!(
                why.contains("not enforced") && why.contains(POLICY_CRD_FILE),
                "{why}"
            );
            let why = consequence(Kind::AuthorizationPolicy, &listed(403), synced).unwrap();
            assert!(why.contains("ClusterRole"), "{why}");
            assert_eq!(why.contains("no config"), !synced, "{why}");
            assert_eq!(consequence(Kind::Pod, &listed(404), synced), None);
            assert_eq!(
                consequence(Kind::AuthorizationPolicy, &listed(500), synced),
                None
            );
            let watched = watcher::Error::WatchStartFailed(kube::Error::Api(status(404)));
            assert!(consequence(Kind::AuthorizationPolicy, &watched, synced).is_some());
            assert_eq!(
                consequence(
                    Kind::AuthorizationPolicy,
                    &watcher::Error::NoResourceVersion,
                    synced
                ),
                None
            );
        }
        // Any kind that cannot be listed at first holds the config back.
        let why = consequence(Kind::Pod, &listed(403), false).unwrap();
        assert!(why.contains("Pod") && why.contains("no config"), "{why}");
        assert_eq!(consequence(Kind::Pod, &listed(403), true), None);
    }
}
