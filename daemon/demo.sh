#!/usr/bin/env bash
# The main job of `make demo`: skytimed fed by the GPS simulator, serving
# NTP on 127.0.0.1:11123 and NTS-KE on 127.0.0.1:14460, its state under
# target/demo/, its management API on a private D-Bus "system" bus with the
# project's policy, and the management gateway (skytime-mgmtd) on
# https://127.0.0.1:18443 with a demo operator CA and an admin client
# certificate made on first run. The simulator's true time is this
# machine's clock; skytimed measures and serves but never steers it.
# Ctrl-C stops them all.
set -euo pipefail
cd "$(dirname "$0")/.."
demo=target/demo
mkdir -p "$demo"
bin=target/release

# First run: TLS identity (certificate SANs localhost and 127.0.0.1) and
# NTS master keys. Later runs keep them.
"$bin/skytimed" --config daemon/skytimed/demo.toml init --hostname localhost --address 127.0.0.1 >/dev/null

# The private bus: its socket and address live in target/demo/ (the
# address in target/demo/bus-address, for skytimectl beside the demo).
daemon/skytimed/dist/private-bus.sh stop "$demo" >/dev/null
daemon/skytimed/dist/private-bus.sh start "$demo" >/dev/null
bus=$(cat "$demo/bus-address")

# First run: a demo operator CA and an admin client certificate it signs
# (the openssl commands an operator would use), enrolled with the
# gateway the way the appliance does it from its boot partition. Later
# runs keep them.
mgmt_certificates() {
    local tmp
    tmp=$(mktemp -d "$demo/.certs.XXXXXX")
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -subj "/CN=skytime demo operators" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$tmp/mgmt-ca-key.pem" -out "$tmp/mgmt-ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=demo admin" \
        -keyout "$tmp/admin-key.pem" -out "$tmp/admin.csr" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' >"$tmp/ext"
    openssl x509 -req -in "$tmp/admin.csr" -CA "$tmp/mgmt-ca.pem" -CAkey "$tmp/mgmt-ca-key.pem" \
        -CAcreateserial -days 825 -extfile "$tmp/ext" -out "$tmp/admin-cert.pem" 2>/dev/null
    chmod 600 "$tmp/mgmt-ca-key.pem" "$tmp/admin-key.pem"
    # The three files appear together or not at all.
    mv "$tmp/mgmt-ca-key.pem" "$tmp/admin-key.pem" "$tmp/admin-cert.pem" "$demo/"
    mv "$tmp/mgmt-ca.pem" "$demo/"
    rm -rf "$tmp"
}
[ -f "$demo/mgmt-ca.pem" ] || mgmt_certificates
if [ ! -f "$demo/mgmt/enrolled.toml" ]; then
    mkdir -p "$demo/boot"
    cp "$demo/mgmt-ca.pem" "$demo/boot/skytime-admin-ca.pem"
    "$bin/skytime-mgmtd" --config daemon/mgmtd/demo.toml enrol --from "$demo/boot" \
        --hostname localhost --address 127.0.0.1 >/dev/null
fi

"$bin/skytime-gpssim" --pty-link "$demo/gps-pty" --sock "$demo/gps.sock" --duration 0 2>"$demo/gpssim.log" &
sim=$!
DBUS_SYSTEM_BUS_ADDRESS="$bus" "$bin/skytime-mgmtd" --config daemon/mgmtd/demo.toml 2>"$demo/mgmtd.log" &
gateway=$!
cleanup() {
    kill "$sim" "$gateway" 2>/dev/null || true
    wait "$sim" "$gateway" 2>/dev/null || true
    daemon/skytimed/dist/private-bus.sh stop "$demo" >/dev/null 2>&1 || true
}
trap cleanup EXIT

cat <<TXT
skytime demo: a simulated GPS HAT feeding skytimed (logs below; gpssim logs in $demo/gpssim.log)
  NTP     127.0.0.1:11123      NTS-KE  127.0.0.1:14460 (certificate $demo/cert.pem)
  D-Bus   $bus (address in $demo/bus-address)
It reaches stratum 1 (reference PPS) within about a minute. From a second terminal:
  export DBUS_SYSTEM_BUS_ADDRESS=\$(cat $demo/bus-address)
  $bin/skytimectl tracking        # also: status, sources, sourcestats, serverstats, clients, authdata
or with chrony, which measures without setting the clock when run with -Q:
  chronyd -Q -u root -t 20 "server 127.0.0.1 port 11123 iburst maxsamples 4"
  chronyd -Q -u root -t 20 -f <(printf 'server localhost port 11123 nts ntsport 14460 iburst maxsamples 4\nntstrustedcerts $PWD/$demo/cert.pem\nnosystemcert\n')
The management gateway (logs in $demo/mgmtd.log; demo CA $demo/mgmt-ca.pem, admin
certificate $demo/admin-cert.pem and key $demo/admin-key.pem):
  status page  https://127.0.0.1:18443/          (the gateway's own certificate: $demo/mgmt/server-cert.pem)
  metrics      https://127.0.0.1:18443/metrics
  curl --cacert $demo/mgmt/server-cert.pem https://127.0.0.1:18443/metrics
  curl --cacert $demo/mgmt/server-cert.pem --cert $demo/admin-cert.pem --key $demo/admin-key.pem https://127.0.0.1:18443/api/v1/Tracking/properties
  $bin/skytimectl --host localhost:18443 --cert $demo/admin-cert.pem --key $demo/admin-key.pem --ca $demo/mgmt/server-cert.pem status
  $bin/skytimectl --host localhost:18443 --cert $demo/admin-cert.pem --key $demo/admin-key.pem --ca $demo/mgmt/server-cert.pem keys rotate
Ctrl-C stops it.
TXT
# Not exec: the trap must stop the simulator and the bus afterwards.
DBUS_SYSTEM_BUS_ADDRESS="$bus" "$bin/skytimed" --config daemon/skytimed/demo.toml
