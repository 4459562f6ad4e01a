#!/usr/bin/env bash
# The main job of `make demo`: skytimed serving NTP on 127.0.0.1:11123 from
# the demo configuration, its state under target/demo/. It measures and
# serves but never steers this machine's clock. Ctrl-C stops it cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target/demo

cat <<'TXT'
skytime demo: NTP on 127.0.0.1:11123 (state in target/demo/). Ctrl-C stops it.
Query it from another terminal with chrony (never sets the clock with -Q):
    chronyd -Q -t 10 "server 127.0.0.1 port 11123 iburst maxsamples 4"
TXT
exec target/release/skytimed --config daemon/skytimed/demo.toml
