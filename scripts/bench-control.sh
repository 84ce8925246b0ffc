#!/usr/bin/env bash
# Controlplane timings in network namespaces (skywire-node + skywire-control per router):
#   setup_ms N   first packet to a node 3 hops away (a-b-c-d line): punt, route setup hop by
#                hop, inject, answer -- the first ping's round trip, median of RUNS runs
#                (a's controlplane is restarted between runs so no route is left over).
#   reroute_ms N diamond a-b-d / a-c-d: the active branch's link is cut while a pings d every
#                PING_MS ms (default 5); the gap between the last answer before and the first
#                after the cut, median and p95 of RUNS cuts. Detection: the dataplanes' liveness
#                probes (probe_ms PROBE_MS, default 5, down after PROBE_DEAD, default 4, silent
#                intervals; PROBE_MS=0: off), else the link keepalive (100 ms, dead after 3).
#   false_link_downs  with LOAD_SECS=N: probe detections over N s of a loaded diamond, no cut.
# Usage: scripts/bench-control.sh [RUNS]   (env OFFLOAD=auto|on|off for the nodes, PROBE_MS,
# PROBE_DEAD, PING_MS, LOAD_SECS; needs root; installs iputils-ping, and iperf3 for LOAD_SECS)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
command -v ping >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iputils-ping >/dev/null; }
cargo build --release --locked -p dataplane -p controlplane --bins >/dev/null 2>&1 || cargo build --release --locked -p dataplane -p controlplane --bins
NODE=$PWD/target/release/skywire-node
CTL=$PWD/target/release/skywire-control
W=$(mktemp -d)
NS=(bc_a bc_b bc_c bc_d)
cleanup() {
    for n in "${NS[@]}"; do ip netns pids "$n" 2>/dev/null | xargs -r kill 2>/dev/null || true; done
    sleep 0.3
    for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
    if [ -n "${KEEP:-}" ]; then echo "kept $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT
for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null || true; done

declare -A PK ADDR
for n in a b c d; do
    out=$("$CTL" --key "$W/$n.key" keygen 2>/dev/null)
    PK[$n]=$(echo "$out" | awk '/^pk/ {print $2}')
    ADDR[$n]=$(echo "$out" | awk '/^address/ {print $2}')
done

median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) {print "nan"} else if (NR%2) {print a[(NR+1)/2]} else {printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}}'; }
# nearest-rank 95th percentile
p95() { sort -n | awk '{a[NR]=$1} END {if (NR==0) {print "nan"} else {i=int(NR*0.95+0.999); if (i<1) i=1; print a[i]}}'; }

# topology EDGES... where an edge is x:y:net ; builds namespaces, veths, configs, starts routers
build() {
    for n in "${NS[@]}"; do ip netns add "$n"; ip -n "$n" link set lo up; done
    declare -gA NEIGH=()
    for e in "$@"; do
        IFS=: read -r x y net <<<"$e"
        ip link add "bc_$x$y" netns "bc_$x" type veth peer name "bc_$y$x" netns "bc_$y"
        ip -n "bc_$x" addr add "10.82.$net.1/24" dev "bc_$x$y"; ip -n "bc_$x" link set "bc_$x$y" up
        ip -n "bc_$y" addr add "10.82.$net.2/24" dev "bc_$y$x"; ip -n "bc_$y" link set "bc_$y$x" up
        NEIGH[$x]+="  - {pk: ${PK[$y]}, endpoint: \"10.82.$net.2:7100\"}"$'\n'
        NEIGH[$y]+="  - {pk: ${PK[$x]}, endpoint: \"10.82.$net.1:7100\"}"$'\n'
    done
    for n in a b c d; do
        printf 'node:\n  listen: "0.0.0.0:7000"\n  shards: 1\n' > "$W/$n-node.yaml"
        printf 'key: %s\nfib_socket: %s\nlisten: "0.0.0.0:7100"\ndata_port: 7000\nkeepalive_ms: 100\ndead_after: 3\nprobe_ms: %s\nprobe_dead_after: %s\nneighbours:\n%s' \
            "$W/$n.key" "$W/$n.fib" "${PROBE_MS:-5}" "${PROBE_DEAD:-4}" "${NEIGH[$n]:-}" > "$W/$n-control.yaml"
        ip netns exec "bc_$n" "$NODE" --static "$W/$n-node.yaml" --fib-socket "$W/$n.fib" --no-pin --offload "${OFFLOAD:-auto}" >>"$W/$n-node.log" 2>&1 &
    done
    for n in a b c d; do start_control "$n"; done
}

start_control() {
    ip netns exec "bc_$1" "$CTL" run --config "$W/$1-control.yaml" >>"$W/$1-control.log" 2>&1 &
    echo $! > "$W/$1-control.pid"
}

stop_control() {
    local pid; pid=$(cat "$W/$1-control.pid")
    kill "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
}

teardown() {
    for n in "${NS[@]}"; do ip netns pids "$n" 2>/dev/null | xargs -r kill 2>/dev/null || true; done
    sleep 0.5
    for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
    rm -f "$W"/*.fib
}

wait_reach() { # ns addr
    for _ in $(seq 100); do ip netns exec "$1" ping -c 1 -W 1 "$2" >/dev/null 2>&1 && return 0; done
    echo "unreachable: $2 from $1" >&2; tail -n 5 "$W"/*-control.log "$W"/*-node.log >&2; return 1
}

# ---- setup: line a-b-c-d ----------------------------------------------------------------
build a:b:1 b:c:2 c:d:3
wait_reach bc_a "${ADDR[d]}"
setups=()
for _ in $(seq "$RUNS"); do
    stop_control a
    start_control a
    sleep 2   # links up and link-state converged; no route to d yet
    t=$( (ip netns exec bc_a ping -c 1 -W 3 "${ADDR[d]}" 2>/dev/null || true) | sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p')
    setups+=("${t:-nan}")
    [ -z "$t" ] && echo "no answer; a's log:" >&2 && tail -n 8 "$W/a-control.log" >&2
done
echo "setup runs (ms): ${setups[*]}" >&2
echo "setup_ms $(printf '%s\n' "${setups[@]}" | grep -v nan | median)"
teardown

# ---- reroute: diamond ---------------------------------------------------------------------
build a:b:1 a:c:2 b:d:3 c:d:4
wait_reach bc_a "${ADDR[d]}"
reroutes=()
for i in $(seq "$RUNS"); do
    wait_reach bc_a "${ADDR[d]}"
    sleep 1
    rx_b=$(ip -n bc_b -s link show bc_ba | awk '/RX:/ {getline; print $2}')
    ip netns exec bc_a ping -c 3 -i 0.01 "${ADDR[d]}" >/dev/null 2>&1 || true
    rx_b2=$(ip -n bc_b -s link show bc_ba | awk '/RX:/ {getline; print $2}')
    if [ "$rx_b2" -gt "$((rx_b + 2))" ]; then cut=bc_ab; else cut=bc_ac; fi
    PI=$(awk "BEGIN {print ${PING_MS:-5} / 1000}")
    ip netns exec bc_a ping -D -i "$PI" -W 0.5 -c "$((3000 / ${PING_MS:-5}))" "${ADDR[d]}" > "$W/ping$i.txt" 2>/dev/null &
    pp=$!
    sleep 1
    ip -n bc_a link set "$cut" down
    wait $pp || true
    ip -n bc_a link set "$cut" up
    gap=$(python3 - "$W/ping$i.txt" <<'PY'
import re, sys
ts = [float(m.group(1)) for m in re.finditer(r'^\[(\d+\.\d+)\].*time=', open(sys.argv[1]).read(), re.M)]
gaps = [b - a for a, b in zip(ts, ts[1:])]
print(f"{max(gaps)*1000:.0f}" if gaps else "nan")
PY
)
    reroutes+=("$gap")
    sleep 2
done
echo "reroute runs (ms): ${reroutes[*]}" >&2
echo "reroute_ms $(printf '%s\n' "${reroutes[@]}" | grep -v nan | median)"
echo "reroute_p95_ms $(printf '%s\n' "${reroutes[@]}" | grep -v nan | p95)"
echo "probe detections at a: $(grep -c 'data session was silent' "$W/a-control.log" || true) for $RUNS cuts"

# ---- false link-downs under load (LOAD_SECS > 0) ------------------------------------------
# The diamond with no cut for LOAD_SECS: a TCP stream a -> d (iperf3) through the mesh, pings
# every 10 ms, and two busy loops (one per core) beside the routers. Every probe detection here
# is a false link-down.
if [ "${LOAD_SECS:-0}" -gt 0 ]; then
    command -v iperf3 >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 >/dev/null; }
    teardown
    build a:b:1 a:c:2 b:d:3 c:d:4
    wait_reach bc_a "${ADDR[d]}"
    sleep 1
    before=$(cat "$W"/*-control.log | grep -c 'data session was silent' || true)
    ip netns exec bc_d iperf3 -s -D -1 -B "${ADDR[d]}" >/dev/null 2>&1
    sleep 0.3
    hogs=()
    for _ in $(seq "${HOGS:-2}"); do timeout "$LOAD_SECS" sh -c 'while :; do :; done' & hogs+=($!); done
    ip netns exec bc_a ping -i 0.01 -q -w "$LOAD_SECS" "${ADDR[d]}" > "$W/load-ping.txt" 2>&1 &
    lp=$!
    mbps=$(ip netns exec bc_a iperf3 -c "${ADDR[d]}" -t "$LOAD_SECS" -J 2>/dev/null \
        | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e6))' 2>/dev/null || echo nan)
    wait "$lp" || true
    for h in "${hogs[@]}"; do wait "$h" 2>/dev/null || true; done
    after=$(cat "$W"/*-control.log | grep -c 'data session was silent' || true)
    echo "load ${LOAD_SECS}s (iperf3 a->d ${mbps} Mbit/s, ${HOGS:-2} busy loops, pings every 10 ms: $(grep -o '[0-9.]*% packet loss' "$W/load-ping.txt" || echo '?'))"
    echo "false_link_downs $((after - before))   (probe_ms ${PROBE_MS:-5}, probe_dead_after ${PROBE_DEAD:-4}, 4 routers)"
fi
