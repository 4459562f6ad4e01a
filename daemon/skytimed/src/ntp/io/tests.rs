use super::*;
use std::collections::HashMap;
use std::net::UdpSocket;

fn now() -> NtpTimestamp {
    crate::clock::realtime::read().unwrap()
}

/// Receives until `want` datagrams came (bounded: 20 timeouts).
fn recv_all(socket: &NtpSocket, batch: &mut Batch, want: usize) -> Vec<(Vec<u8>, Received)> {
    let mut got = Vec::new();
    for _ in 0..20 {
        if got.len() >= want {
            break;
        }
        match batch.recv(socket) {
            Ok(n) => {
                assert!(n <= BATCH);
                for i in 0..n {
                    let (data, rx, _) = batch.datagram(i).unwrap();
                    got.push((data.to_vec(), rx));
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("{e}"),
        }
    }
    got
}

/// Waits (bounded) until the kernel timestamps datagrams for `server`:
/// the first socket on a host to ask switches timestamping on a moment
/// later (the kernel defers it), and the daemon reads the clock itself
/// in the meantime.
fn warm_up(server: &NtpSocket, to: SocketAddr) {
    let probe = UdpSocket::bind(SocketAddr::new(to.ip(), 0)).unwrap();
    let mut batch = Batch::default();
    for _ in 0..100 {
        probe.send_to(b"warm", to).unwrap();
        let got = recv_all(server, &mut batch, 1);
        if got.iter().all(|(_, rx)| rx.timestamp.is_some()) && !got.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the kernel never timestamped a datagram");
}

#[test]
fn kernel_timestamps_and_local_address_arrive_and_replies_leave_from_it() {
    // A wildcard socket: the reply must leave from the address asked.
    let server = bind_group("0.0.0.0:0".parse().unwrap(), 1)
        .unwrap()
        .remove(0);
    let to = SocketAddr::from(([127, 0, 0, 1], server.local_addr().port()));
    warm_up(&server, to);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let before = now();
    client.send_to(b"hello", to).unwrap();
    let mut batch = Batch::default();
    let got = recv_all(&server, &mut batch, 1);
    let after = now();
    assert_eq!(got.len(), 1);
    let (data, rx) = &got[0];
    assert_eq!(data, b"hello");
    assert_eq!(rx.remote, client.local_addr().unwrap());
    let ts = rx.timestamp.expect("loopback gives software timestamps");
    assert!(ts >= before && ts <= after, "timestamp taken on arrival");
    assert_eq!(rx.local_ip, Some("127.0.0.1".parse().unwrap()));
    // The reply goes out of slot 0's buffer, from the address asked.
    batch.out[0][..5].copy_from_slice(b"reply");
    batch.queue(0, 5, rx.remote, rx.local_ip, false);
    let mut tickets = Vec::new();
    assert_eq!(batch.send(&server, &mut tickets), (1, 0));
    assert!(tickets.is_empty());
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut rbuf = [0u8; 16];
    let (n, from) = client.recv_from(&mut rbuf).unwrap();
    assert_eq!(&rbuf[..n], b"reply");
    assert_eq!(from, to);
}

#[test]
fn a_burst_is_read_in_batches_with_per_datagram_metadata() {
    let Ok(mut group) = bind_group("[::1]:0".parse().unwrap(), 1) else {
        return assert!(
            UdpSocket::bind("[::1]:0").is_err(),
            "IPv6 loopback exists but bind failed"
        );
    };
    let server = group.remove(0);
    warm_up(&server, server.local_addr());
    let clients: Vec<_> = (0..BATCH + 4)
        .map(|_| UdpSocket::bind("[::1]:0").unwrap())
        .collect();
    for (i, c) in clients.iter().enumerate() {
        c.send_to(&[i as u8; 3], server.local_addr()).unwrap();
    }
    let mut batch = Batch::default();
    let got = recv_all(&server, &mut batch, clients.len());
    let mut seen: Vec<u8> = got
        .iter()
        .map(|(data, rx)| {
            assert_eq!(data.len(), 3);
            assert_eq!(rx.remote, clients[data[0] as usize].local_addr().unwrap());
            assert!(rx.timestamp.is_some(), "{rx:?}");
            assert_eq!(rx.local_ip, None, "bound to ::1: no packet info needed");
            data[0]
        })
        .collect();
    seen.sort();
    assert_eq!(seen, (0..clients.len() as u8).collect::<Vec<_>>());
}

#[test]
fn a_group_steers_each_source_address_to_one_socket() {
    let group = bind_group("127.0.0.1:0".parse().unwrap(), 2).unwrap();
    assert_eq!(group.len(), 2, "the steering program was refused");
    let port = group[0].local_addr().port();
    assert!(group.iter().all(|s| s.local_addr().port() == port));
    // 64 source addresses, each sending from 4 source ports.
    let mut sent = 0;
    for host in 1..=64u8 {
        for _ in 0..4 {
            let c = UdpSocket::bind((std::net::Ipv4Addr::new(127, 1, 0, host), 0)).unwrap();
            c.send_to(&[host], group[0].local_addr()).unwrap();
            sent += 1;
        }
    }
    let mut owner: HashMap<IpAddr, usize> = HashMap::new();
    let mut per_socket = [0usize; 2];
    let mut batches = [Batch::default(), Batch::default()];
    let mut total = 0;
    for _ in 0..40 {
        if total == sent {
            break;
        }
        for (k, s) in group.iter().enumerate() {
            if let Ok(n) = batches[k].recv(s) {
                for i in 0..n {
                    let (_, rx, _) = batches[k].datagram(i).unwrap();
                    let first = *owner.entry(rx.remote.ip()).or_insert(k);
                    assert_eq!(first, k, "{} reached two sockets", rx.remote.ip());
                    per_socket[k] += 1;
                    total += 1;
                }
            }
        }
    }
    assert_eq!(total, sent);
    assert!(
        per_socket.iter().all(|&n| n >= 40),
        "spread: {per_socket:?}"
    );
}

#[test]
fn a_port_held_by_another_socket_is_refused_even_for_a_group() {
    let held = UdpSocket::bind("127.0.0.1:0").unwrap();
    let e = bind_group(held.local_addr().unwrap(), 2).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
}

#[test]
fn transmit_timestamps_come_back_numbered_for_the_replies_that_ask() {
    let server = bind_group("127.0.0.1:0".parse().unwrap(), 1)
        .unwrap()
        .remove(0);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = client.local_addr().unwrap();
    let mut batch = Batch::default();
    let mut tickets = Vec::new();
    let before = now();
    // Slots 0 and 2 ask, 1 does not.
    for slot in 0..3 {
        batch.out[slot][0] = slot as u8;
        batch.queue(slot, 1, to, None, slot != 1);
    }
    assert_eq!(batch.send(&server, &mut tickets), (3, 0));
    assert_eq!(tickets, vec![0, 2]);
    let mut stamps = Vec::new();
    for _ in 0..50 {
        batch.read_tx_timestamps(&server, |t| stamps.push(t));
        if stamps.len() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let after = now();
    assert_eq!(stamps.iter().map(|t| t.id).collect::<Vec<_>>(), vec![0, 1]);
    for t in &stamps {
        assert!(t.timestamp >= before && t.timestamp <= after, "{t:?}");
    }
    // All three replies arrived.
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 4];
    let got: Vec<u8> = (0..3)
        .map(|_| {
            client.recv(&mut buf).unwrap();
            buf[0]
        })
        .collect();
    assert_eq!(got, vec![0, 1, 2]);
}

#[test]
fn ipv6_and_ipv4_wildcards_bind_side_by_side() {
    let v4 = bind_group("0.0.0.0:0".parse().unwrap(), 2).unwrap();
    let port = v4[0].local_addr().port();
    // Without IPV6_V6ONLY this bind would fail with EADDRINUSE.
    match bind_group(SocketAddr::new("::".parse().unwrap(), port), 2) {
        Ok(v6) => assert_eq!(v6[0].local_addr().port(), port),
        // Hosts without IPv6 cannot open the socket at all.
        Err(_) => assert!(UdpSocket::bind("[::1]:0").is_err()),
    }
}
