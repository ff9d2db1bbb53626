//! `quicmesh proxy-status`, `quicmesh ztunnel-config ...`,
//! `quicmesh waypoint-config ...`: what a running local mesh's controller
//! and proxies say about themselves, read from their admin pages (loopback
//! inside each node's or pod's network namespace) and shown as a table, or
//! as JSON or YAML for scripts. The mesh is found through the status file
//! of `quicmesh local up -f` ([`crate::manifests`]).

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde_json::{json, Value};

/// The admin port of every quicmesh process (loopback only).
const ADMIN: u16 = 15000;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Columns for people.
    #[default]
    Table,
    /// A JSON array of the rows, each the proxy's own object.
    Json,
    Yaml,
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Only this cluster of a multi-cluster `local up` (1, 2, ...).
    #[arg(long)]
    pub cluster: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ZtunnelWhat {
    /// Every workload the ztunnel knows: addresses, identity, node, mode.
    Workloads,
    /// Services: addresses, ports, endpoints, waypoint.
    Services,
    /// Authorization policies as the ztunnel compiled them.
    Policies,
    /// The SVIDs the ztunnel holds for its pods, and when they expire.
    Certificates,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WaypointWhat {
    /// Each route's rules: matches, filters, backends and weights.
    Routes,
    /// What applies to each Service the waypoint serves: authorization,
    /// authentication and traffic policies.
    Policies,
}

/// The clusters of the running local mesh, as its agent last wrote them.
fn clusters(only: Option<u64>) -> Result<Vec<Value>> {
    let all = crate::manifests::running_status()?.with_context(|| {
        "no local mesh is running: start one with `quicmesh local up -f DIR` \
         (e.g. `quicmesh local up -f examples/waypoint`)"
    })?;
    let all = all.as_array().cloned().unwrap_or_default();
    let picked: Vec<Value> = all
        .iter()
        .filter(|c| only.is_none_or(|n| c["cluster"].as_u64() == Some(n)))
        .cloned()
        .collect();
    if picked.is_empty() {
        let have: Vec<String> = all.iter().map(|c| c["cluster"].to_string()).collect();
        bail!(
            "no cluster {} in the local mesh (it has: {})",
            only.unwrap_or_default(),
            have.join(", ")
        );
    }
    Ok(picked)
}

/// GET `path` from the admin port of the process in `netns`, as JSON.
async fn admin(netns: &str, path: &str) -> Result<Value> {
    let text =
        quicmesh_lab::mesh::netns_http_get(netns, SocketAddr::from(([127, 0, 0, 1], ADMIN)), path)
            .await
            .with_context(|| format!("reading {path} on the admin port in {netns}"))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{path} in {netns} did not answer JSON: {text:.200}"))
}

fn str_of(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "-".into(),
        Value::Array(a) => a.iter().map(str_of).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// A table column: its heading, and how a row shows in it.
type Column<'a> = (&'a str, &'a dyn Fn(&Value) -> String);

/// Prints `rows` (objects) as `output` says; a table has `columns`, after
/// a CLUSTER column when the rows come from several clusters ([`tag`]).
fn print(output: Output, rows: &[Value], columns: &[Column<'_>]) -> Result<()> {
    let cluster = |r: &Value| str_of(&r["cluster"]);
    let mut all: Vec<Column<'_>> = Vec::new();
    if rows.iter().any(|r| !r["cluster"].is_null()) {
        all.push(("CLUSTER", &cluster));
    }
    all.extend_from_slice(columns);
    let columns = all;
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(rows)?),
        Output::Yaml => print!("{}", serde_yaml::to_string(rows)?),
        Output::Table => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| columns.iter().map(|(_, f)| f(r)).collect())
                .collect();
            let mut widths: Vec<usize> = columns.iter().map(|(h, _)| h.len()).collect();
            for row in &cells {
                for (w, c) in widths.iter_mut().zip(row) {
                    *w = (*w).max(c.chars().count());
                }
            }
            let line = |cells: Vec<String>| {
                let last = cells.len() - 1;
                let mut s = String::new();
                for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
                    if i == last {
                        s.push_str(c);
                    } else {
                        s.push_str(&format!("{c:<w$}   "));
                    }
                }
                println!("{}", s.trim_end());
            };
            line(columns.iter().map(|(h, _)| h.to_string()).collect());
            for row in cells {
                line(row);
            }
        }
    }
    Ok(())
}

/// Adds `cluster` to each row when several clusters are shown.
fn tag(rows: &mut [Value], clusters: &[Value], of: &[usize]) {
    if clusters.len() > 1 {
        for (r, c) in rows.iter_mut().zip(of) {
            r["cluster"] = clusters[*c]["cluster"].clone();
        }
    }
}

/// `quicmesh local status -o json|yaml`: the agent's status as it is.
pub fn print_status(output: Output) -> Result<()> {
    let status = clusters(None)?;
    match output {
        Output::Yaml => print!("{}", serde_yaml::to_string(&status)?),
        _ => println!("{}", serde_json::to_string_pretty(&status)?),
    }
    Ok(())
}

/// What the controller says of each proxy connected to it.
pub async fn proxy_status(common: &Common) -> Result<()> {
    let clusters = clusters(common.cluster)?;
    let mut rows = Vec::new();
    let mut of = Vec::new();
    for (i, c) in clusters.iter().enumerate() {
        let netns = c["controller_netns"]
            .as_str()
            .context("the status file names no controller")?;
        let status = admin(netns, "/status")
            .await
            .context("the controller does not answer (see `quicmesh local logs controller`)")?;
        let version = status["version"].as_u64().unwrap_or_default();
        for (name, p) in status["proxies"].as_object().into_iter().flatten() {
            rows.push(proxy_row(name, p, version));
            of.push(i);
        }
    }
    tag(&mut rows, &clusters, &of);
    let columns: [Column<'_>; 6] = [
        ("PROXY", &|r: &Value| str_of(&r["proxy"])),
        ("KIND", &|r: &Value| str_of(&r["kind"])),
        ("STATUS", &|r: &Value| str_of(&r["status"])),
        ("SENT", &|r: &Value| str_of(&r["sentVersion"])),
        ("ACKED", &|r: &Value| str_of(&r["ackedVersion"])),
        ("LAST NACK", &|r: &Value| str_of(&r["lastNack"])),
    ];
    print(common.output, &rows, &columns)
}

/// One proxy of the controller's status page: SYNCED when it took the
/// newest version sent to it, PENDING while that is unanswered, NACK when
/// it refused it, DISCONNECTED when its stream is down.
fn proxy_row(name: &str, p: &Value, controller_version: u64) -> Value {
    let sent = p["sent_version"].as_u64().unwrap_or_default();
    let acked = p["acked_version"].as_u64().unwrap_or_default();
    let status = if p["connected"] != true {
        "DISCONNECTED"
    } else if acked >= sent && sent > 0 {
        "SYNCED"
    } else if !p["last_nack"].is_null() {
        "NACK"
    } else {
        "PENDING"
    };
    let (kind, proxy) = match name.strip_prefix("waypoint/") {
        Some(w) => ("waypoint", w.to_string()),
        None => ("ztunnel", name.to_string()),
    };
    json!({"proxy": proxy, "kind": kind, "status": status, "connected": p["connected"],
        "sentVersion": sent, "ackedVersion": acked, "controllerVersion": controller_version,
        "lastNack": p["last_nack"]})
}

#[derive(Args, Debug, Clone)]
pub struct ZtunnelArgs {
    pub what: ZtunnelWhat,
    /// The node whose ztunnel to ask (`node2` or `2`). Default: every
    /// node's for certificates, the first node's for the rest (every
    /// ztunnel is sent the same workloads, services and policies).
    #[arg(long)]
    pub node: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

pub async fn ztunnel_config(a: &ZtunnelArgs) -> Result<()> {
    let clusters = clusters(a.common.cluster)?;
    let want = a.node.as_deref().map(|n| {
        if n.starts_with("node") {
            n.to_string()
        } else {
            format!("node{n}")
        }
    });
    let mut rows = Vec::new();
    let mut of = Vec::new();
    for (i, c) in clusters.iter().enumerate() {
        let nodes = c["nodes"].as_array().cloned().unwrap_or_default();
        let picked: Vec<&Value> = match &want {
            Some(w) => nodes.iter().filter(|n| n["name"] == w.as_str()).collect(),
            None if a.what == ZtunnelWhat::Certificates => nodes.iter().collect(),
            None => nodes.iter().take(1).collect(),
        };
        if picked.is_empty() {
            let have: Vec<String> = nodes.iter().map(|n| str_of(&n["name"])).collect();
            bail!(
                "no {} in the mesh (its nodes: {})",
                want.as_deref().unwrap_or("node"),
                have.join(", ")
            );
        }
        for n in picked {
            let node = str_of(&n["name"]);
            let netns = n["netns"]
                .as_str()
                .context("the status file names no node netns")?;
            let items = match a.what {
                ZtunnelWhat::Certificates => admin(netns, "/certs").await?,
                _ => {
                    let dump = admin(netns, "/config_dump").await?;
                    match a.what {
                        ZtunnelWhat::Workloads => dump["state"]["workloads"].clone(),
                        ZtunnelWhat::Services => dump["state"]["services"].clone(),
                        _ => policies_of(&dump["state"]["authorization"]),
                    }
                }
            };
            for mut item in items.as_array().cloned().unwrap_or_default() {
                item["proxy"] = json!(node);
                rows.push(item);
                of.push(i);
            }
        }
    }
    tag(&mut rows, &clusters, &of);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let expires_in = |r: &Value| match r["notAfter"].as_i64() {
        Some(t) => span(t - now),
        None => "-".into(),
    };
    let named = |r: &Value| format!("{}/{}", str_of(&r["namespace"]), str_of(&r["name"]));
    let columns: Vec<Column<'_>> = match a.what {
        ZtunnelWhat::Workloads => vec![
            ("NAME", &named),
            ("NODE", &|r: &Value| str_of(&r["node"])),
            ("IPS", &|r: &Value| str_of(&r["ips"])),
            ("IDENTITY", &|r: &Value| str_of(&r["identity"])),
            ("MESH", &|r: &Value| {
                if r["in_mesh"] == true {
                    "ambient".into()
                } else {
                    "-".into()
                }
            }),
            ("MTLS", &|r: &Value| str_of(&r["mtls_mode"])),
            ("READY", &|r: &Value| str_of(&r["ready"])),
            ("WAYPOINT", &|r: &Value| waypoint_of(&r["waypoint"])),
        ],
        ZtunnelWhat::Services => vec![
            ("NAME", &named),
            ("VIPS", &|r: &Value| str_of(&r["vips"])),
            ("PORTS", &|r: &Value| {
                let ports: Vec<String> = r["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| match p["name"].as_str().filter(|n| !n.is_empty()) {
                        Some(n) => format!("{}/{n}", p["port"]),
                        None => p["port"].to_string(),
                    })
                    .collect();
                str_of(&json!(ports))
            }),
            ("ENDPOINTS", &|r: &Value| {
                let eps = r["endpoints"].as_array().cloned().unwrap_or_default();
                let ready = eps.iter().filter(|e| e["ready"] == true).count();
                format!("{ready}/{} ready", eps.len())
            }),
            ("WAYPOINT", &|r: &Value| waypoint_of(&r["waypoint"])),
        ],
        ZtunnelWhat::Policies => vec![
            ("NAME", &|r: &Value| str_of(&r["name"])),
            ("ACTION", &|r: &Value| str_of(&r["action"])),
            ("RULES", &|r: &Value| str_of(&r["rules"])),
            ("ENFORCED", &|r: &Value| str_of(&r["enforced"])),
            ("STATE", &|r: &Value| match r["invalid"].as_str() {
                Some(why) => format!("invalid: {why}"),
                None => "ok".into(),
            }),
        ],
        ZtunnelWhat::Certificates => vec![
            ("NODE", &|r: &Value| str_of(&r["proxy"])),
            ("IDENTITY", &|r: &Value| str_of(&r["identity"])),
            ("NOT AFTER", &|r: &Value| {
                r["notAfter"]
                    .as_i64()
                    .map(utc)
                    .unwrap_or_else(|| "-".into())
            }),
            ("EXPIRES IN", &expires_in),
            ("CHAIN", &|r: &Value| {
                format!("{} cert(s)", r["chain"].as_array().map_or(0, Vec::len))
            }),
        ],
    };
    print(a.common.output, &rows, &columns)
}

fn waypoint_of(w: &Value) -> String {
    match w["name"].as_str() {
        Some(n) => format!("{}/{n}", str_of(&w["namespace"])),
        None => "-".into(),
    }
}

/// The ztunnel's policy set as rows: each compiled policy (enforced at
/// the ztunnel), then each attached to waypoints (enforced there).
fn policies_of(set: &Value) -> Value {
    let mut rows = Vec::new();
    let mut by_name: Vec<(&String, &Value)> =
        set["by_name"].as_object().into_iter().flatten().collect();
    by_name.sort_by_key(|(n, _)| *n);
    for (name, p) in by_name {
        rows.push(json!({"name": name, "action": p["action"], "rules": p["rules"].as_array().map_or(0, Vec::len),
            "enforced": "ztunnel", "invalid": p["invalid"], "policy": p}));
    }
    let mut attached: Vec<(&String, &Value)> =
        set["attached"].as_object().into_iter().flatten().collect();
    attached.sort_by_key(|(n, _)| *n);
    for (name, a) in attached {
        rows.push(
            json!({"name": name, "action": null, "rules": null, "enforced": "waypoint",
            "invalid": null, "attached": a}),
        );
    }
    json!(rows)
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
    let clusters = clusters(a.common.cluster)?;
    let mut rows = Vec::new();
    let mut of = Vec::new();
    let mut found = Vec::new();
    let mut matched = false;
    for (i, c) in clusters.iter().enumerate() {
        for p in c["pods"].as_array().into_iter().flatten() {
            if p["waypoint"] != true {
                continue;
            }
            let pod = format!("{}/{}", str_of(&p["namespace"]), str_of(&p["name"]));
            found.push(pod.clone());
            if let Some(w) = &a.waypoint {
                // The Gateway's pods are `<gateway>-<n>`.
                let gateway = pod.rsplit_once('-').map(|(g, _)| g);
                if *w != pod && Some(w.as_str()) != gateway {
                    continue;
                }
            }
            matched = true;
            let netns = p["netns"]
                .as_str()
                .context("the status file names no pod netns")?;
            let dump = admin(netns, "/config_dump").await?;
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
    tag(&mut rows, &clusters, &of);
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

/// `seconds` since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    // Days to a civil date (proleptic Gregorian), by 400-year eras.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// A duration in its two largest units (`23h59m`, `4m10s`), or `expired`.
fn span(seconds: i64) -> String {
    if seconds <= 0 {
        return "expired".into();
    }
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds % 86_400 / 3600,
        seconds % 3600 / 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s}s"),
        (0, _, _) => format!("{h}h{m}m"),
        _ => format!("{d}d{h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_people_write_them() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_796_388_587), "2026-12-04T12:49:47Z");
        assert_eq!(span(86_399), "23h59m");
        assert_eq!(span(250), "4m10s");
        assert_eq!(span(3 * 86_400 + 7200), "3d2h");
        assert_eq!(span(0), "expired");
    }

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

    #[test]
    fn a_proxy_is_synced_when_it_took_the_newest_update_sent_to_it() {
        let p = |connected, sent, acked, nack: Option<&str>| {
            proxy_row("node1", &json!({"connected": connected, "sent_version": sent, "acked_version": acked, "last_nack": nack}), 9)["status"].clone()
        };
        assert_eq!(p(true, 7, 7, None), "SYNCED");
        assert_eq!(p(true, 8, 7, None), "PENDING");
        assert_eq!(p(true, 8, 7, Some("bad route")), "NACK");
        assert_eq!(p(false, 8, 8, None), "DISCONNECTED");
        let w = proxy_row("waypoint/shop/waypoint", &json!({"connected": true}), 3);
        assert_eq!(
            (w["kind"].as_str(), w["proxy"].as_str()),
            (Some("waypoint"), Some("shop/waypoint"))
        );
    }
}
