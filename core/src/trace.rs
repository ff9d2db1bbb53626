//! OpenTelemetry traces: spans come from `tracing` spans that declare an
//! `otel.kind` field (one per tunnelled connection at a ztunnel, one per
//! request at a waypoint, one per certificate the controller signs) and
//! leave by OTLP (gRPC or HTTP/protobuf) to the collector the operator
//! names. W3C `traceparent`/`tracestate` travel in the tunnel's CONNECT
//! headers and in the HTTP requests a waypoint forwards ([`inject`],
//! [`continue_from`]).
//!
//! Off unless an endpoint is configured ([`TraceArgs`], or the standard
//! `OTEL_EXPORTER_OTLP_*` variables): then no span is even created, and the
//! logs are the same either way (trace spans never appear in them).
//!
//! Bounded: the batch processor holds at most `OTEL_BSP_MAX_QUEUE_SIZE`
//! spans (2,048 by default) and drops the rest, each export has a timeout,
//! and a peer's `traceparent` is a hint like any other header (its sampled
//! flag is honoured only by the parent-based samplers).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A trace context (a span's, or a remote one), for the crates that carry
/// one without depending on OpenTelemetry themselves.
pub use opentelemetry::Context;

/// How a process exports traces: flags, each with the standard variable
/// it stands in for (the flag wins).
#[derive(Debug, Clone, Default, clap::Args, serde::Serialize)]
pub struct TraceArgs {
    /// The OTLP receiver spans are sent to, used as given (e.g.
    /// `http://otel-collector:4318/v1/traces`, or `http://otel-collector:4317`
    /// for gRPC). Without it, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, then
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (for HTTP, `/v1/traces` appended).
    /// None of them: no traces.
    #[arg(long = "otlp-endpoint", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// `grpc` or `http/protobuf` (default; `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`,
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`).
    #[arg(long = "otlp-protocol", value_name = "PROTOCOL")]
    pub otlp_protocol: Option<String>,
    /// Headers sent with each export, `name=value,name2=value2` (e.g. an
    /// API key). `OTEL_EXPORTER_OTLP_HEADERS` and
    /// `OTEL_EXPORTER_OTLP_TRACES_HEADERS` are honoured too.
    #[arg(long = "otlp-headers", value_name = "HEADERS")]
    #[serde(skip)]
    pub otlp_headers: Option<String>,
    /// Which traces are kept: `parentbased_always_on` (default),
    /// `parentbased_traceidratio`, `parentbased_always_off`, `always_on`,
    /// `always_off`, `traceidratio` (`OTEL_TRACES_SAMPLER`).
    #[arg(long = "trace-sampler", value_name = "SAMPLER")]
    pub trace_sampler: Option<String>,
    /// The ratio of the `*traceidratio` samplers, 0 to 1
    /// (`OTEL_TRACES_SAMPLER_ARG`; default 1).
    #[arg(long = "trace-sampler-arg", value_name = "RATIO")]
    pub trace_sampler_arg: Option<String>,
}

/// Where and how spans are exported, resolved from flags and environment.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSettings {
    pub endpoint: String,
    pub protocol: Protocol,
    pub headers: Vec<(String, String)>,
    pub sampler: SamplerChoice,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

impl FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            "http/json" => {
                Err("OTLP protocol http/json is not supported (use http/protobuf or grpc)".into())
            }
            other => Err(format!(
                "unknown OTLP protocol {other:?} (grpc or http/protobuf)"
            )),
        }
    }
}

/// The sampler named by `OTEL_TRACES_SAMPLER`, with its ratio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerChoice {
    /// Follow a sampled parent's decision (a remote one included).
    pub parent_based: bool,
    /// The share of root traces kept.
    pub ratio: f64,
}

impl SamplerChoice {
    fn parse(name: &str, arg: Option<&str>) -> Result<Self, String> {
        let ratio = match arg.map(str::trim).filter(|a| !a.is_empty()) {
            None => 1.0,
            Some(a) => match a.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => r,
                _ => return Err(format!("sampler ratio {a:?} is not a number from 0 to 1")),
            },
        };
        let (parent_based, ratio) = match name.trim() {
            "always_on" => (false, 1.0),
            "always_off" => (false, 0.0),
            "traceidratio" => (false, ratio),
            "parentbased_always_on" => (true, 1.0),
            "parentbased_always_off" => (true, 0.0),
            "parentbased_traceidratio" => (true, ratio),
            other => {
                return Err(format!(
                    "unknown sampler {other:?} (always_on, always_off, traceidratio, \
                     parentbased_always_on, parentbased_always_off, parentbased_traceidratio)"
                ))
            }
        };
        Ok(SamplerChoice {
            parent_based,
            ratio,
        })
    }

    fn sampler(self) -> Sampler {
        let root = if self.ratio >= 1.0 {
            Sampler::AlwaysOn
        } else if self.ratio <= 0.0 {
            Sampler::AlwaysOff
        } else {
            Sampler::TraceIdRatioBased(self.ratio)
        };
        if self.parent_based {
            Sampler::ParentBased(Box::new(root))
        } else {
            root
        }
    }
}

/// At most this many export headers, each at most [`MAX_HEADER_BYTES`].
const MAX_HEADERS: usize = 32;
const MAX_HEADER_BYTES: usize = 4096;
/// Each export's deadline unless `OTEL_EXPORTER_OTLP_TIMEOUT` says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl TraceSettings {
    /// The settings `args` and the environment (`env`) ask for; `None`
    /// when no endpoint is set (or `OTEL_SDK_DISABLED=true`); why not, for
    /// a value that cannot be used.
    pub fn resolve(
        args: &TraceArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, String> {
        let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let protocol = match args
            .otlp_protocol
            .clone()
            .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
            .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
        {
            Some(p) => p.parse()?,
            None => Protocol::HttpProtobuf,
        };
        let endpoint = match (
            args.otlp_endpoint.clone().filter(|e| !e.trim().is_empty()),
            env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            env("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(e), _, _) | (None, Some(e), _) => e.trim().to_string(),
            (None, None, Some(base)) => match protocol {
                Protocol::Grpc => base.trim().to_string(),
                Protocol::HttpProtobuf => {
                    format!("{}/v1/traces", base.trim().trim_end_matches('/'))
                }
            },
            (None, None, None) => return Ok(None),
        };
        check_endpoint(&endpoint)?;
        let headers = match &args.otlp_headers {
            Some(h) => parse_headers(h)?,
            None => Vec::new(),
        };
        let sampler = SamplerChoice::parse(
            &args
                .trace_sampler
                .clone()
                .or_else(|| env("OTEL_TRACES_SAMPLER"))
                .unwrap_or_else(|| "parentbased_always_on".into()),
            args.trace_sampler_arg
                .clone()
                .or_else(|| env("OTEL_TRACES_SAMPLER_ARG"))
                .as_deref(),
        )?;
        let timeout = match env("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
            .or_else(|| env("OTEL_EXPORTER_OTLP_TIMEOUT"))
        {
            None => DEFAULT_TIMEOUT,
            Some(ms) => match ms.trim().parse::<u64>() {
                Ok(ms) if (1..=600_000).contains(&ms) => Duration::from_millis(ms),
                _ => {
                    return Err(format!(
                        "OTLP timeout {ms:?} is not a number of milliseconds from 1 to 600000"
                    ))
                }
            },
        };
        Ok(Some(TraceSettings {
            endpoint,
            protocol,
            headers,
            sampler,
            timeout,
        }))
    }
}

/// An `http://host:port[/path]` URL. TLS to the collector is not built in:
/// export to a collector on the node or in the cluster's network.
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|e| format!("OTLP endpoint {endpoint:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "OTLP endpoint {endpoint:?}: https is not supported; export to a collector \
                 over http (e.g. one on the node) and let it forward over TLS"
            ))
        }
        _ => {
            return Err(format!(
                "OTLP endpoint {endpoint:?} must start with http://"
            ))
        }
    }
    if uri.authority().is_none() {
        return Err(format!("OTLP endpoint {endpoint:?} has no host"));
    }
    Ok(())
}

/// `name=value,name2=value2` (values percent-decoded, as the OTLP exporter
/// variables are written), bounded in count and size.
pub fn parse_headers(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        if out.len() == MAX_HEADERS {
            return Err(format!("more than {MAX_HEADERS} OTLP headers"));
        }
        if item.len() > MAX_HEADER_BYTES {
            return Err(format!("an OTLP header over {MAX_HEADER_BYTES} bytes"));
        }
        let (name, value) = item
            .split_once('=')
            .ok_or_else(|| format!("OTLP header {item:?} is not name=value"))?;
        let name = name.trim().to_ascii_lowercase();
        let value = percent_encoding::percent_decode_str(value.trim())
            .decode_utf8()
            .map_err(|_| format!("OTLP header {name:?}: its value is not UTF-8"))?
            .into_owned();
        http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("OTLP header name {name:?} is not a valid header name"))?;
        http::HeaderValue::from_str(&value)
            .map_err(|_| format!("OTLP header {name:?}: its value is not a valid header value"))?;
        out.push((name, value));
    }
    Ok(out)
}

/// Spans handed to the exporter, by result (`ok`, `failed`): a collector
/// that is down shows here (and in the log), never in the traffic.
static SPANS: LazyLock<Family<Vec<(String, String)>, Counter>> = LazyLock::new(Family::default);

/// Adds `quicmesh_trace_spans_exported_total{result}` to `registry`.
pub fn register_metrics(registry: &mut prometheus_client::registry::Registry) {
    registry.register(
        "quicmesh_trace_spans_exported",
        "Spans sent to the OTLP receiver, by result (ok, failed)",
        SPANS.clone(),
    );
}

fn count_spans(result: &str, n: usize) {
    SPANS
        .get_or_create(&vec![("result".to_string(), result.to_string())])
        .inc_by(n as u64);
}

/// The exporter with its results counted.
#[derive(Debug)]
struct Counted<E>(E);

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter
    for Counted<E>
{
    async fn export(&self, batch: Vec<SpanData>) -> opentelemetry_sdk::error::OTelSdkResult {
        let n = batch.len();
        let r = self.0.export(batch).await;
        count_spans(if r.is_ok() { "ok" } else { "failed" }, n);
        r
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.force_flush()
    }
    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.0.set_resource(resource)
    }
}

/// The HTTP exporter's client: hyper's, run on the process's runtime (the
/// batch processor exports from a thread of its own, where hyper has no
/// runtime to spawn on).
#[derive(Debug, Clone)]
struct OnRuntime {
    runtime: tokio::runtime::Handle,
    client: opentelemetry_http::hyper::HyperClient,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OnRuntime {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        self.runtime
            .spawn(async move { client.send_bytes(request).await })
            .await?
    }
}

/// Builds the tracer provider for `service` (the resource's
/// `service.name` unless `OTEL_SERVICE_NAME` names one). Must run inside
/// the process's Tokio runtime.
pub fn provider(
    service: &'static str,
    settings: &TraceSettings,
) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
    let exporter = match settings.protocol {
        Protocol::Grpc => {
            let mut metadata = tonic::metadata::MetadataMap::new();
            for (k, v) in &settings.headers {
                let key = tonic::metadata::MetadataKey::from_bytes(k.as_bytes())
                    .map_err(|_| format!("OTLP header name {k:?} is not valid gRPC metadata"))?;
                let value = v
                    .parse()
                    .map_err(|_| format!("OTLP header {k:?}: not a valid gRPC metadata value"))?;
                metadata.insert(key, value);
            }
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(settings.endpoint.clone())
                .with_timeout(settings.timeout)
                .with_metadata(metadata)
                .build()
        }
        Protocol::HttpProtobuf => {
            let client = OnRuntime {
                runtime: tokio::runtime::Handle::try_current()
                    .map_err(|_| "traces need the process's runtime".to_string())?,
                client: opentelemetry_http::hyper::HyperClient::with_default_connector(
                    settings.timeout,
                    None,
                ),
            };
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(settings.endpoint.clone())
                .with_timeout(settings.timeout)
                .with_headers(settings.headers.iter().cloned().collect::<HashMap<_, _>>())
                .with_http_client(client)
                .build()
        }
    }
    .map_err(|e| format!("the OTLP exporter for {}: {e}", settings.endpoint))?;
    let mut resource = opentelemetry_sdk::Resource::builder().with_attribute(
        opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
    );
    if std::env::var_os("OTEL_SERVICE_NAME").is_none_or(|v| v.is_empty()) {
        resource = resource.with_service_name(service);
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(Counted(exporter))
        .with_sampler(settings.sampler.sampler())
        .with_resource(resource.build())
        .build())
}

/// Whether `meta` is a span meant for traces (it declares `otel.kind`).
pub fn is_trace_span(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_span() && meta.fields().field("otel.kind").is_some()
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Writes `span`'s W3C context (`traceparent`, `tracestate`) into
/// `headers`, replacing any there; nothing when traces are off.
pub fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return;
    }
    headers.remove("traceparent");
    headers.remove("tracestate");
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

/// The remote context in `headers`' `traceparent`/`tracestate`, if a
/// valid one.
pub fn extract(headers: &http::HeaderMap) -> Option<opentelemetry::Context> {
    headers.get("traceparent")?;
    let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    cx.span().span_context().is_valid().then_some(cx)
}

/// Makes `span` continue the trace `headers` carry, if any; otherwise it
/// stays a child of `fallback` (e.g. the tunnel stream a request came
/// on), or a new trace. Must be called before the span is first entered.
pub fn continue_from(
    span: &tracing::Span,
    headers: &http::HeaderMap,
    fallback: Option<&opentelemetry::Context>,
) {
    if span.is_disabled() {
        return;
    }
    match (extract(headers), fallback) {
        (Some(cx), fallback) => {
            let _ = span.set_parent(cx);
            // The tunnel it came through, linked: an app's own trace and the
            // mesh's hop are both reachable from the request.
            if let Some(f) = fallback {
                let sc = f.span().span_context().clone();
                if sc.is_valid() {
                    span.add_link(sc);
                }
            }
        }
        (None, Some(f)) => {
            let _ = span.set_parent(f.clone());
        }
        (None, None) => {}
    }
}

/// `span`'s context, for children made elsewhere (e.g. on another task).
pub fn context_of(span: &tracing::Span) -> Option<opentelemetry::Context> {
    if span.is_disabled() {
        return None;
    }
    let cx = span.context();
    cx.span().span_context().is_valid().then_some(cx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| vars.get(k).cloned()
    }

    #[test]
    fn off_without_an_endpoint_and_when_disabled() {
        let none = TraceArgs::default();
        assert_eq!(TraceSettings::resolve(&none, env(&[])), Ok(None));
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ]);
        assert_eq!(TraceSettings::resolve(&none, e), Ok(None));
    }

    #[test]
    fn endpoints_follow_the_otlp_exporter_rules() {
        let none = TraceArgs::default();
        // The generic variable is a base for HTTP, the address for gRPC.
        let s = TraceSettings::resolve(
            &none,
            env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (s.endpoint.as_str(), s.protocol),
            ("http://c:4318/v1/traces", Protocol::HttpProtobuf)
        );
        let s = TraceSettings::resolve(
            &none,
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (s.endpoint.as_str(), s.protocol),
            ("http://c:4317", Protocol::Grpc)
        );
        // The traces variable is used as given and wins over the generic one;
        // the flag wins over both.
        let e = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:4318/custom"),
        ];
        let s = TraceSettings::resolve(&none, env(&e)).unwrap().unwrap();
        assert_eq!(s.endpoint, "http://t:4318/custom");
        let flag = TraceArgs {
            otlp_endpoint: Some("http://flag:4317".into()),
            otlp_protocol: Some("grpc".into()),
            ..Default::default()
        };
        let s = TraceSettings::resolve(&flag, env(&e)).unwrap().unwrap();
        assert_eq!(
            (s.endpoint.as_str(), s.protocol),
            ("http://flag:4317", Protocol::Grpc)
        );
        assert_eq!(s.timeout, DEFAULT_TIMEOUT);
        assert_eq!(
            s.sampler,
            SamplerChoice {
                parent_based: true,
                ratio: 1.0
            }
        );
    }

    #[test]
    fn unusable_values_are_refused_with_why() {
        let with =
            |a: TraceArgs, e: &[(&str, &str)]| TraceSettings::resolve(&a, env(e)).unwrap_err();
        let ep = |e: &str| TraceArgs {
            otlp_endpoint: Some(e.into()),
            ..Default::default()
        };
        assert!(with(ep("https://c:4318"), &[]).contains("https is not supported"));
        assert!(with(ep("c:4318"), &[]).contains("http://"));
        assert!(
            with(ep("http://"), &[]).contains("not a URL")
                || with(ep("http://"), &[]).contains("no host")
        );
        let ok = "http://c:4318/v1/traces";
        assert!(
            with(ep(ok), &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]).contains("not supported")
        );
        assert!(with(ep(ok), &[("OTEL_EXPORTER_OTLP_PROTOCOL", "udp")])
            .contains("unknown OTLP protocol"));
        assert!(with(ep(ok), &[("OTEL_TRACES_SAMPLER", "sometimes")]).contains("unknown sampler"));
        assert!(with(
            ep(ok),
            &[
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "1.5")
            ]
        )
        .contains("from 0 to 1"));
        assert!(with(ep(ok), &[("OTEL_EXPORTER_OTLP_TIMEOUT", "soon")]).contains("milliseconds"));
        let headers = TraceArgs {
            otlp_headers: Some("novalue".into()),
            ..ep(ok)
        };
        assert!(with(headers, &[]).contains("name=value"));
    }

    #[test]
    fn samplers_and_headers() {
        let s = SamplerChoice::parse("parentbased_traceidratio", Some("0.25")).unwrap();
        assert_eq!((s.parent_based, s.ratio), (true, 0.25));
        assert!(matches!(s.sampler(), Sampler::ParentBased(_)));
        let s = SamplerChoice::parse("always_off", Some("0.5")).unwrap();
        assert!(matches!(s.sampler(), Sampler::AlwaysOff));
        assert!(matches!(
            SamplerChoice::parse("traceidratio", Some("0.1")).unwrap().sampler(),
            Sampler::TraceIdRatioBased(r) if r == 0.1
        ));
        assert_eq!(
            parse_headers("api-key=a%20b, X-Team=mesh,").unwrap(),
            vec![
                ("api-key".into(), "a b".into()),
                ("x-team".into(), "mesh".into())
            ]
        );
        assert!(parse_headers("bad name=x").is_err());
        let many = (0..=MAX_HEADERS)
            .map(|i| format!("h{i}=v"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(parse_headers(&many).unwrap_err().contains("more than"));
    }

    #[test]
    fn remote_contexts_are_read_only_when_valid() {
        let mut h = http::HeaderMap::new();
        assert!(extract(&h).is_none());
        h.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        h.insert("tracestate", "vendor=x".parse().unwrap());
        let cx = extract(&h).unwrap();
        let sc = cx.span().span_context().clone();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled() && sc.is_remote());
        assert_eq!(sc.trace_state().get("vendor"), Some("x"));
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "garbage",
        ] {
            h.insert("traceparent", bad.parse().unwrap());
            assert!(extract(&h).is_none(), "{bad}");
        }
    }
}
