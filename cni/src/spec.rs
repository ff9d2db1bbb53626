//! The CNI specification as the plugin meets it (1.0 and 1.1, results of
//! 0.3.0 onwards): the environment a runtime sets, the network
//! configuration on stdin, the error object and its codes, the pod's IPs in
//! `prevResult`. Pure: no I/O, so every bad input is a table test.
//!
//! What the plugin must not do here: decide whether a pod is in the mesh
//! (the agent decides, from its view of the cluster).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Map, Value};

/// The versions of the spec this plugin speaks (what VERSION answers).
pub const SUPPORTED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The newest of them: what an answer not tied to a config carries.
pub const LATEST: &str = "1.1.0";

/// Largest network configuration read from stdin.
pub const MAX_CONFIG: usize = 1 << 20;

/// Where the node agent listens, unless the config says otherwise.
pub const DEFAULT_AGENT_SOCKET: &str = "/var/run/quicmesh/cni.sock";

/// How long one invocation may take, everything included, unless the
/// config says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Error codes: the spec's (1-99) and ours (100 up).
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Invalid necessary environment variables.
    pub const INVALID_ENV: u32 = 4;
    /// Failure to decode content (stdin is no JSON object).
    pub const DECODE: u32 = 6;
    /// Invalid network config.
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later: the node agent or ztunnel is not reachable now.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin is not available (its node agent does not answer).
    pub const NOT_AVAILABLE: u32 = 50;
    /// Ours: `CNI_NETNS` cannot be opened or is not a network namespace.
    pub const NETNS: u32 = 100;
    /// Ours: the node agent refused the request (a protocol mismatch, or a
    /// request it cannot act on); retrying the same request will not help.
    pub const REFUSED: u32 = 101;
}

/// A CNI error: what the plugin prints on stdout before exiting non-zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The error object, carrying `version` (the config's when known).
    pub fn to_json(&self, version: &str) -> Value {
        let mut v = json!({"cniVersion": version, "code": self.code, "msg": self.msg});
        if !self.details.is_empty() {
            v["details"] = json!(self.details);
        }
        v
    }
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "code {}: {}", self.code, self.msg)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

/// `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }
}

/// The pod a Kubernetes runtime names in `CNI_ARGS`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    /// `K8S_POD_UID`; empty when the runtime does not pass it (the agent
    /// then looks the pod up by namespace and name).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

/// The environment of one invocation, as far as the plugin uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub command: Command,
    pub container_id: String,
    /// `CNI_NETNS`: empty when unset (allowed on DEL).
    pub netns: String,
    pub ifname: String,
    /// From `CNI_ARGS`; None when it names no Kubernetes pod.
    pub pod: Option<PodRef>,
}

impl Env {
    /// Reads the environment through `var` (the process's, or a test's
    /// map), reporting every missing variable the command needs at once.
    pub fn read(var: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
        let get = |name: &str| var(name).unwrap_or_default();
        let raw = get("CNI_COMMAND");
        let command = Command::parse(&raw).ok_or_else(|| {
            CniError::new(
                code::INVALID_ENV,
                format!("CNI_COMMAND {raw:?} is not one of ADD, DEL, CHECK, STATUS, GC, VERSION"),
            )
        })?;
        let env = Env {
            command,
            container_id: get("CNI_CONTAINERID"),
            netns: get("CNI_NETNS"),
            ifname: get("CNI_IFNAME"),
            pod: pod_ref(&get("CNI_ARGS")),
        };
        let needs: &[&str] = match command {
            Command::Add | Command::Check => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
            Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME"],
            Command::Status | Command::Gc | Command::Version => &[],
        };
        let missing: Vec<&str> = needs
            .iter()
            .copied()
            .filter(|n| match *n {
                "CNI_CONTAINERID" => env.container_id.is_empty(),
                "CNI_NETNS" => env.netns.is_empty(),
                _ => env.ifname.is_empty(),
            })
            .collect();
        if !missing.is_empty() {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!(
                    "{} needs {} (not set)",
                    command.as_str(),
                    missing.join(", ")
                ),
            ));
        }
        Ok(env)
    }
}

/// The pod `CNI_ARGS` names (`K8S_POD_NAMESPACE=..;K8S_POD_NAME=..;K8S_POD_UID=..`),
/// if it names one.
pub fn pod_ref(args: &str) -> Option<PodRef> {
    let kv: BTreeMap<&str, &str> = args
        .split(';')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let namespace = kv.get("K8S_POD_NAMESPACE").filter(|v| !v.is_empty())?;
    let name = kv.get("K8S_POD_NAME").filter(|v| !v.is_empty())?;
    Some(PodRef {
        namespace: namespace.to_string(),
        name: name.to_string(),
        uid: kv.get("K8S_POD_UID").unwrap_or(&"").to_string(),
    })
}

/// The network configuration on stdin, as far as the plugin reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    pub plugin_type: String,
    /// The previous plugin's result (a chained plugin's input), if any.
    pub prev_result: Option<Map<String, Value>>,
    /// `agentSocket`: where the node agent listens.
    pub agent_socket: PathBuf,
    /// `timeout` (`"10s"`, or a number of seconds): the bound of one
    /// invocation.
    pub timeout: Duration,
}

/// What VERSION reads: just the `cniVersion` asked for, if stdin holds one.
pub fn requested_version(stdin: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(stdin).ok()?;
    v.get("cniVersion")?.as_str().map(String::from)
}

/// The answer to VERSION.
pub fn version_answer() -> Value {
    json!({"cniVersion": LATEST, "supportedVersions": SUPPORTED_VERSIONS})
}

/// The version an error about `stdin` should carry: the config's if it is
/// one we speak, else the newest.
pub fn error_version(stdin: &[u8]) -> String {
    requested_version(stdin)
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| LATEST.to_string())
}

impl NetConf {
    /// Parses and checks the configuration (bounded by the caller to
    /// [`MAX_CONFIG`]).
    pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
        let v: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(code::DECODE, "the network configuration is not JSON")
                .details(e.to_string())
        })?;
        let Value::Object(o) = v else {
            return Err(CniError::new(
                code::DECODE,
                "the network configuration is not a JSON object",
            ));
        };
        let invalid = |msg: String| CniError::new(code::INVALID_CONFIG, msg);
        let string = |key: &str, required: bool| -> Result<Option<String>, CniError> {
            match o.get(key) {
                None | Some(Value::Null) if !required => Ok(None),
                None | Some(Value::Null) => Err(invalid(format!("{key} is missing"))),
                Some(Value::String(s)) if required && s.is_empty() => {
                    Err(invalid(format!("{key} is empty")))
                }
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(invalid(format!("{key} is not a string: {other}"))),
            }
        };
        let cni_version = string("cniVersion", true)?.expect("required");
        if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!("cniVersion {cni_version:?} is not supported"),
            )
            .details(format!("supported: {}", SUPPORTED_VERSIONS.join(", "))));
        }
        let name = string("name", true)?.expect("required");
        let plugin_type = string("type", true)?.expect("required");
        let prev_result = match o.get("prevResult") {
            None | Some(Value::Null) => None,
            Some(Value::Object(p)) => Some(p.clone()),
            Some(other) => return Err(invalid(format!("prevResult is not an object: {other}"))),
        };
        let agent_socket = string("agentSocket", false)?
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_AGENT_SOCKET));
        if !agent_socket.is_absolute() {
            return Err(invalid(format!(
                "agentSocket {} is not an absolute path",
                agent_socket.display()
            )));
        }
        let timeout = match o.get("timeout") {
            None | Some(Value::Null) => DEFAULT_TIMEOUT,
            Some(Value::String(s)) => {
                quicmesh_core::duration::parse(s).map_err(|e| invalid(format!("timeout: {e}")))?
            }
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|s| s.is_finite() && *s > 0.0 && *s <= 3600.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| {
                    invalid(format!("timeout {n}: not a number of seconds in (0, 3600]"))
                })?,
            Some(other) => return Err(invalid(format!("timeout is not a duration: {other}"))),
        };
        if timeout.is_zero() {
            return Err(invalid("timeout is zero".into()));
        }
        Ok(NetConf {
            cni_version,
            name,
            plugin_type,
            prev_result,
            agent_socket,
            timeout,
        })
    }

    /// What ADD prints: the previous result unchanged but for its
    /// `cniVersion`, which is the config's (a chained plugin passes the
    /// result on).
    pub fn add_result(&self) -> Result<Value, CniError> {
        let mut prev = self.prev_result.clone().ok_or_else(|| {
            CniError::new(
                code::INVALID_CONFIG,
                "no prevResult: quicmesh-cni is a chained plugin and must come after the plugin that sets up the pod's interface",
            )
        })?;
        prev.insert("cniVersion".into(), json!(self.cni_version));
        Ok(Value::Object(prev))
    }

    /// The pod's IPs in `prevResult` (`ips[].address`, CIDR notation), in
    /// order: those on an interface inside the sandbox, or not tied to any
    /// interface. Addresses that do not parse are an invalid config.
    pub fn pod_ips(&self) -> Result<Vec<IpAddr>, CniError> {
        let Some(prev) = &self.prev_result else {
            return Ok(vec![]);
        };
        let invalid = |msg: String| CniError::new(code::INVALID_CONFIG, msg);
        let interfaces = prev
            .get("interfaces")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let in_sandbox = |i: u64| {
            interfaces
                .get(i as usize)
                .and_then(|itf| itf.get("sandbox"))
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        };
        let mut out = Vec::new();
        let ips = match prev.get("ips") {
            None | Some(Value::Null) => return Ok(out),
            Some(Value::Array(a)) => a,
            Some(other) => return Err(invalid(format!("prevResult.ips is not a list: {other}"))),
        };
        for (n, ip) in ips.iter().enumerate() {
            let addr = ip
                .get("address")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("prevResult.ips[{n}].address is missing")))?;
            let host = addr.split_once('/').map_or(addr, |(h, _)| h);
            let parsed: IpAddr = host
                .parse()
                .map_err(|_| invalid(format!("prevResult.ips[{n}].address {addr:?} is no IP")))?;
            match ip.get("interface").and_then(Value::as_u64) {
                Some(i) if !in_sandbox(i) => continue,
                _ => {}
            }
            if !out.contains(&parsed) {
                out.push(parsed);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
