//! A client of the enrollment API: what the CNI plugin (one `add` or
//! `remove` per invocation), a node agent (a `snapshot` after a ztunnel
//! restart), the lab and tests use.

use std::os::fd::AsFd;
use std::path::Path;

use prost::Message;
use quicmesh_proto::enrollment::{request, AddPod, BeginSnapshot, EndSnapshot, Pod, RemovePod};
use quicmesh_proto::enrollment::{Request, Response};

use super::{Enrolled, MAX_REQUEST, MAX_RESPONSE};
use crate::seqpacket::Seqpacket;

/// A connection to ztunnel's enrollment socket. One request at a time.
pub struct Client {
    conn: Seqpacket,
    next_id: u64,
    buf: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("enrollment socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("enrollment server closed the connection")]
    Closed,
    #[error("malformed response: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("response over {MAX_RESPONSE} bytes")]
    ResponseTooLarge,
    #[error("request over {MAX_REQUEST} bytes")]
    RequestTooLarge,
    #[error("response id {got} does not match request {want}")]
    Id { want: u64, got: u64 },
    #[error("ztunnel refused: {0}")]
    Refused(String),
    #[error("ztunnel refused {} of the snapshot's pods: {}", .refused.len(), .refused.iter().map(|(uid, e)| format!("{uid}: {e}")).collect::<Vec<_>>().join("; "))]
    Snapshot {
        /// Uid and error of each pod refused; the others are enrolled.
        refused: Vec<(String, String)>,
        /// What the snapshot's end reported of the others.
        done: Enrolled,
    },
}

impl Client {
    pub async fn connect(path: &Path) -> Result<Self, ClientError> {
        Ok(Client {
            conn: Seqpacket::connect(path).await?,
            next_id: 1,
            buf: vec![0; MAX_RESPONSE],
        })
    }

    pub(super) async fn call(
        &mut self,
        op: request::Op,
        netns: Option<std::os::fd::BorrowedFd<'_>>,
    ) -> Result<Enrolled, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let req = Request { id, op: Some(op) }.encode_to_vec();
        if req.len() > MAX_REQUEST {
            return Err(ClientError::RequestTooLarge);
        }
        let fds: Vec<_> = netns.into_iter().collect();
        self.conn.send(&req, &fds).await?;
        let got = self
            .conn
            .recv(&mut self.buf)
            .await?
            .ok_or(ClientError::Closed)?;
        // The server sends no descriptors; any that came are closed here.
        drop(got.fds);
        if got.truncated {
            return Err(ClientError::ResponseTooLarge);
        }
        let resp = Response::decode(&self.buf[..got.len])?;
        if resp.id != id {
            return Err(ClientError::Id {
                want: id,
                got: resp.id,
            });
        }
        if !resp.ok {
            return Err(ClientError::Refused(resp.error));
        }
        Ok(Enrolled {
            pending: resp.identity_pending,
        })
    }

    /// Waits until ztunnel closes the connection (it exited, or restarted:
    /// a new one is at the socket's path). Cancel-safe; call it only
    /// between requests.
    pub async fn closed(&self) {
        self.conn.closed().await
    }

    /// Enrolls `pod`, whose network namespace is `netns` (an open
    /// `/var/run/netns/<name>` or `/proc/<pid>/ns/net`; the descriptor is
    /// sent, not the path). If it already is enrolled, tells how it stands.
    pub async fn add(&mut self, pod: Pod, netns: impl AsFd) -> Result<Enrolled, ClientError> {
        let op = request::Op::Add(AddPod { pod: Some(pod) });
        self.call(op, Some(netns.as_fd())).await
    }

    pub async fn remove(&mut self, uid: &str) -> Result<(), ClientError> {
        let op = request::Op::Remove(RemovePod {
            uid: uid.to_string(),
        });
        self.call(op, None).await.map(|_| ())
    }

    /// Makes ztunnel's enrolled set exactly `pods`, each with its network
    /// namespace (taken one at a time: an iterator that opens each as it
    /// goes holds one descriptor at a time). Every pod is sent even if one
    /// is refused; the snapshot then ends all the same (pods not in it are
    /// removed) and the error names each refused pod.
    pub async fn snapshot<I, F>(&mut self, pods: I) -> Result<Enrolled, ClientError>
    where
        I: IntoIterator<Item = (Pod, F)>,
        F: AsFd,
    {
        self.call(request::Op::BeginSnapshot(BeginSnapshot {}), None)
            .await?;
        let mut refused = Vec::new();
        for (pod, netns) in pods {
            let uid = pod.uid.clone();
            match self.add(pod, netns).await {
                Ok(_) => {}
                Err(ClientError::Refused(e)) => refused.push((uid, e)),
                Err(e) => return Err(e),
            }
        }
        let done = self
            .call(request::Op::EndSnapshot(EndSnapshot {}), None)
            .await?;
        if refused.is_empty() {
            Ok(done)
        } else {
            Err(ClientError::Snapshot { refused, done })
        }
    }
}
