//! ztunnel's configuration: command-line flags, and the static workload file.
//!
//! The static file is for development and tests (the controller will stream
//! the same information later). Its format:
//!
//! ```yaml
//! trustDomain: cluster.local          # optional, default cluster.local
//! workloads:
//!   - uid: 7f0c...                    # unique
//!     name: server-0
//!     namespace: demo
//!     serviceAccount: server
//!     node: node2
//!     ips: [10.244.2.2]
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use quicmesh_core::identity::SpiffeId;
use quicmesh_core::tunnel::config::KeyExchange;

/// Command-line flags of the `ztunnel` binary.
#[derive(Debug, Clone, clap::Parser, serde::Serialize)]
#[command(name = "ztunnel", about = "quicmesh node proxy", version)]
pub struct Args {
    /// Name of the node this ztunnel serves.
    #[arg(long, env = "NODE_NAME")]
    pub node: String,
    /// Static workload file (YAML), for development without a controller.
    #[arg(long, required_unless_present = "controller")]
    pub workloads: Option<PathBuf>,
    /// The controller's gRPC address (CA and config stream).
    #[arg(long, conflicts_with_all = ["workloads", "svid_dir", "dev_ca_dir", "svid_source"], requires_all = ["bootstrap_token", "trust_bundle"])]
    pub controller: Option<quicmesh_core::control::client::ControllerAddr>,
    /// The SPIFFE ID the controller must prove.
    #[arg(
        long,
        default_value = "spiffe://cluster.local/ns/quicmesh-system/sa/controller"
    )]
    pub controller_identity: String,
    /// File holding this node's bootstrap token for the controller's CA.
    #[arg(long)]
    pub bootstrap_token: Option<PathBuf>,
    /// Trust domain (with --controller; the workload file names its own).
    #[arg(long, default_value = "cluster.local")]
    pub trust_domain: String,
    /// Unix socket on which the node agent enrolls pods.
    #[arg(long, default_value = "/var/run/quicmesh/ztunnel.sock")]
    pub enroll_socket: PathBuf,
    /// Mode of the enrollment socket (octal). It is created with it, never
    /// wider.
    #[arg(long, default_value = "600", value_parser = parse_mode)]
    #[serde(serialize_with = "octal")]
    pub enroll_socket_mode: u32,
    /// A uid allowed to use the enrollment socket (its peer's, from
    /// SO_PEERCRED); repeat for several. Others are refused and counted.
    #[arg(long = "enroll-allowed-uid", default_values_t = [0u32], action = clap::ArgAction::Append)]
    pub enroll_allowed_uids: Vec<u32>,
    /// Directory of SVIDs: <dir>/<namespace>/<service-account>/{cert.pem,key.pem}.
    #[arg(long, conflicts_with = "dev_ca_dir")]
    pub svid_dir: Option<PathBuf>,
    /// Where SVIDs and trust bundles come from instead of the quicmesh CA:
    /// `workload-api:PATH` (or `workload-api:unix:PATH`), a SPIFFE
    /// Workload API socket such as a SPIRE agent's. With --workloads.
    #[arg(long, conflicts_with_all = ["svid_dir", "dev_ca_dir", "trust_bundle"])]
    pub svid_source: Option<SvidSourceFlag>,
    /// PEM bundle of the trust domain's CA certificates (with --svid-dir or --controller).
    #[arg(long)]
    pub trust_bundle: Option<PathBuf>,
    /// DEVELOPMENT ONLY: a CA directory (ca.pem, ca-key.pem; generated if
    /// missing) from which ztunnel mints its workloads' SVIDs itself. Anyone
    /// who can read it can impersonate every workload.
    #[arg(long)]
    pub dev_ca_dir: Option<PathBuf>,
    /// Lifetime of SVIDs minted with --dev-ca-dir.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    #[serde(with = "duration_text")]
    pub svid_lifetime: Duration,
    /// Prometheus metrics and health.
    #[arg(long, default_value = "0.0.0.0:15020")]
    pub metrics_addr: SocketAddr,
    /// Admin endpoint (config dump). Keep it on loopback.
    #[arg(long, default_value = "127.0.0.1:15000")]
    pub admin_addr: SocketAddr,
    /// How long a removed pod's live connections may run on before they are cut.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    #[serde(with = "duration_text")]
    pub drain_deadline: Duration,
    /// QUIC connections per (source, destination, address): a pod pair's
    /// TCP connections are spread over up to this many.
    #[arg(long, default_value_t = 2)]
    pub tunnel_connections: usize,
    /// UDP socket buffer size per QUIC socket, bytes.
    #[arg(long, default_value_t = 16 << 20)]
    pub udp_buffer: usize,
    /// Largest UDP payload QUIC's path-MTU discovery probes for (1200..=65527).
    /// Discovery settles on what the path carries; a bound above the path's
    /// MTU costs only a few lost probes.
    #[arg(long, default_value_t = quicmesh_core::tunnel::config::DEFAULT_MAX_UDP_PAYLOAD,
          value_parser = clap::value_parser!(u16).range(1200..=65527))]
    pub max_udp_payload: u16,
    /// QUIC flow-control window per stream (one TCP connection), bytes.
    #[arg(long, default_value_t = 8 << 20)]
    pub stream_window: u32,
    /// QUIC flow-control window per connection (receive and send), bytes.
    #[arg(long, default_value_t = 32 << 20)]
    pub connection_window: u32,
    /// UDP generic segmentation offload for QUIC sends (`--gso false` where a
    /// driver or middlebox mishandles it).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub gso: bool,
    /// Ask peers to acknowledge only every N+1 ack-eliciting packets (QUIC ACK
    /// frequency extension); unset: the RFC 9000 default of every second.
    #[arg(long)]
    pub ack_threshold: Option<u32>,
    /// QUIC handshakes this ztunnel's tunnel servers (all pods together)
    /// run at once; further attempts are refused, or asked to prove their
    /// address (QUIC Retry) first.
    #[arg(long, default_value_t = 256, value_parser = parse_nonzero)]
    pub max_handshakes: usize,
    /// QUIC handshakes in flight from one source IP, for addresses QUIC has
    /// validated and for those it has not, each.
    #[arg(long, default_value_t = 16, value_parser = parse_nonzero)]
    pub max_handshakes_per_source: usize,
    /// With this many handshakes in flight, attempts from unvalidated
    /// addresses get a QUIC Retry (below it, none: cold connects keep their
    /// latency).
    #[arg(long, default_value_t = 64)]
    pub handshake_retry_threshold: usize,
    /// A QUIC handshake (client or server side) not complete within this
    /// is abandoned.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    #[serde(with = "duration_text")]
    pub handshake_timeout: Duration,
    /// A pooled tunnel connection that carries no stream for this long is
    /// closed.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    #[serde(with = "duration_text")]
    pub pool_idle: Duration,
    /// The TLS key exchange this ztunnel's tunnel connections prefer:
    /// `x25519`, or the post-quantum hybrid `x25519mlkem768` (a build with
    /// the `aws-lc-rs` feature). Servers accept both whatever this says.
    #[arg(long, value_enum, default_value_t = KeyExchange::X25519)]
    pub tunnel_key_exchange: KeyExchange,
    /// Traces: where spans go and which are kept (docs/tracing.md).
    #[command(flatten)]
    pub trace: quicmesh_core::trace::TraceArgs,
}

/// `--svid-source`: where SVIDs come from when not from the quicmesh CA.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SvidSourceFlag {
    /// A SPIFFE Workload API on this Unix socket.
    WorkloadApi(PathBuf),
}

impl std::str::FromStr for SvidSourceFlag {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let Some(rest) = s.strip_prefix("workload-api:") else {
            return Err(format!("{s:?}: expected workload-api:PATH"));
        };
        // `unix:///p` and `unix:/p` are the SPIFFE endpoint forms of `/p`.
        let path = rest
            .strip_prefix("unix://")
            .or_else(|| rest.strip_prefix("unix:"))
            .unwrap_or(rest);
        if path.is_empty() {
            return Err(format!("{s:?}: no socket path"));
        }
        Ok(SvidSourceFlag::WorkloadApi(PathBuf::from(path)))
    }
}

/// A count of at least 1 (0 would refuse every connection).
fn parse_nonzero(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{s:?}: {e}")),
    }
}

/// A file mode in octal (`600`, `0660`), permission bits only.
fn parse_mode(s: &str) -> Result<u32, String> {
    match u32::from_str_radix(s, 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        Ok(_) => Err(format!("{s:?}: only permission bits (at most 777)")),
        Err(e) => Err(format!("{s:?}: not an octal mode: {e}")),
    }
}

fn octal<S: serde::Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{mode:04o}"))
}

impl Args {
    /// Who may use the enrollment socket.
    pub fn enroll_access(&self) -> quicmesh_core::enrollment::Access {
        quicmesh_core::enrollment::Access {
            mode: self.enroll_socket_mode,
            allowed_uids: self.enroll_allowed_uids.clone(),
        }
    }
}

use quicmesh_core::duration::{parse as parse_duration, text as duration_text};

/// One workload (pod) of the mesh.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Workload {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub service_account: String,
    pub node: String,
    pub ips: Vec<IpAddr>,
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadFile {
    #[serde(default = "default_trust_domain")]
    pub trust_domain: String,
    #[serde(default)]
    pub workloads: Vec<Workload>,
}

fn default_trust_domain() -> String {
    "cluster.local".into()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Yaml {
        path: String,
        source: serde_yaml::Error,
    },
    #[error("{path}: workload {index} ({name}): {reason}")]
    Workload {
        path: String,
        index: usize,
        name: String,
        reason: String,
    },
}

impl WorkloadFile {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: p.clone(),
            source,
        })?;
        Self::parse(&text, &p)
    }

    /// Parses and validates; every problem names the workload and field.
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let file: WorkloadFile =
            serde_yaml::from_str(text).map_err(|source| ConfigError::Yaml {
                path: path.to_string(),
                source,
            })?;
        let mut uids = std::collections::HashSet::new();
        let mut ips = std::collections::HashMap::new();
        for (index, w) in file.workloads.iter().enumerate() {
            let bad = |reason: String| ConfigError::Workload {
                path: path.to_string(),
                index,
                name: w.name.clone(),
                reason,
            };
            if w.uid.is_empty() {
                return Err(bad("uid is empty".into()));
            }
            if !uids.insert(w.uid.as_str()) {
                return Err(bad(format!("uid {} appears twice", w.uid)));
            }
            SpiffeId::workload(&file.trust_domain, &w.namespace, &w.service_account).map_err(
                |e| {
                    bad(format!(
                        "namespace/serviceAccount do not form a SPIFFE ID: {e}"
                    ))
                },
            )?;
            if w.ips.is_empty() {
                return Err(bad("ips is empty".into()));
            }
            for ip in &w.ips {
                if let Some(other) = ips.insert(*ip, w.name.clone()) {
                    return Err(bad(format!("ip {ip} is also workload {other}'s")));
                }
            }
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_flags_default_to_the_tunnel_defaults() {
        use clap::Parser;
        let args =
            Args::try_parse_from(["ztunnel", "--node", "n1", "--workloads", "w.yaml"]).unwrap();
        let d = quicmesh_core::tunnel::config::TunnelSettings::default();
        assert_eq!(args.max_handshakes, d.max_handshakes);
        assert_eq!(args.max_handshakes_per_source, d.max_handshakes_per_source);
        assert_eq!(args.handshake_retry_threshold, d.handshake_retry_threshold);
        assert_eq!(args.handshake_timeout, d.handshake_timeout);
        assert_eq!(args.pool_idle, d.pool_idle);
        assert_eq!(args.tunnel_key_exchange, d.key_exchange);
        let zero = ["ztunnel", "--node", "n1", "--workloads", "w.yaml"]
            .into_iter()
            .chain(["--max-handshakes-per-source", "0"]);
        assert!(Args::try_parse_from(zero).is_err());
    }

    #[test]
    fn the_enrollment_socket_admits_root_only_by_default() {
        use clap::Parser;
        let base = ["ztunnel", "--node", "n1", "--workloads", "w.yaml"];
        let args = Args::try_parse_from(base).unwrap();
        assert_eq!(
            args.enroll_access(),
            quicmesh_core::enrollment::Access::default()
        );
        let more = base.into_iter().chain([
            "--enroll-allowed-uid",
            "0",
            "--enroll-allowed-uid",
            "1000",
            "--enroll-socket-mode",
            "0660",
        ]);
        let args = Args::try_parse_from(more).unwrap();
        assert_eq!(args.enroll_allowed_uids, [0, 1000]);
        assert_eq!(args.enroll_socket_mode, 0o660);
        assert_eq!(
            serde_json::to_value(&args).unwrap()["enroll_socket_mode"],
            "0660"
        );
        for bad in ["1777", "rw", "9"] {
            let with = base.into_iter().chain(["--enroll-socket-mode", bad]);
            assert!(Args::try_parse_from(with).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_workload_api_source_takes_a_socket_and_excludes_the_other_sources() {
        use clap::Parser;
        let base = ["ztunnel", "--node", "n1", "--workloads", "w.yaml"];
        for (flag, path) in [
            (
                "workload-api:/run/spire/agent.sock",
                "/run/spire/agent.sock",
            ),
            (
                "workload-api:unix:/run/spire/agent.sock",
                "/run/spire/agent.sock",
            ),
            (
                "workload-api:unix:///run/spire/agent.sock",
                "/run/spire/agent.sock",
            ),
            ("workload-api:agent.sock", "agent.sock"),
        ] {
            let args =
                Args::try_parse_from(base.into_iter().chain(["--svid-source", flag])).unwrap();
            assert_eq!(
                args.svid_source,
                Some(SvidSourceFlag::WorkloadApi(path.into())),
                "{flag}"
            );
        }
        for bad in ["workload-api:", "workload-api:unix:", "spire:/x", "/x"] {
            let with = base.into_iter().chain(["--svid-source", bad]);
            assert!(Args::try_parse_from(with).is_err(), "{bad}");
        }
        let src = ["--svid-source", "workload-api:/a.sock"];
        for other in [
            &["--svid-dir", "/s"][..],
            &["--dev-ca-dir", "/c"],
            &["--trust-bundle", "/b.pem"],
        ] {
            let with = base.into_iter().chain(src).chain(other.iter().copied());
            assert!(Args::try_parse_from(with).is_err(), "{other:?}");
        }
        let with_controller = [
            "ztunnel",
            "--node",
            "n1",
            "--controller",
            "10.0.0.1:15012",
            "--bootstrap-token",
            "/t",
            "--trust-bundle",
            "/b.pem",
        ];
        assert!(Args::try_parse_from(with_controller).is_ok());
        assert!(Args::try_parse_from(with_controller.into_iter().chain(src)).is_err());
    }

    #[test]
    fn parses_and_validates_workloads() {
        let ok = "workloads:\n- {uid: a, name: a, namespace: ns, serviceAccount: sa, node: n1, ips: [10.0.0.1]}\n";
        let f = WorkloadFile::parse(ok, "w.yaml").unwrap();
        assert_eq!(f.trust_domain, "cluster.local");
        assert_eq!(f.workloads.len(), 1);

        let dup_ip = "workloads:\n- {uid: a, name: a, namespace: ns, serviceAccount: sa, node: n1, ips: [10.0.0.1]}\n- {uid: b, name: b, namespace: ns, serviceAccount: sa, node: n1, ips: [10.0.0.1]}\n";
        let e = WorkloadFile::parse(dup_ip, "w.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("workload 1 (b)") && e.contains("10.0.0.1"),
            "{e}"
        );

        let bad_sa = "workloads:\n- {uid: a, name: a, namespace: ns, serviceAccount: 'S A', node: n1, ips: [10.0.0.1]}\n";
        let e = WorkloadFile::parse(bad_sa, "w.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("SPIFFE"), "{e}");

        let unknown = "workloads:\n- {uid: a, name: a, namespace: ns, serviceAccount: sa, node: n1, ips: [10.0.0.1], colour: red}\n";
        let e = WorkloadFile::parse(unknown, "w.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("colour"), "{e}");
    }
}
