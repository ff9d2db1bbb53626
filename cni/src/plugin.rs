//! The CNI plugin: one command per process, run by the container runtime
//! on the host as root. Plain blocking I/O, no runtime: read the
//! environment and stdin, ask the node agent (one exchange on its socket,
//! the pod's network namespace attached as a descriptor), print the
//! answer. Every invocation is bounded by the config's `timeout`.
//!
//! | command | does | prints on success |
//! | --- | --- | --- |
//! | VERSION | nothing else | the supported versions |
//! | ADD | hands the pod (and its netns) to the agent, which enrolls it in ztunnel if it is in the mesh | `prevResult` unchanged (with the config's `cniVersion`) |
//! | CHECK | asks the agent whether the pod is as it should be (enrolled iff in the mesh) | nothing |
//! | DEL | tells the agent the pod is gone (idempotent: an unknown pod or a vanished netns is fine) | nothing |
//! | STATUS | asks whether the agent answers (`50` if not) | nothing |
//! | GC | nothing: the agent forgets pods as they leave its view of the cluster | nothing |
//!
//! A container that is no Kubernetes pod (`CNI_ARGS` names none) is passed
//! through without asking the agent.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use quicmesh_core::netns::Netns;
use quicmesh_core::seqpacket::Blocking;

use crate::protocol::{self, Request, Response, MAX_RESPONSE};
use crate::spec::{self, code, CniError, Command, Env, NetConf};

/// What one invocation ends with: the bytes for stdout and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub stdout: String,
    pub exit: i32,
    /// The error printed, if it failed (for a line on stderr).
    pub error: Option<CniError>,
}

/// Reads at most [`spec::MAX_CONFIG`] bytes; more is an error.
pub fn read_stdin(mut input: impl Read) -> Result<Vec<u8>, CniError> {
    let mut buf = Vec::new();
    input
        .by_ref()
        .take(spec::MAX_CONFIG as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| CniError::new(code::DECODE, format!("reading stdin: {e}")))?;
    if buf.len() > spec::MAX_CONFIG {
        return Err(CniError::new(
            code::DECODE,
            format!(
                "the network configuration is over {} bytes",
                spec::MAX_CONFIG
            ),
        ));
    }
    Ok(buf)
}

/// Runs one invocation: `var` reads the environment, `stdin` is what the
/// runtime wrote.
pub fn run(var: impl Fn(&str) -> Option<String>, stdin: Result<Vec<u8>, CniError>) -> Outcome {
    let started = Instant::now();
    let bytes = stdin.as_deref().unwrap_or_default().to_vec();
    match invoke(var, stdin, started) {
        Ok(stdout) => Outcome {
            stdout,
            exit: 0,
            error: None,
        },
        Err((version, e)) => Outcome {
            stdout: format!(
                "{}\n",
                e.to_json(&version.unwrap_or_else(|| spec::error_version(&bytes)))
            ),
            exit: 1,
            error: Some(e),
        },
    }
}

type Failure = (Option<String>, CniError);

fn invoke(
    var: impl Fn(&str) -> Option<String>,
    stdin: Result<Vec<u8>, CniError>,
    started: Instant,
) -> Result<String, Failure> {
    let env = Env::read(var).map_err(|e| (None, e))?;
    let stdin = stdin.map_err(|e| (None, e))?;
    if env.command == Command::Version {
        return Ok(format!("{}\n", spec::version_answer()));
    }
    let conf = NetConf::parse(&stdin).map_err(|e| (None, e))?;
    let version = conf.cni_version.clone();
    let fail = |e: CniError| (Some(version.clone()), e);
    let deadline = started + conf.timeout;
    match env.command {
        Command::Version => unreachable!("answered above"),
        Command::Gc => Ok(String::new()),
        Command::Status => {
            let req = request(&env, vec![], deadline);
            exchange(&conf, &req, None, deadline)
                .map(|_| String::new())
                .map_err(|e| {
                    fail(if e.code == code::TRY_AGAIN_LATER {
                        CniError::new(code::NOT_AVAILABLE, e.msg).details(e.details)
                    } else {
                        e
                    })
                })
        }
        Command::Add => {
            let result = conf.add_result().map_err(fail)?;
            if env.pod.is_none() {
                return Ok(format!("{result}\n"));
            }
            let ips = conf.pod_ips().map_err(fail)?;
            let netns = open_netns(&env.netns).map_err(fail)?;
            let req = request(&env, ips.iter().map(|i| i.to_string()).collect(), deadline);
            exchange(&conf, &req, Some(netns.as_fd()), deadline).map_err(fail)?;
            Ok(format!("{result}\n"))
        }
        Command::Check => {
            if env.pod.is_none() {
                return Ok(String::new());
            }
            let ips = conf.pod_ips().map_err(fail)?;
            let netns = open_netns(&env.netns).map_err(fail)?;
            let req = request(&env, ips.iter().map(|i| i.to_string()).collect(), deadline);
            exchange(&conf, &req, Some(netns.as_fd()), deadline).map_err(fail)?;
            Ok(String::new())
        }
        Command::Del => {
            if env.pod.is_none() {
                return Ok(String::new());
            }
            let req = request(&env, vec![], deadline);
            exchange(&conf, &req, None, deadline).map_err(fail)?;
            Ok(String::new())
        }
    }
}

fn request(env: &Env, ips: Vec<String>, deadline: Instant) -> Request {
    Request {
        version: protocol::VERSION,
        command: env.command,
        container_id: env.container_id.clone(),
        netns: env.netns.clone(),
        ifname: env.ifname.clone(),
        pod: env.pod.clone(),
        ips,
        timeout_ms: deadline
            .saturating_duration_since(Instant::now())
            .as_millis() as u64,
    }
}

/// Opens `CNI_NETNS` and checks it is a network namespace.
fn open_netns(path: &str) -> Result<Netns, CniError> {
    let file = std::fs::File::open(path).map_err(|e| {
        CniError::new(
            code::NETNS,
            format!("cannot open the network namespace CNI_NETNS={path}"),
        )
        .details(e.to_string())
    })?;
    Netns::from_fd(OwnedFd::from(file)).map_err(|e| {
        CniError::new(
            code::NETNS,
            format!("CNI_NETNS={path} is not a network namespace"),
        )
        .details(e.to_string())
    })
}

/// One exchange with the agent, by `deadline`.
fn exchange(
    conf: &NetConf,
    req: &Request,
    netns: Option<std::os::fd::BorrowedFd<'_>>,
    deadline: Instant,
) -> Result<Response, CniError> {
    let socket = conf.agent_socket.display().to_string();
    let unreachable = |what: &str, e: std::io::Error| {
        CniError::new(
            code::TRY_AGAIN_LATER,
            format!("{what} the quicmesh node agent at {socket}"),
        )
        .details(format!(
            "{e}; is the quicmesh-cni agent running on this node?"
        ))
    };
    let conn = Blocking::connect(&conf.agent_socket, deadline)
        .map_err(|e| unreachable("cannot reach", e))?;
    let bytes = serde_json::to_vec(req).expect("serializable");
    let fds: Vec<_> = netns.into_iter().collect();
    conn.send(&bytes, &fds, deadline)
        .map_err(|e| unreachable("cannot send to", e))?;
    let mut buf = vec![0u8; MAX_RESPONSE];
    let got = conn
        .recv(&mut buf, deadline)
        .map_err(|e| unreachable("no answer from", e))?
        .ok_or_else(|| {
            unreachable(
                "no answer from",
                std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "it closed the connection (is this plugin's uid allowed?)",
                ),
            )
        })?;
    drop(got.fds);
    if got.truncated {
        return Err(CniError::new(
            code::REFUSED,
            format!("the agent's answer is over {MAX_RESPONSE} bytes"),
        ));
    }
    let resp: Response = serde_json::from_slice(&buf[..got.len]).map_err(|e| {
        CniError::new(code::REFUSED, "the agent's answer is malformed").details(e.to_string())
    })?;
    resp.into_result()
}
