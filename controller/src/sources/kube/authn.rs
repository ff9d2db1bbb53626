//! RequestAuthentications (`quicmesh.io/v1alpha1`, read as raw objects so
//! that a malformed one is compiled into an invalid one that fails closed,
//! never dropped as a decoding error), and the Secrets their
//! `jwksFrom.secretKeyRef` may name: only those labeled
//! `quicmesh.io/jwks: "true"`, selected by the API server (a label selector
//! on the list and every watch), so the controller holds no other Secret.
//!
//! RBAC: list and watch on `requestauthentications` and on `secrets`,
//! cluster-wide (a label selector does not narrow what RBAC must grant).

use std::sync::Arc;

use k8s_openapi::api::core::v1 as core;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::watcher;
use serde_json::{json, Value};

use super::watch_kind_with;
use crate::authn::JWKS_SECRET_LABEL;
use crate::model::{self, Kind, Object};
use crate::store::Store;

/// The watch of JWKS Secrets: `quicmesh.io/jwks=true`.
pub fn jwks_secrets() -> watcher::Config {
    watcher::Config::default().labels(&format!("{JWKS_SECRET_LABEL}=true"))
}

/// A RequestAuthentication as written (compiled against the index later).
pub fn request_authentication(o: &DynamicObject) -> Option<model::RequestAuthentication> {
    let (Some(name), Some(namespace)) = (&o.metadata.name, &o.metadata.namespace) else {
        tracing::warn!(
            name = o.metadata.name.as_deref().unwrap_or_default(),
            "skipped a RequestAuthentication without a name or namespace"
        );
        return None;
    };
    let spec = match o.data.get("spec") {
        None | Some(Value::Null) => json!({}),
        Some(spec) => spec.clone(),
    };
    Some(model::RequestAuthentication {
        name: name.clone(),
        namespace: namespace.clone(),
        generation: o.metadata.generation.unwrap_or(0),
        spec,
        files: None,
    })
}

/// A JWKS Secret: its data (what a key holds is checked when it is used).
pub fn jwks_secret(s: &core::Secret) -> Option<model::Secret> {
    let (Some(name), Some(namespace)) = (&s.metadata.name, &s.metadata.namespace) else {
        return None;
    };
    Some(model::Secret {
        name: name.clone(),
        namespace: namespace.clone(),
        data: s
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect(),
    })
}

/// Watches RequestAuthentications in all namespaces.
pub async fn watch_request_authentications(
    client: kube::Client,
    store: Arc<Store>,
) -> anyhow::Result<()> {
    let resource = ApiResource::erase::<crate::authn::RequestAuthentication>(&());
    watch_kind_with(
        Api::<DynamicObject>::all_with(client, &resource),
        watcher::Config::default(),
        store,
        Kind::RequestAuthentication,
        |o| request_authentication(o).map(Object::RequestAuthentication),
    )
    .await
}

/// Watches the Secrets labeled `quicmesh.io/jwks=true`, in all namespaces.
pub async fn watch_jwks_secrets(client: kube::Client, store: Arc<Store>) -> anyhow::Result<()> {
    watch_kind_with(
        Api::<core::Secret>::all(client),
        jwks_secrets(),
        store,
        Kind::Secret,
        |s| jwks_secret(s).map(Object::Secret),
    )
    .await
}
