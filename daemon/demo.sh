#!/usr/bin/env bash
# The main job of `make demo`: skytimed fed by the GPS simulator, serving
# NTP on 127.0.0.1:11123 and NTS-KE on 127.0.0.1:14460, its state under
# target/demo/. The simulator's true time is this machine's clock; skytimed
# measures and serves but never steers it. Ctrl-C stops both cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
demo=target/demo
mkdir -p "$demo"
bin=target/release

# First run: TLS identity (certificate SANs localhost and 127.0.0.1) and
# NTS master keys. Later runs keep them.
"$bin/skytimed" --config daemon/skytimed/demo.toml init --hostname localhost --address 127.0.0.1 >/dev/null

"$bin/skytime-gpssim" --pty-link "$demo/gps-pty" --sock "$demo/gps.sock" --duration 0 2>"$demo/gpssim.log" &
sim=$!
trap 'kill $sim 2>/dev/null; wait $sim 2>/dev/null' EXIT

cat <<TXT
skytime demo: a simulated GPS HAT feeding skytimed (logs below; gpssim logs in $demo/gpssim.log)
  NTP     127.0.0.1:11123      NTS-KE  127.0.0.1:14460 (certificate $demo/cert.pem)
It reaches stratum 1 (reference PPS) within about a minute. Try it with chrony,
which measures without setting the clock when run with -Q:
  chronyd -Q -u root -t 20 "server 127.0.0.1 port 11123 iburst maxsamples 4"
  chronyd -Q -u root -t 20 -f <(printf 'server localhost port 11123 nts ntsport 14460 iburst maxsamples 4\nntstrustedcerts $PWD/$demo/cert.pem\nnosystemcert\n')
Ctrl-C stops it.
TXT
"$bin/skytimed" --config daemon/skytimed/demo.toml
