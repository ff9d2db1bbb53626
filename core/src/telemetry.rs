//! Logging (and, through [`crate::trace`], traces) set up for every binary: `RUST_LOG` filters, `LOG_FORMAT=json`
//! switches to one JSON object per line (the default is plain text, in
//! colour only on a terminal). The
//! filter can be changed while the process runs ([`set_log_filter`]; the
//! admin port's `/logging`, [`logging_handler`]).

use std::sync::OnceLock;

use tracing_subscriber::filter::{filter_fn, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::metrics::{Asked, Handler, Reply};
use crate::trace::{TraceArgs, TraceSettings};

/// The longest filter accepted at run time.
pub const MAX_FILTER_BYTES: usize = 1024;

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Logs only (the CNI plugin and agent, the CLI).
pub fn init_logging() {
    let _ = install(None);
}

/// What [`init`] set up; [`Telemetry::shutdown`] sends the spans still
/// queued before the process exits.
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn traces(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes and stops the exporter (bounded by its own timeouts).
    pub async fn shutdown(self) {
        if let Some(p) = self.provider {
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(e) = p.shutdown() {
                    tracing::debug!(error = %e, "trace exporter shutdown");
                }
            })
            .await;
        }
    }
}

/// Logs, and traces when `trace` or the `OTEL_*` variables name a
/// receiver (`service` is the resource's `service.name`). Runs inside the
/// process's Tokio runtime; a trace setting that cannot be used is an
/// error (the process should not start half-observed).
pub fn init(service: &'static str, trace: &TraceArgs) -> anyhow::Result<Telemetry> {
    let settings = TraceSettings::resolve(trace, |k| std::env::var(k).ok())
        .map_err(|e| anyhow::anyhow!("traces: {e}"))?;
    let provider = match &settings {
        Some(s) => {
            Some(crate::trace::provider(service, s).map_err(|e| anyhow::anyhow!("traces: {e}"))?)
        }
        None => None,
    };
    install(provider.as_ref().map(|p| {
        use opentelemetry::trace::TracerProvider;
        p.tracer(service)
    }));
    if let Some(s) = &settings {
        tracing::info!(
            endpoint = %s.endpoint,
            protocol = ?s.protocol,
            parent_based = s.sampler.parent_based,
            ratio = s.sampler.ratio,
            "exporting traces"
        );
    }
    Ok(Telemetry { provider })
}

fn install(tracer: Option<opentelemetry_sdk::trace::SdkTracer>) -> bool {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v == "json");
    // Colours only for a person at a terminal: not in files, pipes or a
    // container's log, and never with NO_COLOR set.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let fmt: Box<dyn Layer<Registry> + Send + Sync> = if json {
        Box::new(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_writer(std::io::stderr),
        )
    } else {
        Box::new(
            tracing_subscriber::fmt::layer()
                .with_ansi(ansi)
                .with_writer(std::io::stderr),
        )
    };
    // Trace spans never show in the logs: the log lines are the same with
    // traces on or off.
    let fmt = fmt.with_filter(filter.and(filter_fn(|m| !crate::trace::is_trace_span(m))));
    // Traces: the spans made for them, and warnings and errors inside
    // them (as span events).
    let otel = tracer.map(|t| {
        tracing_opentelemetry::layer()
            .with_tracer(t)
            .with_location(false)
            .with_threads(false)
            .with_filter(filter_fn(|m| {
                crate::trace::is_trace_span(m)
                    || (m.is_event() && *m.level() <= tracing::Level::WARN)
            }))
    });
    if tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init()
        .is_ok()
    {
        let _ = FILTER.set(handle);
        true
    } else {
        false
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
