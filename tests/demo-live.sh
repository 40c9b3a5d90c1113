#!/bin/sh
# A live xsw in one minute: two hosts in network namespaces, each on a veth
# into a third namespace where xswd switches between them over AF_XDP.
# Pings from one host to the other, runs a 3-second TCP transfer (iperf3,
# when installed) with the hosts' default offloads and prints its rate,
# prints xswd's counters, then removes everything it created. Needs root;
# touches nothing outside its namespaces.
#
#   tests/demo-live.sh            # build xswd (release) and run the demo
set -eu
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "demo-live: run as root (xswd attaches XDP programs)" >&2; exit 1; }
cargo build --release --quiet --bin xswd
xswd=$PWD/target/release/xswd

tag=xswdemo$$
S=${tag}s A=${tag}a B=${tag}b
dir=$(mktemp -d)
pid=
srv=
cleanup() {
    [ -n "$srv" ] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null || true
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    for n in "$S" "$A" "$B"; do ip netns del "$n" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

for n in "$S" "$A" "$B"; do ip netns add "$n"; done
for h in a b; do
    ns=$A; [ $h = b ] && ns=$B
    ip link add "p$h" numrxqueues 1 numtxqueues 1 netns "$S" type veth \
        peer name eth0 numrxqueues 1 numtxqueues 1 netns "$ns"
    ip -n "$S" link set "p$h" up
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
done
ip -n "$A" addr add 198.18.7.1/24 dev eth0
ip -n "$B" addr add 198.18.7.2/24 dev eth0

cat >"$dir/xswd.toml" <<EOF
[[bridge]]
name = "br0"

[[bridge.port]]
name = "a"
ofport = 1
interface = "pa"

[[bridge.port]]
name = "b"
ofport = 2
interface = "pb"
EOF

echo "== xswd --config $dir/xswd.toml (in namespace $S)"
cat "$dir/xswd.toml"
ip netns exec "$S" "$xswd" --config "$dir/xswd.toml" --stats-file "$dir/stats.json" \
    --no-state --socket "$dir/xswd.sock" 2>"$dir/xswd.log" &
pid=$!
i=0
until grep -q ready "$dir/xswd.log"; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 "$pid" 2>/dev/null; then
        cat "$dir/xswd.log" >&2
        echo "demo-live: xswd did not start" >&2
        exit 1
    fi
    sleep 0.1
done
cat "$dir/xswd.log"

echo "== ping 198.18.7.2 from $A through xsw"
ip netns exec "$A" ping -c 5 -i 0.2 -W 2 198.18.7.2

if command -v iperf3 >/dev/null; then
    echo "== TCP from $A to $B through xsw for 3 s (iperf3; the hosts keep their default offloads)"
    ip netns exec "$B" iperf3 -s -1 -B 198.18.7.2 >/dev/null 2>&1 &
    srv=$!
    sleep 0.5
    ip netns exec "$A" iperf3 -c 198.18.7.2 -t 3 -f m | grep -E "sender|receiver"
    wait "$srv" 2>/dev/null || true
    srv=
else
    echo "== (iperf3 not installed: no TCP transfer; tests/setup-debian.sh installs it)"
fi

sleep 1.2 # the stats file is rewritten every second
echo "== xswd counters ($dir/stats.json)"
cat "$dir/stats.json"
echo
kill "$pid"
wait "$pid" || true
pid=
tail -n 1 "$dir/xswd.log"
