//! `quicmesh ztunnel-config workloads|services|policies|certificates`:
//! what a node's ztunnel holds, from its `/config_dump` and `/certs`.

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use serde_json::{json, Value};

use super::{print, span, str_of, tag, utc, Column, Common};
use crate::target::Mesh;

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
    let mesh = Mesh::open(&a.common.kube, a.common.cluster).await?;
    let want = a.node.as_deref().map(|n| {
        if n.starts_with("node") {
            n.to_string()
        } else {
            format!("node{n}")
        }
    });
    let mut rows = Vec::new();
    let mut of = Vec::new();
    for (i, c) in mesh.clusters.iter().enumerate() {
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
            let items = match a.what {
                ZtunnelWhat::Certificates => mesh.admin(n, "/certs").await?,
                _ => {
                    let dump = mesh.admin(n, "/config_dump").await?;
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
    tag(&mut rows, &mesh.clusters, &of);
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
