//! The Grafana dashboard: JSON Grafana loads, every query valid PromQL
//! (parsed by a PromQL parser), a layout that fits Grafana's 24-column
//! grid. That every family it reads is served is checked against the
//! live processes in `waypoint.rs`.

use std::collections::BTreeSet;

use quicmesh_e2e::grafana;

#[test]
fn every_query_parses_as_promql() {
    let d = grafana::dashboard();
    let queries = grafana::queries(&d);
    assert!(queries.len() > 20, "{queries:?}");
    for (panel, q) in &queries {
        // Grafana's own variables, as Grafana substitutes them.
        let q = q
            .replace("$__rate_interval", "1m")
            .replace("$service", ".*");
        if let Err(e) = promql_parser::parser::parse(&q) {
            panic!("{panel}: {q}: {e}");
        }
    }
    // A query that is not PromQL is refused (the check can fail).
    assert!(promql_parser::parser::parse("sum by (service (rate(x[1m]))").is_err());
}

#[test]
fn panels_fit_the_grid_and_have_distinct_ids() {
    let d = grafana::dashboard();
    assert_eq!(d["uid"], "quicmesh-overview");
    let mut ids = BTreeSet::new();
    let mut taken = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        let id = p["id"].as_u64().unwrap();
        assert!(ids.insert(id), "panel id {id} twice");
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().unwrap(),
            g["y"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        assert!(x + w <= 24, "{}: past the grid's 24 columns", p["title"]);
        for cell in (x..x + w).flat_map(|cx| (y..y + h).map(move |cy| (cx, cy))) {
            assert!(taken.insert(cell), "{} overlaps another panel", p["title"]);
        }
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
            assert!(
                !p["targets"].as_array().unwrap().is_empty(),
                "{}",
                p["title"]
            );
        }
    }
}

#[test]
fn the_queries_read_the_golden_signals() {
    let families = grafana::families(&grafana::queries(&grafana::dashboard()));
    for f in [
        "quicmesh_waypoint_requests",
        "quicmesh_waypoint_request_duration_seconds",
        "quicmesh_tunnel_streams_opened",
        "quicmesh_svid_expiration_timestamp_seconds",
        "quicmesh_config_push_duration_seconds",
    ] {
        assert!(
            families.contains(f),
            "{f} not on the dashboard: {families:?}"
        );
    }
}
