//! Logging setup shared by every binary: `RUST_LOG` filters, `LOG_FORMAT=json`
//! switches to one JSON object per line (the default is plain text, in
//! colour only on a terminal). The
//! filter can be changed while the process runs ([`set_log_filter`]; the
//! admin port's `/logging`, [`logging_handler`]).

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use crate::metrics::{Asked, Handler, Reply};

/// The longest filter accepted at run time.
pub const MAX_FILTER_BYTES: usize = 1024;

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v == "json");
    // Colours only for a person at a terminal: not in files, pipes or a
    // container's log, and never with NO_COLOR set.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let plain = (!json).then(|| {
        tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
    });
    let json = json.then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
    });
    if tracing_subscriber::registry()
        .with(filter)
        .with(plain)
        .with(json)
        .try_init()
        .is_ok()
    {
        let _ = FILTER.set(handle);
    }
}

/// The filter in effect (`RUST_LOG` syntax), if [`init_logging`] set one.
pub fn log_filter() -> Option<String> {
    let handle = FILTER.get()?;
    handle.with_current(|f| f.to_string()).ok()
}

/// Replaces the filter with `directives` (`RUST_LOG` syntax, e.g. `debug`
/// or `info,waypoint::access=off`); the filter now in effect, or why not.
pub fn set_log_filter(directives: &str) -> Result<String, String> {
    let handle = FILTER
        .get()
        .ok_or("logging was not set up by this process")?;
    let filter = parse_filter(directives)?;
    handle.reload(filter).map_err(|e| e.to_string())?;
    log_filter().ok_or_else(|| "the filter is gone".to_string())
}

/// `directives` as a filter, refused when empty, too long or not valid.
pub fn parse_filter(directives: &str) -> Result<EnvFilter, String> {
    let d = directives.trim();
    if d.is_empty() {
        return Err("an empty filter (give e.g. level=debug)".into());
    }
    if d.len() > MAX_FILTER_BYTES {
        return Err(format!(
            "a filter of {} bytes (at most {MAX_FILTER_BYTES})",
            d.len()
        ));
    }
    EnvFilter::builder()
        .parse(d)
        .map_err(|e| format!("{d:?} is not a log filter: {e}"))
}

/// `/logging` on an admin port: `GET` answers the filter in effect;
/// `POST /logging?level=<filter>` replaces it (400 with why for a bad
/// one). Logged at warn level either way: who changed what is worth
/// keeping.
pub fn logging_handler() -> Handler {
    crate::metrics::handler_with(|asked: Asked| {
        let reply = match asked.method.as_str() {
            "GET" | "HEAD" => match log_filter() {
                Some(f) => Reply::text(200, format!("{f}\n")),
                None => Reply::text(503, "logging was not set up by this process\n".into()),
            },
            "POST" | "PUT" => match asked.query_param("level") {
                None => Reply::text(400, "give the filter as ?level=<filter>, e.g. ?level=debug or ?level=info,waypoint::access=off\n".into()),
                Some(level) => match set_log_filter(&level) {
                    Ok(now) => {
                        tracing::warn!(filter = %now, "log filter changed through the admin port");
                        Reply::text(200, format!("{now}\n"))
                    }
                    Err(why) => {
                        tracing::warn!(reason = %why, "log filter change refused");
                        Reply::text(400, format!("{why}\n"))
                    }
                },
            },
            _ => Reply::text(405, "GET or POST\n".into()),
        };
        std::future::ready(reply)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked_before_they_replace_the_one_in_effect() {
        assert!(parse_filter("debug").is_ok());
        assert!(parse_filter("info,waypoint::access=off").is_ok());
        assert!(parse_filter(" ").unwrap_err().contains("empty"));
        assert!(parse_filter("info,[{").is_err());
        assert!(parse_filter(&"a".repeat(MAX_FILTER_BYTES + 1))
            .unwrap_err()
            .contains("at most"));
    }
}
