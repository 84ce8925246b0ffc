#!/usr/bin/env bash
# Throughput of the apps across two mesh hops, beside the same transfer straight over the
# underlay, in the same run. Namespaces: routers r1 - r2 - r3 (skywire-node + skywire-control,
# release builds) and an "internet" namespace behind r3 with an HTTP server (sendfile) and an
# iperf3 server.
#   underlay-curl / underlay-iperf3: r1 -> inet by plain kernel forwarding through r2 and r3
#   socks-curl:  curl on r1 through skywire-socks-client -> mesh -> skywire-socks-server on r3
#   vpn-curl / vpn-iperf3: r1 (skywire-vpn-client) -> mesh -> skywire-vpn-server on r3 (NAT)
# Each figure is the median of RUNS transfers. Prints `NAME GBITS` lines, then ratios.
# Usage: scripts/bench-apps.sh [RUNS] [SECONDS]   (env: SIZE_MB for curl, default 512)
# Needs root. Installs iproute2, curl, iperf3, python3, nftables (apt).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
T=${2:-5}
SIZE_MB=${SIZE_MB:-512}

need=()
for pc in iproute2:ip curl:curl iperf3:iperf3 python3:python3 nftables:nft; do
    command -v "${pc##*:}" >/dev/null || need+=("${pc%%:*}")
done
if [ ${#need[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
cargo build --release --locked -p dataplane -p controlplane -p apps --bins >/dev/null 2>&1 ||
    cargo build --release --locked -p dataplane -p controlplane -p apps --bins
B=$PWD/target/release

NS=(ba_r1 ba_r2 ba_r3 ba_inet)
W=$(mktemp -d /tmp/skywire-bench-apps.XXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
    rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
for n in "${NS[@]}"; do ip netns add "$n"; ip -n "$n" link set lo up; done

veth() { # nsA ifA addrA nsB ifB addrB
    ip link add "$2" netns "$1" type veth peer name "$5" netns "$4"
    ip -n "$1" addr add "$3" dev "$2"; ip -n "$1" link set "$2" up
    ip -n "$4" addr add "$6" dev "$5"; ip -n "$4" link set "$5" up
}
veth ba_r1 r1r2 10.87.1.1/24 ba_r2 r2r1 10.87.1.2/24
veth ba_r2 r2r3 10.87.2.1/24 ba_r3 r3r2 10.87.2.2/24
veth ba_r3 r3inet 10.87.9.1/24 ba_inet inet 10.87.9.2/24

declare -A PK
for n in r1 r2 r3; do
    PK[$n]=$("$B/skywire-control" --key "$W/$n.key" keygen 2>/dev/null | awk '/^pk/ {print $2}')
done
nb() { echo "  - {pk: ${PK[$1]}, endpoint: \"$2:7100\"}"; }
declare -A NB
NB[r1]=$(nb r2 10.87.1.2)
NB[r2]=$(nb r1 10.87.1.1)$'\n'$(nb r3 10.87.2.2)
NB[r3]=$(nb r2 10.87.2.1)
bg() { # NS LOG CMD...
    ip netns exec "$1" "${@:3}" >"$2" 2>&1 &
    PIDS+=($!)
}
for n in r1 r2 r3; do
    printf 'node:\n  listen: "0.0.0.0:7000"\n  shards: 1\n' > "$W/$n-node.yaml"
    printf 'key: %s.key\nfib_socket: %s.fib\nlisten: "0.0.0.0:7100"\ndata_port: 7000\nkeepalive_ms: 200\nneighbours:\n%s\n' \
        "$n" "$n" "${NB[$n]}" > "$W/$n-control.yaml"
    bg "ba_$n" "$W/$n-node.log" "$B/skywire-node" --static "$W/$n-node.yaml" --fib-socket "$W/$n.fib" --no-pin
    bg "ba_$n" "$W/$n-control.log" "$B/skywire-control" run --config "$W/$n-control.yaml"
done

# The internet: a file served with sendfile (so the server is not the bottleneck) and iperf3.
dd if=/dev/urandom of="$W/big" bs=1M count="$SIZE_MB" status=none
cat > "$W/serve.py" <<'PY'
import http.server, os, sys
class H(http.server.SimpleHTTPRequestHandler):
    def copyfile(self, src, dst):
        self.wfile.flush()
        self.connection.sendfile(src)
    def log_message(self, *a):
        pass
os.chdir(sys.argv[2])
http.server.ThreadingHTTPServer((sys.argv[1], 8080), H).serve_forever()
PY
bg ba_inet "$W/http.log" python3 "$W/serve.py" 10.87.9.2 "$W"
bg ba_inet "$W/iperf3s.log" iperf3 -s -B 10.87.9.2 -p 5201

# Overlay reachability (r1 -> r3) before measuring.
R3=$("$B/skywire-control" --key "$W/r3.key" show 2>/dev/null | awk '/^address/ {print $2}')
ok=0
for _ in $(seq 40); do ip netns exec ba_r1 ping -c 1 -W 1 "$R3" >/dev/null 2>&1 && { ok=1; break; }; done
[ $ok = 1 ] || { echo "mesh did not come up" >&2; exit 1; }

median() { grep -E '^[0-9.]+$' | sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "FAILED"; else printf "%.3f\n", (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
curl_gbits() { # CURL-ARGS... -> Gbit/s of one download of the file
    ip netns exec ba_r1 curl -sS --max-time 60 -o /dev/null -w '%{speed_download}\n' "$@" http://10.87.9.2:8080/big |
        awk '{printf "%.4f\n", $1 * 8 / 1e9}'
}
iperf_gbits() {
    ip netns exec ba_r1 iperf3 -c 10.87.9.2 -p 5201 -t "$T" -J 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
print("%.4f" % (d["end"]["sum_received"]["bits_per_second"] / 1e9))'
}
measure() { # NAME FUNC ARGS...
    local vals=() v
    for _ in $(seq "$RUNS"); do
        v=$("${@:2}" 2>>"$W/errors.log") && vals+=("$v")
        sleep 0.5
    done
    v=$(printf '%s\n' "${vals[@]}" | median)
    echo "$1 $v"
    echo "$1 runs: ${vals[*]}" >&2
    eval "RES_${1//-/_}=$v"
}

# 1. Underlay: plain kernel forwarding along the same namespaces.
for n in ba_r2 ba_r3; do ip netns exec "$n" sysctl -qw net.ipv4.ip_forward=1; done
ip -n ba_r1 route add 10.87.9.0/24 via 10.87.1.2
ip -n ba_r2 route add 10.87.9.0/24 via 10.87.2.2
ip -n ba_r3 route add 10.87.1.0/24 via 10.87.2.1
ip -n ba_inet route add 10.87.1.0/24 via 10.87.9.1
for _ in $(seq 50); do ip netns exec ba_r1 curl -s --max-time 2 -o /dev/null http://10.87.9.2:8080/serve.py && break; sleep 0.2; done
measure underlay-curl curl_gbits
measure underlay-iperf3 iperf_gbits
ip -n ba_r1 route del 10.87.9.0/24 via 10.87.1.2
for n in ba_r2 ba_r3; do ip netns exec "$n" sysctl -qw net.ipv4.ip_forward=0; done

# 2. SOCKS across the mesh.
bg ba_r3 "$W/socks-server.log" "$B/skywire-socks-server" sockssrv0 "$W/r3.ctl" 8001 --allow "${PK[r1]}" --allow-dst 10.87.9.2/32
bg ba_r1 "$W/socks-client.log" "$B/skywire-socks-client" sockscli0 "$W/r1.ctl" 9001 --server-pk "${PK[r3]}" --server-port 8001
for _ in $(seq 50); do ip netns exec ba_r1 curl -s --max-time 2 -o /dev/null --socks5-hostname 127.0.0.1:9001 http://10.87.9.2:8080/serve.py && break; sleep 0.2; done
measure socks-curl curl_gbits --socks5-hostname 127.0.0.1:9001

# 3. The VPN across the mesh.
bg ba_r3 "$W/vpn-server.log" "$B/skywire-vpn-server" vpnsrv0 "$W/r3.ctl" 8100 --allow "${PK[r1]}" --uplink r3inet --state-dir "$W/r3-state" --allow-dst 10.87.9.2/32
bg ba_r1 "$W/vpn-client.log" "$B/skywire-vpn-client" vpncli0 "$W/r1.ctl" --server-pk "${PK[r3]}" --state-dir "$W/r1-state"
for _ in $(seq 50); do ip netns exec ba_r1 curl -s --max-time 2 -o /dev/null http://10.87.9.2:8080/serve.py && break; sleep 0.2; done
measure vpn-curl curl_gbits
measure vpn-iperf3 iperf_gbits

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "FAILED") printf "%.2f", a / b; else print "n/a" }'; }
echo "ratio socks-curl/underlay-curl $(ratio "$RES_socks_curl" "$RES_underlay_curl")"
echo "ratio vpn-curl/underlay-curl $(ratio "$RES_vpn_curl" "$RES_underlay_curl")"
echo "ratio vpn-iperf3/underlay-iperf3 $(ratio "$RES_vpn_iperf3" "$RES_underlay_iperf3")"
if [ -s "$W/errors.log" ]; then echo "errors:" >&2; sort -u "$W/errors.log" | head -5 >&2; fi
