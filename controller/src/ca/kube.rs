//! Kubernetes: who calls the CA, where the CA is kept, and how proxies
//! learn its root.
//!
//! - A caller's bearer token is a bound service-account token, checked with
//!   TokenReview ([`TokenReviewer`]; the rules are in
//!   [`crate::sources::kube::Caller::for_ca`]).
//! - The CA lives in a Secret of the install namespace (keys `ca.pem`,
//!   `ca-key.pem`, and optionally `ca-chain.pem`, `roots.pem`: the files
//!   of `--ca-dir`): read on start, created with a new root when absent.
//!   Every replica reads the same one; when two create it at once, the one
//!   that loses (409) reads the winner's. Read again every
//!   `--ca-reload-interval` ([`read_secret`], [`super::rotation::follow`]):
//!   an edit (a rotation stage) takes effect without a restart; a bad one
//!   is refused and the last good CA kept.
//! - The trust bundle (every published root) is in a ConfigMap of the
//!   install namespace (key `ca.pem`), which ztunnels mount as their
//!   bootstrap `--trust-bundle`. Applied again when the bundle changes and
//!   every [`REPUBLISH`], so a deleted or edited ConfigMap comes back.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context as _};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, Patch, PatchParams, PostParams};
use quicmesh_core::identity::ca::{Ca, CaPem, CHAIN_FILE, ROOTS_FILE};

use super::rotation::CurrentCa;

use super::{Authenticator, Caller, NodeAgent, Refusal};
use crate::store::Store;

/// Kubernetes: a bearer token is a bound service-account token, checked
/// with TokenReview: a waypoint's pod acts for its waypoint, the node
/// agent's (ztunnel's) for the node its pod runs on, no other.
pub struct TokenReviewer {
    pub client: kube::Client,
    pub store: std::sync::Arc<Store>,
    pub agent: NodeAgent,
}

#[tonic::async_trait]
impl Authenticator for TokenReviewer {
    async fn caller_for_token(&self, token: &str) -> Result<Caller, Refusal> {
        let caller = crate::sources::kube::token_review(&self.client, token).await?;
        self.store.with_index(|ix| caller.for_ca(ix, &self.agent))
    }
}

/// The Secret's and the ConfigMap's key for the root certificate.
pub const CERT_KEY: &str = "ca.pem";
/// The Secret's key for the root's private key.
pub const KEY_KEY: &str = "ca-key.pem";
/// The field manager of the ConfigMap.
pub const FIELD_MANAGER: &str = "quicmesh-controller";
/// The root ConfigMap is applied again this often.
pub const REPUBLISH: Duration = Duration::from_secs(300);

fn labels() -> Option<BTreeMap<String, String>> {
    Some(
        [(
            "app.kubernetes.io/managed-by".to_string(),
            "quicmesh".to_string(),
        )]
        .into(),
    )
}

/// The CA kept in Secret `namespace/name`, or a new one stored there.
pub async fn load_or_create(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    trust_domain: &str,
) -> anyhow::Result<Ca> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let what = format!("Secret {namespace}/{name}");
    // Read, or create; a lost race to create reads the winner's.
    for _ in 0..2 {
        if let Some(secret) = api
            .get_opt(name)
            .await
            .with_context(|| format!("reading {what}"))?
        {
            return from_secret(&secret, trust_domain).with_context(|| format!("the CA in {what}"));
        }
        let ca = Ca::generate(trust_domain)?;
        let data = [
            (
                CERT_KEY.to_string(),
                ByteString(ca.cert_pem().as_bytes().to_vec()),
            ),
            (
                KEY_KEY.to_string(),
                ByteString(ca.key_pem().as_bytes().to_vec()),
            ),
        ];
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                labels: labels(),
                ..Default::default()
            },
            type_: Some("Opaque".to_string()),
            data: Some(data.into()),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => {
                tracing::info!(secret = %what, "generated a new CA root and stored it");
                return Ok(ca);
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                tracing::info!(secret = %what, "another replica stored the CA first; reading it");
            }
            Err(e) => return Err(e).with_context(|| format!("creating {what}")),
        }
    }
    bail!("{what} was created and is gone again")
}

/// The CA's parts kept in `secret` (the optional keys may be absent).
pub fn pem_from_secret(secret: &Secret) -> anyhow::Result<CaPem> {
    let data = secret.data.as_ref();
    let text = |key: &str| -> anyhow::Result<Option<String>> {
        data.and_then(|d| d.get(key))
            .map(|bytes| {
                String::from_utf8(bytes.0.clone())
                    .with_context(|| format!("{key:?} is not PEM text"))
            })
            .transpose()
    };
    let required = |key: &str| text(key)?.with_context(|| format!("no key {key:?}"));
    Ok(CaPem {
        cert: required(CERT_KEY)?,
        key: required(KEY_KEY)?,
        chain: text(CHAIN_FILE)?,
        roots: text(ROOTS_FILE)?,
    })
}

fn from_secret(secret: &Secret, trust_domain: &str) -> anyhow::Result<Ca> {
    Ok(Ca::from_parts(trust_domain, &pem_from_secret(secret)?)?)
}

/// The CA's parts as Secret `namespace/name` holds them now.
pub async fn read_secret(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<CaPem> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api
        .get(name)
        .await
        .with_context(|| format!("reading Secret {namespace}/{name}"))?;
    pem_from_secret(&secret).with_context(|| format!("the CA in Secret {namespace}/{name}"))
}

/// Applies ConfigMap `namespace/name` with the trust bundle (`ca.pem`).
pub async fn publish_root(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    ca_pem: &str,
) -> kube::Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: labels(),
            ..Default::default()
        },
        data: Some([(CERT_KEY.to_string(), ca_pem.to_string())].into()),
        ..Default::default()
    };
    // Server-side apply wants the type in the body.
    let mut body = serde_json::to_value(&cm).expect("a ConfigMap serializes");
    body["apiVersion"] = "v1".into();
    body["kind"] = "ConfigMap".into();
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(())
}

/// Keeps the trust bundle's ConfigMap in place and up to date for ever
/// (see the module doc).
pub async fn keep_root_published(
    client: kube::Client,
    namespace: String,
    name: String,
    ca: std::sync::Arc<CurrentCa>,
) {
    let mut changes = ca.subscribe();
    loop {
        let bundle = ca.roots_pem();
        let wait = match publish_root(&client, &namespace, &name, &bundle).await {
            Ok(()) => {
                tracing::debug!(configmap = %format!("{namespace}/{name}"), roots = ca.roots().len(), "trust bundle published");
                REPUBLISH
            }
            Err(e) => {
                tracing::warn!(configmap = %format!("{namespace}/{name}"), error = %e, "publishing the trust bundle failed; retrying");
                Duration::from_secs(5)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            r = changes.changed() => if r.is_err() {
                tokio::time::sleep(wait).await;
            },
        }
    }
}
