#!/bin/sh
# A private D-Bus "system" bus with the system bus's default policy plus
# skytime's policy (org.skytime.Appliance1.conf), for the demo and tests.
#
#   private-bus.sh start DIR [EXTRA.conf ...]   start it; prints the address
#                                               and writes it to DIR/bus-address
#   private-bus.sh stop DIR                     stop it
#
# Use it with: DBUS_SYSTEM_BUS_ADDRESS=$(cat DIR/bus-address) skytimectl status
# DIR must be reachable by the users that connect (the socket lives there).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR [EXTRA.conf ...]" >&2; exit 2; }

case "$cmd" in
stop)
    if [ -f "$dir/bus.pid" ]; then
        kill "$(cat "$dir/bus.pid")" 2>/dev/null || true
        rm -f "$dir/bus.pid" "$dir/bus-address"
    fi
    exit 0
    ;;
start) ;;
*) echo "usage: $0 start|stop DIR [EXTRA.conf ...]" >&2; exit 2 ;;
esac

command -v dbus-daemon >/dev/null || { echo "dbus-daemon is not installed (apt-get install dbus)" >&2; exit 1; }
shift 2
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
includes="<include>$here/org.skytime.Appliance1.conf</include>"
for extra in "$@"; do
    includes="$includes
  <include>$(cd "$(dirname "$extra")" && pwd)/$(basename "$extra")</include>"
done
cat > "$dir/bus.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$dir/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <pidfile>$dir/bus.pid</pidfile>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus" send_member="UpdateActivationEnvironment"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Debug.Stats"/>
  </policy>
  $includes
</busconfig>
CONF
rm -f "$dir/bus.pid" "$dir/system_bus_socket"
dbus-daemon --config-file="$dir/bus.conf" --fork --print-address=1 > "$dir/bus-address.tmp"
mv "$dir/bus-address.tmp" "$dir/bus-address"
chmod 0666 "$dir/system_bus_socket" 2>/dev/null || true
cat "$dir/bus-address"
