//! Sockets inside a pod's network namespace, and the original destination of
//! a redirected connection.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use quicmesh_core::netns::NetnsWorker;
use tokio::net::{TcpListener, TcpStream};

use crate::ports::ZTUNNEL_MARK;

fn netns_err(e: quicmesh_core::netns::NetnsError) -> std::io::Error {
    std::io::Error::other(e)
}

/// Connects to `addr` from inside the pod's namespace with ztunnel's mark, so
/// the pod's redirection rules let the connection pass.
pub async fn connect_marked(worker: &NetnsWorker, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let std_stream = worker
        .run(move || -> std::io::Result<std::net::TcpStream> {
            let s = socket2::Socket::new(
                socket2::Domain::for_address(addr),
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )?;
            s.set_mark(ZTUNNEL_MARK)?;
            s.set_nonblocking(true)?;
            s.set_tcp_nodelay(true)?;
            Ok(s.into())
        })
        .await
        .map_err(netns_err)??;
    tokio::net::TcpSocket::from_std_stream(std_stream)
        .connect(addr)
        .await
}

/// A TCP listener bound inside the pod's namespace.
pub async fn listen(worker: &NetnsWorker, addr: SocketAddr) -> std::io::Result<TcpListener> {
    let std_listener = worker
        .run(move || -> std::io::Result<std::net::TcpListener> {
            let s = socket2::Socket::new(
                socket2::Domain::for_address(addr),
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )?;
            s.set_reuse_address(true)?;
            s.set_nonblocking(true)?;
            s.bind(&addr.into())?;
            s.listen(1024)?;
            Ok(s.into())
        })
        .await
        .map_err(netns_err)??;
    TcpListener::from_std(std_listener)
}

/// The destination the app asked for before the redirect (SO_ORIGINAL_DST).
pub fn original_dst(stream: &TcpStream) -> std::io::Result<SocketAddr> {
    let fd = stream.as_raw_fd();
    match stream.local_addr()? {
        SocketAddr::V4(_) => {
            // SAFETY: zeroed sockaddr_in is valid; getsockopt writes at most `len` bytes.
            let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            // SAFETY: fd is a live socket; pointers are to locals of the right size.
            let rc = unsafe {
                libc::getsockopt(
                    fd,
                    libc::SOL_IP,
                    libc::SO_ORIGINAL_DST,
                    &mut addr as *mut _ as *mut libc::c_void,
                    &mut len,
                )
            };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
                u16::from_be(addr.sin_port),
            )))
        }
        SocketAddr::V6(_) => {
            // SAFETY: as above, for sockaddr_in6.
            let mut addr: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            // SAFETY: fd is a live socket; pointers are to locals of the right size.
            let rc = unsafe {
                libc::getsockopt(
                    fd,
                    libc::SOL_IPV6,
                    libc::IP6T_SO_ORIGINAL_DST,
                    &mut addr as *mut _ as *mut libc::c_void,
                    &mut len,
                )
            };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(addr.sin6_addr.s6_addr),
                u16::from_be(addr.sin6_port),
                0,
                0,
            )))
        }
    }
}

/// Makes closing `stream` send a RST: how a failed tunnel is reported to the app.
pub fn reset_on_close(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(std::time::Duration::ZERO));
}
