//! The Grafana dashboard the chart ships (`helm/quicmesh/dashboards/quicmesh.json`):
//! its queries, and the metric families they read.

use std::collections::BTreeSet;
use std::path::PathBuf;

pub fn path() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../helm/quicmesh/dashboards/quicmesh.json"
    ))
}

pub fn dashboard() -> serde_json::Value {
    let text = std::fs::read_to_string(path()).expect("the dashboard file");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every panel's queries: (panel title, PromQL).
pub fn queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or_default().to_string();
            out.push((title, t["expr"].as_str().unwrap_or_default().to_string()));
        }
    }
    out
}

/// The metric families (as `# TYPE` names them: no `_total`, `_bucket`,
/// `_count`, `_sum`) that the queries read.
pub fn families(queries: &[(String, String)]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (_, q) in queries {
        let mut rest = q.as_str();
        while let Some(i) = rest.find("quicmesh_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[i + name.len()..];
            let family = ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            out.insert(family.to_string());
        }
    }
    out
}

/// The families a scrape declares.
pub fn declared(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect()
}
