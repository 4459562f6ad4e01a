//! A client's UDP socket to one upstream server, with kernel receive
//! timestamps (T4 as the kernel saw the reply arrive, not when the task
//! got round to it).

use crate::clock::now;
use nix::sys::socket::{self, sockopt, ControlMessageOwned, MsgFlags};
use skytime_proto::NtpTimestamp;
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Largest reply read: NTS replies with eight cookies fit easily.
pub const MAX_REPLY: usize = 2048;

/// A connected socket: only the server's datagrams arrive.
#[derive(Debug)]
pub struct ClientSocket {
    socket: UdpSocket,
    server: SocketAddr,
}

impl ClientSocket {
    /// Binds an ephemeral port of the server's family and connects it.
    pub fn connect(server: SocketAddr) -> io::Result<Self> {
        let domain = if server.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let sock = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        sock.set_nonblocking(true)?;
        let any: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        sock.bind(&any.into())?;
        sock.connect(&server.into())?;
        socket::setsockopt(&sock, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from)?;
        let std_sock: std::net::UdpSocket = sock.into();
        Ok(Self {
            socket: UdpSocket::from_std(std_sock)?,
            server,
        })
    }

    pub fn server(&self) -> SocketAddr {
        self.server
    }

    pub async fn send(&self, data: &[u8]) -> io::Result<()> {
        self.socket.send(data).await.map(|_| ())
    }

    /// Waits for a datagram; returns its length and arrival time (the
    /// kernel's timestamp, or the clock right after reading).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, NtpTimestamp)> {
        loop {
            self.socket.readable().await?;
            match self.socket.try_io(Interest::READABLE, || {
                let mut iov = [IoSliceMut::new(buf)];
                let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
                let msg = socket::recvmsg::<()>(
                    self.socket.as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::MSG_DONTWAIT,
                )
                .map_err(io::Error::from)?;
                let mut at = None;
                for c in msg.cmsgs().map_err(io::Error::from)? {
                    if let ControlMessageOwned::ScmTimestampns(ts) = c {
                        at = Some(NtpTimestamp::from_unix(ts.tv_sec(), ts.tv_nsec() as u32));
                    }
                }
                Ok((msg.bytes, at))
            }) {
                Ok((n, at)) => return Ok((n, at.unwrap_or_else(now))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replies_arrive_with_kernel_timestamps() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let c = ClientSocket::connect(server.local_addr().unwrap()).unwrap();
        c.send(b"ping").await.unwrap();
        let mut b = [0u8; 16];
        let (n, from) = server.recv_from(&mut b).unwrap();
        assert_eq!(&b[..n], b"ping");
        let before = now();
        server.send_to(b"pong", from).unwrap();
        let mut buf = [0u8; MAX_REPLY];
        let (n, at) = c.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"pong");
        assert!(at >= before && at <= now());
    }
}
