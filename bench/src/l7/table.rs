//! What the L7 table is: its columns (the paths), its rows, and the rows
//! computed from others once the runs are done. Pure: the measuring is
//! [`super::L7Bench`]'s.

use super::setup::{AUTHZ_SERVICE, MESH_NS, PROXY_NS};
use super::L7Plan;
use crate::report::{Grid, Row};

/// The columns of the L7 table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Path {
    Mesh,
    Waypoint,
    /// The waypoint with a JWT check and L7 policies (`srv-authz`).
    Authz,
    Haproxy,
}

pub(super) const PATHS: [Path; 4] = [Path::Mesh, Path::Waypoint, Path::Authz, Path::Haproxy];

impl Path {
    pub(super) fn col(self) -> usize {
        self as usize
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Path::Mesh => "L4 mesh",
            Path::Waypoint => "waypoint",
            Path::Authz => "waypoint + JWT + policy",
            Path::Haproxy => "HAProxy",
        }
    }

    /// The Service the client calls: (namespace, name).
    pub(super) fn service(self) -> (&'static str, &'static str) {
        match self {
            Path::Mesh => (MESH_NS, "srv-l4"),
            Path::Waypoint => (MESH_NS, "srv"),
            Path::Authz => (MESH_NS, AUTHZ_SERVICE),
            Path::Haproxy => (PROXY_NS, "haproxy"),
        }
    }
}

pub(super) fn columns() -> Vec<(&'static str, &'static str)> {
    vec![
        ("l4", "L4 mesh (no L7 hop)"),
        ("waypoint", "via waypoint"),
        ("waypoint_authz", "waypoint + JWT + policy"),
        ("haproxy", "via HAProxy"),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Http {
    H1,
    H2,
}

pub(super) const HTTPS: [Http; 2] = [Http::H1, Http::H2];

impl Http {
    pub(super) fn key(self) -> &'static str {
        match self {
            Http::H1 => "h1",
            Http::H2 => "h2",
        }
    }

    pub(super) fn label(self) -> &'static str {
        match self {
            Http::H1 => "HTTP/1.1",
            Http::H2 => "HTTP/2",
        }
    }

    /// Each Service's port for this protocol.
    pub(super) fn port(self) -> u16 {
        match self {
            Http::H1 => 80,
            Http::H2 => 81,
        }
    }
}

pub(super) fn key(h: Http, figure: &str) -> String {
    format!("{}_{figure}", h.key())
}

/// The rows of the L7 table.
pub(super) fn rows(p: &L7Plan) -> Vec<Row> {
    let mut rows = Vec::new();
    for h in HTTPS {
        let l = h.label();
        let inflight = match h {
            Http::H1 => format!("{} connections", p.h1_conns),
            Http::H2 => format!("{} connections × {} streams", p.h2_conns, p.h2_streams),
        };
        let mut row = |figure: &str, label: String, unit, target| {
            rows.push(Row {
                key: key(h, figure),
                label,
                unit,
                target,
            })
        };
        row("p50", format!("{l}, 1,000 rps: p50"), "µs", "");
        row("p90", format!("{l}, 1,000 rps: p90"), "µs", "");
        row("p99", format!("{l}, 1,000 rps: p99"), "µs", "");
        row(
            "added_p50",
            format!("{l}, 1,000 rps: added p50 over the L4 mesh"),
            "µs",
            "waypoint ≤ HAProxy",
        );
        row(
            "max",
            format!("{l}, max request rate (closed loop, {inflight})"),
            "req/s",
            "",
        );
        row(
            "cpu",
            format!("{l}, L7 proxy CPU per 1,000 rps"),
            "vCPU",
            "waypoint ≤ 0.08 (Istio's Envoy waypoint 0.25)",
        );
        row(
            "rss",
            format!("{l}, L7 proxy peak RSS at 1,000 rps"),
            "MB",
            "waypoint ≤ 20 (Istio's Envoy waypoint 60)",
        );
        row(
            "zt_cpu",
            format!("{l}, ztunnels' CPU per 1,000 rps (all four nodes)"),
            "vCPU",
            "",
        );
        // The JWT + policy column only: its cost over the plain waypoint.
        row(
            "authz_cpu",
            format!("{l}, JWT + policy: waypoint CPU per request over the plain waypoint"),
            "%",
            "≤ 10 %",
        );
        row(
            "authz_added_p50",
            format!("{l}, JWT + policy: added p50 over the plain waypoint"),
            "µs",
            "",
        );
        row(
            "authz_added_p99",
            format!("{l}, JWT + policy: added p99 over the plain waypoint"),
            "µs",
            "",
        );
    }
    rows.push(Row {
        key: "idle_rss".into(),
        label: "L7 proxy RSS idle, before any load".into(),
        unit: "MB",
        target: "",
    });
    rows
}

/// The rows computed from others for `http`, run by run: every L7 path's
/// added p50 over the L4 mesh; the JWT + policy path's added p50 and p99
/// over the plain waypoint and its CPU per request over the plain
/// waypoint's, in %.
pub(super) fn derive_rows(grid: &mut Grid, http: Http) {
    let l7 = [Path::Waypoint, Path::Authz, Path::Haproxy];
    let diff = |v: f64, b: f64| v - b;
    derive(grid, http, "p50", Path::Mesh, &l7, "added_p50", diff);
    let authz = [Path::Authz];
    derive(
        grid,
        http,
        "p50",
        Path::Waypoint,
        &authz,
        "authz_added_p50",
        diff,
    );
    derive(
        grid,
        http,
        "p99",
        Path::Waypoint,
        &authz,
        "authz_added_p99",
        diff,
    );
    let pct = |v: f64, b: f64| (v - b) / b * 100.0;
    derive(grid, http, "cpu", Path::Waypoint, &authz, "authz_cpu", pct);
}

/// Row `to` of each of `paths`: `f(its value, base's value)` of row
/// `from`, run by run.
fn derive(
    grid: &mut Grid,
    http: Http,
    from: &str,
    base: Path,
    paths: &[Path],
    to: &str,
    f: fn(f64, f64) -> f64,
) {
    let b = grid.values(&key(http, from), base.col()).to_vec();
    for &path in paths {
        let v = grid.values(&key(http, from), path.col()).to_vec();
        for (v, b) in v.iter().zip(&b) {
            grid.push(&key(http, to), path.col(), f(*v, *b));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_has_a_unique_key() {
        let rows = rows(&L7Plan::full());
        let mut keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), rows.len());
        // Eight rows per HTTP version, three of the JWT + policy path's
        // own per version, idle RSS.
        assert_eq!(rows.len(), 2 * (8 + 3) + 1);
        assert_eq!(columns().len(), PATHS.len());
        for (i, p) in PATHS.iter().enumerate() {
            assert_eq!(p.col(), i);
        }
    }

    #[test]
    fn derived_rows_compare_run_by_run() {
        let mut g = Grid::new(columns(), rows(&L7Plan::full()));
        let h = Http::H2;
        for (path, p50, p99, cpu) in [
            (Path::Mesh, [500.0, 600.0], [900.0, 1000.0], None),
            (
                Path::Waypoint,
                [700.0, 900.0],
                [1500.0, 1400.0],
                Some([0.20, 0.25]),
            ),
            (
                Path::Authz,
                [760.0, 880.0],
                [1600.0, 1500.0],
                Some([0.22, 0.25]),
            ),
            (
                Path::Haproxy,
                [800.0, 700.0],
                [1200.0, 1300.0],
                Some([0.1, 0.1]),
            ),
        ] {
            for run in 0..2 {
                g.push(&key(h, "p50"), path.col(), p50[run]);
                g.push(&key(h, "p99"), path.col(), p99[run]);
                if let Some(c) = cpu {
                    g.push(&key(h, "cpu"), path.col(), c[run]);
                }
            }
        }
        derive_rows(&mut g, h);
        let at = |row: &str, p: Path| g.values(&key(h, row), p.col()).to_vec();
        assert_eq!(at("added_p50", Path::Mesh), [0.0; 0]);
        assert_eq!(at("added_p50", Path::Waypoint), [200.0, 300.0]);
        assert_eq!(at("added_p50", Path::Authz), [260.0, 280.0]);
        assert_eq!(at("added_p50", Path::Haproxy), [300.0, 100.0]);
        assert_eq!(at("authz_added_p50", Path::Authz), [60.0, -20.0]);
        assert_eq!(at("authz_added_p99", Path::Authz), [100.0, 100.0]);
        let cpu = at("authz_cpu", Path::Authz);
        assert!(
            (cpu[0] - 10.0).abs() < 1e-9 && cpu[1].abs() < 1e-9,
            "{cpu:?}"
        );
        for p in [Path::Mesh, Path::Waypoint, Path::Haproxy] {
            for row in ["authz_cpu", "authz_added_p50", "authz_added_p99"] {
                assert!(at(row, p).is_empty(), "{row} of {p:?}");
            }
        }
        // Nothing for the other version.
        assert!(g.values("h1_added_p50", Path::Waypoint.col()).is_empty());
    }
}
