#!/usr/bin/env bash
# Throughput under attack in network namespaces: the line a - b - c of routers (skywire-node +
# skywire-control each, release builds), an attacker x linked to b, a messenger in b's
# namespace. iperf3 a -> c (c's overlay address) for SECS seconds without attack, then under
# each attack kind (the tools of controlplane/tests/attack.rs, controlplane/tests/attack/*.py):
#   keyless  x holds FLOOD_CONNS keyless slowloris connections at b's link port and the
#            messenger from 16 source addresses (b's controlplane under a 1024-fd limit)
#   udp      x sends garbage, forged and replayed frames (captured in flight) at b's data port
#   punt     a process in a sends UDP to random overlay addresses as fast as it can
# One line per case: attack_<kind>_mbps N (baseline M, ratio R), then the attack's own counts
# and the link-downs the routers logged during it.
# Usage: scripts/bench-attack.sh [SECS]   (env FLOOD_CONNS, default 600; KEEP=1 keeps the logs;
# needs root; installs iperf3 if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
FLOOD_CONNS=${FLOOD_CONNS:-600}
# Each attack runs a little longer than the iperf3 run it measures.
ATTACK_SECS=$((SECS + 3))
TOOLS=$PWD/controlplane/tests/attack
for c in ip python3 prlimit; do command -v "$c" >/dev/null || { echo "needs $c" >&2; exit 1; }; done
command -v iperf3 >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 >/dev/null; }
cargo build --release --locked -p dataplane -p controlplane --bins >/dev/null 2>&1 || cargo build --release --locked -p dataplane -p controlplane --bins
NODE=$PWD/target/release/skywire-node
CTL=$PWD/target/release/skywire-control
W=$(mktemp -d)
NS=(ba_a ba_b ba_c ba_x)
cleanup() {
    for n in "${NS[@]}"; do ip netns pids "$n" 2>/dev/null | xargs -r kill 2>/dev/null || true; done
    sleep 0.3
    for n in "${NS[@]}"; do ip netns pids "$n" 2>/dev/null | xargs -r kill -9 2>/dev/null || true; done
    for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
    if [ -n "${KEEP:-}" ]; then echo "kept $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT
for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null || true; done

declare -A PK ADDR
for n in a b c m; do
    out=$("$CTL" --key "$W/$n.key" keygen 2>/dev/null)
    PK[$n]=$(echo "$out" | awk '/^pk/ {print $2}')
    ADDR[$n]=$(echo "$out" | awk '/^address/ {print $2}')
done

for n in "${NS[@]}"; do ip netns add "$n"; ip -n "$n" link set lo up; done
veth() { # x y net: x gets .1, y .2 of 10.86.net.0/24
    ip link add "ba_$1$2" netns "ba_$1" type veth peer name "ba_$2$1" netns "ba_$2"
    ip -n "ba_$1" addr add "10.86.$3.1/24" dev "ba_$1$2"; ip -n "ba_$1" link set "ba_$1$2" up
    ip -n "ba_$2" addr add "10.86.$3.2/24" dev "ba_$2$1"; ip -n "ba_$2" link set "ba_$2$1" up
}
veth a b 1
veth b c 2
veth b x 3
SRCS=""
for i in $(seq 10 25); do
    ip -n ba_x addr add "10.86.3.$i/24" dev ba_xb
    SRCS+="${SRCS:+,}10.86.3.$i"
done
declare -A NEIGH=(
    [a]="  - {pk: ${PK[b]}, endpoint: \"10.86.1.2:7100\"}"$'\n'
    [b]="  - {pk: ${PK[a]}, endpoint: \"10.86.1.1:7100\"}"$'\n'"  - {pk: ${PK[c]}, endpoint: \"10.86.2.2:7100\"}"$'\n'
    [c]="  - {pk: ${PK[b]}, endpoint: \"10.86.2.1:7100\"}"$'\n'
)
for n in a b c; do
    printf 'node:\n  listen: "0.0.0.0:7000"\n  shards: 1\n' > "$W/$n-node.yaml"
    printf 'key: %s\nfib_socket: %s\napp_socket: %s\nlisten: "0.0.0.0:7100"\ndata_port: 7000\nkeepalive_ms: 100\nneighbours:\n%s' \
        "$W/$n.key" "$W/$n.fib" "$W/$n.ctl" "${NEIGH[$n]}" > "$W/$n-control.yaml"
    ip netns exec "ba_$n" "$NODE" --static "$W/$n-node.yaml" --fib-socket "$W/$n.fib" --no-pin >>"$W/$n-node.log" 2>&1 &
done
for n in a b c; do
    ip netns exec "ba_$n" "$CTL" run --config "$W/$n-control.yaml" >>"$W/$n-control.log" 2>&1 &
    echo $! > "$W/$n-control.pid"
done
ip netns exec ba_b "$CTL" --key "$W/m.key" messenger --listen 0.0.0.0:7200 >>"$W/m.log" 2>&1 &
sleep 0.5
prlimit --nofile=1024:1024 --pid "$(cat "$W/b-control.pid")"

C=${ADDR[c]}
ok=0
for _ in $(seq 1 40); do
    if ip netns exec ba_a ping -c 1 -W 1 "$C" >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.5
done
[ "$ok" = 1 ] || { echo "no route a -> c" >&2; KEEP=1; exit 1; }

# iperf3 a -> c for SECS seconds; prints the receiver's Mbit/s.
mbps() {
    ip netns exec ba_c iperf3 -s -1 -B "$C" >/dev/null 2>&1 &
    local srv=$!
    sleep 0.5
    ip netns exec ba_a iperf3 -c "$C" -t "$SECS" -J > "$W/iperf.json" 2>/dev/null || true
    wait "$srv" 2>/dev/null || true
    python3 -c 'import json,sys
try: print("%.0f" % (json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"] / 1e6))
except Exception: print("nan")' "$W/iperf.json"
}

# The first baseline run also captures frames in flight at b for the replay.
ip netns exec ba_b python3 "$TOOLS/sniff.py" ba_ba,ba_bc 7000 $((SECS + 5)) 500 "$W/captured.bin" > "$W/sniff.out" 2>&1 &
SNIFF=$!
sleep 0.5
BASE=$(mbps)
wait "$SNIFF" || true
echo "baseline_mbps $BASE (captured $(tail -1 "$W/sniff.out") frames)"

# Link-downs logged by the three controlplanes so far.
downs() { cat "$W"/[abc]-control.log | grep -c "link down" || true; }

line() {
    python3 -c 'import sys
n, b = sys.argv[2], sys.argv[3]
try: r = "%.2f" % (float(n) / float(b))
except Exception: r = "nan"
print("attack_%s_mbps %s (baseline %s, ratio %s)" % (sys.argv[1], n, b, r))' "$1" "$2" "$BASE"
    echo "  (link downs logged during it: $(( $(downs) - D0 )))"
}

# keyless
D0=$(downs)
ip netns exec ba_x python3 "$TOOLS/slowloris.py" 10.86.3.1 7100,7200 "$SRCS" "$FLOOD_CONNS" "$ATTACK_SECS" 100000 > "$W/slowloris.out" 2>&1 &
A=$!
sleep 2
N=$(mbps)
wait "$A" || true
line keyless "$N"
echo "  (flood attempts opened closed peak: $(cat "$W/slowloris.out"))"

# udp
D0=$(downs)
ip netns exec ba_x python3 "$TOOLS/udp_flood.py" 10.86.3.1 7000 "$ATTACK_SECS" 100000000 "$W/captured.bin" > "$W/udp.out" 2>&1 &
A=$!
sleep 1
N=$(mbps)
wait "$A" || true
line udp "$N"
echo "  (udp sent captured garbage type forged replayed badtag: $(cat "$W/udp.out"))"

# punt
D0=$(downs)
ip netns exec ba_a python3 "$TOOLS/punt_flood.py" "$ATTACK_SECS" 100000000 > "$W/punt.out" 2>&1 &
A=$!
sleep 1
N=$(mbps)
wait "$A" || true
line punt "$N"
echo "  (punt flood sent failed: $(cat "$W/punt.out"))"
