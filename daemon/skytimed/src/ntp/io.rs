//! UDP sockets for the NTP server, with kernel receive timestamps.
//!
//! Each datagram is read with `recvmsg` so that the kernel's arrival
//! timestamp (`SO_TIMESTAMPNS`) and the local address it was sent to
//! (`IP_PKTINFO` / `IPV6_RECVPKTINFO`) come with it. The reply goes out with
//! that same local address as its source, so a server bound to a wildcard
//! address on a multi-homed host answers from the address the client asked.

use crate::clock::now;
use nix::sys::socket::{self, sockopt, ControlMessage, MsgFlags, SockaddrStorage};
use skytime_proto::NtpTimestamp;
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Receive buffer size: larger than any NTP request we answer (NTS
/// requests with several cookies stay well below 1 KiB), small enough that
/// an oversized datagram is cut and then refused by the parsers.
pub const RECV_BUFFER: usize = 2048;

/// A bound NTP server socket.
#[derive(Debug)]
pub struct NtpSocket {
    socket: UdpSocket,
    local: SocketAddr,
}

/// One received datagram and how it arrived.
#[derive(Clone, Copy, Debug)]
pub struct Received {
    pub len: usize,
    pub remote: SocketAddr,
    /// Arrival time: the kernel's timestamp, or a clock read right after
    /// `recvmsg` where the kernel gave none.
    pub timestamp: NtpTimestamp,
    /// Whether `timestamp` came from the kernel.
    pub kernel_timestamp: bool,
    /// The local address the datagram was sent to, when known.
    pub local_ip: Option<IpAddr>,
}

impl NtpSocket {
    /// Binds `addr` with timestamping and packet-info options. IPv6
    /// sockets are IPv6-only so that `0.0.0.0:123` and `[::]:123` can both be
    /// bound. Must be called inside a tokio runtime.
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let domain = if addr.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let sock = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            sock.set_only_v6(true)?;
        }
        sock.set_nonblocking(true)?;
        // Bursts of requests must not be dropped by a small default buffer.
        let _ = sock.set_recv_buffer_size(1 << 20);
        sock.bind(&addr.into())?;
        socket::setsockopt(&sock, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from)?;
        if addr.is_ipv4() {
            socket::setsockopt(&sock, sockopt::Ipv4PacketInfo, &true).map_err(io::Error::from)?;
        } else {
            socket::setsockopt(&sock, sockopt::Ipv6RecvPacketInfo, &true)
                .map_err(io::Error::from)?;
        }
        let std_sock: std::net::UdpSocket = sock.into();
        let local = std_sock.local_addr()?;
        Ok(Self {
            socket: UdpSocket::from_std(std_sock)?,
            local,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Waits until a datagram may be waiting.
    pub async fn readable(&self) -> io::Result<()> {
        self.socket.readable().await
    }

    /// Reads up to `batch.capacity()` queued datagrams with one `recvmmsg`
    /// call; `WouldBlock` when none is queued. Read them with
    /// [`RecvBatch::get`] for indices below the returned count.
    pub fn try_recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        self.socket
            .try_io(Interest::READABLE, || batch.recv(self.socket.as_raw_fd()))
    }

    /// Sends `data` to `remote`, from `local_ip` when given. Sending does
    /// not wait: a full socket buffer drops the reply (UDP semantics) and
    /// reports the error.
    pub fn send(
        &self,
        data: &[u8],
        remote: SocketAddr,
        local_ip: Option<IpAddr>,
    ) -> io::Result<()> {
        let fd = self.socket.as_raw_fd();
        let iov = [IoSlice::new(data)];
        let dest = SockaddrStorage::from(remote);
        let sent = match (local_ip, remote) {
            (Some(IpAddr::V4(src)), SocketAddr::V4(_)) => {
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(src).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                socket::sendmsg(
                    fd,
                    &iov,
                    &[ControlMessage::Ipv4PacketInfo(&info)],
                    MsgFlags::MSG_DONTWAIT,
                    Some(&dest),
                )
            }
            (Some(IpAddr::V6(src)), SocketAddr::V6(_)) => {
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: src.octets(),
                    },
                    ipi6_ifindex: 0,
                };
                socket::sendmsg(
                    fd,
                    &iov,
                    &[ControlMessage::Ipv6PacketInfo(&info)],
                    MsgFlags::MSG_DONTWAIT,
                    Some(&dest),
                )
            }
            _ => socket::sendmsg::<SockaddrStorage>(
                fd,
                &iov,
                &[],
                MsgFlags::MSG_DONTWAIT,
                Some(&dest),
            ),
        };
        sent.map(|_| ()).map_err(io::Error::from)
    }
}

/// Datagrams per `recvmmsg` call. A burst larger than this is read in
/// several calls; a lone datagram costs the same as with `recvmsg`.
pub const BATCH: usize = 16;

/// Room for the control messages we ask for: a timespec and the larger
/// of the two packet-info structures, each with its header and padding.
const CMSG_ROOM: usize = 128;

/// Buffers for one `recvmmsg` call, reused from call to call.
pub struct RecvBatch {
    bufs: Box<[[u8; RECV_BUFFER]; BATCH]>,
    addrs: [libc::sockaddr_storage; BATCH],
    cmsgs: Box<[[u64; CMSG_ROOM / 8]; BATCH]>,
    iovs: [libc::iovec; BATCH],
    hdrs: [libc::mmsghdr; BATCH],
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecvBatch")
    }
}

// SAFETY: the raw pointers in `iovs` and `hdrs` only ever point into
// buffers owned by the same value; they are rewritten before every
// `recvmmsg`, and `get` rebuilds the one it follows, so moving the value to
// another thread (or anywhere) cannot leave a stale pointer in use.
unsafe impl Send for RecvBatch {}

impl Default for RecvBatch {
    fn default() -> Self {
        // SAFETY: these libc structs are plain old data for which all-zero
        // bytes are a valid value.
        unsafe {
            Self {
                bufs: Box::new([[0; RECV_BUFFER]; BATCH]),
                addrs: std::mem::zeroed(),
                cmsgs: Box::new([[0; CMSG_ROOM / 8]; BATCH]),
                iovs: std::mem::zeroed(),
                hdrs: std::mem::zeroed(),
            }
        }
    }
}

impl RecvBatch {
    pub fn capacity(&self) -> usize {
        BATCH
    }

    fn recv(&mut self, fd: std::os::fd::RawFd) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: RECV_BUFFER,
            };
            let hdr = &mut self.hdrs[i].msg_hdr;
            hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &mut self.iovs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = self.cmsgs[i].as_mut_ptr().cast();
            hdr.msg_controllen = CMSG_ROOM as _;
            hdr.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: every header points into buffers owned by `self` that
        // outlive the call, with the lengths given; the kernel writes at
        // most that much into each.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                // c_int on glibc, c_uint on musl (the static aarch64 image build).
                libc::MSG_DONTWAIT as _,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// The `i`th datagram of the last call: its bytes and how it arrived,
    /// or `None` if its source address is not IP.
    pub fn get(&self, i: usize) -> Option<(&[u8], Received)> {
        let hdr = &self.hdrs[i];
        let len = (hdr.msg_len as usize).min(RECV_BUFFER);
        let remote = sockaddr_to_socketaddr(&self.addrs[i], hdr.msg_hdr.msg_namelen)?;
        // Walk the control messages through a header that points at this
        // value's own buffer, wherever the value now lives.
        let mut control = hdr.msg_hdr;
        control.msg_control = self.cmsgs[i].as_ptr() as *mut libc::c_void;
        let hdr = &control;
        let mut timestamp = None;
        let mut local_ip = None;
        // SAFETY: msg_control/msg_controllen were set by the kernel for this
        // message; CMSG_FIRSTHDR/NXTHDR stay within that range and every
        // payload read is bounded by the cmsg's own length.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(hdr);
            while !c.is_null() {
                let data = libc::CMSG_DATA(c);
                let payload = (*c).cmsg_len as usize - (data as usize - c as usize);
                match ((*c).cmsg_level, (*c).cmsg_type) {
                    (libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS)
                        if payload >= std::mem::size_of::<libc::timespec>() =>
                    {
                        let ts: libc::timespec = std::ptr::read_unaligned(data.cast());
                        timestamp = Some(NtpTimestamp::from_unix(ts.tv_sec, ts.tv_nsec as u32));
                    }
                    (libc::IPPROTO_IP, libc::IP_PKTINFO)
                        if payload >= std::mem::size_of::<libc::in_pktinfo>() =>
                    {
                        let info: libc::in_pktinfo = std::ptr::read_unaligned(data.cast());
                        local_ip = Some(IpAddr::V4(u32::from_be(info.ipi_addr.s_addr).into()));
                    }
                    (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO)
                        if payload >= std::mem::size_of::<libc::in6_pktinfo>() =>
                    {
                        let info: libc::in6_pktinfo = std::ptr::read_unaligned(data.cast());
                        local_ip = Some(IpAddr::V6(info.ipi6_addr.s6_addr.into()));
                    }
                    _ => {}
                }
                c = libc::CMSG_NXTHDR(hdr, c);
            }
        }
        let kernel_timestamp = timestamp.is_some();
        let received = Received {
            len,
            remote,
            timestamp: timestamp.unwrap_or_else(now),
            kernel_timestamp,
            local_ip,
        };
        Some((&self.bufs[i][..len], received))
    }
}

fn sockaddr_to_socketaddr(ss: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET if len as usize >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a: libc::sockaddr_in =
                unsafe { std::ptr::read_unaligned((ss as *const libc::sockaddr_storage).cast()) };
            Some(SocketAddr::from((
                u32::from_be(a.sin_addr.s_addr).to_be_bytes(),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a: libc::sockaddr_in6 =
                unsafe { std::ptr::read_unaligned((ss as *const libc::sockaddr_storage).cast()) };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn kernel_timestamps_and_local_address_arrive_with_datagrams() {
        let server = NtpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = now();
        client.send_to(b"hello", server.local_addr()).unwrap();
        let mut batch = RecvBatch::default();
        let n = recv_some(&server, &mut batch).await;
        assert_eq!(n, 1);
        let (data, got) = batch.get(0).unwrap();
        let after = now();
        assert_eq!(data, b"hello");
        assert_eq!(got.remote, client.local_addr().unwrap());
        assert!(got.kernel_timestamp, "loopback must give SO_TIMESTAMPNS");
        assert!(
            got.timestamp >= before && got.timestamp <= after,
            "timestamp taken on arrival"
        );
        assert_eq!(got.local_ip, Some("127.0.0.1".parse().unwrap()));
        server.send(b"reply", got.remote, got.local_ip).unwrap();
        let mut rbuf = [0u8; 16];
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let (n, from) = client.recv_from(&mut rbuf).unwrap();
        assert_eq!(&rbuf[..n], b"reply");
        assert_eq!(from, server.local_addr());
    }

    async fn recv_some(server: &NtpSocket, batch: &mut RecvBatch) -> usize {
        loop {
            server.readable().await.unwrap();
            match server.try_recv_batch(batch) {
                Ok(n) => return n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[tokio::test]
    async fn a_burst_is_read_in_batches_with_per_datagram_metadata() {
        let server = NtpSocket::bind("[::1]:0".parse().unwrap());
        let Ok(server) = server else {
            return assert!(
                std::net::UdpSocket::bind("[::1]:0").is_err(),
                "IPv6 loopback exists but bind failed"
            );
        };
        let clients: Vec<_> = (0..BATCH + 4)
            .map(|_| std::net::UdpSocket::bind("[::1]:0").unwrap())
            .collect();
        for (i, c) in clients.iter().enumerate() {
            c.send_to(&[i as u8; 3], server.local_addr()).unwrap();
        }
        let mut batch = RecvBatch::default();
        let mut seen = Vec::new();
        while seen.len() < clients.len() {
            let n = recv_some(&server, &mut batch).await;
            assert!(n <= BATCH);
            for i in 0..n {
                let (data, rx) = batch.get(i).unwrap();
                assert_eq!(data.len(), 3);
                assert_eq!(
                    rx.remote,
                    clients[data[0] as usize].local_addr().unwrap(),
                    "address matches the sender"
                );
                assert!(rx.kernel_timestamp);
                assert_eq!(rx.local_ip, Some("::1".parse().unwrap()));
                seen.push(data[0]);
            }
        }
        seen.sort();
        assert_eq!(seen, (0..clients.len() as u8).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn ipv6_and_ipv4_wildcards_bind_side_by_side() {
        let v4 = NtpSocket::bind("0.0.0.0:0".parse().unwrap()).unwrap();
        let port = v4.local_addr().port();
        // Without IPV6_V6ONLY this bind would fail with EADDRINUSE.
        let v6 = NtpSocket::bind(SocketAddr::new("::".parse().unwrap(), port));
        if let Ok(v6) = v6 {
            assert_eq!(v6.local_addr().port(), port);
        } else {
            // Hosts without IPv6 cannot open the socket at all.
            assert!(std::net::UdpSocket::bind("[::1]:0").is_err());
        }
    }
}
