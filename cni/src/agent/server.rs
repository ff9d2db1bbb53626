//! The plugin socket: where the CNI plugin reaches the agent
//! ([`crate::protocol`]). Created with mode 0600 (never wider: bound in a
//! private directory, then renamed into place); each connection's peer is
//! checked with `SO_PEERCRED` (root only, unless `--plugin-allowed-uid`
//! says more) before a byte is read; one request per connection, read
//! within [`READ_TIMEOUT`], answered within the plugin's own deadline.
//! Every refusal is logged and counted with its reason.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quicmesh_controller::store::Store;
use quicmesh_core::netns::Netns;
use quicmesh_core::seqpacket::{self, Seqpacket};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use super::node::Call;
use crate::protocol::{self, Refusal, Request, Response, MAX_REQUEST};
use crate::spec::{code, CniError, Command, PodRef};

/// How long a connected plugin has to send its request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest the agent works on one request, whatever the plugin allows.
pub const MAX_REQUEST_TIME: Duration = Duration::from_secs(30);
/// Requests served at once (the runtime starts pods a few at a time).
pub const MAX_CONNECTIONS: usize = 64;

pub struct PluginSocket {
    sock: Seqpacket,
    path: PathBuf,
}

impl PluginSocket {
    /// Creates the socket at `path` with mode 0600. A stale socket there
    /// (a previous agent's) is replaced; anything else is refused.
    pub fn bind(path: &Path) -> std::io::Result<Self> {
        Ok(PluginSocket {
            sock: Seqpacket::new(seqpacket::bind(path, 0o600)?)?,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What serving needs besides the socket.
#[derive(Clone)]
pub struct Context {
    pub store: Arc<Store>,
    pub calls: mpsc::Sender<Call>,
    pub metrics: Arc<Metrics>,
    pub allowed_uids: Arc<Vec<u32>>,
    /// How long an ADD waits for its pod to show up in the store.
    pub pod_wait: Duration,
}

/// Serves until `shutdown`, then removes the socket file (a plugin run
/// meanwhile fails at once, and the runtime retries).
pub async fn serve(socket: PluginSocket, ctx: Context, shutdown: CancellationToken) {
    tracing::info!(socket = %socket.path.display(), allowed_uids = ?ctx.allowed_uids, "plugin socket listening");
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("never closed"),
            _ = shutdown.cancelled() => break,
        };
        let conn = tokio::select! {
            r = socket.sock.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "plugin socket accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            connection(conn, &ctx).await;
        });
    }
    let _ = std::fs::remove_file(&socket.path);
}

async fn connection(conn: Seqpacket, ctx: &Context) {
    let peer = match conn.peer_cred() {
        Ok(p) if ctx.allowed_uids.contains(&p.uid) => p,
        Ok(p) => {
            tracing::warn!(peer_uid = p.uid, peer_gid = p.gid, peer_pid = p.pid, allowed_uids = ?ctx.allowed_uids, "plugin connection refused: uid not allowed");
            ctx.metrics.refused(Refusal::PeerUid);
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "plugin connection refused: cannot read its credentials");
            ctx.metrics.refused(Refusal::PeerCred);
            return;
        }
    };
    let mut buf = vec![0u8; MAX_REQUEST];
    let got = match tokio::time::timeout(READ_TIMEOUT, conn.recv(&mut buf)).await {
        Ok(Ok(Some(got))) => got,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::warn!(peer_pid = peer.pid, error = %e, "reading a plugin request failed");
            return;
        }
        Err(_) => {
            tracing::warn!(
                peer_pid = peer.pid,
                "plugin connection refused: no request within {READ_TIMEOUT:?}"
            );
            ctx.metrics.refused(Refusal::Timeout);
            return;
        }
    };
    let mut fds = got.fds;
    let parsed = if got.fds_truncated {
        Err(protocol::Refused {
            reason: Refusal::Descriptors,
            error: CniError::new(code::REFUSED, "too many descriptors on one request"),
        })
    } else {
        protocol::parse(&buf[..got.len], got.truncated, fds.len())
    };
    let resp = match parsed {
        Err(r) => {
            tracing::warn!(peer_pid = peer.pid, reason = r.reason.as_str(), error = %r.error, "plugin request refused");
            ctx.metrics.refused(r.reason);
            ctx.metrics.request("unknown", &r.error.code.to_string());
            Response::error(&r.error)
        }
        Ok(req) => {
            let command = req.command;
            let span = tracing::info_span!("cni", command = command.as_str(), container = %req.container_id, pod = %req.pod.as_ref().map(|p| format!("{}/{}", p.namespace, p.name)).unwrap_or_default());
            let resp = tracing::Instrument::instrument(handle(req, fds.pop(), ctx), span).await;
            let result = if resp.ok {
                "ok".to_string()
            } else {
                resp.code.to_string()
            };
            ctx.metrics.request(command.as_str(), &result);
            resp
        }
    };
    let bytes = serde_json::to_vec(&resp).expect("serializable");
    if let Err(e) = conn.send(&bytes, &[]).await {
        tracing::warn!(peer_pid = peer.pid, error = %e, "answering the plugin failed (it gave up?)");
    }
}

async fn handle(req: Request, fd: Option<OwnedFd>, ctx: &Context) -> Response {
    let deadline = Instant::now()
        + Duration::from_millis(req.timeout_ms)
            .saturating_sub(Duration::from_millis(200))
            .min(MAX_REQUEST_TIME);
    match run(req, fd, ctx, deadline).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "plugin request failed");
            Response::error(&e)
        }
    }
}

async fn run(
    req: Request,
    fd: Option<OwnedFd>,
    ctx: &Context,
    deadline: Instant,
) -> Result<Response, CniError> {
    let (tx, rx) = oneshot::channel();
    let call = match req.command {
        Command::Status | Command::Gc | Command::Version => return Ok(Response::ok()),
        Command::Del => Call::Del {
            req,
            deadline,
            reply: tx,
        },
        Command::Add | Command::Check => {
            let check = req.command == Command::Check;
            let fd = fd.expect("parse checked: one descriptor");
            let netns = Netns::from_fd(fd).map_err(|e| {
                ctx.metrics.refused(Refusal::NotNetns);
                CniError::new(
                    code::NETNS,
                    "the descriptor sent is not a network namespace",
                )
                .details(e.to_string())
            })?;
            let Some(pod) = req.pod.clone() else {
                return Err(CniError::new(code::REFUSED, "ADD/CHECK names no pod"));
            };
            let wait = deadline.min(Instant::now() + ctx.pod_wait);
            let uid = find_pod(&ctx.store, &pod, wait).await?;
            Call::Add {
                uid,
                req,
                netns,
                deadline,
                check,
                reply: tx,
            }
        }
    };
    let late = || {
        CniError::new(
            code::TRY_AGAIN_LATER,
            "the agent did not finish in time (ztunnel slow?)",
        )
    };
    ctx.calls
        .send_timeout(call, deadline.saturating_duration_since(Instant::now()))
        .await
        .map_err(|_| late())?;
    match tokio::time::timeout_at(deadline.into(), rx).await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(_)) => Err(CniError::new(
            code::TRY_AGAIN_LATER,
            "the agent is shutting down",
        )),
        Err(_) => Err(late()),
    }
}

/// Waits (until `deadline`) for the pod to be in the store: the agent's
/// view of the cluster may lag behind the runtime. Returns its uid.
async fn find_pod(store: &Store, pod: &PodRef, deadline: Instant) -> Result<String, CniError> {
    let mut changes = store.object_changes();
    let synced = tokio::time::timeout_at(deadline.into(), store.synced()).await;
    let lookup = |store: &Store| {
        store.with_index(|ix| {
            if pod.uid.is_empty() {
                ix.pod(&pod.namespace, &pod.name).map(|p| p.uid.clone())
            } else {
                ix.pod_by_uid(&pod.uid)
                    .filter(|p| p.namespace == pod.namespace && p.name == pod.name)
                    .map(|p| p.uid.clone())
            }
        })
    };
    if synced.is_ok() {
        loop {
            changes.borrow_and_update();
            if let Some(uid) = lookup(store) {
                return Ok(uid);
            }
            match tokio::time::timeout_at(deadline.into(), changes.changed()).await {
                Ok(Ok(())) => continue,
                _ => break,
            }
        }
    }
    let view = if store.is_synced() {
        "not in the agent's view of the cluster"
    } else {
        "not known yet: the agent has not synced with the cluster"
    };
    Err(CniError::new(
        code::TRY_AGAIN_LATER,
        format!(
            "pod {}/{}{} {view}",
            pod.namespace,
            pod.name,
            if pod.uid.is_empty() {
                String::new()
            } else {
                format!(" ({})", pod.uid)
            }
        ),
    )
    .details("the agent's watch may lag behind the runtime; the runtime retries"))
}
