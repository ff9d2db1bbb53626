//! Running code inside another network namespace, and holding one.
//!
//! A socket belongs to the network namespace of the thread that created it, for
//! its whole life. So ztunnel, which lives in the node's namespace, creates each
//! pod's sockets on a worker thread that has entered that pod's namespace once
//! (`setns`), and uses them from its async runtime as usual. Commands spawned
//! from the worker (e.g. `nft`) inherit the namespace too.
//!
//! A namespace is named by an open file descriptor ([`Netns`]), checked to be
//! a network namespace, never by a path looked up later: a path can be made
//! to point at another namespace between the check and the use; an open
//! descriptor cannot.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::mpsc;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("opening network namespace {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("not a network namespace: {0}")]
    NotNetns(&'static str),
    #[error("inspecting a namespace descriptor: {0}")]
    Inspect(std::io::Error),
    #[error("entering network namespace {name}: {source}")]
    Enter {
        name: String,
        source: std::io::Error,
    },
    #[error("the worker thread of network namespace {0} is gone")]
    WorkerGone(String),
}

/// Which network namespace: its nsfs inode (what `ip netns identify` and
/// `/proc/<pid>/ns/net` show as `net:[<ino>]`) and device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetnsId {
    pub dev: u64,
    pub ino: u64,
}

impl std::fmt::Display for NetnsId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "net:[{}]", self.ino)
    }
}

/// An open network namespace: a descriptor checked to be one. Holding it
/// keeps the namespace alive and names it for good.
#[derive(Debug)]
pub struct Netns {
    fd: OwnedFd,
    id: NetnsId,
}

impl Netns {
    /// Opens the namespace at `path` (`/var/run/netns/<name>`,
    /// `/proc/<pid>/ns/net`).
    pub fn open(path: &Path) -> Result<Self, NetnsError> {
        // std opens with O_CLOEXEC.
        let file = File::open(path).map_err(|source| NetnsError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Netns::from_fd(file.into())
    }

    /// The calling thread's own network namespace.
    pub fn current() -> Result<Self, NetnsError> {
        Netns::open(Path::new("/proc/thread-self/ns/net"))
    }

    /// Takes `fd` if it is a network namespace; otherwise refuses (and
    /// closes it).
    pub fn from_fd(fd: OwnedFd) -> Result<Self, NetnsError> {
        let raw = fd.as_raw_fd();
        // SAFETY: fstatfs and fstat only write into the zeroed structs we
        // own; `raw` is open for the calls (we own `fd`).
        let (fs, st) = unsafe {
            let mut fs: libc::statfs = std::mem::zeroed();
            if libc::fstatfs(raw, &mut fs) != 0 {
                return Err(NetnsError::Inspect(std::io::Error::last_os_error()));
            }
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(raw, &mut st) != 0 {
                return Err(NetnsError::Inspect(std::io::Error::last_os_error()));
            }
            (fs, st)
        };
        // Only nsfs files are namespaces; checked first so that the ioctl
        // below never reaches a driver that might give its number a meaning.
        // The two types differ between libcs (and word sizes).
        #[allow(clippy::unnecessary_cast)]
        let nsfs = fs.f_type as i64 == libc::NSFS_MAGIC as i64;
        if !nsfs {
            return Err(NetnsError::NotNetns("not a namespace file (nsfs)"));
        }
        // SAFETY: NS_GET_NSTYPE takes no argument and returns the type.
        let kind = unsafe { libc::ioctl(raw, libc::NS_GET_NSTYPE) };
        if kind < 0 {
            return Err(NetnsError::Inspect(std::io::Error::last_os_error()));
        }
        if kind != libc::CLONE_NEWNET {
            return Err(NetnsError::NotNetns("a namespace of another type"));
        }
        Ok(Netns {
            fd,
            id: NetnsId {
                dev: st.st_dev,
                ino: st.st_ino,
            },
        })
    }

    pub fn id(&self) -> NetnsId {
        self.id
    }

    /// Another descriptor of the same namespace.
    pub fn try_clone(&self) -> std::io::Result<Netns> {
        Ok(Netns {
            fd: self.fd.try_clone()?,
            id: self.id,
        })
    }
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A thread living inside one network namespace, running jobs sent to it.
/// The thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct NetnsWorker {
    name: String,
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for NetnsWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NetnsWorker({})", self.name)
    }
}

impl NetnsWorker {
    /// Starts a worker inside the namespace at `path` (e.g. `/var/run/netns/x`).
    pub fn start(path: &Path) -> Result<Self, NetnsError> {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        NetnsWorker::enter(&Netns::open(path)?, &name)
    }

    /// Starts a worker inside `netns`; `name` names it in logs and errors.
    pub fn enter(netns: &Netns, name: &str) -> Result<Self, NetnsError> {
        let enter_err = |source| NetnsError::Enter {
            name: name.to_string(),
            source,
        };
        // The thread's own copy, closed once it has entered.
        let fd = netns.fd.try_clone().map_err(enter_err)?;
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), std::io::Error>>();
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(format!("netns-{name}"))
            .spawn(move || {
                // SAFETY: setns on a valid, open namespace fd affects only this
                // thread; the fd stays open for the call.
                let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
                drop(fd);
                let entered = if rc == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                };
                let ok = entered.is_ok();
                let _ = ready_tx.send(entered);
                if ok {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                }
            })
            .map_err(enter_err)?;
        ready_rx
            .recv()
            .map_err(|_| NetnsError::WorkerGone(name.to_string()))?
            .map_err(enter_err)?;
        Ok(NetnsWorker {
            name: name.to_string(),
            jobs,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` inside the namespace and returns its result.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, NetnsError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())
    }

    /// Blocking variant of [`run`](Self::run) for non-async callers.
    pub fn run_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, NetnsError> {
        let (tx, rx) = mpsc::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| self.gone())?;
        rx.recv().map_err(|_| self.gone())
    }

    fn gone(&self) -> NetnsError {
        NetnsError::WorkerGone(self.name.clone())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A new, empty network namespace (root only): made by a thread that
    /// leaves it at once; the descriptor keeps it alive.
    pub(crate) fn fresh_netns() -> Netns {
        std::thread::spawn(|| {
            // SAFETY: unshare affects only this thread, which ends here.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "unshare(CLONE_NEWNET) needs root (CAP_SYS_ADMIN): {}",
                std::io::Error::last_os_error()
            );
            Netns::current().unwrap()
        })
        .join()
        .unwrap()
    }

    fn ino_of(path: &str) -> u64 {
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap())
    }

    #[test]
    fn a_netns_file_is_taken_and_named_by_its_inode() {
        let ns = Netns::current().unwrap();
        assert_eq!(ns.id().ino, ino_of("/proc/thread-self/ns/net"));
        assert_eq!(
            ns.id().to_string(),
            std::fs::read_link("/proc/thread-self/ns/net")
                .unwrap()
                .display()
                .to_string()
        );
    }

    #[test]
    fn other_descriptors_are_refused() {
        let file = tempfile::tempfile().unwrap();
        let e = Netns::from_fd(file.into()).unwrap_err();
        assert!(matches!(e, NetnsError::NotNetns(_)), "{e}");
        // A namespace, but not a network one.
        let pid_ns = File::open("/proc/self/ns/pid").unwrap();
        let e = Netns::from_fd(pid_ns.into()).unwrap_err();
        assert!(e.to_string().contains("another type"), "{e}");
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(Netns::from_fd(a.into()).is_err());
    }

    #[test]
    fn a_worker_runs_inside_the_namespace_it_was_given() {
        let ns = fresh_netns();
        assert_ne!(ns.id(), Netns::current().unwrap().id());
        let w = NetnsWorker::enter(&ns, "fresh").unwrap();
        let inside = w
            .run_blocking(|| Netns::current().map(|n| n.id()))
            .unwrap()
            .unwrap();
        assert_eq!(inside, ns.id());
    }
}
