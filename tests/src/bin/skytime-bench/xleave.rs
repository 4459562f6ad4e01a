//! The interleaved-mode workload: clients that ask, as chrony's `xleave`
//! does, for the transmit timestamp of the previous reply. Each client is
//! its own source address and waits for each reply before it forms the
//! next request (its origin is the receive timestamp of that reply), so a
//! generator thread drives many clients at once with `poll`. A reply is
//! interleaved when its origin is the request's receive field, basic when
//! it is the request's transmit field; the share of interleaved replies
//! is printed beside the rate (ntpd-rs answers every request in basic
//! mode; chronyd and skytimed from the third exchange on).

use super::load::{measure, pin_current_thread, Counters, Figures, Shape};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Clients per generator thread.
const CLIENTS: usize = 32;

/// Interleaved-mode load from `shape.threads` threads of [`CLIENTS`]
/// clients each.
pub fn xleave(server: SocketAddr, pid: u32, shape: Shape) -> Figures {
    let counters = Arc::new(Counters::default());
    let threads: Vec<_> = (0..shape.threads)
        .map(|t| {
            let counters = counters.clone();
            std::thread::spawn(move || {
                if let Some(cpu) = shape.cpu {
                    pin_current_thread(cpu);
                }
                clients_loop(server, t, &counters)
            })
        })
        .collect();
    let figures = measure(pid, shape.seconds, &counters);
    counters.stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    figures
}

/// One client: its socket, the receive timestamp of the last reply (the
/// origin of the next request), and the request in flight.
struct Client {
    sock: UdpSocket,
    last_rx: u64,
    request: [u8; 48],
    waiting: bool,
}

fn clients_loop(server: SocketAddr, thread: usize, c: &Counters) {
    let mut clients: Vec<Client> = (0..CLIENTS)
        .filter_map(|i| {
            let ip = Ipv4Addr::new(127, 2, thread as u8, 10 + i as u8);
            let sock = UdpSocket::bind((ip, 0)).ok()?;
            sock.connect(server).ok()?;
            sock.set_nonblocking(true).ok()?;
            Some(Client {
                sock,
                last_rx: 0,
                request: [0; 48],
                waiting: false,
            })
        })
        .collect();
    let mut counter = 1u64;
    let mut buf = [0u8; 128];
    while !c.stop.load(Ordering::Relaxed) {
        for client in clients.iter_mut().filter(|c| !c.waiting) {
            // Origin: the server's receive timestamp of the last reply;
            // receive and transmit: two markers of ours, different.
            counter += 2;
            let r = &mut client.request;
            r[0] = 0x23;
            r[24..32].copy_from_slice(&client.last_rx.to_be_bytes());
            r[32..40].copy_from_slice(&counter.to_be_bytes());
            r[40..48].copy_from_slice(&(counter + 1).to_be_bytes());
            client.waiting = client.sock.send(r).is_ok();
        }
        let mut fds: Vec<libc::pollfd> = clients
            .iter()
            .map(|c| libc::pollfd {
                fd: c.sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` holds one initialised pollfd per client.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
        if n <= 0 {
            // Presumed lost: ask again.
            clients.iter_mut().for_each(|c| c.waiting = false);
            continue;
        }
        for (client, fd) in clients.iter_mut().zip(&fds) {
            if fd.revents & libc::POLLIN == 0 {
                continue;
            }
            let Ok(len) = client.sock.recv(&mut buf) else {
                continue;
            };
            client.waiting = false;
            if len < 48 || buf[0] & 7 != 4 {
                c.bad.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let u64_at =
                |b: &[u8], i: usize| u64::from_be_bytes(b[i..i + 8].try_into().unwrap_or_default());
            // Interleaved: the origin is our receive field; basic: our
            // transmit field.
            if u64_at(&buf, 24) == u64_at(&client.request, 32) {
                c.interleaved.fetch_add(1, Ordering::Relaxed);
            }
            client.last_rx = u64_at(&buf, 32);
            c.good.fetch_add(1, Ordering::Relaxed);
        }
    }
}
