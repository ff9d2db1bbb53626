//! `quicmesh proxy-status`: every proxy the controllers stream config
//! to, and whether it took it.

use anyhow::{bail, Result};
use serde_json::{json, Value};

use super::{print, str_of, tag, Column, Common};
use crate::target::Mesh;

/// What the controllers of one cluster say of each proxy connected to
/// them: the newest config version, and each proxy's entry (with the
/// `controller` it is connected to). With several controller replicas
/// (Kubernetes) each proxy streams from one of them: their pages are
/// merged, a connected entry winning over a stale one. A replica that
/// does not answer is a warning (returned), all of them an error.
pub async fn controller_status(
    mesh: &Mesh,
    cluster: &Value,
) -> Result<(u64, serde_json::Map<String, Value>, Vec<String>)> {
    let mut merged = serde_json::Map::new();
    let mut version = 0;
    let mut answered = 0;
    let mut errors = Vec::new();
    for at in cluster["controllers"].as_array().into_iter().flatten() {
        let status = match mesh.admin(at, "/status").await {
            Ok(s) => s,
            Err(e) => {
                errors.push(format!(
                    "{}: {e:#} (see `{}`)",
                    mesh.name(at),
                    mesh.controller_logs(at)
                ));
                continue;
            }
        };
        answered += 1;
        version = version.max(status["version"].as_u64().unwrap_or_default());
        for (name, p) in status["proxies"].as_object().into_iter().flatten() {
            let mut p = p.clone();
            p["controller"] = json!(mesh.name(at));
            let newer = merged
                .get(name)
                .is_none_or(|old: &Value| old["connected"] != true && p["connected"] == true);
            if newer {
                merged.insert(name.clone(), p);
            }
        }
    }
    if answered == 0 {
        bail!("no controller answers: {}", errors.join("; "));
    }
    Ok((version, merged, errors))
}

/// `quicmesh proxy-status`.
pub async fn proxy_status(common: &Common) -> Result<()> {
    let mesh = Mesh::open(&common.kube, common.cluster).await?;
    let mut rows = Vec::new();
    let mut of = Vec::new();
    for (i, c) in mesh.clusters.iter().enumerate() {
        let (version, merged, errors) = controller_status(&mesh, c).await?;
        for e in errors {
            eprintln!("warning: {e}");
        }
        for (name, p) in &merged {
            rows.push(proxy_row(name, p, version));
            of.push(i);
        }
    }
    tag(&mut rows, &mesh.clusters, &of);
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
pub fn proxy_row(name: &str, p: &Value, controller_version: u64) -> Value {
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
        "lastNack": p["last_nack"], "controller": p["controller"]})
}

#[cfg(test)]
mod tests {
    use super::*;

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
