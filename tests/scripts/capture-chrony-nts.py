#!/usr/bin/env python3
"""Record what Debian's chrony sends an NTS server, as test fixtures.

Writes into OUT_DIR (default daemon/nts/tests/fixtures/chrony-<version>):
  ke-request.bin    the NTS-KE request chrony sends (TLS plaintext), taken
                    by a recording TLS 1.3 server (ALPN ntske/1);
  ntp-request.bin   chrony's first NTS-protected NTP request to skytimed,
  ntp-reply.bin     and skytimed's reply, taken by a UDP relay between them;
  master-keys.txt   skytimed's master keys, so a test can open the cookie in
                    the request (which yields the session keys) and check
                    the authenticator and the reply.

Run from the repository root after `cargo build -p skytimed`, as root
(chronyd -Q never sets the clock). Loopback only; everything stops by
itself. The fixtures are committed; rerun only to refresh them.
"""

import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

OUT = sys.argv[1] if len(sys.argv) > 1 else None
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port(kind):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def chrony_version():
    out = subprocess.run(["chronyd", "--version"], capture_output=True, text=True).stdout
    return out.split()[3]


def records_complete(buf):
    """True once buf holds a whole NTS-KE message (ends with End of Message)."""
    i = 0
    while i + 4 <= len(buf):
        kind = int.from_bytes(buf[i : i + 2], "big") & 0x7FFF
        length = int.from_bytes(buf[i + 2 : i + 4], "big")
        i += 4 + length
        if kind == 0 and i <= len(buf):
            return True
    return False


def record_ke_request(cert, key, port, out, done):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["ntske/1"])
    ctx.load_cert_chain(cert, key)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(1)
    srv.settimeout(20)
    try:
        conn, _ = srv.accept()
        with ctx.wrap_socket(conn, server_side=True) as tls:
            tls.settimeout(10)
            buf = b""
            while not records_complete(buf):
                chunk = tls.recv(4096)
                if not chunk:
                    break
                buf += chunk
            with open(out, "wb") as f:
                f.write(buf)
    finally:
        srv.close()
        done.set()


def relay(listen_port, server_port, out_req, out_reply, done):
    """Relays one client's datagrams to the server, keeping the first
    request with NTS extension fields and its reply."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", listen_port))
    up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    up.connect(("127.0.0.1", server_port))
    up.settimeout(5)
    s.settimeout(30)
    try:
        while True:
            req, client = s.recvfrom(2048)
            up.send(req)
            reply = up.recv(2048)
            s.sendto(reply, client)
            if len(req) > 48 and len(reply) > 48:
                open(out_req, "wb").write(req)
                open(out_reply, "wb").write(reply)
                return
    finally:
        s.close()
        up.close()
        done.set()


def main():
    if os.geteuid() != 0:
        sys.exit("run as root (chronyd -Q needs it; it never sets the clock)")
    version = chrony_version()
    out = OUT or os.path.join(ROOT, "daemon/nts/tests/fixtures", f"chrony-{version}")
    os.makedirs(out, exist_ok=True)
    tmp = tempfile.mkdtemp()
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(
        ["openssl", "req", "-new", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-addext", "basicConstraints=critical,CA:FALSE",
         "-keyout", key, "-out", cert],
        check=True, capture_output=True)

    def chrony_query(ntp_port, ke_port, seconds):
        conf = os.path.join(tmp, "chrony.conf")
        with open(conf, "w") as f:
            f.write(f"server 127.0.0.1 port {ntp_port} nts ntsport {ke_port} iburst maxsamples 1\n"
                    f"ntstrustedcerts {cert}\nnosystemcert\n")
        subprocess.run(["chronyd", "-Q", "-u", "root", "-t", str(seconds), "-f", conf],
                       capture_output=True)

    # 1. The key-exchange request, from a recording TLS server.
    ke_port, dummy_ntp = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    done = threading.Event()
    t = threading.Thread(target=record_ke_request,
                         args=(cert, key, ke_port, os.path.join(out, "ke-request.bin"), done))
    t.start()
    time.sleep(0.3)
    chrony_query(dummy_ntp, ke_port, 5)
    t.join(25)

    # 2. An NTP request and reply through a relay to the real skytimed.
    data = os.path.join(tmp, "data")
    ntp_port, relay_port, ke2 = (free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM),
                                 free_port(socket.SOCK_STREAM))
    cfg = os.path.join(tmp, "skytime.toml")
    with open(cfg, "w") as f:
        f.write(f'data_dir = "{data}"\n[ntp]\nlisten = ["127.0.0.1:{ntp_port}"]\n'
                f'allow = ["127.0.0.0/8"]\nlocal_stratum = 10\n[clock]\nsteer = false\n'
                f'[dbus]\nenabled = false\n[nts]\nenabled = true\n'
                f'ke_listen = ["127.0.0.1:{ke2}"]\ncertificate = "{cert}"\nprivate_key = "{key}"\n')
    daemon = subprocess.Popen([os.path.join(ROOT, "target/debug/skytimed"), "--config", cfg],
                              stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        done = threading.Event()
        t = threading.Thread(target=relay, args=(relay_port, ntp_port,
                                                 os.path.join(out, "ntp-request.bin"),
                                                 os.path.join(out, "ntp-reply.bin"), done))
        t.start()
        chrony_query(relay_port, ke2, 10)
        t.join(35)
        shutil.copy(os.path.join(data, "nts-master-keys"), os.path.join(out, "master-keys.txt"))
    finally:
        daemon.terminate()
        daemon.wait(10)
        shutil.rmtree(tmp)
    print("wrote", out, sorted(os.listdir(out)))


if __name__ == "__main__":
    main()
