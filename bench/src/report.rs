//! Results: rows of repeated measurements (median, min–max), the markdown
//! tables printed on stdout, and the JSON document written under
//! `bench/results/` with the machine and versions it was measured on.
//!
//! [`Table`] is the L4 table (direct vs mesh, rows [`ROWS`]); [`Grid`] is a
//! table of any rows and columns (the L7 rows, one column per path).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{json, Value};

/// Which column a value belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Pods outside the mesh, plain TCP across the node link.
    Direct,
    /// Enrolled pods on two nodes, through both ztunnels.
    Mesh,
    /// Pods on two nodes through the peer's (Istio's) ztunnels.
    Peer,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Direct => "direct",
            Scenario::Mesh => "mesh L4",
            Scenario::Peer => "Istio ztunnel",
        }
    }
}

/// The rows of the table, in order: key, label, unit, target (reported
/// against, never asserted).
pub const ROWS: &[(&str, &str, &str, &str)] = &[
    (
        "tput1",
        "iperf3, 1 stream",
        "Gbit/s",
        "Istio ztunnel ~3.7 (direct ~19); aim ≥ 4",
    ),
    ("tput4", "iperf3, 4 streams", "Gbit/s", ""),
    (
        "quic1",
        "the tunnel's QUIC alone (no ztunnel), 1 stream",
        "Gbit/s",
        "ceiling for iperf3 through the mesh",
    ),
    (
        "quic4",
        "the tunnel's QUIC alone (no ztunnel), 4 streams",
        "Gbit/s",
        "",
    ),
    ("max_rps", "max request rate (closed loop)", "req/s", ""),
    (
        "pp_p50",
        "ping-pong (1 connection, closed loop): p50",
        "µs",
        "Istio +110 over direct ~40",
    ),
    ("pp_p99", "ping-pong: p99", "µs", ""),
    (
        "pp_added_p50",
        "ping-pong: added p50 (mesh − direct)",
        "µs",
        "Istio ~110",
    ),
    ("r1k_p50", "1,000 rps: p50", "µs", ""),
    ("r1k_p90", "1,000 rps: p90", "µs", ""),
    ("r1k_p99", "1,000 rps: p99", "µs", "aim < 300"),
    ("r1k_p999", "1,000 rps: p99.9", "µs", ""),
    (
        "r1k_added_p50",
        "1,000 rps: added p50 (mesh − direct)",
        "µs",
        "aim < 60",
    ),
    ("r80_rate", "80% of max: rate achieved", "req/s", ""),
    ("r80_p50", "80% of max: p50", "µs", ""),
    ("r80_p90", "80% of max: p90", "µs", ""),
    ("r80_p99", "80% of max: p99", "µs", ""),
    ("r80_p999", "80% of max: p99.9", "µs", ""),
    ("churn_p50", "new connection per request: p50", "µs", ""),
    ("churn_p99", "new connection per request: p99", "µs", ""),
    (
        "churn_cps",
        "new connection per request: rate",
        "conn/s",
        "",
    ),
    (
        "cpu_n1",
        "ztunnel CPU per 1,000 rps: client node",
        "vCPU",
        "aim ≤ 0.05",
    ),
    (
        "cpu_n2",
        "ztunnel CPU per 1,000 rps: server node",
        "vCPU",
        "aim ≤ 0.05",
    ),
    ("cpu_both", "ztunnel CPU per 1,000 rps: both", "vCPU", ""),
    (
        "rss_n1",
        "ztunnel peak RSS at 1,000 rps: client node",
        "MB",
        "aim ≤ 10",
    ),
    (
        "rss_n2",
        "ztunnel peak RSS at 1,000 rps: server node",
        "MB",
        "aim ≤ 10",
    ),
    (
        "idle0_n1",
        "ztunnel RSS idle, 0 connections: client node",
        "MB",
        "",
    ),
    (
        "idle0_n2",
        "ztunnel RSS idle, 0 connections: server node",
        "MB",
        "",
    ),
    (
        "idleN_n1",
        "ztunnel RSS idle, N open connections: client node",
        "MB",
        "",
    ),
    (
        "idleN_n2",
        "ztunnel RSS idle, N open connections: server node",
        "MB",
        "",
    ),
    (
        "first_cold",
        "connect → first byte, no tunnel connection yet",
        "µs",
        "",
    ),
    (
        "first_cold_handshake",
        "cold: of which the QUIC handshake (client side)",
        "µs",
        "",
    ),
    (
        "first_warm",
        "connect → first byte, connection reused from the pool",
        "µs",
        "",
    ),
    (
        "lossy_tput1",
        "lossy link (1% loss): iperf3, 1 stream",
        "Gbit/s",
        "",
    ),
    (
        "lossy_p50",
        "lossy link: 1,000 rps p50 beside a bulk transfer",
        "µs",
        "",
    ),
    (
        "lossy_p99",
        "lossy link: 1,000 rps p99 beside a bulk transfer",
        "µs",
        "clearly better than TCP tunnels",
    ),
];

/// One cell: the values of every run, or a note saying why there are none.
#[derive(Debug, Clone, Default)]
pub struct Cell {
    pub values: Vec<f64>,
    pub note: Option<String>,
}

/// Median, min and max of `v` (None when empty).
pub fn summary(v: &[f64]) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let med = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    Some((med, s[0], s[n - 1]))
}

/// Three significant digits or so, never scientific notation.
pub fn num(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

impl Cell {
    fn render(&self) -> String {
        if let Some(n) = &self.note {
            return n.clone();
        }
        match summary(&self.values) {
            None => "—".into(),
            Some((m, _, _)) if self.values.len() == 1 => num(m),
            Some((m, lo, hi)) => format!("{} ({}–{})", num(m), num(lo), num(hi)),
        }
    }

    fn json(&self) -> Value {
        let s = summary(&self.values);
        json!({
            "values": self.values,
            "median": s.map(|x| x.0),
            "min": s.map(|x| x.1),
            "max": s.map(|x| x.2),
            "note": self.note,
        })
    }
}

/// Every row's cells, filled as the benchmark goes.
#[derive(Debug, Clone)]
pub struct Table {
    cells: Vec<[Cell; 3]>,
    /// Label suffix for the idle-connections rows (the N).
    pub idle_conns: usize,
    /// With the peer's column and the quicmesh / peer ratio.
    pub peer: bool,
}

fn col(s: Scenario) -> usize {
    match s {
        Scenario::Direct => 0,
        Scenario::Mesh => 1,
        Scenario::Peer => 2,
    }
}

/// quicmesh's median over the peer's, when both were measured.
fn ratio(mesh: &Cell, peer: &Cell) -> Option<f64> {
    let (m, p) = (summary(&mesh.values)?.0, summary(&peer.values)?.0);
    (p != 0.0).then(|| m / p)
}

fn row(key: &str) -> usize {
    ROWS.iter()
        .position(|r| r.0 == key)
        .unwrap_or_else(|| panic!("no row {key}"))
}

impl Table {
    pub fn new(idle_conns: usize) -> Table {
        Table {
            cells: vec![Default::default(); ROWS.len()],
            idle_conns,
            peer: false,
        }
    }

    pub fn push(&mut self, key: &str, s: Scenario, v: f64) {
        self.cells[row(key)][col(s)].values.push(v);
    }

    pub fn note(&mut self, key: &str, s: Scenario, note: &str) {
        self.cells[row(key)][col(s)].note = Some(note.into());
    }

    pub fn values(&self, key: &str, s: Scenario) -> &[f64] {
        &self.cells[row(key)][col(s)].values
    }

    fn label(&self, key: &str, label: &str) -> String {
        if key.starts_with("idleN") {
            label.replace(" N ", &format!(" {} ", self.idle_conns))
        } else {
            label.to_string()
        }
    }

    /// The markdown table: median (min–max) over the runs.
    /// With a peer, two more columns: the peer's, and quicmesh's median
    /// over the peer's (above 1: more throughput, or more time, memory or
    /// CPU, than the peer).
    pub fn markdown(&self) -> String {
        let mut out = if self.peer {
            String::from(
                "| figure | unit | direct | mesh L4 | Istio ztunnel | quicmesh / Istio | target (reported, not asserted) |\n\
                 | --- | --- | --- | --- | --- | --- | --- |\n",
            )
        } else {
            String::from(
                "| figure | unit | direct | mesh L4 | target (reported, not asserted) |\n\
                 | --- | --- | --- | --- | --- |\n",
            )
        };
        for (i, (key, label, unit, target)) in ROWS.iter().enumerate() {
            let [d, m, p] = &self.cells[i];
            let peer = if self.peer {
                let r = ratio(m, p).map_or("—".into(), |r| format!("{r:.2}"));
                format!(" {} | {r} |", p.render())
            } else {
                String::new()
            };
            out.push_str(&format!(
                "| {} | {unit} | {} | {} |{peer} {target} |\n",
                self.label(key, label),
                d.render(),
                m.render()
            ));
        }
        out
    }

    pub fn json(&self) -> Value {
        let rows: Vec<Value> = ROWS
            .iter()
            .enumerate()
            .map(|(i, (key, label, unit, target))| {
                json!({
                    "key": key,
                    "label": self.label(key, label),
                    "unit": unit,
                    "target": target,
                    "direct": self.cells[i][0].json(),
                    "mesh": self.cells[i][1].json(),
                    "peer": self.peer.then(|| self.cells[i][2].json()),
                    "mesh_over_peer": ratio(&self.cells[i][1], &self.cells[i][2]),
                })
            })
            .collect();
        Value::Array(rows)
    }
}

/// A row of a [`Grid`].
#[derive(Debug, Clone)]
pub struct Row {
    pub key: String,
    pub label: String,
    pub unit: &'static str,
    /// Reported against, never asserted.
    pub target: &'static str,
}

/// Rows × columns of repeated measurements (median, min–max over the runs).
#[derive(Debug, Clone)]
pub struct Grid {
    /// (key in the JSON, header in the markdown table)
    columns: Vec<(&'static str, &'static str)>,
    rows: Vec<Row>,
    cells: Vec<Vec<Cell>>,
}

impl Grid {
    pub fn new(columns: Vec<(&'static str, &'static str)>, rows: Vec<Row>) -> Grid {
        let cells = vec![vec![Cell::default(); columns.len()]; rows.len()];
        Grid {
            columns,
            rows,
            cells,
        }
    }

    fn at(&self, key: &str, col: usize) -> (usize, usize) {
        let r = self
            .rows
            .iter()
            .position(|r| r.key == key)
            .unwrap_or_else(|| panic!("no row {key}"));
        assert!(col < self.columns.len(), "no column {col}");
        (r, col)
    }

    pub fn push(&mut self, key: &str, col: usize, v: f64) {
        let (r, c) = self.at(key, col);
        self.cells[r][c].values.push(v);
    }

    pub fn values(&self, key: &str, col: usize) -> &[f64] {
        let (r, c) = self.at(key, col);
        &self.cells[r][c].values
    }

    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// The markdown table: median (min–max) over the runs.
    pub fn markdown(&self) -> String {
        let heads: Vec<&str> = self.columns.iter().map(|c| c.1).collect();
        let mut out = format!(
            "| figure | unit | {} | target (reported, not asserted) |\n| --- | --- |{} --- |\n",
            heads.join(" | "),
            " --- |".repeat(heads.len())
        );
        for (row, cells) in self.rows.iter().zip(&self.cells) {
            let values: Vec<String> = cells.iter().map(Cell::render).collect();
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                row.label,
                row.unit,
                values.join(" | "),
                row.target
            ));
        }
        out
    }

    pub fn json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .zip(&self.cells)
            .map(|(row, cells)| {
                let mut v = json!({
                    "key": row.key, "label": row.label, "unit": row.unit, "target": row.target,
                });
                for ((key, _), cell) in self.columns.iter().zip(cells) {
                    v[*key] = cell.json();
                }
                v
            })
            .collect();
        Value::Array(rows)
    }
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// The first line `cmd args` prints, or `unknown`.
pub(crate) fn command_line(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// UTC date and time, e.g. `2026-11-23T10:00:00Z`.
pub fn now_utc() -> String {
    command_line("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"])
}

/// The load average now (`/proc/loadavg`), to record before the run.
pub fn loadavg() -> String {
    read_trim("/proc/loadavg")
}

/// The machine the numbers come from. `mtu` is the node link's; `load` the
/// [`loadavg`] taken before the run.
pub fn machine(mtu: &str, load: &str) -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "kernel": read_trim("/proc/sys/kernel/osrelease"),
        "node_link_mtu": mtu,
        "net.core.rmem_max": read_trim("/proc/sys/net/core/rmem_max"),
        "net.core.wmem_max": read_trim("/proc/sys/net/core/wmem_max"),
        "loadavg_at_start": load,
    })
}

/// Versions of what was measured, from the lock file this binary was built with.
pub fn versions() -> Value {
    const LOCK: &str = include_str!("../../Cargo.lock");
    let locked = |name: &str| -> String {
        let needle = format!("name = \"{name}\"\nversion = \"");
        LOCK.find(&needle)
            .map(|i| &LOCK[i + needle.len()..])
            .and_then(|r| r.split('"').next())
            .unwrap_or("unknown")
            .to_string()
    };
    let dir = env!("CARGO_MANIFEST_DIR");
    json!({
        "quicmesh": env!("CARGO_PKG_VERSION"),
        "git": command_line("git", &["-C", dir, "rev-parse", "--short", "HEAD"]),
        "quinn": locked("quinn"),
        // HTTP/3 is quicmesh's own (core/src/tunnel/http3) since 2026-12-01.
        "rustls": locked("rustls"),
        "ring": locked("ring"),
        // Only in a bench built with it (the tls subcommand's rows).
        "aws-lc-rs": cfg!(feature = "aws-lc-rs").then(|| locked("aws-lc-rs")),
        "tokio": locked("tokio"),
        "rustc": command_line("rustc", &["--version"]),
        "iperf3": command_line("iperf3", &["--version"]),
    })
}

/// Writes `doc` as `<dir>/<mode>-<date>.json` and returns the path.
pub fn write_json(dir: &Path, mode: &str, date: &str, doc: &Value) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let stamp: String = date.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let path = dir.join(format!("{mode}-{stamp}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(doc)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_cells() {
        assert_eq!(summary(&[3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(summary(&[4.0, 1.0, 2.0, 3.0]), Some((2.5, 1.0, 4.0)));
        assert_eq!(summary(&[]), None);
        let mut t = Table::new(1000);
        t.push("tput1", Scenario::Mesh, 2.5);
        t.push("tput1", Scenario::Mesh, 2.0);
        t.push("tput1", Scenario::Mesh, 3.25);
        t.note("lossy_p50", Scenario::Direct, "unavailable: x");
        let md = t.markdown();
        assert!(md.contains("| iperf3, 1 stream | Gbit/s | — | 2.50 (2.00–3.25) |"));
        assert!(md.contains("| unavailable: x |"));
        assert!(md.contains("1000 open connections"));
        assert_eq!(md.lines().count(), ROWS.len() + 2);
        assert!(versions()["quinn"].as_str().unwrap().starts_with("0."));
        // With the peer: its column and the ratio of the medians.
        t.peer = true;
        t.push("tput1", Scenario::Peer, 5.0);
        let md = t.markdown();
        assert!(
            md.contains("| iperf3, 1 stream | Gbit/s | — | 2.50 (2.00–3.25) | 5.00 | 0.50 |"),
            "{md}"
        );
        assert!(md.contains("| Istio ztunnel | quicmesh / Istio |"));
        assert_eq!(t.json()[0]["mesh_over_peer"], 0.5);
        assert!(md.contains("| iperf3, 4 streams | Gbit/s | — | — | — | — |"));
    }

    #[test]
    fn grid_renders_every_column() {
        let row = |key: &str| Row {
            key: key.into(),
            label: format!("row {key}"),
            unit: "µs",
            target: "t",
        };
        let mut g = Grid::new(
            vec![("a", "A"), ("b", "B"), ("c", "C")],
            vec![row("x"), row("y")],
        );
        g.push("x", 1, 3.0);
        g.push("x", 1, 1.0);
        g.push("y", 2, 7.0);
        let md = g.markdown();
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines.len(), 4, "{md}");
        assert_eq!(
            lines[0],
            "| figure | unit | A | B | C | target (reported, not asserted) |"
        );
        assert_eq!(lines[1], "| --- | --- | --- | --- | --- | --- |");
        assert_eq!(lines[2], "| row x | µs | — | 2.00 (1.00–3.00) | — | t |");
        assert_eq!(lines[3], "| row y | µs | — | — | 7.00 | t |");
        let j = g.json();
        assert_eq!(j[0]["b"]["median"], 2.0);
        assert_eq!(j[1]["c"]["values"][0], 7.0);
        assert_eq!(g.values("x", 1), &[3.0, 1.0]);
    }
}
