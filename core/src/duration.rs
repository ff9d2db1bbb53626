//! Durations as command-line flags write them: `500ms`, `5s`, `10m`, `24h`.

use std::time::Duration;

/// Parses `<n>ms`, `<n>s`, `<n>m` or `<n>h`.
pub fn parse(s: &str) -> Result<Duration, String> {
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{s:?}: missing unit (ms, s, m, h)"))?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{s:?}: not a number"))?;
    let mult = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    n.checked_mul(mult)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{s:?}: too long"))
}

/// `#[serde(with = "quicmesh_core::duration::text")]`: written as `<n>ms`.
pub mod text {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", d.as_millis()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse("24h").unwrap(), Duration::from_secs(86400));
        assert!(parse("5").is_err());
        assert!(parse("5d").is_err());
        assert!(parse("s").is_err());
        assert!(parse("99999999999999999999h").is_err());
        assert!(parse("9999999999999999h").is_err(), "overflow is an error");
    }
}
