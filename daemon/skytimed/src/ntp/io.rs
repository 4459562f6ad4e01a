//! UDP sockets for the NTP server: kernel receive timestamps, the local
//! address each request was sent to, batches in and out, and kernel
//! transmit timestamps on request.
//!
//! - One address is served by several sockets bound with `SO_REUSEPORT`,
//!   one per server thread, and a classic BPF program steers every
//!   datagram by its source address, so a client always reaches the same
//!   thread (its client-table entry, rate limit and interleaved-mode
//!   state live there, unshared).
//! - `recvmmsg` reads a batch in one blocking call (`MSG_WAITFORONE`: it
//!   waits for the first datagram and takes whatever else is queued), with
//!   the kernel's arrival timestamp (`SO_TIMESTAMPING`, software) and, on
//!   a socket bound to a wildcard address, the local address
//!   (`IP_PKTINFO` / `IPV6_RECVPKTINFO`) of each; a receive timeout makes
//!   the thread look up at least twice a second.
//! - `sendmmsg` sends a batch of replies, each from the address its
//!   request was sent to (a server bound to a wildcard address on a
//!   multi-homed host answers from the address the client asked; one bound
//!   to an address can only answer from it, and pays for neither), and
//!   asks the kernel, for the replies that want it, for the time they
//!   really left (`SOF_TIMESTAMPING_TX_SOFTWARE` per message, read back
//!   from the error queue with its `SOF_TIMESTAMPING_OPT_ID` number).
//!
//! All buffers belong to a [`Batch`], made once per thread: no allocation
//! per datagram.

use skytime_proto::NtpTimestamp;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

/// Receive buffer size: larger than any NTP request we answer (NTS
/// requests with several cookies stay well below 1 KiB), small enough that
/// an oversized datagram is cut and then refused by the parsers.
pub const RECV_BUFFER: usize = 2048;

/// Datagrams per `recvmmsg` (and replies per `sendmmsg`). A burst larger
/// than this is read in several calls; a lone datagram costs the same as
/// with `recvmsg`.
pub const BATCH: usize = 16;

/// How long a blocking receive waits before the thread looks up (beats
/// the watchdog, notices shutdown).
pub const RECV_TIMEOUT: Duration = Duration::from_millis(500);

// Linux ABI values the libc crate does not export for every target.
const SO_TIMESTAMPING: libc::c_int = 37;
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;
const SOF_TX_SOFTWARE: u32 = 1 << 1;
const SOF_RX_SOFTWARE: u32 = 1 << 3;
const SOF_SOFTWARE: u32 = 1 << 4;
const SOF_OPT_ID: u32 = 1 << 7;
const SOF_OPT_TSONLY: u32 = 1 << 11;
const SO_EE_ORIGIN_TIMESTAMPING: u8 = 4;

/// Room for the control messages of one datagram: the timestamps (three
/// timespecs), the larger packet-info structure or an extended error,
/// each with its header and padding.
const CMSG_ROOM: usize = 160;

/// A bound NTP server socket (one thread's share of an address).
#[derive(Debug)]
pub struct NtpSocket {
    socket: Socket,
    local: SocketAddr,
}

/// Binds `addr` with `count` sockets, one per thread (at least one), with
/// timestamping and packet-info options. IPv6 sockets are IPv6-only so
/// that `0.0.0.0:123` and `[::]:123` can both be bound.
///
/// The address is first bound alone, without `SO_REUSEPORT`, so that a
/// port another program holds is still a clear start-up error, and port 0
/// is resolved to one port for every socket. If the kernel refuses the
/// steering program, the address gets one socket: correctness (one client,
/// one thread) before spreading load.
pub fn bind_group(addr: SocketAddr, count: usize) -> io::Result<Vec<NtpSocket>> {
    let probe = new_socket(addr)?;
    probe.bind(&addr.into())?;
    let local = probe
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("bound address is not IP"))?;
    if count <= 1 {
        return Ok(vec![NtpSocket::configure(probe, local)?]);
    }
    drop(probe);
    let mut sockets = Vec::with_capacity(count);
    for i in 0..count {
        let s = new_socket(local)?;
        s.set_reuse_port(true)?;
        s.bind(&local.into())?;
        if i == 0 {
            if let Err(e) = attach_steering(&s, local.is_ipv4(), count as u32) {
                tracing::warn!(address = %local, "cannot steer clients to threads ({e}); serving this address from one thread");
                return Ok(vec![NtpSocket::configure(s, local)?]);
            }
        }
        sockets.push(NtpSocket::configure(s, local)?);
    }
    Ok(sockets)
}

fn new_socket(addr: SocketAddr) -> io::Result<Socket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    Ok(sock)
}

/// The classic BPF program that picks the socket of a group: a hash of
/// the source address (IPv4, or the four words of IPv6) modulo `count`.
fn steering_program(ipv4: bool, count: u32) -> Vec<libc::sock_filter> {
    let op = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    // Loads address bytes relative to the network header.
    let net = |offset: i32| (libc::SKF_NET_OFF + offset) as u32;
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let xor_x = libc::BPF_ALU | libc::BPF_XOR | libc::BPF_X;
    let tax = libc::BPF_MISC | libc::BPF_TAX;
    let mut prog = if ipv4 {
        vec![op(load, net(12))]
    } else {
        vec![
            op(load, net(8)),
            op(tax, 0),
            op(load, net(12)),
            op(xor_x, 0),
            op(tax, 0),
            op(load, net(16)),
            op(xor_x, 0),
            op(tax, 0),
            op(load, net(20)),
            op(xor_x, 0),
        ]
    };
    prog.extend([
        op(libc::BPF_ALU | libc::BPF_MUL | libc::BPF_K, 0x9e37_79b1),
        op(libc::BPF_ALU | libc::BPF_RSH | libc::BPF_K, 16),
        op(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, count),
        op(libc::BPF_RET | libc::BPF_A, 0),
    ]);
    prog
}

fn attach_steering(sock: &Socket, ipv4: bool, count: u32) -> io::Result<()> {
    let prog = steering_program(ipv4, count);
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    setsockopt(
        sock.as_raw_fd(),
        libc::SOL_SOCKET,
        SO_ATTACH_REUSEPORT_CBPF,
        &fprog,
    )
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    setsockopt(fd, level, name, &value)
}

/// `setsockopt` with a value of plain data (an int, a `sock_fprog`, whose
/// program the kernel copies during the call).
fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a valid T for the duration of the call, and its
    // size is the length given.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl NtpSocket {
    fn configure(sock: Socket, local: SocketAddr) -> io::Result<Self> {
        // Bursts of requests must not be dropped by a small default buffer.
        let _ = sock.set_recv_buffer_size(1 << 20);
        sock.set_read_timeout(Some(RECV_TIMEOUT))?;
        let fd = sock.as_raw_fd();
        let flags = SOF_RX_SOFTWARE | SOF_SOFTWARE | SOF_OPT_ID | SOF_OPT_TSONLY;
        setsockopt_int(fd, libc::SOL_SOCKET, SO_TIMESTAMPING, flags as libc::c_int)?;
        // The local address of each request only matters on a wildcard
        // socket: the reply must leave from the address the client asked.
        match local.ip() {
            ip if !ip.is_unspecified() => {}
            IpAddr::V4(_) => setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?,
            IpAddr::V6(_) => setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?,
        }
        Ok(Self {
            socket: sock,
            local,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// One received datagram's metadata.
#[derive(Clone, Copy, Debug)]
pub struct Received {
    pub len: usize,
    pub remote: SocketAddr,
    /// The kernel's arrival timestamp, if it gave one.
    pub timestamp: Option<NtpTimestamp>,
    /// The local address the datagram was sent to, when the socket is
    /// bound to a wildcard address (else it is the bound one).
    pub local_ip: Option<IpAddr>,
}

/// A kernel transmit timestamp read back from the error queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxTimestamp {
    /// The number the kernel gave the send (counting, per socket, the
    /// replies sent with a timestamp request, from 0).
    pub id: u32,
    pub timestamp: NtpTimestamp,
}

/// The buffers of one thread: a receive batch, the replies being built
/// and the send batch, reused from call to call.
pub struct Batch {
    bufs: Box<[[u8; RECV_BUFFER]; BATCH]>,
    /// Replies, built in place by the server decision.
    out: Box<[[u8; RECV_BUFFER]; BATCH]>,
    addrs: Box<[libc::sockaddr_storage; BATCH]>,
    cmsgs: Box<[[u64; CMSG_ROOM / 8]; BATCH]>,
    iovs: Box<[libc::iovec; BATCH]>,
    hdrs: Box<[libc::mmsghdr; BATCH]>,
    /// Replies queued for the next send: (slot in `out`, length,
    /// destination, source address, want a transmit timestamp).
    queued: Vec<(usize, usize, SocketAddr, Option<IpAddr>, bool)>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Batch")
    }
}

// SAFETY: the raw pointers in `iovs` and `hdrs` only ever point into
// buffers owned by the same value (boxed, so they do not move with it);
// they are rewritten before every system call.
unsafe impl Send for Batch {}

impl Default for Batch {
    fn default() -> Self {
        // SAFETY: these libc structs are plain old data for which all-zero
        // bytes are a valid value.
        unsafe {
            Self {
                bufs: Box::new([[0; RECV_BUFFER]; BATCH]),
                out: Box::new([[0; RECV_BUFFER]; BATCH]),
                addrs: Box::new(zeroed()),
                cmsgs: Box::new([[0; CMSG_ROOM / 8]; BATCH]),
                iovs: Box::new(zeroed()),
                hdrs: Box::new(zeroed()),
                queued: Vec::with_capacity(BATCH),
            }
        }
    }
}

impl Batch {
    fn prepare_recv(&mut self) {
        for i in 0..BATCH {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: RECV_BUFFER,
            };
            let hdr = &mut self.hdrs[i].msg_hdr;
            hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &mut self.iovs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = self.cmsgs[i].as_mut_ptr().cast();
            hdr.msg_controllen = CMSG_ROOM as _;
            hdr.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
    }

    /// Waits (at most [`RECV_TIMEOUT`]) for datagrams on `socket` and
    /// reads up to [`BATCH`] of them; `WouldBlock` or `TimedOut` when none
    /// came. Read them with [`Batch::datagram`].
    pub fn recv(&mut self, socket: &NtpSocket) -> io::Result<usize> {
        self.recvmmsg(socket, libc::MSG_WAITFORONE)
    }

    /// One `recvmmsg` into this batch's buffers.
    fn recvmmsg(&mut self, socket: &NtpSocket, flags: libc::c_int) -> io::Result<usize> {
        self.prepare_recv();
        // SAFETY: every header points into buffers owned by `self` that
        // outlive the call, with the lengths given; the kernel writes at
        // most that much into each.
        let n = unsafe {
            libc::recvmmsg(
                socket.fd(),
                self.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                // c_int on glibc, c_uint on musl (the static aarch64 image build).
                flags as _,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// The `i`th datagram of the last [`recv`](Self::recv): its bytes, how
    /// it arrived, and the reply buffer of the same slot. `None` if its
    /// source address is not IP.
    pub fn datagram(&mut self, i: usize) -> Option<(&[u8], Received, &mut [u8])> {
        let hdr = &self.hdrs[i];
        let len = (hdr.msg_len as usize).min(RECV_BUFFER);
        let remote = sockaddr_to_socketaddr(&self.addrs[i], hdr.msg_hdr.msg_namelen)?;
        let mut timestamp = None;
        let mut local_ip = None;
        for (level, kind, data) in control_messages(&hdr.msg_hdr) {
            match (level, kind) {
                (libc::SOL_SOCKET, SO_TIMESTAMPING) => timestamp = software_timestamp(data),
                (libc::IPPROTO_IP, libc::IP_PKTINFO)
                    if data.len() >= size_of::<libc::in_pktinfo>() =>
                {
                    // SAFETY: the kernel wrote an in_pktinfo here (length checked).
                    let info: libc::in_pktinfo =
                        unsafe { std::ptr::read_unaligned(data.as_ptr().cast()) };
                    local_ip = Some(IpAddr::V4(u32::from_be(info.ipi_addr.s_addr).into()));
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO)
                    if data.len() >= size_of::<libc::in6_pktinfo>() =>
                {
                    // SAFETY: the kernel wrote an in6_pktinfo here (length checked).
                    let info: libc::in6_pktinfo =
                        unsafe { std::ptr::read_unaligned(data.as_ptr().cast()) };
                    local_ip = Some(IpAddr::V6(info.ipi6_addr.s6_addr.into()));
                }
                _ => {}
            }
        }
        let received = Received {
            len,
            remote,
            timestamp,
            local_ip,
        };
        Some((&self.bufs[i][..len], received, &mut self.out[i][..]))
    }

    /// The reply buffer of slot `i` (the one [`Batch::datagram`] gave).
    pub fn reply_buffer(&mut self, i: usize) -> &mut [u8] {
        &mut self.out[i][..]
    }

    /// Queues the reply in slot `i` (its first `len` bytes) for the next
    /// [`send`](Self::send).
    pub fn queue(
        &mut self,
        i: usize,
        len: usize,
        to: SocketAddr,
        from: Option<IpAddr>,
        want_timestamp: bool,
    ) {
        self.queued.push((i, len, to, from, want_timestamp));
    }

    /// Sends the queued replies with one `sendmmsg` (more if the kernel
    /// takes fewer at once). Returns how many left and how many failed;
    /// the slots of those that left asking for a transmit timestamp are
    /// appended to `ticket_order` in the order they left, which is the
    /// order of the kernel's numbers for them.
    pub fn send(&mut self, socket: &NtpSocket, ticket_order: &mut Vec<usize>) -> (usize, usize) {
        let n = self.queued.len();
        for (j, &(slot, len, to, from, want_ts)) in self.queued.iter().enumerate() {
            let addr_len = socketaddr_to_sockaddr(to, &mut self.addrs[j]);
            self.iovs[j] = libc::iovec {
                iov_base: self.out[slot].as_mut_ptr().cast(),
                iov_len: len,
            };
            let control_len = write_send_control(&mut self.cmsgs[j], from, to, want_ts);
            let hdr = &mut self.hdrs[j].msg_hdr;
            hdr.msg_name = (&mut self.addrs[j] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = addr_len;
            hdr.msg_iov = &mut self.iovs[j];
            hdr.msg_iovlen = 1;
            hdr.msg_control = if control_len == 0 {
                std::ptr::null_mut()
            } else {
                self.cmsgs[j].as_mut_ptr().cast()
            };
            hdr.msg_controllen = control_len as _;
            hdr.msg_flags = 0;
        }
        let (mut sent, mut failed) = (0, 0);
        while sent + failed < n {
            let at = sent + failed;
            // SAFETY: headers at..n point into buffers owned by `self`,
            // set up above with their lengths.
            let r = unsafe {
                libc::sendmmsg(
                    socket.fd(),
                    self.hdrs[at..].as_mut_ptr(),
                    (n - at) as libc::c_uint,
                    libc::MSG_DONTWAIT as _,
                )
            };
            if r <= 0 {
                // The first message of the rest failed (full buffer,
                // unreachable): count it and go on with the next.
                tracing::debug!(
                    to = %self.queued[at].2,
                    "send failed: {}",
                    io::Error::last_os_error()
                );
                failed += 1;
                continue;
            }
            for &(slot, _, _, _, want_ts) in &self.queued[at..at + r as usize] {
                if want_ts {
                    ticket_order.push(slot);
                }
            }
            sent += r as usize;
        }
        self.queued.clear();
        (sent, failed)
    }

    /// Reads transmit timestamps from the socket's error queue without
    /// waiting, calling `f` for each; returns how many were read.
    pub fn read_tx_timestamps(
        &mut self,
        socket: &NtpSocket,
        mut f: impl FnMut(TxTimestamp),
    ) -> usize {
        let mut total = 0;
        loop {
            let n = match self.recvmmsg(socket, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) {
                Ok(n) if n > 0 => n,
                _ => return total,
            };
            for i in 0..n {
                let mut timestamp = None;
                let mut id = None;
                for (level, kind, data) in control_messages(&self.hdrs[i].msg_hdr) {
                    match (level, kind) {
                        (libc::SOL_SOCKET, SO_TIMESTAMPING) => timestamp = software_timestamp(data),
                        (libc::IPPROTO_IP, libc::IP_RECVERR)
                        | (libc::IPPROTO_IPV6, libc::IPV6_RECVERR)
                            if data.len() >= size_of::<libc::sock_extended_err>() =>
                        {
                            // SAFETY: the kernel wrote a sock_extended_err here (length checked).
                            let e: libc::sock_extended_err =
                                unsafe { std::ptr::read_unaligned(data.as_ptr().cast()) };
                            if e.ee_errno == libc::ENOMSG as u32
                                && e.ee_origin == SO_EE_ORIGIN_TIMESTAMPING
                            {
                                id = Some(e.ee_data);
                            }
                        }
                        _ => {}
                    }
                }
                if let (Some(id), Some(timestamp)) = (id, timestamp) {
                    f(TxTimestamp { id, timestamp });
                    total += 1;
                }
            }
            if n < BATCH {
                return total;
            }
        }
    }
}

/// `msg_controllen`: a `usize` on glibc, a `socklen_t` on musl (the
/// static aarch64 image build).
#[allow(clippy::unnecessary_cast)]
fn control_len(hdr: &libc::msghdr) -> usize {
    hdr.msg_controllen as usize
}

/// The control messages of a received message: (level, type, payload).
fn control_messages(hdr: &libc::msghdr) -> impl Iterator<Item = (libc::c_int, libc::c_int, &[u8])> {
    let mut next = if control_len(hdr) >= size_of::<libc::cmsghdr>() {
        // SAFETY: the header's control buffer was set by the kernel for
        // this message; CMSG_FIRSTHDR stays within it.
        unsafe { libc::CMSG_FIRSTHDR(hdr) }
    } else {
        std::ptr::null_mut()
    };
    std::iter::from_fn(move || {
        if next.is_null() {
            return None;
        }
        let c = next;
        // SAFETY: `c` is a control message header inside the buffer;
        // CMSG_DATA and CMSG_NXTHDR stay within msg_controllen, and the
        // payload length comes from the header the kernel wrote, bounded
        // by the buffer's end.
        unsafe {
            let data = libc::CMSG_DATA(c);
            let end = (hdr.msg_control as *const u8).add(control_len(hdr));
            let len = ((*c).cmsg_len as usize)
                .saturating_sub(data as usize - c as usize)
                .min(end as usize - data as usize);
            next = libc::CMSG_NXTHDR(hdr, c);
            Some((
                (*c).cmsg_level,
                (*c).cmsg_type,
                std::slice::from_raw_parts(data, len),
            ))
        }
    })
}

/// The software timestamp of an `SCM_TIMESTAMPING` payload (three
/// timespecs; the first is software), if set.
fn software_timestamp(data: &[u8]) -> Option<NtpTimestamp> {
    if data.len() < size_of::<libc::timespec>() {
        return None;
    }
    // SAFETY: the payload holds at least one timespec (length checked).
    let ts: libc::timespec = unsafe { std::ptr::read_unaligned(data.as_ptr().cast()) };
    (ts.tv_sec != 0 || ts.tv_nsec != 0)
        .then(|| NtpTimestamp::from_unix(ts.tv_sec, ts.tv_nsec as u32))
}

/// Writes the control messages of one reply into `buf`: its source
/// address and, if wanted, the transmit timestamp request. Returns their
/// total length.
fn write_send_control(
    buf: &mut [u64; CMSG_ROOM / 8],
    from: Option<IpAddr>,
    to: SocketAddr,
    want_timestamp: bool,
) -> usize {
    let base = buf.as_mut_ptr().cast::<u8>();
    let mut at = 0usize;
    let mut put = |level: libc::c_int, kind: libc::c_int, payload: &[u8]| {
        // SAFETY: CMSG_SPACE of the largest payload written here (an
        // in6_pktinfo plus a u32) fits CMSG_ROOM; the header and payload
        // are written inside the buffer, which is 8-byte aligned.
        unsafe {
            let space = libc::CMSG_SPACE(payload.len() as u32) as usize;
            std::ptr::write_bytes(base.add(at), 0, space);
            let c = base.add(at).cast::<libc::cmsghdr>();
            (*c).cmsg_level = level;
            (*c).cmsg_type = kind;
            (*c).cmsg_len = libc::CMSG_LEN(payload.len() as u32) as _;
            std::ptr::copy_nonoverlapping(payload.as_ptr(), libc::CMSG_DATA(c), payload.len());
            at += space;
        }
    };
    match (from, to) {
        (Some(IpAddr::V4(src)), SocketAddr::V4(_)) => {
            let info = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(src).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            put(libc::IPPROTO_IP, libc::IP_PKTINFO, as_bytes(&info));
        }
        (Some(IpAddr::V6(src)), SocketAddr::V6(_)) => {
            let info = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: src.octets(),
                },
                ipi6_ifindex: 0,
            };
            put(libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, as_bytes(&info));
        }
        _ => {}
    }
    if want_timestamp {
        put(
            libc::SOL_SOCKET,
            SO_TIMESTAMPING,
            &SOF_TX_SOFTWARE.to_ne_bytes(),
        );
    }
    at
}

fn as_bytes<T>(v: &T) -> &[u8] {
    // SAFETY: any initialized value may be viewed as its bytes; the
    // pktinfo structs have no padding.
    unsafe { std::slice::from_raw_parts((v as *const T).cast(), size_of::<T>()) }
}

fn socketaddr_to_sockaddr(addr: SocketAddr, ss: &mut libc::sockaddr_storage) -> libc::socklen_t {
    let sa = socket2::SockAddr::from(addr);
    // SAFETY: SockAddr's storage is a sockaddr_storage of `len` valid bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(
            sa.as_ptr().cast::<u8>(),
            (ss as *mut libc::sockaddr_storage).cast::<u8>(),
            sa.len() as usize,
        );
    }
    sa.len()
}

fn sockaddr_to_socketaddr(ss: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a: libc::sockaddr_in =
                unsafe { std::ptr::read_unaligned((ss as *const libc::sockaddr_storage).cast()) };
            Some(SocketAddr::from((
                u32::from_be(a.sin_addr.s_addr).to_be_bytes(),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
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
mod tests;
