#!/usr/bin/env bash
# Throughput over sky0, beside the peer baselines in the same invocation.
# One TCP stream (iperf3) through skywire-node on two topologies built from network namespaces:
#   skywire-2node: a - b            skywire-3node: a - r - b (r relays by label)
# then ../shared/bench/peerbench.sh (veth, wireguard-go, boringtun) in the same run.
# Each topology runs once per backend in BACKENDS (default "uring epoll"), then 2-node with 4
# streams (iperf3 -P 4) on the default backend (auto).
# Prints one line per system: NAME GBITS (receiver side), e.g. skywire-2node-uring,
# skywire-2node-epoll, skywire-2node-4streams, skywire-3node-uring, ...
# Usage: scripts/bench-throughput.sh [SECONDS]   (env: BACKENDS="uring epoll", SHARDS=N,
#        OFFLOAD=auto|on|off: --offload, default auto = on)
# Needs root. Installs iperf3, wireguard-go, wireguard-tools (apt) and boringtun-cli (cargo).
set -euo pipefail
cd "$(dirname "$0")/.."
T=${1:-5}
BACKENDS=${BACKENDS:-${BACKEND:-uring epoll}}
SHARDS=${SHARDS:-2}
# Several nodes share this machine's cores: no pinning unless asked (PIN_SHARDS=1).
PIN=--no-pin; [ "${PIN_SHARDS:-0}" = 1 ] && PIN=
OFFLOAD_FLAG="--offload ${OFFLOAD:-auto}"
PEERBENCH=${PEERBENCH:-../shared/bench/peerbench.sh}

need=()
command -v iperf3 >/dev/null || need+=(iperf3)
command -v wireguard-go >/dev/null || need+=(wireguard-go)
command -v wg >/dev/null || need+=(wireguard-tools)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! command -v boringtun-cli >/dev/null && [ ! -x ~/.cargo/bin/boringtun-cli ]; then
    echo "installing boringtun-cli (cargo install, a few minutes)..." >&2
    cargo install --locked boringtun-cli >/dev/null 2>&1 || echo "boringtun-cli: install failed; skipped" >&2
fi
cargo build --release --locked -p dataplane --bin skywire-node >/dev/null 2>&1 || cargo build --release --locked -p dataplane --bin skywire-node
NODE=${CARGO_TARGET_DIR:-$PWD/target}/release/skywire-node

W=$(mktemp -d)
NS=(sb_a sb_b sb_r)
cleanup() {
    for n in "${NS[@]}"; do ip netns pids "$n" 2>/dev/null | xargs -r kill 2>/dev/null || true; done
    sleep 0.3
    for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
    rm -rf "$W"
}
trap cleanup EXIT
cleanup; W=$(mktemp -d)

key() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }

# node NAME LISTEN ADDR4 SESSIONS RULES ROUTES [ROUTE_KEYS] -> config file (0600: it holds keys)
# MTU 1400: a frame adds 60 bytes (header, route tag, hop tag), 1400 + 60 + 28 fits the veths.
node() {
    cat > "$W/$1.yaml" <<Y
node:
  listen: "$2"
  shards: $SHARDS
  mtu: 1400
  addresses: [$3]
sessions:
$4
route_keys:
${7:-  []}
rules:
$5
routes:
$6
Y
    chmod 600 "$W/$1.yaml"
}

run_iperf() { # NAME SERVER_NS CLIENT_NS ADDR [STREAMS]
    ip netns exec "$2" iperf3 -s -D -1 -B "$4" >/dev/null 2>&1
    sleep 0.5
    out=$(ip netns exec "$3" iperf3 -c "$4" -t "$T" -P "${5:-1}" -J 2>/dev/null || true)
    python3 - "$1" "$out" <<'PY'
import json, sys
try:
    d = json.loads(sys.argv[2]); print(f"{sys.argv[1]} {d['end']['sum_received']['bits_per_second']/1e9:.3f}")
except Exception as e:
    try: why = json.loads(sys.argv[2]).get('error', e)
    except Exception: why = e
    print(sys.argv[1], "FAILED", why)
PY
}

start_nodes() { # BACKEND NS...
    BACKEND=$1; shift
    for n in "$@"; do
        ip netns exec "$n" "$NODE" --static "$W/$n.yaml" --backend "$BACKEND" --fib-socket "$W/$n.fib" $PIN $OFFLOAD_FLAG > "$W/$n.log" 2>&1 &
    done
    for n in "$@"; do
        for _ in $(seq 50); do ip -n "$n" link show sky0 >/dev/null 2>&1 && break; sleep 0.1; done
    done
    sleep 0.3
}

stop_nodes() {
    for n in "$@"; do ip netns pids "$n" | xargs -r kill 2>/dev/null || true; done
    sleep 0.5
}

# ---- two nodes -------------------------------------------------------------------------
for n in "${NS[@]}"; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip link add sb_ab netns sb_a type veth peer name sb_ba netns sb_b
ip -n sb_a addr add 10.88.0.1/24 dev sb_ab; ip -n sb_a link set sb_ab up
ip -n sb_b addr add 10.88.0.2/24 dev sb_ba; ip -n sb_b link set sb_ba up
KAB=$(key); KBA=$(key); RAB=$(key); RBA=$(key)
RK="  - {id: 1, key: $RAB}
  - {id: 2, key: $RBA}"
node sb_a "10.88.0.1:7000" "10.90.0.1/24" \
    "  - {id: 1, peer_id: 1, peer: \"10.88.0.2:7000\", peer_shards: $SHARDS, tx_key: $KAB, rx_key: $KBA}" \
    "  - {session: 1, label: 100, deliver: [10.90.0.2/32], key: 2}" \
    "  - {prefix: 10.90.0.2/32, session: 1, label: 100, key: 1}" "$RK"
node sb_b "10.88.0.2:7000" "10.90.0.2/24" \
    "  - {id: 1, peer_id: 1, peer: \"10.88.0.1:7000\", peer_shards: $SHARDS, tx_key: $KBA, rx_key: $KAB}" \
    "  - {session: 1, label: 100, deliver: [10.90.0.1/32], key: 1}" \
    "  - {prefix: 10.90.0.1/32, session: 1, label: 100, key: 2}" "$RK"
for be in $BACKENDS; do
    start_nodes "$be" sb_a sb_b
    run_iperf "skywire-2node-$be" sb_b sb_a 10.90.0.2
    stop_nodes sb_a sb_b
    grep -ho "[0-9]* shards, [a-z_]* backend[a-z, ]*" "$W"/sb_a.log >&2 || true
done
start_nodes auto sb_a sb_b
run_iperf skywire-2node-4streams sb_b sb_a 10.90.0.2 4
stop_nodes sb_a sb_b
grep -ho "[0-9]* shards, [a-z_]* backend[a-z, ]*" "$W"/sb_a.log >&2 || true

# ---- three nodes: a - r - b ------------------------------------------------------------
ip -n sb_b link del sb_ba 2>/dev/null || true
ip link add sb_ar netns sb_a type veth peer name sb_ra netns sb_r
ip link add sb_rb netns sb_r type veth peer name sb_br netns sb_b
ip -n sb_a addr add 10.88.1.1/24 dev sb_ar; ip -n sb_a link set sb_ar up
ip -n sb_r addr add 10.88.1.2/24 dev sb_ra; ip -n sb_r link set sb_ra up
ip -n sb_r addr add 10.88.2.1/24 dev sb_rb; ip -n sb_r link set sb_rb up
ip -n sb_b addr add 10.88.2.2/24 dev sb_br; ip -n sb_b link set sb_br up
K1=$(key); K2=$(key); K3=$(key); K4=$(key)
node sb_a "10.88.1.1:7000" "10.90.1.1/24" \
    "  - {id: 1, peer_id: 1, peer: \"10.88.1.2:7000\", peer_shards: $SHARDS, tx_key: $K1, rx_key: $K2}" \
    "  - {session: 1, label: 301, deliver: [10.90.1.2/32], key: 2}" \
    "  - {prefix: 10.90.1.2/32, session: 1, label: 200, key: 1}" "$RK"
node sb_r "0.0.0.0:7000" "10.90.9.9/32" \
    "  - {id: 1, peer_id: 1, peer: \"10.88.1.1:7000\", peer_shards: $SHARDS, tx_key: $K2, rx_key: $K1}
  - {id: 2, peer_id: 1, peer: \"10.88.2.2:7000\", peer_shards: $SHARDS, tx_key: $K3, rx_key: $K4}" \
    "  - {session: 1, label: 200, forward: {session: 2, label: 201}}
  - {session: 2, label: 300, forward: {session: 1, label: 301}}" \
    "  []"
node sb_b "10.88.2.2:7000" "10.90.1.2/24" \
    "  - {id: 1, peer_id: 2, peer: \"10.88.2.1:7000\", peer_shards: $SHARDS, tx_key: $K4, rx_key: $K3}" \
    "  - {session: 1, label: 201, deliver: [10.90.1.1/32], key: 1}" \
    "  - {prefix: 10.90.1.1/32, session: 1, label: 300, key: 2}" "$RK"
for be in $BACKENDS; do
    start_nodes "$be" sb_a sb_r sb_b
    run_iperf "skywire-3node-$be" sb_b sb_a 10.90.1.2
    stop_nodes sb_a sb_r sb_b
done

# ---- peers, same invocation -----------------------------------------------------------
if [ -x "$PEERBENCH" ] || [ -f "$PEERBENCH" ]; then
    PATH=$PATH:$HOME/.cargo/bin PEERBENCH_PLAIN=1 bash "$PEERBENCH" "$T"
else
    echo "peerbench.sh not found at $PEERBENCH: peers skipped" >&2
fi
