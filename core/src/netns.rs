//! Running code inside another network namespace.
//!
//! A socket belongs to the network namespace of the thread that created it, for
//! its whole life. So ztunnel, which lives in the node's namespace, creates each
//! pod's sockets on a worker thread that has entered that pod's namespace once
//! (`setns`), and uses them from its async runtime as usual. Commands spawned
//! from the worker (e.g. `nft`) inherit the namespace too.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("opening network namespace {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("entering network namespace {path}: {source}")]
    Enter {
        path: String,
        source: std::io::Error,
    },
    #[error("the worker thread of network namespace {0} is gone")]
    WorkerGone(String),
}

/// A thread living inside one network namespace, running jobs sent to it.
/// The thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct NetnsWorker {
    path: PathBuf,
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for NetnsWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NetnsWorker({})", self.path.display())
    }
}

impl NetnsWorker {
    /// Starts a worker inside the namespace at `path` (e.g. `/var/run/netns/x`).
    pub fn start(path: &Path) -> Result<Self, NetnsError> {
        let file = File::open(path).map_err(|source| NetnsError::Open {
            path: path.display().to_string(),
            source,
        })?;
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), std::io::Error>>();
        let (jobs, rx) = mpsc::channel::<Job>();
        let name = format!(
            "netns-{}",
            path.file_name().unwrap_or_default().to_string_lossy()
        );
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                // SAFETY: setns on a valid, open namespace fd affects only this
                // thread; the fd stays open for the call.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
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
            .map_err(|source| NetnsError::Enter {
                path: path.display().to_string(),
                source,
            })?;
        ready_rx
            .recv()
            .map_err(|_| NetnsError::WorkerGone(path.display().to_string()))?
            .map_err(|source| NetnsError::Enter {
                path: path.display().to_string(),
                source,
            })?;
        Ok(NetnsWorker {
            path: path.to_path_buf(),
            jobs,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
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
        NetnsError::WorkerGone(self.path.display().to_string())
    }
}
