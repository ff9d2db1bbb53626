//! Node-local Unix `SOCK_SEQPACKET` sockets at the system-call level, as
//! the enrollment socket (ztunnel's) and the CNI agent's socket use them: a
//! listening socket created in place with its mode ([`bind`]), its peer's
//! credentials ([`PeerCred`]), and messages with file descriptors attached
//! (`SCM_RIGHTS`), on the tokio runtime ([`Seqpacket`]) or blocking with a
//! deadline ([`Blocking`], for a short-lived process such as the CNI
//! plugin, which has no runtime).
//!
//! Every descriptor that arrives is owned ([`OwnedFd`]) before anything
//! else looks at the message, so none can leak, whatever the message turns
//! out to be; they arrive close-on-exec (`MSG_CMSG_CLOEXEC`).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use socket2::{Domain, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Descriptors one received message has room for. More than one is refused
/// anyway; room for a few more tells "too many" from "one", and what does
/// not fit the kernel closes itself (and flags `MSG_CTRUNC`).
const FDS_ROOM: usize = 4;

/// Control buffer, as 8-byte words so it is aligned for `cmsghdr`:
/// `CMSG_SPACE(FDS_ROOM * 4)` is 16 + 16 bytes on 64-bit Linux.
const CONTROL_WORDS: usize = 2 + FDS_ROOM / 2;

/// Each socket's send buffer: room for the largest response (the kernel
/// refuses a message larger than the buffer).
const SEND_BUFFER: usize = 256 << 10;

/// Who is on the other end of a connection (`SO_PEERCRED`: the process
/// that connected, as it was when it connected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// One message as it arrived.
#[derive(Debug)]
pub struct Received {
    /// Bytes of it in the buffer (all of it unless `truncated`).
    pub len: usize,
    /// It was larger than the buffer; the rest is gone.
    pub truncated: bool,
    /// The descriptors that came with it.
    pub fds: Vec<OwnedFd>,
    /// More descriptors came than there was room for (the kernel closed those).
    pub fds_truncated: bool,
}

/// A connected (or listening) seqpacket socket on the runtime. Needs a
/// tokio runtime.
pub struct Seqpacket(AsyncFd<Socket>);

impl Seqpacket {
    pub fn new(sock: Socket) -> io::Result<Self> {
        sock.set_nonblocking(true)?;
        // SAFETY: the socket owns its descriptor, which stays open and the
        // same until the AsyncFd (which owns the socket) is dropped.
        Ok(Seqpacket(unsafe { AsyncFd::register(sock) }?))
    }

    /// Connects to the socket at `path` (blocking briefly on a thread of
    /// its own if the server's backlog is full).
    pub async fn connect(path: &Path) -> io::Result<Self> {
        let addr = SockAddr::unix(path)?;
        let sock = tokio::task::spawn_blocking(move || {
            let sock = Socket::new(Domain::UNIX, Type::SEQPACKET.cloexec(), None)?;
            sock.connect(&addr)?;
            Ok::<_, io::Error>(sock)
        })
        .await
        .map_err(io::Error::other)??;
        let _ = sock.set_send_buffer_size(SEND_BUFFER);
        Seqpacket::new(sock)
    }

    /// Accepts the next connection (close-on-exec).
    pub async fn accept(&self) -> io::Result<Seqpacket> {
        let (sock, _) = self.0.async_io(Interest::READABLE, |s| s.accept()).await?;
        let _ = sock.set_send_buffer_size(SEND_BUFFER);
        Seqpacket::new(sock)
    }

    pub fn peer_cred(&self) -> io::Result<PeerCred> {
        peer_cred(self.0.get_ref().as_raw_fd())
    }

    /// Sends `bytes` as one message, with `fds` attached.
    pub async fn send(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        self.0
            .async_io(Interest::WRITABLE, |s| send(s.as_raw_fd(), bytes, &raw))
            .await
    }

    /// Waits until the peer has closed its end, for a client whose server
    /// never speaks unasked (the enrollment API, the CNI agent's): while no
    /// request is outstanding, the socket turning readable means the peer
    /// hung up (or broke the protocol, which ends the session as well).
    /// Cancel-safe; do not call it while a request is outstanding.
    pub async fn closed(&self) {
        loop {
            match self.0.readable().await {
                Ok(mut ready) => {
                    let mut byte = [0u8; 1];
                    // SAFETY: recv into a 1-byte buffer we own; MSG_PEEK
                    // leaves the message (and any descriptors) queued.
                    let n = unsafe {
                        libc::recv(
                            self.0.get_ref().as_raw_fd(),
                            byte.as_mut_ptr().cast(),
                            1,
                            libc::MSG_PEEK | libc::MSG_DONTWAIT,
                        )
                    };
                    if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock {
                        ready.clear_ready();
                        continue;
                    }
                    return;
                }
                Err(_) => return,
            }
        }
    }

    /// Receives one message into `buf`. `None`: the peer closed (or sent
    /// an empty message, which ends a session too).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        let got = self
            .0
            .async_io(Interest::READABLE, |s| recv(s.as_raw_fd(), buf))
            .await?;
        // Descriptors sent with an empty message are closed here.
        Ok((got.len > 0 || got.truncated).then_some(got))
    }
}

/// A connected seqpacket socket used from blocking code: every call takes
/// the deadline of the whole exchange and fails with
/// [`io::ErrorKind::TimedOut`] past it.
pub struct Blocking(Socket);

impl Blocking {
    /// Connects to the socket at `path` by `deadline` (a full backlog is
    /// waited for until then).
    pub fn connect(path: &Path, deadline: Instant) -> io::Result<Self> {
        let sock = Socket::new(Domain::UNIX, Type::SEQPACKET.cloexec(), None)?;
        // A Unix connect waits for room in the backlog up to the send
        // timeout.
        sock.set_write_timeout(Some(remaining(deadline)?))?;
        sock.connect(&SockAddr::unix(path)?)?;
        let _ = sock.set_send_buffer_size(SEND_BUFFER);
        Ok(Blocking(sock))
    }

    pub fn peer_cred(&self) -> io::Result<PeerCred> {
        peer_cred(self.0.as_raw_fd())
    }

    /// Sends `bytes` as one message with `fds` attached, by `deadline`.
    pub fn send(&self, bytes: &[u8], fds: &[BorrowedFd<'_>], deadline: Instant) -> io::Result<()> {
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        self.retry(libc::POLLOUT, deadline, || {
            send(self.0.as_raw_fd(), bytes, &raw)
        })
    }

    /// Receives one message into `buf` by `deadline`. `None`: the peer
    /// closed.
    pub fn recv(&self, buf: &mut [u8], deadline: Instant) -> io::Result<Option<Received>> {
        let got = self.retry(libc::POLLIN, deadline, || recv(self.0.as_raw_fd(), buf))?;
        Ok((got.len > 0 || got.truncated).then_some(got))
    }

    /// Runs the non-blocking `op` until it does not block, waiting for
    /// `events` in between, until `deadline`.
    fn retry<T>(
        &self,
        events: libc::c_short,
        deadline: Instant,
        mut op: impl FnMut() -> io::Result<T>,
    ) -> io::Result<T> {
        loop {
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
            let wait = remaining(deadline)?;
            let mut pfd = libc::pollfd {
                fd: self.0.as_raw_fd(),
                events,
                revents: 0,
            };
            let ms = wait.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
            // SAFETY: poll on one pollfd we own, for the call.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// Time left until `deadline`, or a timeout error if none is.
fn remaining(deadline: Instant) -> io::Result<std::time::Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
    }
    Ok(left)
}

fn peer_cred(fd: RawFd) -> io::Result<PeerCred> {
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, which we own.
    let cred = unsafe {
        let mut cred: libc::ucred = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        let rc = libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        );
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        cred
    };
    Ok(PeerCred {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}

fn send(fd: RawFd, bytes: &[u8], attach: &[RawFd]) -> io::Result<()> {
    let fds_len = std::mem::size_of_val(attach) as u32;
    // SAFETY: CMSG_SPACE is arithmetic.
    let space = unsafe { libc::CMSG_SPACE(fds_len) } as usize;
    // As 8-byte words, aligned for cmsghdr.
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: the msghdr points at `iov` and `control`, both alive for the
    // call; `control` holds CMSG_SPACE of the descriptors, so the one cmsg
    // written stays inside it; sendmsg only reads them.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if !attach.is_empty() {
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(fds_len) as _;
            let data = libc::CMSG_DATA(c).cast::<libc::c_int>();
            for (i, fd) in attach.iter().enumerate() {
                std::ptr::write_unaligned(data.add(i), *fd);
            }
        }
        libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // A seqpacket message is sent whole or not at all.
    debug_assert_eq!(n as usize, bytes.len());
    Ok(())
}

fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<Received> {
    let mut control = [0u64; CONTROL_WORDS];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: the msghdr points at `iov` (into `buf`) and `control`, both
    // alive and writable for the call.
    let (n, msg) = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT);
        (n, msg)
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: the kernel filled `control` with well-formed cmsgs up to
    // `msg.msg_controllen`; the cmsg macros walk only that. Each
    // SCM_RIGHTS entry holds descriptors just installed in this process
    // for us alone: owning them is what closes them.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<libc::c_int>();
                let bytes = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..bytes / std::mem::size_of::<libc::c_int>() {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(Received {
        len: n as usize,
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        fds,
        fds_truncated: msg.msg_flags & libc::MSG_CTRUNC != 0,
    })
}

/// Creates a listening socket at `path` whose file never has a mode wider
/// than `mode`: bound inside a private (0700) directory beside `path`,
/// given `mode`, then renamed into place. A socket already at `path` (a
/// previous ztunnel's) is replaced; anything else there is refused. The
/// parent directory is created if missing; it must be writable only by
/// ztunnel's user (the check before the rename is not atomic with it).
pub fn bind(path: &Path, mode: u32) -> io::Result<Socket> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent)?;
    refuse_non_socket(path)?;
    let private = PrivateDir::create(parent, path)?;
    let tmp = private.0.join("s");
    let sock = Socket::new(Domain::UNIX, Type::SEQPACKET.cloexec(), None)?;
    // On Linux the file bind creates takes the socket's own inode mode
    // (less the umask): narrowed first, it is never wider than `mode`, even
    // in the private directory.
    // SAFETY: fchmod on a socket we own.
    if unsafe { libc::fchmod(sock.as_raw_fd(), mode) } != 0 {
        return Err(io::Error::last_os_error());
    }
    sock.bind(&SockAddr::unix(&tmp)?)?;
    // Exactly `mode`, whatever the umask took away.
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    sock.listen(128)?;
    refuse_non_socket(path)?;
    std::fs::rename(&tmp, path)?;
    Ok(sock)
}

fn refuse_non_socket(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => Ok(()),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; not replacing it",
                path.display()
            ),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// A 0700 directory, removed (with what is left in it) when dropped.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn create(parent: &Path, beside: &Path) -> io::Result<Self> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = beside.file_name().unwrap_or_default().to_string_lossy();
        let dir = parent.join(format!(
            ".{name}.{}.{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        // mkdir(0700): the umask can only narrow it.
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(PrivateDir(dir))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0.join("s"));
        let _ = std::fs::remove_dir(&self.0);
    }
}
