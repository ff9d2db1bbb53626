use super::*;
use crate::netns::{NetnsId, NetnsWorker};
use proptest::prelude::*;
use quicmesh_proto::enrollment::{AddPod, BeginSnapshot, EndSnapshot, RemovePod};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Every exchange in these tests is answered at once; this only bounds a
/// broken one.
const DEADLINE: Duration = Duration::from_secs(10);

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .expect("answered within the deadline")
}

struct Entry {
    pod: Pod,
    netns: Netns,
    grace: Grace,
    seq: u64,
}

/// An in-memory registry: records the enrolled set with each pod's
/// namespace; pods of service account `nocert` stand for pods whose SVID
/// the CA has not issued.
#[derive(Default)]
struct Mem {
    pods: Mutex<BTreeMap<String, Entry>>,
    seq: AtomicU64,
    refused: Mutex<HashMap<Refusal, u64>>,
}

impl Mem {
    fn uids(&self) -> Vec<String> {
        self.pods.lock().unwrap().keys().cloned().collect()
    }
    fn netns(&self, uid: &str) -> NetnsId {
        self.pods.lock().unwrap()[uid].netns.id()
    }
    fn refusals(&self, r: Refusal) -> u64 {
        self.refused.lock().unwrap().get(&r).copied().unwrap_or(0)
    }
}

fn pending<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> Enrolled {
    Enrolled {
        pending: pods
            .into_iter()
            .filter(|p| p.service_account == "nocert")
            .map(|p| p.uid.clone())
            .collect(),
    }
}

impl PodRegistry for Mem {
    async fn add(&self, pod: Pod, netns: Netns, grace: Grace) -> Result<Enrolled, String> {
        if pod.uid.is_empty() {
            return Err("pod has no uid".into());
        }
        let done = pending([&pod]);
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        let uid = pod.uid.clone();
        let entry = Entry {
            pod,
            netns,
            grace,
            seq,
        };
        self.pods.lock().unwrap().insert(uid, entry);
        Ok(done)
    }
    async fn remove(&self, uid: &str) -> Result<(), String> {
        self.pods.lock().unwrap().remove(uid);
        Ok(())
    }
    fn mark(&self) -> Mark {
        Mark(self.seq.fetch_add(1, Ordering::SeqCst))
    }
    async fn sweep(&self, mark: Mark, uids: Vec<String>) -> Result<Enrolled, String> {
        let mut pods = self.pods.lock().unwrap();
        pods.retain(|_, e| e.seq > mark.0);
        Ok(pending(
            uids.iter().filter_map(|u| pods.get(u)).map(|e| &e.pod),
        ))
    }
    fn refused(&self, reason: Refusal) {
        *self.refused.lock().unwrap().entry(reason).or_default() += 1;
    }
}

fn pod(uid: &str) -> Pod {
    Pod {
        uid: uid.into(),
        namespace: "ns".into(),
        name: uid.into(),
        service_account: "sa".into(),
        ips: vec!["10.0.0.1".into()],
    }
}

fn own_netns() -> File {
    File::open("/proc/self/ns/net").unwrap()
}

fn me() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// The access the tests' servers grant: this process's own uid.
fn mine() -> Access {
    Access {
        mode: 0o600,
        allowed_uids: vec![me()],
    }
}

struct Server {
    reg: Arc<Mem>,
    path: PathBuf,
    _dir: tempfile::TempDir,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A server on the in-memory registry; listening when this returns.
fn server(access: Access) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/z.sock");
    let reg = Arc::new(Mem::default());
    let stop = CancellationToken::new();
    let listener = Listener::bind(&path, access).unwrap();
    tokio::spawn(listener.serve(reg.clone(), stop.clone()));
    Server {
        reg,
        path,
        _dir: dir,
        stop,
    }
}

async fn client(s: &Server) -> Client {
    within(Client::connect(&s.path)).await.unwrap()
}

/// Sends raw bytes with `fds` and returns the answer.
async fn raw(conn: &Seqpacket, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Response {
    within(conn.send(bytes, fds)).await.unwrap();
    let mut buf = vec![0; MAX_RESPONSE];
    let got = within(conn.recv(&mut buf))
        .await
        .unwrap()
        .expect("an answer");
    assert!(got.fds.is_empty());
    Response::decode(&buf[..got.len]).unwrap()
}

fn add_request(id: u64, p: Pod) -> Vec<u8> {
    Request {
        id,
        op: Some(request::Op::Add(AddPod { pod: Some(p) })),
    }
    .encode_to_vec()
}

/// How many of this process's descriptors are open on `path`.
fn open_on(path: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|t| t == path)
        .count()
}

/// A file of this test alone, to send as a descriptor and then look for.
fn marker(dir: &Path, name: &str) -> (PathBuf, File) {
    let path = dir.join(name);
    let f = File::create(&path).unwrap();
    (path, f)
}

#[tokio::test]
async fn add_remove_and_snapshots_are_idempotent() {
    let s = server(mine());
    let mut c = client(&s).await;
    let ns = own_netns();
    c.add(pod("a"), &ns).await.unwrap();
    c.add(pod("a"), &ns).await.unwrap();
    c.add(pod("b"), &ns).await.unwrap();
    assert_eq!(s.reg.uids(), ["a", "b"]);
    c.remove("a").await.unwrap();
    c.remove("a").await.unwrap();
    assert_eq!(s.reg.uids(), ["b"]);
    let pods = ["c", "d"].map(|u| (pod(u), own_netns()));
    c.snapshot(pods).await.unwrap();
    assert_eq!(s.reg.uids(), ["c", "d"]);
    let e = c.add(pod(""), &ns).await.unwrap_err();
    assert!(e.to_string().contains("no uid"), "{e}");
}

#[tokio::test]
async fn identity_pending_pods_are_reported_by_uid() {
    let s = server(mine());
    let mut c = client(&s).await;
    let mut waiting = pod("w");
    waiting.service_account = "nocert".into();
    let ns = own_netns();
    assert_eq!(c.add(pod("a"), &ns).await.unwrap(), Enrolled::default());
    assert_eq!(c.add(waiting.clone(), &ns).await.unwrap().pending, ["w"]);
    let done = c.snapshot([(pod("b"), &ns), (waiting, &ns)]).await.unwrap();
    assert_eq!(done.pending, ["w"]);
    assert_eq!(s.reg.uids(), ["b", "w"]);
}

#[tokio::test]
async fn the_socket_is_created_with_its_mode_and_replaces_only_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("z.sock");
    // A stale socket (a previous ztunnel's) is replaced.
    let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
    for mode in [0o600, 0o660] {
        let access = Access {
            mode,
            allowed_uids: vec![me()],
        };
        let l = Listener::bind(&path, access).unwrap();
        let m = std::fs::symlink_metadata(&path).unwrap();
        assert!(m.file_type().is_socket());
        assert_eq!(
            m.permissions().mode() & 0o7777,
            mode,
            "{:o}",
            m.permissions().mode()
        );
        assert_eq!(l.path(), path);
    }
    drop(stale);
    // The private directory is gone: only the socket is left.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, [std::ffi::OsString::from("z.sock")]);

    // Anything else at the path is refused and left as it is.
    let file = dir.path().join("file.sock");
    std::fs::write(&file, "keep me").unwrap();
    let e = Listener::bind(&file, Access::default()).err().unwrap();
    assert!(e.to_string().contains("not a socket"), "{e}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    let sub = dir.path().join("dir.sock");
    std::fs::create_dir(&sub).unwrap();
    assert!(Listener::bind(&sub, Access::default()).is_err());
    assert!(sub.is_dir());
}

#[tokio::test]
async fn a_peer_whose_uid_is_not_allowed_is_closed_unanswered_and_counted() {
    let other = me().wrapping_add(4242);
    let s = server(Access {
        mode: 0o600,
        allowed_uids: vec![other],
    });
    let mut c = client(&s).await;
    let e = within(c.add(pod("a"), own_netns())).await.unwrap_err();
    assert!(
        matches!(e, ClientError::Closed)
            || matches!(&e, ClientError::Io(io) if io.raw_os_error() == Some(libc::EPIPE) || io.raw_os_error() == Some(libc::ECONNRESET)),
        "{e}"
    );
    assert_eq!(s.reg.refusals(Refusal::PeerUid), 1);
    assert!(s.reg.uids().is_empty());
}

#[tokio::test]
async fn the_namespace_arrives_as_the_descriptor_sent() {
    let s = server(mine());
    let mut c = client(&s).await;
    c.add(pod("a"), own_netns()).await.unwrap();
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata("/proc/self/ns/net").unwrap());
    assert_eq!(s.reg.netns("a").ino, ino);
    assert_eq!(s.reg.pods.lock().unwrap()["a"].grace, Grace::Wait);
}

#[tokio::test]
async fn a_new_namespace_is_entered_through_the_descriptor_and_closed_on_remove() {
    let fresh = crate::netns::tests::fresh_netns();
    let id = fresh.id();
    let link = PathBuf::from(id.to_string());
    let s = server(mine());
    let mut c = client(&s).await;
    c.add(pod("a"), &fresh).await.unwrap();
    drop(fresh);
    assert_eq!(s.reg.netns("a"), id);
    // What the registry holds is that namespace: a worker entering it is
    // inside it.
    let worker = {
        let pods = s.reg.pods.lock().unwrap();
        NetnsWorker::enter(&pods["a"].netns, "a").unwrap()
    };
    let inside = worker
        .run(|| crate::netns::Netns::current().map(|n| n.id()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(inside, id);
    drop(worker);
    assert_eq!(open_on(&link), 1, "the registry holds one descriptor");
    c.remove("a").await.unwrap();
    assert_eq!(open_on(&link), 0, "removed: its descriptor is closed");
}

#[tokio::test]
async fn a_descriptor_that_is_not_a_network_namespace_is_refused_and_closed() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(mine());
    let mut c = client(&s).await;
    let (path, file) = marker(dir.path(), "not-a-netns");
    let e = c.add(pod("a"), &file).await.unwrap_err();
    assert!(e.to_string().contains("not a network namespace"), "{e}");
    drop(file);
    assert_eq!(open_on(&path), 0);
    let pid_ns = File::open("/proc/self/ns/pid").unwrap();
    let e = c.add(pod("a"), &pid_ns).await.unwrap_err();
    assert!(e.to_string().contains("another type"), "{e}");
    assert_eq!(s.reg.refusals(Refusal::NotNetns), 2);
    assert!(s.reg.uids().is_empty());
    // The session goes on.
    c.add(pod("a"), own_netns()).await.unwrap();
}

#[tokio::test]
async fn wrong_numbers_of_descriptors_are_refused_and_all_closed() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(mine());
    let conn = within(Seqpacket::connect(&s.path)).await.unwrap();
    let files: Vec<_> = (0..8)
        .map(|i| marker(dir.path(), &format!("fd{i}")))
        .collect();
    let fds: Vec<BorrowedFd<'_>> = files.iter().map(|(_, f)| f.as_fd()).collect();
    let ns = own_netns();
    let two = [ns.as_fd(), fds[0]];
    let remove = Request {
        id: 3,
        op: Some(request::Op::Remove(RemovePod { uid: "a".into() })),
    }
    .encode_to_vec();
    let cases: [(&[u8], &[BorrowedFd<'_>], u64); 5] = [
        (&add_request(1, pod("a")), &[], 1),
        (&add_request(2, pod("a")), &two, 2),
        (&remove, &fds[..1], 3),
        // More than a message has room for: the kernel closes the rest.
        (&add_request(4, pod("a")), &fds, 4),
        (
            &Request {
                id: 5,
                op: Some(request::Op::BeginSnapshot(BeginSnapshot {})),
            }
            .encode_to_vec(),
            &fds[..2],
            5,
        ),
    ];
    for (bytes, fds, id) in cases {
        let resp = raw(&conn, bytes, fds).await;
        assert_eq!(resp.id, id);
        assert!(!resp.ok && resp.error.contains("descriptor"), "{resp:?}");
    }
    assert_eq!(s.reg.refusals(Refusal::Descriptors), 5);
    assert!(s.reg.uids().is_empty());
    drop(fds);
    let paths: Vec<_> = files.into_iter().map(|(p, _)| p).collect();
    for p in &paths {
        assert_eq!(open_on(p), 0, "{} left open", p.display());
    }
    // One descriptor on an AddPod is right, on the same session.
    let resp = raw(&conn, &add_request(6, pod("a")), &[ns.as_fd()]).await;
    assert!(resp.ok, "{resp:?}");
}

#[tokio::test]
async fn oversize_and_malformed_requests_are_refused_and_the_session_survives() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(mine());
    let conn = within(Seqpacket::connect(&s.path)).await.unwrap();
    let (path, file) = marker(dir.path(), "big");
    let mut big = pod("a");
    big.name = "x".repeat(MAX_REQUEST);
    let resp = raw(&conn, &add_request(1, big), &[file.as_fd()]).await;
    assert!(!resp.ok && resp.error.contains("over"), "{resp:?}");
    assert_eq!(resp.id, 0);
    drop(file);
    assert_eq!(open_on(&path), 0);
    let resp = raw(&conn, &[0xff, 0xff, 0xff], &[]).await;
    assert!(!resp.ok && resp.error.contains("malformed"), "{resp:?}");
    let empty = Request { id: 9, op: None }.encode_to_vec();
    let resp = raw(&conn, &empty, &[]).await;
    assert_eq!(resp.id, 9);
    assert!(!resp.ok);
    let long = pod(&"u".repeat(MAX_UID + 1));
    let resp = raw(&conn, &add_request(10, long), &[own_netns().as_fd()]).await;
    assert!(!resp.ok && resp.error.contains("uid"), "{resp:?}");
    assert_eq!(s.reg.refusals(Refusal::TooLarge), 1);
    assert_eq!(s.reg.refusals(Refusal::Malformed), 3);
    let resp = raw(&conn, &add_request(11, pod("a")), &[own_netns().as_fd()]).await;
    assert!(resp.ok, "{resp:?}");
}

#[tokio::test]
async fn a_snapshot_of_more_pods_than_one_message_can_carry_descriptors() {
    // SCM_MAX_FD is 253: a snapshot sends one descriptor per message.
    const PODS: usize = 300;
    let s = server(mine());
    let mut agent = client(&s).await;
    let mut cni = client(&s).await;
    agent.add(pod("stale"), own_netns()).await.unwrap();
    agent.add(pod("p0"), own_netns()).await.unwrap();
    agent
        .call(request::Op::BeginSnapshot(BeginSnapshot {}), None)
        .await
        .unwrap();
    // A pod the CNI plugin adds while the snapshot is under way stays.
    cni.add(pod("cni"), own_netns()).await.unwrap();
    let mut waiting = pod("p7");
    waiting.service_account = "nocert".into();
    for i in 0..PODS {
        let p = if i == 7 {
            waiting.clone()
        } else {
            pod(&format!("p{i}"))
        };
        // Each descriptor is opened, sent and closed in turn.
        let done = agent.add(p, own_netns()).await.unwrap();
        assert_eq!(done.pending.len(), usize::from(i == 7));
    }
    let done = agent
        .call(request::Op::EndSnapshot(EndSnapshot {}), None)
        .await
        .unwrap();
    assert_eq!(done.pending, ["p7"]);
    let uids = s.reg.uids();
    assert_eq!(uids.len(), PODS + 1);
    assert!(uids.contains(&"cni".to_string()) && !uids.contains(&"stale".to_string()));
    let pods = s.reg.pods.lock().unwrap();
    assert_eq!(
        pods["p0"].grace,
        Grace::Skip,
        "a snapshot's adds do not wait"
    );
    assert_eq!(pods["cni"].grace, Grace::Wait);
}

#[tokio::test]
async fn snapshots_are_ordered_and_bounded() {
    let s = server(mine());
    let mut c = client(&s).await;
    let begin = || request::Op::BeginSnapshot(BeginSnapshot {});
    let end = || request::Op::EndSnapshot(EndSnapshot {});
    let e = c.call(end(), None).await.unwrap_err();
    assert!(e.to_string().contains("without a BeginSnapshot"), "{e}");
    c.call(begin(), None).await.unwrap();
    let e = c.call(begin(), None).await.unwrap_err();
    assert!(e.to_string().contains("already"), "{e}");
    let ns = own_netns();
    for i in 0..MAX_SNAPSHOT_PODS {
        c.add(pod(&format!("p{i}")), &ns).await.unwrap();
    }
    let e = c.add(pod("one-too-many"), &ns).await.unwrap_err();
    assert!(e.to_string().contains("at most"), "{e}");
    c.call(end(), None).await.unwrap();
    assert_eq!(s.reg.uids().len(), MAX_SNAPSHOT_PODS);
    assert_eq!(s.reg.refusals(Refusal::Snapshot), 3);
    // A refused pod of a snapshot is named; the others are enrolled and
    // the snapshot ends.
    let e = c
        .snapshot([(pod("x"), own_netns()), (pod(""), own_netns())])
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ClientError::Snapshot { refused, .. } if refused.len() == 1),
        "{e}"
    );
    assert_eq!(s.reg.uids(), ["x"]);
}

#[test]
fn the_largest_answer_fits() {
    let resp = Response {
        id: u64::MAX,
        ok: true,
        error: String::new(),
        identity_pending: vec!["u".repeat(MAX_UID); MAX_SNAPSHOT_PODS],
    };
    assert!(resp.encode_to_vec().len() <= MAX_RESPONSE);
}

fn incoming(bytes: &[u8], fds: usize) -> Incoming<'_, ()> {
    Incoming {
        bytes,
        truncated: false,
        fds: vec![(); fds],
        fds_truncated: false,
    }
}

fn op_strategy() -> impl Strategy<Value = request::Op> {
    prop_oneof![
        (
            "[a-z0-9-]{1,36}",
            proptest::collection::vec("[0-9.]{7,15}", 0..4)
        )
            .prop_map(|(uid, ips)| {
                let mut p = pod(&uid);
                p.ips = ips;
                request::Op::Add(AddPod { pod: Some(p) })
            }),
        "[a-z0-9-]{0,36}".prop_map(|uid| request::Op::Remove(RemovePod { uid })),
        Just(request::Op::BeginSnapshot(BeginSnapshot {})),
        Just(request::Op::EndSnapshot(EndSnapshot {})),
    ]
}

proptest! {
    #[test]
    fn an_add_takes_exactly_one_descriptor_and_nothing_else_takes_any(op in op_strategy(), id in any::<u64>(), n in 0usize..4) {
        let is_add = matches!(op, request::Op::Add(_));
        let req = Request { id, op: Some(op.clone()) };
        let bytes = req.encode_to_vec();
        match parse(incoming(&bytes, n)) {
            Ok(p) => {
                prop_assert_eq!(n, usize::from(is_add));
                prop_assert_eq!(p.id, id);
                match (p.op, op) {
                    (Op::Add { pod, .. }, request::Op::Add(a)) => prop_assert_eq!(Some(pod), a.pod),
                    (Op::Remove { uid }, request::Op::Remove(r)) => prop_assert_eq!(uid, r.uid),
                    (Op::BeginSnapshot, request::Op::BeginSnapshot(_)) | (Op::EndSnapshot, request::Op::EndSnapshot(_)) => {}
                    (got, want) => prop_assert!(false, "{got:?} from {want:?}"),
                }
            }
            Err(r) => {
                prop_assert_ne!(n, usize::from(is_add));
                prop_assert_eq!(r.reason, Refusal::Descriptors);
                prop_assert_eq!(r.id, id);
            }
        }
    }

    #[test]
    fn parsing_arbitrary_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..256), n in 0usize..3, truncated in any::<bool>(), fds_truncated in any::<bool>()) {
        let _ = parse(Incoming { bytes: &data, truncated, fds: vec![(); n], fds_truncated });
    }
}
