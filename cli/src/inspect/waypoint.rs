//! `quicmesh waypoint-config routes|policies`: what a waypoint holds,
//! from its `/config_dump`.

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use serde_json::{json, Value};

use super::{print, str_of, tag, Column, Common};
use crate::target::Mesh;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WaypointWhat {
    /// Each route's rules: matches, filters, backends and weights.
    Routes,
    /// What applies to each Service the waypoint serves: authorization,
    /// authentication and traffic policies.
    Policies,
}

#[derive(Args, Debug, Clone)]
pub struct WaypointArgs {
    pub what: WaypointWhat,
    /// The waypoint: its Gateway (`shop/waypoint`) or pod
    /// (`shop/waypoint-0`). Default: every waypoint.
    pub waypoint: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

pub async fn waypoint_config(a: &WaypointArgs) -> Result<()> {
    let mesh = Mesh::open(&a.common.kube, a.common.cluster).await?;
    let mut rows = Vec::new();
    let mut of = Vec::new();
    let mut found = Vec::new();
    let mut matched = false;
    for (i, c) in mesh.clusters.iter().enumerate() {
        for p in c["pods"].as_array().into_iter().flatten() {
            if p["waypoint"] != true {
                continue;
            }
            let pod = format!("{}/{}", str_of(&p["namespace"]), str_of(&p["name"]));
            found.push(pod.clone());
            if let Some(w) = &a.waypoint {
                if *w != pod && p["gateway"] != w.as_str() {
                    continue;
                }
            }
            matched = true;
            let dump = mesh.admin(p, "/config_dump").await?;
            let config = &dump["config"];
            let items = match a.what {
                WaypointWhat::Routes => routes_of(config),
                WaypointWhat::Policies => waypoint_policies_of(config),
            };
            for mut item in items {
                item["proxy"] = json!(pod);
                rows.push(item);
                of.push(i);
            }
        }
    }
    if found.is_empty() {
        bail!(
            "the mesh has no waypoint: label a namespace `quicmesh.io/use-waypoint=waypoint` (docs/waypoint.md)"
        );
    }
    if !matched {
        bail!(
            "no waypoint {} (the mesh has: {})",
            a.waypoint.as_deref().unwrap_or_default(),
            found.join(", ")
        );
    }
    tag(&mut rows, &mesh.clusters, &of);
    let columns: Vec<Column<'_>> = match a.what {
        WaypointWhat::Routes => vec![
            ("WAYPOINT", &|r: &Value| str_of(&r["proxy"])),
            ("ROUTE", &|r: &Value| {
                format!("{} {}", str_of(&r["kind"]), str_of(&r["route"]))
            }),
            ("SERVICES", &|r: &Value| str_of(&r["services"])),
            ("RULE", &|r: &Value| str_of(&r["rule"])),
            ("MATCHES", &|r: &Value| {
                r["matches"]
                    .as_array()
                    .map(|m| m.iter().map(str_of).collect::<Vec<_>>().join(" | "))
                    .unwrap_or_default()
            }),
            ("BACKENDS", &|r: &Value| {
                let b: Vec<String> = r["backends"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|b| format!("{} w{}", str_of(&b["backend"]), b["weight"]))
                    .collect();
                str_of(&json!(b))
            }),
        ],
        WaypointWhat::Policies => vec![
            ("WAYPOINT", &|r: &Value| str_of(&r["proxy"])),
            ("SERVICE", &|r: &Value| str_of(&r["service"])),
            ("AUTHORIZATION", &|r: &Value| str_of(&r["authorization"])),
            ("AUTHENTICATION", &|r: &Value| str_of(&r["authentication"])),
            ("TRAFFIC", &|r: &Value| str_of(&r["traffic"])),
        ],
    };
    print(a.common.output, &rows, &columns)
}

/// One row per rule of every route the waypoint holds.
fn routes_of(config: &Value) -> Vec<Value> {
    let mut rows = Vec::new();
    for (name, r) in config["routes"].as_object().into_iter().flatten() {
        for (i, rule) in r["rules"].as_array().into_iter().flatten().enumerate() {
            let mut row = rule.clone();
            row["route"] = json!(name);
            row["kind"] = r["kind"].clone();
            row["services"] = r["services"].clone();
            row["rule"] = match rule["name"].as_str() {
                Some(n) => json!(n),
                None => json!(i),
            };
            rows.push(row);
        }
    }
    rows
}

/// One row per Service the waypoint serves: the policies that apply to
/// its requests.
fn waypoint_policies_of(config: &Value) -> Vec<Value> {
    let waypoint_wide: Vec<Value> = config["waypointPolicies"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut rows = Vec::new();
    let mut services: Vec<&Value> = config["destinations"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, d)| d)
        .collect();
    services.sort_by_key(|d| d["service"].as_str().unwrap_or_default().to_string());
    for d in services {
        let service = d["service"].as_str().unwrap_or_default();
        let (ns, rest) = service.split_once('/').unwrap_or(("", service));
        let svc_name = rest.split(':').next().unwrap_or(rest);
        let mut authz: Vec<Value> = d["policies"].as_array().cloned().unwrap_or_default();
        authz.extend(waypoint_wide.iter().cloned());
        let authn: Vec<Value> = config["authentication"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| authentication_applies(a, &config["scope"], ns, svc_name))
            .map(|a| a["name"].clone())
            .collect();
        let mut traffic: Vec<String> = Vec::new();
        for (part, v) in config["trafficPolicies"][service]
            .as_object()
            .into_iter()
            .flatten()
        {
            let by = str_of(&v["policy"]);
            traffic.push(format!("{part} ({by})"));
        }
        rows.push(
            json!({"service": service, "authorization": authz, "authentication": authn,
            "traffic": traffic, "trafficPolicies": config["trafficPolicies"][service]}),
        );
    }
    rows
}

/// Whether the RequestAuthentication `a` (as the waypoint dumps it)
/// applies to requests for Service `ns/svc` at the waypoint of `scope`
/// (its Gateway): mesh- and namespace-wide ones to all it was sent,
/// targeted ones when they name its Gateway or the Service, in their own
/// namespace (docs/authentication.md).
fn authentication_applies(a: &Value, scope: &Value, ns: &str, svc: &str) -> bool {
    if a["scope"] != "AUTHENTICATION_SCOPE_TARGETS" {
        return true;
    }
    let own_ns = a["name"]
        .as_str()
        .and_then(|n| n.split_once('/'))
        .map(|(n, _)| n);
    let gateway = format!("Gateway/{}", scope["name"].as_str().unwrap_or_default());
    a["targets"].as_array().into_iter().flatten().any(|t| {
        let t = t.as_str().unwrap_or_default();
        (t == gateway && own_ns == scope["namespace"].as_str())
            || (t == format!("Service/{svc}") && own_ns == Some(ns))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_authentications_apply_by_scope_and_target() {
        let scope = json!({"namespace": "shop", "name": "waypoint"});
        let a = |name: &str, scope: &str, targets: &[&str]| json!({"name": name, "scope": scope, "targets": targets});
        let applies = |a: &Value, svc: &str| authentication_applies(a, &scope, "shop", svc);
        assert!(applies(
            &a("root/all", "AUTHENTICATION_SCOPE_MESH", &[]),
            "web"
        ));
        assert!(applies(
            &a("shop/ns", "AUTHENTICATION_SCOPE_NAMESPACE", &[]),
            "web"
        ));
        let on_web = a(
            "shop/web-jwt",
            "AUTHENTICATION_SCOPE_TARGETS",
            &["Service/web"],
        );
        assert!(applies(&on_web, "web"));
        assert!(!applies(&on_web, "cart"));
        let on_gateway = a(
            "shop/gw",
            "AUTHENTICATION_SCOPE_TARGETS",
            &["Gateway/waypoint"],
        );
        assert!(applies(&on_gateway, "cart"));
        let elsewhere = a(
            "front/web-jwt",
            "AUTHENTICATION_SCOPE_TARGETS",
            &["Service/web"],
        );
        assert!(!applies(&elsewhere, "web"));
    }
}
