//! The enrollment API: the node agent adds and removes pods over a Unix
//! socket. Framing: 4-byte big-endian length, then a protobuf
//! `quicmesh.enrollment.v1.Request`; each answered by a `Response` with the
//! same id. See `proto/proto/enrollment.proto`.
//!
//! An answer never waits on the CA beyond a short grace: a pod whose SVID
//! is not issued yet is enrolled anyway and reported as identity-pending
//! ([`Enrolled::pending`]); the caller asks again with the same `AddPod`.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use prost::Message;
use quicmesh_proto::enrollment::{request, Pod, Request, Response};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

/// Largest message accepted: a snapshot of a very full node fits easily.
pub const MAX_FRAME: usize = 4 << 20;

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

/// What an operation that took effect reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Enrolled {
    /// Uids of the pods concerned that are enrolled but whose SVID the CA
    /// has not issued yet (their mesh traffic fails closed until it has).
    pub pending: Vec<String>,
}

/// What the server does with each operation.
pub trait PodRegistry: Send + Sync + 'static {
    fn add(&self, pod: Pod) -> impl std::future::Future<Output = Result<Enrolled, String>> + Send;
    fn remove(&self, uid: &str) -> impl std::future::Future<Output = Result<(), String>> + Send;
    /// Makes the enrolled set exactly `pods`.
    fn snapshot(
        &self,
        pods: Vec<Pod>,
    ) -> impl std::future::Future<Output = Result<Enrolled, String>> + Send;
    /// The socket is bound and accepting (once, before any session; for
    /// readiness).
    fn listening(&self) {}
}

/// Serves the enrollment socket at `path` until `shutdown`.
pub async fn serve<R: PodRegistry>(
    path: &Path,
    registry: Arc<R>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    // Only root (the node agent) may enroll pods.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    tracing::info!(socket = %path.display(), "enrollment API listening");
    registry.listening();
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => r?,
            _ = shutdown.cancelled() => return Ok(()),
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            if let Err(e) = session(stream, registry).await {
                tracing::warn!(error = %e, "enrollment session ended with an error");
            }
        });
    }
}

async fn session<R: PodRegistry>(stream: UnixStream, registry: Arc<R>) -> std::io::Result<()> {
    let mut framed = Framed::new(stream, codec());
    while let Some(frame) = framed.next().await {
        let frame = frame?;
        let resp = match Request::decode(frame.freeze()) {
            Err(e) => {
                tracing::warn!(error = %e, "malformed enrollment request");
                Response {
                    id: 0,
                    ok: false,
                    error: format!("malformed request: {e}"),
                    identity_pending: vec![],
                }
            }
            Ok(req) => {
                let id = req.id;
                let result = match req.op {
                    None => Err("request has no operation".to_string()),
                    Some(request::Op::Add(add)) => match add.pod {
                        Some(pod) => registry.add(pod).await,
                        None => Err("add without a pod".to_string()),
                    },
                    Some(request::Op::Remove(r)) => {
                        registry.remove(&r.uid).await.map(|()| Enrolled::default())
                    }
                    Some(request::Op::Snapshot(s)) => registry.snapshot(s.pods).await,
                };
                match result {
                    Ok(done) => Response {
                        id,
                        ok: true,
                        error: String::new(),
                        identity_pending: done.pending,
                    },
                    Err(e) => {
                        tracing::warn!(request = id, error = %e, "enrollment operation failed");
                        Response {
                            id,
                            ok: false,
                            error: e,
                            identity_pending: vec![],
                        }
                    }
                }
            }
        };
        framed.send(Bytes::from(resp.encode_to_vec())).await?;
    }
    Ok(())
}

/// A client of the enrollment API (the lab's node agent, tests).
pub struct Client {
    framed: Framed<UnixStream, LengthDelimitedCodec>,
    next_id: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("enrollment socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("enrollment server closed the connection")]
    Closed,
    #[error("malformed response: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("response id {got} does not match request {want}")]
    Id { want: u64, got: u64 },
    #[error("ztunnel refused: {0}")]
    Refused(String),
}

impl Client {
    pub async fn connect(path: &Path) -> Result<Self, ClientError> {
        Ok(Client {
            framed: Framed::new(UnixStream::connect(path).await?, codec()),
            next_id: 1,
        })
    }

    async fn call(&mut self, op: request::Op) -> Result<Enrolled, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let req = Request { id, op: Some(op) };
        self.framed.send(Bytes::from(req.encode_to_vec())).await?;
        let frame = self.framed.next().await.ok_or(ClientError::Closed)??;
        let resp = Response::decode(frame.freeze())?;
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

    /// Enrolls `pod` (or, if it already is, tells how it stands).
    pub async fn add(&mut self, pod: Pod) -> Result<Enrolled, ClientError> {
        self.call(request::Op::Add(quicmesh_proto::enrollment::AddPod {
            pod: Some(pod),
        }))
        .await
    }

    pub async fn remove(&mut self, uid: &str) -> Result<(), ClientError> {
        self.call(request::Op::Remove(quicmesh_proto::enrollment::RemovePod {
            uid: uid.to_string(),
        }))
        .await
        .map(|_| ())
    }

    pub async fn snapshot(&mut self, pods: Vec<Pod>) -> Result<Enrolled, ClientError> {
        self.call(request::Op::Snapshot(
            quicmesh_proto::enrollment::Snapshot { pods },
        ))
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// An in-memory registry: records the enrolled set; pods of service
    /// account `nocert` stand for pods whose SVID the CA has not issued.
    #[derive(Default)]
    struct Mem(Mutex<BTreeMap<String, Pod>>);

    fn pending(pods: &[&Pod]) -> Enrolled {
        Enrolled {
            pending: pods
                .iter()
                .filter(|p| p.service_account == "nocert")
                .map(|p| p.uid.clone())
                .collect(),
        }
    }

    impl PodRegistry for Mem {
        async fn add(&self, pod: Pod) -> Result<Enrolled, String> {
            if pod.uid.is_empty() {
                return Err("pod has no uid".into());
            }
            let done = pending(&[&pod]);
            self.0.lock().unwrap().insert(pod.uid.clone(), pod);
            Ok(done)
        }
        async fn remove(&self, uid: &str) -> Result<(), String> {
            self.0.lock().unwrap().remove(uid);
            Ok(())
        }
        async fn snapshot(&self, pods: Vec<Pod>) -> Result<Enrolled, String> {
            let done = pending(&pods.iter().collect::<Vec<_>>());
            *self.0.lock().unwrap() = pods.into_iter().map(|p| (p.uid.clone(), p)).collect();
            Ok(done)
        }
    }

    fn pod(uid: &str) -> Pod {
        Pod {
            uid: uid.into(),
            namespace: "ns".into(),
            name: uid.into(),
            service_account: "sa".into(),
            ips: vec!["10.0.0.1".into()],
            netns_path: "/var/run/netns/x".into(),
        }
    }

    async fn server() -> (
        Arc<Mem>,
        std::path::PathBuf,
        tempfile::TempDir,
        CancellationToken,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("z.sock");
        let reg = Arc::new(Mem::default());
        let stop = CancellationToken::new();
        let (p, r, s) = (path.clone(), reg.clone(), stop.clone());
        tokio::spawn(async move { serve(&p, r, s).await.unwrap() });
        for _ in 0..100 {
            if path.exists() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        (reg, path, dir, stop)
    }

    #[tokio::test]
    async fn add_remove_snapshot_are_idempotent() {
        let (reg, path, _dir, stop) = server().await;
        let mut c = Client::connect(&path).await.unwrap();
        c.add(pod("a")).await.unwrap();
        c.add(pod("a")).await.unwrap();
        c.add(pod("b")).await.unwrap();
        assert_eq!(reg.0.lock().unwrap().len(), 2);
        c.remove("a").await.unwrap();
        c.remove("a").await.unwrap();
        assert_eq!(reg.0.lock().unwrap().keys().collect::<Vec<_>>(), ["b"]);
        c.snapshot(vec![pod("c"), pod("d")]).await.unwrap();
        assert_eq!(reg.0.lock().unwrap().keys().collect::<Vec<_>>(), ["c", "d"]);
        let e = c.add(pod("")).await.unwrap_err();
        assert!(e.to_string().contains("no uid"), "{e}");
        stop.cancel();
    }

    #[tokio::test]
    async fn identity_pending_pods_are_reported_by_uid() {
        let (reg, path, _dir, stop) = server().await;
        let mut c = Client::connect(&path).await.unwrap();
        let mut waiting = pod("w");
        waiting.service_account = "nocert".into();
        assert_eq!(c.add(pod("a")).await.unwrap(), Enrolled::default());
        assert_eq!(c.add(waiting.clone()).await.unwrap().pending, ["w"]);
        let done = c.snapshot(vec![pod("b"), waiting]).await.unwrap();
        assert_eq!(done.pending, ["w"]);
        assert_eq!(reg.0.lock().unwrap().keys().collect::<Vec<_>>(), ["b", "w"]);
        c.remove("w").await.unwrap();
        stop.cancel();
    }

    #[tokio::test]
    async fn garbage_gets_an_error_and_the_session_survives() {
        let (_reg, path, _dir, stop) = server().await;
        let mut framed = Framed::new(UnixStream::connect(&path).await.unwrap(), codec());
        framed
            .send(Bytes::from_static(&[0xff, 0xff, 0xff]))
            .await
            .unwrap();
        let resp = Response::decode(framed.next().await.unwrap().unwrap().freeze()).unwrap();
        assert!(!resp.ok && resp.error.contains("malformed"), "{resp:?}");
        let empty = Request { id: 9, op: None };
        framed
            .send(Bytes::from(empty.encode_to_vec()))
            .await
            .unwrap();
        let resp = Response::decode(framed.next().await.unwrap().unwrap().freeze()).unwrap();
        assert_eq!(resp.id, 9);
        assert!(!resp.ok);
        stop.cancel();
    }

    proptest! {
        #[test]
        fn requests_roundtrip_through_the_codec(uid in "[a-z0-9-]{1,36}", ips in proptest::collection::vec("[0-9.]{7,15}", 0..4), id in any::<u64>()) {
            use tokio_util::codec::{Decoder, Encoder};
            let mut p = pod(&uid);
            p.ips = ips;
            let req = Request { id, op: Some(request::Op::Add(quicmesh_proto::enrollment::AddPod { pod: Some(p) })) };
            let mut buf = bytes::BytesMut::new();
            let mut c = codec();
            c.encode(Bytes::from(req.encode_to_vec()), &mut buf).unwrap();
            let frame = c.decode(&mut buf).unwrap().unwrap();
            prop_assert_eq!(Request::decode(frame.freeze()).unwrap(), req);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Request::decode(&data[..]);
        }
    }

    #[test]
    fn oversize_frames_are_refused() {
        use tokio_util::codec::Decoder;
        let mut buf = bytes::BytesMut::new();
        buf.extend_from_slice(&((MAX_FRAME as u32) + 1).to_be_bytes());
        buf.extend_from_slice(&[0u8; 16]);
        assert!(codec().decode(&mut buf).is_err());
    }
}
