#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora into seeds/<target>/ from the
repository's own fixtures and test vectors (chrony 4.3's recorded NTS
exchange, the example configurations, the RAUC manifest and hook
environment the ota tests recorded) plus a few inputs built here in the
formats the targets read. Run from anywhere; replaces seeds/ as a whole.
The output is committed, so `make fuzz` does not need this script."""

import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
CHRONY = os.path.join(ROOT, "daemon/nts/tests/fixtures/chrony-4.3")


def read(path, mode="rb"):
    with open(os.path.join(ROOT, path), mode) as f:
        return f.read()


def nmea(body):
    c = 0
    for b in body.encode():
        c ^= b
    return f"${body}*{c:02X}"


def record(kind, body, critical=True):
    return struct.pack(">HH", kind | (0x8000 if critical else 0), len(body)) + body


def plain_request(version=4, transmit=b"\x09" * 8):
    head = bytes([(version << 3) | 3]) + bytes(39)
    return head + transmit


def sock(sec, usec, offset, pulse, leap, time32=False):
    tv = struct.pack("=ii", sec, usec) if time32 else struct.pack("=qq", sec, usec)
    return tv + struct.pack("=diii", offset, pulse, leap, 0) + struct.pack("=I", 0x534F434B)


def seeds():
    req = read(os.path.join(CHRONY, "ntp-request.bin"))
    reply = read(os.path.join(CHRONY, "ntp-reply.bin"))
    ke_req = read(os.path.join(CHRONY, "ke-request.bin"))
    plain = plain_request()
    yield "ntp_packet", {"chrony-nts-request": req, "chrony-nts-reply": reply,
                         "plain-v4": plain, "plain-v3": plain_request(3)}
    yield "server_plain", {f"choice-{c:02x}": bytes([c]) + plain for c in (0, 1, 2, 0x42, 0x24, 0xe6)}
    yield "server_nts", {"chrony-request": b"\x00" + req, "chrony-request-nts-only": b"\x01" + req,
                         "plain": b"\x01" + plain}
    # A response as a server sends it: NTPv4, AES-SIV-CMAC-256, a port,
    # two cookies; and a server's error.
    cookie = req[48 + 36 + 4:48 + 36 + 4 + 104]
    response = (record(1, b"\x00\x00") + record(4, b"\x00\x0f") + record(7, b"\x00\x7b")
                + record(5, cookie, False) * 2 + record(0, b""))
    yield "nts_ke", {"chrony-request": ke_req, "server-response": response,
                     "server-error": record(2, b"\x00\x01") + record(0, b"")}
    yield "nts_extension", {"chrony-request-fields": b"\x01" + req[48:],
                            "chrony-reply-fields": b"\x01" + reply[48:],
                            "chrony-reply": b"\x00" + reply, "cookie": b"\x00" + cookie}
    rmc = nmea("GPRMC,123519.00,A,4807.038,N,01131.000,E,0.02,31.66,150327,,,A")
    gga = nmea("GPGGA,123519.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")
    zda = nmea("GPZDA,123520.00,15,03,2027,00,00")
    burst = f"{rmc}\r\n{gga}\r\n{zda}\r\n"
    yield "nmea", {"burst": burst.encode(), "bursts": (burst * 3).encode(),
                   "rmc-void": (nmea("GPRMC,123521.00,V,,,,,,,150327,,,N") + "\r\n").encode(),
                   "body-rmc": rmc[1:-3].encode(), "body-gga": gga[1:-3].encode()}
    yield "sock", {"whole": sock(1_800_000_000, 250_000, 0.0123, 0, 0),
                   "pulse": sock(1_800_000_000, 999_900, -0.0001, 1, 1),
                   "time32": sock(1_800_000_000, 10, 1e-6, 0, 2, time32=True)}
    configs = {name.replace("/", "-"): read(path) for name, path in [
        ("skytimed/example", "daemon/skytimed/skytime.example.toml"),
        ("skytimed/demo", "daemon/skytimed/demo.toml"),
        ("mgmtd/example", "daemon/mgmtd/mgmtd.example.toml"),
        ("mgmtd/demo", "daemon/mgmtd/demo.toml")]}
    yield "config_toml", configs
    yield "config_apply", {k: v for k, v in configs.items() if k.startswith("skytimed")}
    hook_src = read("ota/src/hook_env.rs", "r")
    slot_vars = re.findall(r'\(\s*"(RAUC_[A-Z_]+)",\s*"([^"]*)",?\s*\)', hook_src)
    env = "".join(f"{k}={v}\n" for k, v in slot_vars)
    check = ("RAUC_SYSTEM_COMPATIBLE=skytime-rpi4\nRAUC_MF_COMPATIBLE=skytime-rpi4\n"
             "RAUC_MF_VERSION=0.2.0+20270315.123519\nRAUC_MOUNT_PREFIX=/run/rauc/\n")
    yield "ota_hook_env", {"slot-install": ("slot-install\n" + env).encode(),
                           "slot-post-install": ("slot-post-install\n" + env).encode(),
                           "install-check": ("install-check\n" + check).encode()}
    manifest_src = read("ota/src/manifest.rs", "r")
    written = re.search(r'const RAUC_WRITTEN: &str = "(.*?)";', manifest_src, re.S).group(1)
    template = (read("ota/manifest.raucm.in", "r").replace("@COMPATIBLE@", "skytime-rpi4")
                .replace("@VERSION@", "0.1.0+20250301.143000").replace("@FORMAT@", "verity")
                .replace("@BUILD@", "v0.1.0-3-gabcdef"))
    yield "ota_manifest", {"rauc-written": written.encode(), "template": template.encode(),
                           "versions": b"0.2.0+20250301.143000\n1.0.0-rc.1+20270101.000000\n"}
    yield "mgmtd_request", {
        "history": b"/api/v1/Monitor/GetHistory?seconds=3600\n",
        "apply": b'/api/v1/Config/Apply\n{"toml": "[log]\\nlevel = \\"debug\\"\\n", "dry_run": true}',
        "install": b"/api/v1/Update/Install?force=true&sha256=ab%20cd+ef\n",
        "from-url": b'/api/v1/Update/InstallFromUrl\n{"url": "https://example.invalid/b.raucb", '
                    b'"sha256": "00", "options": {"force": false, "n": -3, "x": 1.5}}'}
    with tempfile.TemporaryDirectory() as tmp:
        key, cert = os.path.join(tmp, "k.pem"), os.path.join(tmp, "c.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "3650", "-subj", "/CN=skytime fuzz seed CA",
                        "-addext", "basicConstraints=critical,CA:TRUE"],
                       check=True, capture_output=True)
        with open(cert, "rb") as f:
            pem = f.read()
    yield "mgmtd_enrol", {"ca": pem, "two": pem + pem}


def main():
    out = os.path.join(HERE, "seeds")
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for target, files in seeds():
        os.makedirs(os.path.join(tmp, target))
        for name, data in files.items():
            with open(os.path.join(tmp, target, name), "wb") as f:
                f.write(data)
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
