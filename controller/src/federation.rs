//! Federation with other SPIFFE trust domains: the `TrustDomainFederation`
//! custom resource (`quicmesh.io/v1alpha1`, cluster-scoped), its checking,
//! and its status; the fetcher of peers' bundles ([`fetch`]); and our own
//! SPIFFE bundle endpoint ([`endpoint`]). The document format is
//! [`quicmesh_core::identity::bundle_doc`]'s.
//!
//! 1. Cluster-scoped, as SPIRE's `ClusterFederatedTrustDomain`: trusting
//!    another trust domain changes how every proxy of the mesh verifies
//!    peers, so it is a cluster administrator's decision, not a
//!    namespace's; and a trust domain is one per mesh, so a namespaced
//!    object would invite two namespaces to disagree about one peer.
//! 2. A spec is checked whole ([`compile`]): the trust domain (a valid
//!    one, and not ours: [`problem`]), the URL (`https://`, no userinfo),
//!    the profile (`https_spiffe` needs `endpointSPIFFEID` in the peer's
//!    trust domain, i.e. a self-serving endpoint, and a
//!    `trustDomainBundle` to authenticate it the first time; `https_web`
//!    takes neither ID), the initial bundle (a SPIFFE bundle document).
//!    What fails makes the federation invalid (`Accepted=False`, reason
//!    `Invalid`, the field named): not fetched, its bundle withdrawn.
//! 3. Two federations of one trust domain: the first by name wins; the
//!    other is `Accepted=False`, reason `Conflicted`.
//! 4. Conditions, besides `Accepted`: `BundleAvailable` (a bundle is
//!    pushed to proxies: the initial or a fetched one) and `Fetched` (the
//!    last fetch; reason `Fetched` or, False, the failure's `Reason`
//!    ([`fetch::FetchError::reason`]) and message). A failure never
//!    withdraws a bundle: the last good one stays until the federation is
//!    deleted.

use std::collections::BTreeMap;

use kube::CustomResource;
use quicmesh_core::identity::{bundle_doc, SpiffeId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::attach::PolicyStatus;
use crate::gamma::Condition;
use crate::index::Index;
use crate::model::{self, EndpointProfile, FederationSpec};

pub mod endpoint;
pub mod fetch;
pub mod scripted;

/// Trust another SPIFFE trust domain: fetch its bundle from its SPIFFE
/// bundle endpoint and push it to every proxy, so that its workloads are
/// authenticated (and can be allowed by AuthorizationPolicies).
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[kube(
    group = "quicmesh.io",
    version = "v1alpha1",
    kind = "TrustDomainFederation",
    shortname = "tdf",
    status = "PolicyStatus",
    printcolumn = r#"{"name":"Trust domain","type":"string","jsonPath":".spec.trustDomain"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct TrustDomainFederationSpec {
    /// The peer's trust domain (`other.example`), not ours.
    pub trust_domain: String,
    /// Where its bundle is served: an `https://` URL.
    #[serde(rename = "bundleEndpointURL")]
    pub bundle_endpoint_url: String,
    pub bundle_endpoint_profile: BundleEndpointProfileSpec,
    /// The peer's bundle (a SPIFFE bundle document, JSON): pushed at once,
    /// and what authenticates an `https_spiffe` endpoint the first time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_domain_bundle: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct BundleEndpointProfileSpec {
    /// `https_web` (Web PKI) or `https_spiffe` (the endpoint's X.509 SVID).
    #[serde(rename = "type")]
    pub kind: ProfileType,
    /// https_spiffe: the SPIFFE ID the endpoint serves as, in the peer's
    /// trust domain.
    #[serde(
        rename = "endpointSPIFFEID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub endpoint_spiffe_id: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ProfileType {
    #[default]
    #[serde(rename = "https_web")]
    HttpsWeb,
    #[serde(rename = "https_spiffe")]
    HttpsSpiffe,
}

/// The CRD as YAML (checked in as controller/crds/trustdomainfederations.quicmesh.io.yaml).
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&TrustDomainFederation::crd()).expect("CRD serializes")
}

/// Reasons of the conditions.
pub mod reason {
    pub const ACCEPTED: &str = "Accepted";
    pub const INVALID: &str = "Invalid";
    pub const CONFLICTED: &str = "Conflicted";
    pub const FETCHED: &str = "Fetched";
    pub const INITIAL: &str = "InitialBundle";
    pub const NO_BUNDLE: &str = "NoBundle";
    pub const PENDING: &str = "Pending";
}

/// Checks a spec (JSON form); never fails: see the module doc, rule 2.
pub fn compile(name: &str, generation: i64, spec: &Value) -> model::TrustDomainFederation {
    model::TrustDomainFederation {
        name: name.to_string(),
        generation,
        spec: check(spec),
        written: spec.clone(),
    }
}

/// A federation that cannot be read at all (an unserved version...).
pub fn compile_failed(name: &str, reason: String) -> model::TrustDomainFederation {
    model::TrustDomainFederation {
        name: name.to_string(),
        generation: 0,
        spec: Err(reason),
        written: Value::Null,
    }
}

fn check(spec: &Value) -> Result<FederationSpec, String> {
    let s: TrustDomainFederationSpec =
        serde_path_to_error::deserialize(spec).map_err(|e| match e.path().to_string() {
            p if p == "." => format!("spec: {}", e.inner()),
            p => format!("spec.{p}: {}", e.inner()),
        })?;
    let td = &s.trust_domain;
    match SpiffeId::parse(&format!("spiffe://{td}")) {
        Ok(id) if id.path().is_empty() && id.trust_domain() == td => {}
        Ok(_) => {
            return Err(format!(
                "spec.trustDomain: {td:?} is not a trust domain name"
            ))
        }
        Err(e) => return Err(format!("spec.trustDomain: {td:?}: {e}")),
    }
    let url =
        check_url(&s.bundle_endpoint_url).map_err(|e| format!("spec.bundleEndpointURL: {e}"))?;
    let profile = match (
        s.bundle_endpoint_profile.kind,
        &s.bundle_endpoint_profile.endpoint_spiffe_id,
    ) {
        (ProfileType::HttpsWeb, None) => EndpointProfile::HttpsWeb,
        (ProfileType::HttpsWeb, Some(_)) => {
            return Err(
                "spec.bundleEndpointProfile.endpointSPIFFEID: only for type https_spiffe".into(),
            )
        }
        (ProfileType::HttpsSpiffe, None) => {
            return Err(
                "spec.bundleEndpointProfile.endpointSPIFFEID: required with type https_spiffe"
                    .into(),
            )
        }
        (ProfileType::HttpsSpiffe, Some(id)) => {
            let parsed = SpiffeId::parse(id)
                .map_err(|e| format!("spec.bundleEndpointProfile.endpointSPIFFEID: {e}"))?;
            if parsed.trust_domain() != td {
                return Err(format!(
                    "spec.bundleEndpointProfile.endpointSPIFFEID: {id} is not in trust domain {td} \
                     (only self-serving endpoints are supported)"
                ));
            }
            EndpointProfile::HttpsSpiffe {
                endpoint_id: parsed.to_string(),
            }
        }
    };
    let initial = match &s.trust_domain_bundle {
        None => None,
        Some(doc) => {
            let b = bundle_doc::parse(doc.as_bytes())
                .map_err(|e| format!("spec.trustDomainBundle: {e}"))?;
            fetch::roots_of_trust_domain(&b.roots, td)
                .map_err(|e| format!("spec.trustDomainBundle: {e}"))?;
            Some((b.roots.iter().map(|r| r.to_vec()).collect(), b.sequence))
        }
    };
    if matches!(profile, EndpointProfile::HttpsSpiffe { .. }) && initial.is_none() {
        return Err(
            "spec.trustDomainBundle: required with type https_spiffe (the peer's bundle \
                    authenticates its endpoint the first time)"
                .into(),
        );
    }
    Ok(FederationSpec {
        trust_domain: td.clone(),
        url,
        profile,
        initial,
    })
}

/// An `https://` URL without userinfo (SPIFFE Federation §5.2.1.1).
fn check_url(url: &str) -> Result<String, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!("{url:?}: only https:// URLs"));
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("{url:?}: no host"));
    };
    if authority.as_str().contains('@') {
        return Err(format!("{url:?}: no userinfo allowed"));
    }
    if authority.host().is_empty() {
        return Err(format!("{url:?}: no host"));
    }
    Ok(url.to_string())
}

/// Why a federation is not in force, if it is not: invalid, of our own
/// trust domain, or conflicting with an earlier one (rules 2 and 3).
pub fn problem(
    index: &Index,
    own_trust_domain: &str,
    f: &model::TrustDomainFederation,
) -> Option<(&'static str, String)> {
    let spec = match &f.spec {
        Err(why) => return Some((reason::INVALID, why.clone())),
        Ok(s) => s,
    };
    if spec.trust_domain == own_trust_domain {
        return Some((
            reason::INVALID,
            format!("spec.trustDomain: {own_trust_domain} is this mesh's own trust domain"),
        ));
    }
    let first = index
        .federations()
        .filter(|o| {
            o.spec
                .as_ref()
                .is_ok_and(|s| s.trust_domain == spec.trust_domain)
        })
        .map(|o| o.name.as_str())
        .min();
    match first {
        Some(n) if n != f.name => Some((
            reason::CONFLICTED,
            format!(
                "TrustDomainFederation {n} already federates {}",
                spec.trust_domain
            ),
        )),
        _ => None,
    }
}

/// The federations in force, by name (what the fetcher runs).
pub fn in_force(index: &Index, own_trust_domain: &str) -> BTreeMap<String, FederationSpec> {
    index
        .federations()
        .filter(|f| problem(index, own_trust_domain, f).is_none())
        .filter_map(|f| Some((f.name.clone(), f.spec.clone().ok()?)))
        .collect()
}

/// Every federation's conditions (rule 4), for the status writer.
pub fn statuses(index: &Index, own_trust_domain: &str) -> Vec<crate::status::PolicyStatus> {
    index
        .federations()
        .map(|f| crate::status::PolicyStatus {
            kind: "TrustDomainFederation",
            plural: "trustdomainfederations",
            namespace: String::new(),
            name: f.name.clone(),
            generation: f.generation,
            conditions: conditions(index, own_trust_domain, f),
        })
        .collect()
}

pub fn conditions(
    index: &Index,
    own_trust_domain: &str,
    f: &model::TrustDomainFederation,
) -> Vec<Condition> {
    let accepted = match problem(index, own_trust_domain, f) {
        Some((reason, message)) => {
            return vec![Condition {
                kind: "Accepted",
                status: false,
                reason,
                message: format!("{message}; not fetched, no bundle pushed"),
            }]
        }
        None => Condition {
            kind: "Accepted",
            status: true,
            reason: reason::ACCEPTED,
            message: String::new(),
        },
    };
    let state = index.federation_state(&f.name);
    let available = match state.and_then(|s| s.bundle.as_ref()) {
        Some(b) => Condition {
            kind: "BundleAvailable",
            status: true,
            reason: if b.origin == "initial" {
                reason::INITIAL
            } else {
                reason::FETCHED
            },
            message: format!(
                "{} roots (sequence {}) pushed to proxies",
                b.roots,
                b.sequence.map_or("none".to_string(), |s| s.to_string())
            ),
        },
        None => Condition {
            kind: "BundleAvailable",
            status: false,
            reason: reason::NO_BUNDLE,
            message: "no bundle yet: peers of this trust domain are refused".into(),
        },
    };
    let fetched = match state.and_then(|s| s.last_fetch.as_ref().map(|o| (s, o))) {
        None => Condition {
            kind: "Fetched",
            status: false,
            reason: reason::PENDING,
            message: "not fetched yet".into(),
        },
        Some((_, o)) if o.result == "success" => Condition {
            kind: "Fetched",
            status: true,
            reason: reason::FETCHED,
            message: o.message.clone(),
        },
        Some((s, o)) => Condition {
            kind: "Fetched",
            status: false,
            reason: fetch::reason_of(o.result),
            message: format!(
                "{} ({} failures in a row; the last good bundle is kept)",
                o.message, s.failures
            ),
        },
    };
    vec![accepted, available, fetched]
}

/// `/status`'s `federations`: each federation, its problem or state.
pub fn report(index: &Index, own_trust_domain: &str) -> Vec<Value> {
    index
        .federations()
        .map(|f| {
            let conditions: Vec<Value> = conditions(index, own_trust_domain, f)
                .iter()
                .map(|c| serde_json::to_value(c).unwrap_or_default())
                .collect();
            serde_json::json!({
                "name": f.name,
                "trustDomain": f.spec.as_ref().ok().map(|s| s.trust_domain.clone()),
                "url": f.spec.as_ref().ok().map(|s| s.url.clone()),
                "state": index.federation_state(&f.name),
                "conditions": conditions,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
