//! A SPIFFE Workload API server for tests, standing in for a SPIRE agent:
//! tonic on a Unix socket, serving `FetchX509SVID` from our own copy of the
//! spec's definitions (`quicmesh_proto::workload`); the other RPCs answer
//! `Unimplemented`. SVIDs are minted with our [`Ca`].
//!
//! As the spec requires of a server, a call without the metadata
//! `workload.spiffe.io: true` is refused (`InvalidArgument`) and counted.
//! Every open `FetchX509SVID` stream sends the current [`Answer`] at once
//! and again whenever [`Server::set`] replaces it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use quicmesh_core::identity::ca::Ca;
use quicmesh_core::identity::{SpiffeId, Svid};
use quicmesh_proto::workload::spiffe_workload_api_server::{
    SpiffeWorkloadApi, SpiffeWorkloadApiServer,
};
use quicmesh_proto::workload::*;
use rustls_pki_types::CertificateDer;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// What every `FetchX509SVID` stream sends now.
#[derive(Clone, Debug)]
pub enum Answer {
    /// Nothing yet: streams wait.
    Nothing,
    Svids(X509svidResponse),
    /// "No identity issued": open streams end with `PermissionDenied`, and
    /// new calls are refused with it, as SPIRE's are when no entry matches
    /// the caller.
    Denied,
}

struct Api {
    answer: watch::Receiver<Answer>,
    refused_without_header: Arc<AtomicU64>,
    calls: Arc<AtomicU64>,
}

type Answers = Pin<Box<dyn Stream<Item = Result<X509svidResponse, Status>> + Send>>;
type Never<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

impl Api {
    fn check_header<T>(&self, req: &Request<T>) -> Result<(), Status> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        match req.metadata().get("workload.spiffe.io") {
            Some(v) if v == "true" => Ok(()),
            _ => {
                self.refused_without_header.fetch_add(1, Ordering::Relaxed);
                Err(Status::invalid_argument(
                    "security header missing from request",
                ))
            }
        }
    }
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for Api {
    type FetchX509SVIDStream = Answers;

    async fn fetch_x509svid(
        &self,
        req: Request<X509svidRequest>,
    ) -> Result<Response<Answers>, Status> {
        self.check_header(&req)?;
        // Denied at the call: the status alone, as SPIRE answers a caller
        // no entry matches.
        if matches!(*self.answer.borrow(), Answer::Denied) {
            return Err(Status::permission_denied("no identity issued"));
        }
        let mut rx = self.answer.clone();
        rx.mark_changed();
        // One message per change of the answer; ends after a denial or
        // when the server goes away.
        let stream = futures::stream::unfold((rx, false), |(mut rx, done)| async move {
            if done {
                return None;
            }
            loop {
                rx.changed().await.ok()?;
                let answer = rx.borrow_and_update().clone();
                match answer {
                    Answer::Nothing => continue,
                    Answer::Svids(r) => return Some((Ok(r), (rx, false))),
                    Answer::Denied => {
                        return Some((
                            Err(Status::permission_denied("no identity issued")),
                            (rx, true),
                        ))
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    type FetchX509BundlesStream = Never<X509BundlesResponse>;

    async fn fetch_x509_bundles(
        &self,
        req: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        self.check_header(&req)?;
        Err(Status::unimplemented("not in this test server"))
    }

    async fn fetch_jwtsvid(
        &self,
        req: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        self.check_header(&req)?;
        Err(Status::unimplemented("not in this test server"))
    }

    type FetchJWTBundlesStream = Never<JwtBundlesResponse>;

    async fn fetch_jwt_bundles(
        &self,
        req: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        self.check_header(&req)?;
        Err(Status::unimplemented("not in this test server"))
    }

    async fn validate_jwtsvid(
        &self,
        req: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        self.check_header(&req)?;
        Err(Status::unimplemented("not in this test server"))
    }
}

/// A running server; stopped when dropped.
pub struct Server {
    pub socket: PathBuf,
    answer: watch::Sender<Answer>,
    refused_without_header: Arc<AtomicU64>,
    calls: Arc<AtomicU64>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Serves on `socket` (a stale socket file there is replaced).
    pub fn start(socket: &Path, answer: Answer) -> Server {
        let _ = std::fs::remove_file(socket);
        let listener = tokio::net::UnixListener::bind(socket).expect("bind the socket");
        let (tx, rx) = watch::channel(answer);
        let refused = Arc::new(AtomicU64::new(0));
        let calls = Arc::new(AtomicU64::new(0));
        let api = Api {
            answer: rx,
            refused_without_header: refused.clone(),
            calls: calls.clone(),
        };
        let stop = CancellationToken::new();
        let incoming = futures::stream::unfold(listener, |l| async move {
            let conn = l.accept().await.map(|(s, _)| s);
            Some((conn, l))
        });
        let s = stop.clone();
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(SpiffeWorkloadApiServer::new(api))
                .serve_with_incoming_shutdown(incoming, s.cancelled_owned())
                .await
                .expect("the test Workload API serves");
        });
        Server {
            socket: socket.to_path_buf(),
            answer: tx,
            refused_without_header: refused,
            calls,
            stop,
            task: Some(task),
        }
    }

    /// Every open stream sends `answer` next.
    pub fn set(&self, answer: Answer) {
        self.answer.send_replace(answer);
    }

    pub fn refused_without_header(&self) -> u64 {
        self.refused_without_header.load(Ordering::Relaxed)
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Stops serving and closes every connection (an agent that exits);
    /// the socket file stays, as a crashed agent's does.
    pub async fn stop(mut self) {
        self.stop.cancel();
        // Streams end only when their answers do: closing the sender ends
        // them, then the server's graceful shutdown completes.
        let (tx, _) = watch::channel(Answer::Nothing);
        drop(std::mem::replace(&mut self.answer, tx));
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Concatenated DER, as the Workload API carries chains and bundles.
pub fn der_concat<'a>(certs: impl IntoIterator<Item = &'a CertificateDer<'a>>) -> Vec<u8> {
    certs
        .into_iter()
        .flat_map(|c| c.as_ref().to_vec())
        .collect()
}

/// The Workload API entry of `svid`, with the roots of its trust domain.
pub fn entry(svid: &Svid, roots: &[&Ca]) -> X509svid {
    X509svid {
        spiffe_id: svid.id.to_string(),
        x509_svid: der_concat(&svid.chain),
        x509_svid_key: svid.key.secret_der().to_vec(),
        bundle: der_concat(roots.iter().map(|c| c.cert_der())),
        hint: String::new(),
    }
}

/// An answer with `svids` (each with the roots of its domain) and the
/// federated bundles.
pub fn answer(svids: &[(&Svid, &[&Ca])], federated: &[(&str, &[&Ca])]) -> Answer {
    Answer::Svids(X509svidResponse {
        svids: svids.iter().map(|(s, roots)| entry(s, roots)).collect(),
        crl: vec![],
        federated_bundles: federated
            .iter()
            .map(|(td, cas)| (td.to_string(), der_concat(cas.iter().map(|c| c.cert_der()))))
            .collect(),
    })
}

pub fn id(ns: &str, sa: &str) -> SpiffeId {
    SpiffeId::workload("cluster.local", ns, sa).expect("valid")
}

/// An SVID for `id` from `ca`, valid for an hour.
pub fn mint(ca: &Ca, id: &SpiffeId) -> Svid {
    ca.mint(id, Duration::from_secs(3600)).expect("mint")
}
