//! The dashboard's model: Prometheus text parsed into samples, a round
//! of samples folded into a [`Snapshot`], and two snapshots (a window
//! apart) with the mesh's pods drawn as the service graph.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use serde_json::{json, Value};

use super::WINDOW;

/// One metric sample: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    fn label(&self, k: &str) -> &str {
        self.labels.get(k).map_or("", String::as_str)
    }
}

/// The samples of a Prometheus/OpenMetrics text scrape (comments and
/// lines that do not parse are skipped).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return None,
    };
    let mut labels = BTreeMap::new();
    let rest = if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        let mut key = String::new();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => break i,
                ',' | ' ' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                other => key.push(other),
            }
        };
        &body[end + 1..]
    } else {
        rest
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// What one round of scrapes added up to.
#[derive(Debug, Clone, Default)]
pub(super) struct Snapshot {
    /// Tunnel streams opened and bytes, by (source, destination) identity,
    /// as the opening side counted them.
    l4: BTreeMap<(String, String), (f64, f64)>,
    /// Requests at waypoints by edge and Service: (client, waypoint,
    /// Service) for what the waypoint served, (waypoint, backend, Service)
    /// for where it sent them (the backend endpoint's identity): total,
    /// 5xx, and the duration histogram's cumulative buckets.
    l7: BTreeMap<Edge7, L7>,
    /// The keys of `l7` that are client → waypoint.
    served: BTreeSet<Edge7>,
    /// The soonest expiry of each identity's SVID (seconds since the epoch).
    svids: BTreeMap<String, f64>,
}

/// (from identity, to identity, Service).
type Edge7 = (String, String, String);

#[derive(Debug, Clone, Default)]
struct L7 {
    total: f64,
    errors: f64,
    buckets: BTreeMap<u64, f64>,
}

/// Histogram bounds as integers (microseconds) so they can key a map;
/// `+Inf` is `u64::MAX`.
fn bound(le: &str) -> Option<u64> {
    if le == "+Inf" {
        return Some(u64::MAX);
    }
    le.parse::<f64>().ok().map(|s| (s * 1e6).round() as u64)
}

impl Snapshot {
    /// Adds a proxy's scrape; `waypoint`: its identity, for a waypoint's.
    pub(super) fn add(&mut self, samples: &[Sample], waypoint: Option<&str>) {
        for s in samples {
            match s.name.as_str() {
                "quicmesh_tunnel_streams_opened_total" if s.label("direction") == "outbound" => {
                    let key = (
                        s.label("src_principal").into(),
                        s.label("dst_principal").into(),
                    );
                    self.l4.entry(key).or_default().0 += s.value;
                }
                "quicmesh_tunnel_sent_bytes_total" | "quicmesh_tunnel_received_bytes_total"
                    if s.label("direction") == "outbound" =>
                {
                    let key = (
                        s.label("src_principal").into(),
                        s.label("dst_principal").into(),
                    );
                    self.l4.entry(key).or_default().1 += s.value;
                }
                "quicmesh_waypoint_requests_total"
                | "quicmesh_waypoint_request_duration_seconds_bucket" => {
                    let Some(w) = waypoint else {
                        continue;
                    };
                    let service = s.label("service");
                    let served = (
                        s.label("src_principal").to_string(),
                        w.to_string(),
                        service.to_string(),
                    );
                    self.served.insert(served.clone());
                    let mut keys = vec![served];
                    if !s.label("dst_principal").is_empty() {
                        keys.push((
                            w.to_string(),
                            s.label("dst_principal").to_string(),
                            service.to_string(),
                        ));
                    }
                    for key in keys {
                        let e = self.l7.entry(key).or_default();
                        if s.name.ends_with("_bucket") {
                            if let Some(le) = bound(s.label("le")) {
                                *e.buckets.entry(le).or_default() += s.value;
                            }
                        } else {
                            e.total += s.value;
                            if s.label("code").starts_with('5') {
                                e.errors += s.value;
                            }
                        }
                    }
                }
                "quicmesh_svid_expiration_timestamp_seconds" => {
                    let e = self
                        .svids
                        .entry(s.label("identity").into())
                        .or_insert(f64::MAX);
                    *e = e.min(s.value);
                }
                _ => {}
            }
        }
    }
}

/// `now - then`, per second; a counter that went back (a restarted
/// proxy) counts from zero.
fn rate(now: f64, then: f64, secs: f64) -> f64 {
    let d = if now >= then { now - then } else { now };
    if secs > 0.0 {
        d / secs
    } else {
        0.0
    }
}

/// The 0.99 quantile of the requests between two cumulative histograms,
/// interpolated within its bucket as Prometheus does; `None` without
/// requests. In seconds.
fn p99(now: &BTreeMap<u64, f64>, then: &BTreeMap<u64, f64>) -> Option<f64> {
    let delta: Vec<(u64, f64)> = now
        .iter()
        .map(|(le, n)| (*le, (n - then.get(le).copied().unwrap_or(0.0)).max(0.0)))
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let target = 0.99 * total;
    let mut prev = (0u64, 0.0);
    for (le, n) in &delta {
        if *n >= target {
            if *le == u64::MAX {
                return Some(prev.0 as f64 / 1e6);
            }
            let within = if n > &prev.1 {
                (target - prev.1) / (n - prev.1)
            } else {
                1.0
            };
            return Some((prev.0 as f64 + (*le - prev.0) as f64 * within) / 1e6);
        }
        prev = (*le, *n);
    }
    None
}

/// The graph over the samples kept, with the workloads of `status`.
pub(super) fn graph(
    history: &VecDeque<(Instant, Snapshot)>,
    status: &[Value],
    errors: &[String],
) -> Value {
    let Some(latest) = history.back() else {
        return json!({"nodes": [], "edges": [], "errors": errors, "windowSeconds": 0});
    };
    let (t1, now) = latest;
    let (t0, then) = history
        .iter()
        .find(|(t, _)| t1.duration_since(*t) <= WINDOW)
        .unwrap_or(latest);
    let secs = t1.duration_since(*t0).as_secs_f64();
    // Workloads: every pod's identity, with its pods; waypoints marked.
    let mut nodes: BTreeMap<String, Value> = BTreeMap::new();
    for c in status {
        for p in c["pods"].as_array().into_iter().flatten() {
            let id = p["identity"].as_str().unwrap_or_default().to_string();
            let n = nodes.entry(id.clone()).or_insert_with(|| node(&id));
            if p["waypoint"] == true {
                n["kind"] = json!("waypoint");
            }
            let pod = format!(
                "{}/{}",
                p["namespace"].as_str().unwrap_or_default(),
                p["name"].as_str().unwrap_or_default()
            );
            if let Some(pods) = n["pods"].as_array_mut() {
                pods.push(json!(pod));
            }
        }
    }
    let mut edges: BTreeMap<(String, String), Value> = BTreeMap::new();
    let edge = |src: &str, dst: &str| {
        json!({"src": src, "dst": dst, "mtls": {"client": src, "server": dst},
            "connectionsPerSecond": 0.0, "bytesPerSecond": 0.0, "connections": 0.0, "requests": []})
    };
    for ((src, dst), (opened, bytes)) in &now.l4 {
        let (o0, b0) = then
            .l4
            .get(&(src.clone(), dst.clone()))
            .copied()
            .unwrap_or_default();
        let e = edges
            .entry((src.clone(), dst.clone()))
            .or_insert_with(|| edge(src, dst));
        e["connections"] = json!(opened);
        e["connectionsPerSecond"] = json!(rate(*opened, o0, secs));
        e["bytesPerSecond"] = json!(rate(*bytes, b0, secs));
        for id in [src, dst] {
            nodes.entry(id.clone()).or_insert_with(|| node(id));
        }
    }
    // Requests at waypoints: on the client → waypoint edge what it
    // served, on the waypoint → backend edge what it sent there.
    let mut out_by_client: BTreeMap<String, (f64, f64, f64)> = BTreeMap::new();
    let mut served_by: BTreeMap<String, f64> = BTreeMap::new();
    let mut in_by_backend: BTreeMap<String, f64> = BTreeMap::new();
    for (key, l7) in &now.l7 {
        let (from, to, service) = key;
        let before = then.l7.get(key).cloned().unwrap_or_default();
        let rps = rate(l7.total, before.total, secs);
        let eps = rate(l7.errors, before.errors, secs);
        let p = p99(&l7.buckets, &before.buckets);
        let success = if rps > 0.0 {
            Some(1.0 - eps / rps)
        } else {
            None
        };
        let request = json!({"service": service, "requestsPerSecond": rps, "successRate": success,
            "p99Seconds": p, "requests": l7.total});
        if now.served.contains(key) {
            let out = out_by_client.entry(from.clone()).or_default();
            out.0 += rps;
            out.1 += eps;
            out.2 = out.2.max(p.unwrap_or(0.0));
            *served_by.entry(to.clone()).or_default() += rps;
        } else {
            *in_by_backend.entry(to.clone()).or_default() += rps;
        }
        for id in [from, to] {
            nodes.entry(id.clone()).or_insert_with(|| node(id));
        }
        let e = edges
            .entry((from.clone(), to.clone()))
            .or_insert_with(|| edge(from, to));
        if let Some(r) = e["requests"].as_array_mut() {
            r.push(request);
        }
    }
    let now_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    for (id, n) in nodes.iter_mut() {
        let (mut cin, mut cout) = (0.0, 0.0);
        for e in edges.values() {
            let cps = e["connectionsPerSecond"].as_f64().unwrap_or_default();
            if e["src"] == id.as_str() {
                cout += cps;
            }
            if e["dst"] == id.as_str() {
                cin += cps;
            }
        }
        let served = served_by.get(id).copied().unwrap_or_default();
        let received = in_by_backend.get(id).copied().unwrap_or_default();
        let (rps, eps, p) = out_by_client.get(id).copied().unwrap_or_default();
        n["signals"] = json!({"connectionsInPerSecond": cin, "connectionsOutPerSecond": cout,
            "requestsOutPerSecond": rps, "requestsServedPerSecond": served,
            "requestsInPerSecond": received,
            "requestSuccessRate": if rps > 0.0 { Some(1.0 - eps / rps) } else { None },
            "requestP99Seconds": if rps > 0.0 { Some(p) } else { None }});
        if let Some(exp) = now.svids.get(id) {
            n["certificateExpiresInSeconds"] = json!((exp - now_epoch).round());
        }
    }
    json!({"windowSeconds": secs, "nodes": nodes.into_values().collect::<Vec<_>>(),
        "edges": edges.into_values().collect::<Vec<_>>(), "errors": errors})
}

fn node(id: &str) -> Value {
    // `spiffe://td/ns/<ns>/sa/<sa>` reads as `<ns>/<sa>`.
    let label = id
        .split_once("/ns/")
        .map(|(_, rest)| rest.replacen("/sa/", "/", 1))
        .unwrap_or_else(|| id.to_string());
    json!({"id": id, "label": label, "kind": "workload", "pods": []})
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn samples_parse_with_escaped_labels() {
        let s =
            parse("# TYPE x counter\nx_total{a=\"1\",b=\"q\\\"uote\"} 3\nup 1\n# EOF\nbad line\n");
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s[0].name, "x_total");
        assert_eq!(s[0].label("b"), "q\"uote");
        assert_eq!(s[0].value, 3.0);
        assert_eq!((s[1].name.as_str(), s[1].value), ("up", 1.0));
    }

    #[test]
    fn the_p99_is_interpolated_within_its_bucket() {
        let h = |v: &[(u64, f64)]| v.iter().copied().collect::<BTreeMap<_, _>>();
        let then = h(&[(1000, 0.0), (10_000, 0.0), (u64::MAX, 0.0)]);
        // 100 requests: 50 under 1 ms, 50 between 1 and 10 ms.
        let now = h(&[(1000, 50.0), (10_000, 100.0), (u64::MAX, 100.0)]);
        let p = p99(&now, &then).unwrap();
        assert!((p - 0.00982).abs() < 1e-6, "{p}");
        assert_eq!(p99(&then, &then), None);
    }

    #[test]
    fn an_edge_shows_connections_and_the_requests_its_waypoint_served() {
        let client = "spiffe://cluster.local/ns/front/sa/client";
        let wp = "spiffe://cluster.local/ns/shop/sa/waypoint";
        let web = "spiffe://cluster.local/ns/shop/sa/web";
        let scrape = |n: f64| {
            let mut s = Snapshot::default();
            s.add(
                &parse(&format!(
                    "quicmesh_tunnel_streams_opened_total{{direction=\"outbound\",src_principal=\"{client}\",dst_principal=\"{wp}\"}} {n}\n"
                )),
                None,
            );
            s.add(
                &parse(&format!(
                    "quicmesh_waypoint_requests_total{{service=\"shop/web:80\",code=\"200\",src_principal=\"{client}\",dst_principal=\"{web}\"}} {}\n\
                     quicmesh_waypoint_requests_total{{service=\"shop/web:80\",code=\"503\",src_principal=\"{client}\",dst_principal=\"\"}} {}\n",
                    n * 9.0,
                    n
                )),
                Some(wp),
            );
            s
        };
        let t = Instant::now();
        let history: VecDeque<_> = [
            (t, scrape(0.0)),
            (t + Duration::from_secs(10), scrape(10.0)),
        ]
        .into();
        let status = [json!({"pods": [
            {"namespace": "front", "name": "client-0", "identity": client},
            {"namespace": "shop", "name": "waypoint-0", "identity": wp, "waypoint": true}]})];
        let g = graph(&history, &status, &[]);
        let e = &g["edges"][0];
        assert_eq!(
            (e["src"].as_str(), e["dst"].as_str()),
            (Some(client), Some(wp))
        );
        assert_eq!(e["connectionsPerSecond"], 1.0);
        assert_eq!(e["requests"][0]["requestsPerSecond"], 10.0);
        assert_eq!(e["requests"][0]["successRate"], 0.9);
        let nodes = g["nodes"].as_array().unwrap();
        let w = nodes.iter().find(|n| n["id"] == wp).unwrap();
        assert_eq!(w["kind"], "waypoint");
        assert_eq!(w["label"], "shop/waypoint");
        let c = nodes.iter().find(|n| n["id"] == client).unwrap();
        assert_eq!(c["pods"][0], "front/client-0");
        assert_eq!(c["signals"]["requestsOutPerSecond"], 10.0);
        assert_eq!(w["signals"]["requestsServedPerSecond"], 10.0);
        // The 9/s the waypoint sent on reached web (the 503s went nowhere).
        let to_web = g["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["src"] == wp && e["dst"] == web)
            .unwrap();
        assert_eq!(to_web["requests"][0]["requestsPerSecond"], 9.0);
        assert_eq!(to_web["requests"][0]["successRate"], 1.0);
        let b = nodes.iter().find(|n| n["id"] == web).unwrap();
        assert_eq!(b["signals"]["requestsInPerSecond"], 9.0);
    }
}
