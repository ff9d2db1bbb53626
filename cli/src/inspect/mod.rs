//! `quicmesh proxy-status`, `quicmesh ztunnel-config ...`,
//! `quicmesh waypoint-config ...`: what a running mesh's controller and
//! proxies say about themselves, read from their admin pages
//! ([`crate::target`]: a local mesh, or one in Kubernetes) and shown as a
//! table, or as JSON or YAML for scripts.

mod proxy_status;
mod waypoint;
mod ztunnel;

pub use proxy_status::{controller_status, proxy_row, proxy_status};
pub use waypoint::{waypoint_config, WaypointArgs};
pub use ztunnel::{ztunnel_config, ZtunnelArgs};

use anyhow::Result;
use clap::{Args, ValueEnum};
use serde_json::Value;

use crate::kube::KubeArgs;
use crate::target::local_clusters;

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
    #[command(flatten)]
    pub kube: KubeArgs,
}

pub(crate) fn str_of(v: &Value) -> String {
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
pub(crate) type Column<'a> = (&'a str, &'a dyn Fn(&Value) -> String);

/// Prints `rows` (objects) as `output` says; a table has `columns`, after
/// a CLUSTER column when the rows come from several clusters ([`tag`]).
pub(crate) fn print(output: Output, rows: &[Value], columns: &[Column<'_>]) -> Result<()> {
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
pub(crate) fn tag(rows: &mut [Value], clusters: &[Value], of: &[usize]) {
    if clusters.len() > 1 {
        for (r, c) in rows.iter_mut().zip(of) {
            r["cluster"] = clusters[*c]["cluster"].clone();
        }
    }
}

/// `quicmesh local status -o json|yaml`: the agent's status as it is.
pub fn print_status(output: Output) -> Result<()> {
    let status = local_clusters(None)?;
    match output {
        Output::Yaml => print!("{}", serde_yaml::to_string(&status)?),
        _ => println!("{}", serde_json::to_string_pretty(&status)?),
    }
    Ok(())
}

/// `seconds` since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn utc(seconds: i64) -> String {
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
pub(crate) fn span(seconds: i64) -> String {
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
}
