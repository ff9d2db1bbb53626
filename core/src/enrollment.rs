//! The enrollment API: the node agent (the CNI plugin and its node agent,
//! the lab) adds and removes pods over a node-local Unix socket, handing
//! ztunnel each pod's network namespace as a file descriptor. The protocol,
//! in full in `proto/proto/enrollment.proto`:
//!
//! 1. **Socket.** `SOCK_SEQPACKET`, created in place with its mode (0600 by
//!    default; never wider, not even between bind and chmod: bound in a
//!    private directory, then renamed into place). A stale socket at the
//!    path is replaced, anything else there refused.
//! 2. **Peer.** On accept the peer's uid, gid and pid are read
//!    (`SO_PEERCRED`); a uid not in [`Access::allowed_uids`] (default: root
//!    only) is logged, counted ([`Refusal::PeerUid`]) and closed without a
//!    word.
//! 3. **Messages.** One protobuf `Request` per message (at most
//!    [`MAX_REQUEST`]), answered by one `Response` (at most
//!    [`MAX_RESPONSE`]) with the same id. An `AddPod` carries exactly one
//!    descriptor (`SCM_RIGHTS`), the pod's network namespace, checked to be
//!    one ([`Netns::from_fd`]) and handed to the registry, which keeps it
//!    while the pod is enrolled; other requests carry none. A message with
//!    any other number of descriptors, over the limit, or malformed is
//!    refused with an error answer and its descriptors closed
//!    ([`parse`], pure); the session goes on.
//! 4. **Snapshot.** `BeginSnapshot`, one `AddPod` per pod (answered at once,
//!    [`Grace::Skip`]), `EndSnapshot`: the registry removes every pod not
//!    added since the beginning ([`PodRegistry::mark`],
//!    [`PodRegistry::sweep`]) and waits the SVID grace once. At most
//!    [`MAX_SNAPSHOT_PODS`] adds per snapshot, so it works with hundreds of
//!    pods (one descriptor per message, never `SCM_MAX_FD`'s 253 at once)
//!    and its answer stays bounded.
//! 5. **Bounds.** At most [`MAX_SESSIONS`] sessions at once (more wait in
//!    the backlog; the peers are the node's own root processes, so there is
//!    no idle timeout: a node agent may keep its session); a session holds
//!    one request buffer and one descriptor at a time, plus a snapshot's
//!    uids.
//!
//! An answer never waits on the CA beyond a short grace: a pod whose SVID
//! is not issued yet is enrolled anyway and reported as identity-pending
//! ([`Enrolled::pending`]); the caller asks again with the same `AddPod`.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message;
use quicmesh_proto::enrollment::{request, Pod, Request, Response};
use tokio_util::sync::CancellationToken;

use crate::netns::Netns;

mod client;
#[cfg(test)]
mod tests;

pub use crate::seqpacket::PeerCred;
use crate::seqpacket::{self, Received, Seqpacket};
pub use client::{Client, ClientError};

/// Largest request message: one pod with room to spare.
pub const MAX_REQUEST: usize = 16 << 10;
/// Largest answer: an `EndSnapshot`'s list of pending uids fits
/// ([`MAX_SNAPSHOT_PODS`] × [`MAX_UID`]).
pub const MAX_RESPONSE: usize = 128 << 10;
/// Longest pod uid (Kubernetes' are 36 bytes).
pub const MAX_UID: usize = 64;
/// `AddPod`s one snapshot may hold.
pub const MAX_SNAPSHOT_PODS: usize = 1024;
/// Sessions served at once.
pub const MAX_SESSIONS: usize = 64;

/// Who may use the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The socket file's mode.
    pub mode: u32,
    /// Peers (by uid, from `SO_PEERCRED`) allowed to use the API.
    pub allowed_uids: Vec<u32>,
}

impl Default for Access {
    /// Root only: the CNI plugin and the node agent run as root.
    fn default() -> Self {
        Access {
            mode: 0o600,
            allowed_uids: vec![0],
        }
    }
}

/// What an operation that took effect reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Enrolled {
    /// Uids of the pods concerned that are enrolled but whose SVID the CA
    /// has not issued yet (their mesh traffic fails closed until it has).
    pub pending: Vec<String>,
}

/// Whether the answer to an add waits (briefly) for a new pod's SVID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grace {
    /// Wait the grace, then report the pod pending if it still is.
    Wait,
    /// Answer at once (an add within a snapshot: its end waits once for all).
    Skip,
}

/// A point in a registry's order of adds: pods added after it are newer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mark(pub u64);

/// Why the server refused a connection or a message (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The peer's credentials could not be read.
    PeerCred,
    /// The peer's uid is not allowed.
    PeerUid,
    /// A request over [`MAX_REQUEST`].
    TooLarge,
    /// Not exactly one descriptor on an `AddPod`, or any on another request.
    Descriptors,
    /// An `AddPod`'s descriptor is not a network namespace.
    NotNetns,
    /// Not a request we can read (protobuf, no operation, no pod, long uid).
    Malformed,
    /// Snapshot out of order (end without begin, begin twice) or too large.
    Snapshot,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::PeerCred => "peer_cred",
            Refusal::PeerUid => "peer_uid",
            Refusal::TooLarge => "too_large",
            Refusal::Descriptors => "descriptors",
            Refusal::NotNetns => "not_netns",
            Refusal::Malformed => "malformed",
            Refusal::Snapshot => "snapshot",
        }
    }
}

/// What the server does with each operation.
pub trait PodRegistry: Send + Sync + 'static {
    /// Enrolls `pod` in `netns` (already checked to be a network
    /// namespace; the registry keeps it while the pod is enrolled). A
    /// successful add, also of a pod already enrolled as it is, makes the
    /// pod newer than every [`mark`](Self::mark) taken before.
    fn add(
        &self,
        pod: Pod,
        netns: Netns,
        grace: Grace,
    ) -> impl std::future::Future<Output = Result<Enrolled, String>> + Send;
    fn remove(&self, uid: &str) -> impl std::future::Future<Output = Result<(), String>> + Send;
    /// A mark in the order of adds (a snapshot's beginning).
    fn mark(&self) -> Mark;
    /// Removes every pod last added before `mark`, then waits the grace
    /// once and reports which of `uids` are still identity-pending.
    fn sweep(
        &self,
        mark: Mark,
        uids: Vec<String>,
    ) -> impl std::future::Future<Output = Result<Enrolled, String>> + Send;
    /// The server refused a connection or a message (for metrics).
    fn refused(&self, _reason: Refusal) {}
}

/// A request as read from one message: what it asks, with its descriptor.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed<F> {
    pub id: u64,
    pub op: Op<F>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Op<F> {
    Add { pod: Pod, netns: F },
    Remove { uid: String },
    BeginSnapshot,
    EndSnapshot,
}

/// A request refused before it reached the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The request's id, or 0 when it could not be read.
    pub id: u64,
    pub reason: Refusal,
    pub error: String,
}

/// One received message, as [`parse`] sees it.
#[derive(Debug)]
pub struct Incoming<'a, F> {
    pub bytes: &'a [u8],
    /// The message was larger than [`MAX_REQUEST`] (`bytes` is its start).
    pub truncated: bool,
    pub fds: Vec<F>,
    /// More descriptors came than were received.
    pub fds_truncated: bool,
}

/// Reads one message: a request and the descriptors it must carry (pure;
/// `F` is the descriptor type, so the fuzzer needs none). A refused
/// message's descriptors are dropped, i.e. closed.
pub fn parse<F>(m: Incoming<'_, F>) -> Result<Parsed<F>, Refused> {
    let refuse = |id, reason, error: String| Refused { id, reason, error };
    if m.truncated {
        return Err(refuse(
            0,
            Refusal::TooLarge,
            format!("request over {MAX_REQUEST} bytes"),
        ));
    }
    let req = Request::decode(m.bytes)
        .map_err(|e| refuse(0, Refusal::Malformed, format!("malformed request: {e}")))?;
    let id = req.id;
    let n = m.fds.len();
    if m.fds_truncated {
        return Err(refuse(
            id,
            Refusal::Descriptors,
            format!("more than {n} descriptors on one message"),
        ));
    }
    let none = |what: &str, op| {
        if n == 0 {
            Ok(op)
        } else {
            Err(refuse(
                id,
                Refusal::Descriptors,
                format!("{what} carries no descriptor; got {n}"),
            ))
        }
    };
    let op = match req.op {
        None => {
            return Err(refuse(
                id,
                Refusal::Malformed,
                "request has no operation".into(),
            ))
        }
        Some(request::Op::Add(add)) => {
            let mut fds = m.fds;
            if n != 1 {
                return Err(refuse(
                    id,
                    Refusal::Descriptors,
                    format!("an AddPod carries exactly one descriptor, the pod's network namespace; got {n}"),
                ));
            }
            let pod = add
                .pod
                .ok_or_else(|| refuse(id, Refusal::Malformed, "add without a pod".into()))?;
            if pod.uid.len() > MAX_UID {
                return Err(refuse(
                    id,
                    Refusal::Malformed,
                    format!("pod uid over {MAX_UID} bytes"),
                ));
            }
            Op::Add {
                pod,
                netns: fds.pop().expect("one"),
            }
        }
        Some(request::Op::Remove(r)) => none("a RemovePod", Op::Remove { uid: r.uid })?,
        Some(request::Op::BeginSnapshot(_)) => none("a BeginSnapshot", Op::BeginSnapshot)?,
        Some(request::Op::EndSnapshot(_)) => none("an EndSnapshot", Op::EndSnapshot)?,
    };
    Ok(Parsed { id, op })
}

/// The enrollment socket, bound and listening.
pub struct Listener {
    sock: Seqpacket,
    path: PathBuf,
    access: Access,
}

impl Listener {
    /// Creates the socket at `path` with `access.mode`, atomically.
    /// When this returns, the socket is in place and accepting. Needs a
    /// tokio runtime.
    pub fn bind(path: &Path, access: Access) -> std::io::Result<Self> {
        let sock = Seqpacket::new(seqpacket::bind(path, access.mode)?)?;
        Ok(Listener {
            sock,
            path: path.to_path_buf(),
            access,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves until `shutdown`.
    pub async fn serve<R: PodRegistry>(
        self,
        registry: Arc<R>,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        tracing::info!(socket = %self.path.display(), mode = format!("{:04o}", self.access.mode), allowed_uids = ?self.access.allowed_uids, "enrollment API listening");
        let sessions = Arc::new(tokio::sync::Semaphore::new(MAX_SESSIONS));
        let access = Arc::new(self.access);
        loop {
            let permit = tokio::select! {
                p = sessions.clone().acquire_owned() => p.expect("never closed"),
                _ = shutdown.cancelled() => return Ok(()),
            };
            let conn = tokio::select! {
                r = self.sock.accept() => match r {
                    Ok(c) => c,
                    Err(e) if transient(&e) => {
                        tracing::warn!(error = %e, "enrollment accept failed; retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                },
                _ = shutdown.cancelled() => return Ok(()),
            };
            let Some(peer) = admit(&conn, &access, &*registry) else {
                continue;
            };
            let registry = registry.clone();
            let span = tracing::info_span!("enrollment", peer_uid = peer.uid, peer_pid = peer.pid);
            tokio::spawn(tracing::Instrument::instrument(
                async move {
                    let _permit = permit;
                    if let Err(e) = session(conn, &*registry).await {
                        tracing::warn!(error = %e, "enrollment session ended with an error");
                    }
                },
                span,
            ));
        }
    }
}

fn transient(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::ECONNABORTED)
    )
}

/// The peer, if it may use the API; otherwise logged, counted, and (by
/// dropping `conn`) closed.
fn admit(conn: &Seqpacket, access: &Access, registry: &impl PodRegistry) -> Option<PeerCred> {
    match conn.peer_cred() {
        Ok(peer) if access.allowed_uids.contains(&peer.uid) => Some(peer),
        Ok(peer) => {
            tracing::warn!(
                peer_uid = peer.uid,
                peer_gid = peer.gid,
                peer_pid = peer.pid,
                allowed_uids = ?access.allowed_uids,
                "enrollment connection refused: uid not allowed"
            );
            registry.refused(Refusal::PeerUid);
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "enrollment connection refused: cannot read its credentials");
            registry.refused(Refusal::PeerCred);
            None
        }
    }
}

/// A snapshot under way on a session.
struct Snapshot {
    mark: Mark,
    added: Vec<String>,
}

async fn session<R: PodRegistry>(conn: Seqpacket, registry: &R) -> std::io::Result<()> {
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut snapshot: Option<Snapshot> = None;
    while let Some(got) = conn.recv(&mut buf).await? {
        let Received {
            len,
            truncated,
            fds,
            fds_truncated,
        } = got;
        let parsed = parse(Incoming {
            bytes: &buf[..len],
            truncated,
            fds,
            fds_truncated,
        });
        let (id, result) = match parsed {
            Ok(Parsed { id, op }) => (id, operate(id, op, registry, &mut snapshot).await),
            Err(r) => (r.id, Err(refuse(registry, r))),
        };
        let resp = match result {
            Ok(done) => Response {
                id,
                ok: true,
                error: String::new(),
                identity_pending: done.pending,
            },
            Err(error) => Response {
                id,
                ok: false,
                error,
                identity_pending: vec![],
            },
        };
        conn.send(&resp.encode_to_vec(), &[]).await?;
    }
    if snapshot.is_some() {
        tracing::warn!("enrollment session ended inside a snapshot; nothing removed");
    }
    Ok(())
}

/// Logs and counts a refused request; its error for the answer.
fn refuse(registry: &impl PodRegistry, r: Refused) -> String {
    tracing::warn!(request = r.id, reason = r.reason.as_str(), error = %r.error, "enrollment request refused");
    registry.refused(r.reason);
    r.error
}

async fn operate<R: PodRegistry>(
    id: u64,
    op: Op<OwnedFd>,
    registry: &R,
    snapshot: &mut Option<Snapshot>,
) -> Result<Enrolled, String> {
    let refused = |reason, error: String| refuse(registry, Refused { id, reason, error });
    let result = match op {
        Op::Add { pod, netns } => {
            let netns =
                Netns::from_fd(netns).map_err(|e| refused(Refusal::NotNetns, e.to_string()))?;
            match snapshot {
                None => registry.add(pod, netns, Grace::Wait).await,
                Some(s) if s.added.len() >= MAX_SNAPSHOT_PODS => {
                    return Err(refused(
                        Refusal::Snapshot,
                        format!("a snapshot holds at most {MAX_SNAPSHOT_PODS} pods"),
                    ))
                }
                Some(s) => {
                    let uid = pod.uid.clone();
                    let done = registry.add(pod, netns, Grace::Skip).await;
                    if done.is_ok() {
                        s.added.push(uid);
                    }
                    done
                }
            }
        }
        Op::Remove { uid } => registry.remove(&uid).await.map(|()| Enrolled::default()),
        Op::BeginSnapshot => {
            if snapshot.is_some() {
                return Err(refused(
                    Refusal::Snapshot,
                    "a snapshot is already under way on this session".into(),
                ));
            }
            *snapshot = Some(Snapshot {
                mark: registry.mark(),
                added: Vec::new(),
            });
            Ok(Enrolled::default())
        }
        Op::EndSnapshot => {
            let Some(Snapshot { mark, mut added }) = snapshot.take() else {
                return Err(refused(
                    Refusal::Snapshot,
                    "EndSnapshot without a BeginSnapshot".into(),
                ));
            };
            added.sort();
            added.dedup();
            tracing::info!(pods = added.len(), "enrollment snapshot complete");
            registry.sweep(mark, added).await
        }
    };
    if let Err(e) = &result {
        tracing::warn!(request = id, error = %e, "enrollment operation failed");
    }
    result
}
