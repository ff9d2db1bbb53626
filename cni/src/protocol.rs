//! The plugin ↔ agent protocol, over the agent's node-local socket
//! (`SOCK_SEQPACKET`, mode 0600, peers checked with `SO_PEERCRED`):
//!
//! 1. **One exchange per connection.** The plugin connects, sends one
//!    [`Request`] (JSON, at most [`MAX_REQUEST`] bytes, one message), reads
//!    one [`Response`] (at most [`MAX_RESPONSE`]) and closes.
//! 2. **The network namespace as a descriptor.** ADD and CHECK carry
//!    exactly one `SCM_RIGHTS` descriptor on the same message: the
//!    namespace at `CNI_NETNS`, opened by the plugin (the path is sent too,
//!    for logs only). Other commands carry none.
//! 3. **Bounded in time.** The request says how long the plugin still
//!    waits (`timeoutMs`); the agent gives up (try again later) rather
//!    than answer after that.
//! 4. **Versioned.** [`VERSION`] changes with any incompatible change; an
//!    agent refuses a request of another version with a clear error (an
//!    upgrade where the host's plugin binary and the agent differ).
//!
//! Pure: encoding and checks only.

use serde::{Deserialize, Serialize};

use crate::spec::{code, CniError, Command, PodRef};

/// Largest request (one pod: well under it).
pub const MAX_REQUEST: usize = 16 << 10;
/// Largest response.
pub const MAX_RESPONSE: usize = 16 << 10;
/// The protocol's version.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Request {
    pub version: u32,
    pub command: Command,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container_id: String,
    /// `CNI_NETNS` as given (for logs; the namespace itself is the descriptor).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub netns: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ifname: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodRef>,
    /// The pod's IPs from `prevResult` (ADD, CHECK).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    /// How long the plugin still waits for the answer.
    pub timeout_ms: u64,
}

impl Request {
    /// Whether this command carries the pod's network namespace.
    pub fn carries_netns(command: Command) -> bool {
        matches!(command, Command::Add | Command::Check)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub ok: bool,
    /// A CNI error code, when not ok.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub code: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
    /// ADD, CHECK: the pod is enrolled in ztunnel (it is in the mesh).
    #[serde(default)]
    pub enrolled: bool,
    /// Enrolled, but ztunnel has no SVID for it yet.
    #[serde(default)]
    pub identity_pending: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Response {
    pub fn ok() -> Self {
        Response {
            ok: true,
            ..Default::default()
        }
    }

    pub fn error(e: &CniError) -> Self {
        Response {
            ok: false,
            code: e.code,
            msg: e.msg.clone(),
            details: e.details.clone(),
            ..Default::default()
        }
    }

    /// The error it reports, if any.
    pub fn into_result(self) -> Result<Response, CniError> {
        if self.ok {
            return Ok(self);
        }
        let code = if self.code == 0 {
            code::REFUSED
        } else {
            self.code
        };
        Err(CniError {
            code,
            msg: self.msg,
            details: self.details,
        })
    }
}

/// Why the agent refused a request before acting on it (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The peer's credentials could not be read.
    PeerCred,
    /// The peer's uid is not allowed.
    PeerUid,
    /// No request within the agent's read deadline.
    Timeout,
    /// Over [`MAX_REQUEST`].
    TooLarge,
    /// Not a request (JSON) of this protocol.
    Malformed,
    /// Another protocol version.
    Version,
    /// Not exactly one descriptor on ADD/CHECK, or any on another command.
    Descriptors,
    /// The descriptor is not a network namespace.
    NotNetns,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::PeerCred => "peer_cred",
            Refusal::PeerUid => "peer_uid",
            Refusal::Timeout => "timeout",
            Refusal::TooLarge => "too_large",
            Refusal::Malformed => "malformed",
            Refusal::Version => "version",
            Refusal::Descriptors => "descriptors",
            Refusal::NotNetns => "not_netns",
        }
    }
}

/// A request refused, with the error the plugin is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub reason: Refusal,
    pub error: CniError,
}

/// Reads one message (`truncated`: it was longer than [`MAX_REQUEST`];
/// `fds`: how many descriptors came with it). Pure.
pub fn parse(bytes: &[u8], truncated: bool, fds: usize) -> Result<Request, Refused> {
    let refuse = |reason, msg: String| Refused {
        reason,
        error: CniError::new(code::REFUSED, msg),
    };
    if truncated {
        return Err(refuse(
            Refusal::TooLarge,
            format!("request over {MAX_REQUEST} bytes"),
        ));
    }
    // The version first, so that another version's request is named as
    // such rather than as malformed.
    let v: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| refuse(Refusal::Malformed, format!("request is not JSON: {e}")))?;
    match v.get("version").and_then(serde_json::Value::as_u64) {
        Some(n) if n == u64::from(VERSION) => {}
        other => {
            return Err(refuse(
                Refusal::Version,
                format!(
                    "plugin protocol version {} is not this agent's ({VERSION}): the quicmesh-cni binary on the host and the agent differ; the agent installs its own at start",
                    other.map_or("(none)".to_string(), |n| n.to_string())
                ),
            ))
        }
    }
    let req: Request = serde_json::from_value(v)
        .map_err(|e| refuse(Refusal::Malformed, format!("malformed request: {e}")))?;
    let want = usize::from(Request::carries_netns(req.command));
    if fds != want {
        return Err(refuse(
            Refusal::Descriptors,
            format!(
                "{} carries {want} descriptor(s), the pod's network namespace; got {fds}",
                req.command.as_str()
            ),
        ));
    }
    if let Some(p) = &req.pod {
        if p.uid.len() > quicmesh_core::enrollment::MAX_UID {
            return Err(refuse(Refusal::Malformed, "pod uid too long".into()));
        }
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(command: Command) -> Request {
        Request {
            version: VERSION,
            command,
            container_id: "c1".into(),
            netns: "/var/run/netns/p".into(),
            ifname: "eth0".into(),
            pod: Some(PodRef {
                namespace: "ns".into(),
                name: "p".into(),
                uid: "u1".into(),
            }),
            ips: vec!["10.0.0.1".into()],
            timeout_ms: 9000,
        }
    }

    #[test]
    fn a_request_round_trips_and_descriptors_follow_the_command() {
        for (command, fds) in [
            (Command::Add, 1),
            (Command::Check, 1),
            (Command::Del, 0),
            (Command::Status, 0),
        ] {
            let r = req(command);
            let bytes = serde_json::to_vec(&r).unwrap();
            assert!(bytes.len() < MAX_REQUEST);
            assert_eq!(parse(&bytes, false, fds).unwrap(), r);
            for wrong in [0, 1, 2].into_iter().filter(|n| *n != fds) {
                assert_eq!(
                    parse(&bytes, false, wrong).unwrap_err().reason,
                    Refusal::Descriptors,
                    "{command:?} with {wrong}"
                );
            }
        }
    }

    #[test]
    fn bad_requests_are_refused_with_their_reason() {
        let mut other = serde_json::to_value(req(Command::Add)).unwrap();
        other["version"] = 2.into();
        let mut unknown = serde_json::to_value(req(Command::Add)).unwrap();
        unknown["extra"] = 1.into();
        let mut long_uid = req(Command::Add);
        long_uid.pod.as_mut().unwrap().uid = "u".repeat(65);
        let cases: Vec<(Vec<u8>, bool, Refusal)> = vec![
            (b"{}".to_vec(), true, Refusal::TooLarge),
            (b"not json".to_vec(), false, Refusal::Malformed),
            (b"{}".to_vec(), false, Refusal::Version),
            (other.to_string().into_bytes(), false, Refusal::Version),
            (unknown.to_string().into_bytes(), false, Refusal::Malformed),
            (
                br#"{"version":1,"command":"NOPE","timeoutMs":1}"#.to_vec(),
                false,
                Refusal::Malformed,
            ),
            (
                serde_json::to_vec(&long_uid).unwrap(),
                false,
                Refusal::Malformed,
            ),
        ];
        for (bytes, truncated, reason) in cases {
            let r = parse(&bytes, truncated, 1).unwrap_err();
            assert_eq!(r.reason, reason, "{}", String::from_utf8_lossy(&bytes));
            assert_eq!(r.error.code, code::REFUSED);
        }
    }

    #[test]
    fn a_response_carries_its_error_code() {
        let e = CniError::new(code::TRY_AGAIN_LATER, "ztunnel down").details("x");
        let r: Response =
            serde_json::from_slice(&serde_json::to_vec(&Response::error(&e)).unwrap()).unwrap();
        assert_eq!(r.into_result().unwrap_err(), e);
        let bare = Response {
            ok: false,
            ..Default::default()
        };
        assert_eq!(bare.into_result().unwrap_err().code, code::REFUSED);
        assert!(Response::ok().into_result().is_ok());
    }
}
