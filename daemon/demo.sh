#!/usr/bin/env bash
# The main job of `make demo`: skytimed fed by the GPS simulator, serving
# NTP on 127.0.0.1:11123 and NTS-KE on 127.0.0.1:14460, its state under
# target/demo/, its management API on a private D-Bus "system" bus with the
# project's policy. The simulator's true time is this machine's clock;
# skytimed measures and serves but never steers it. Ctrl-C stops all three.
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

"$bin/skytime-gpssim" --pty-link "$demo/gps-pty" --sock "$demo/gps.sock" --duration 0 2>"$demo/gpssim.log" &
sim=$!
cleanup() {
    kill "$sim" 2>/dev/null || true
    wait "$sim" 2>/dev/null || true
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
Ctrl-C stops it.
TXT
# Not exec: the trap must stop the simulator and the bus afterwards.
DBUS_SYSTEM_BUS_ADDRESS="$bus" "$bin/skytimed" --config daemon/skytimed/demo.toml
