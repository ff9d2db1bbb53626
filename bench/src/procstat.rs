//! What a process costs, read from `/proc`: CPU time (`utime + stime` of
//! `/proc/<pid>/stat`), resident memory (`VmRSS`, `VmHWM` of
//! `/proc/<pid>/status`), and resetting the peak (`clear_refs` 5).

use anyhow::{bail, Context, Result};

/// CPU seconds (user + system) the process has used so far.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) in parentheses.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    if f.len() < 13 {
        bail!("short /proc/{pid}/stat");
    }
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Ok(ticks as f64 / if hz > 0 { hz as f64 } else { 100.0 })
}

/// A `kB` field of `/proc/<pid>/status`, in megabytes (10^6 bytes).
fn status_mb(pid: u32, field: &str) -> Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = text
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    let kb: f64 = line[field.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("parsing {line:?}"))?;
    Ok(kb * 1024.0 / 1e6)
}

/// Current resident set size, MB.
pub fn rss_mb(pid: u32) -> Result<f64> {
    status_mb(pid, "VmRSS")
}

/// Peak resident set size since start or the last [`reset_peak`], MB.
pub fn peak_rss_mb(pid: u32) -> Result<f64> {
    status_mb(pid, "VmHWM")
}

/// Resets the peak RSS (`VmHWM`) to the current RSS.
pub fn reset_peak(pid: u32) -> Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .with_context(|| format!("resetting the peak RSS of {pid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        let rss = rss_mb(pid).unwrap();
        assert!(rss > 0.1 && rss < 10_000.0, "{rss}");
        assert!(peak_rss_mb(pid).unwrap() >= rss * 0.5);
    }
}
