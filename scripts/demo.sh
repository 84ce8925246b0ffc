#!/usr/bin/env bash
# The mesh demo. Builds release, creates network namespaces: four routers in a diamond
# (r1-r2-r4, r1-r3-r4), a messenger on a management segment, and an "internet" namespace with a
# small HTTP server and an iperf3 server behind r4. Each router runs viscript with skywire-node
# and skywire-control; r4 runs a SOCKS server and a VPN server (an IPv4 exit with NAT), both
# allowing r1 only and published as services; r1 runs a SOCKS client and a VPN client that name
# no server: they find them through their controlplane's messenger service query. Shows the routes, fetches a page through SOCKS
# across two hops, fetches it and runs iperf3 through the VPN, and prints `ru` of every
# component. Exits 0 only when every step worked; removes everything on exit or Ctrl-C unless
# --keep.
set -euo pipefail
cd "$(dirname "$0")/.."
KEEP=0; [ "${1:-}" = "--keep" ] && KEEP=1
need=()
for pc in iproute2:ip curl:curl python3:python3 iputils-ping:ping iperf3:iperf3 nftables:nft; do command -v "${pc##*:}" >/dev/null || need+=("${pc%%:*}"); done
if [ ${#need[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
echo "== building (release)"
cargo build --release --locked --workspace --bins >/dev/null 2>&1 || cargo build --release --locked --workspace --bins
B=$PWD/target/release
W=$(mktemp -d /tmp/skywire-demo.XXXX)
NS=(dm_r1 dm_r2 dm_r3 dm_r4 dm_m dm_inet)
cleanup() {
    if [ $KEEP = 1 ]; then echo "== kept: namespaces ${NS[*]}, files in $W (viscript: $B/viscript --socket $W/r1.sock list)"; return; fi
    for n in "${NS[@]}"; do [ -S "$W/${n#dm_}.sock" ] && "$B/viscript" --socket "$W/${n#dm_}.sock" quit >/dev/null 2>&1 || true; done
    for n in "${NS[@]}"; do ip netns pids "$n" 2>/dev/null | xargs -r kill 2>/dev/null || true; done
    sleep 0.5
    for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
    rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
for n in "${NS[@]}"; do ip netns add "$n"; ip -n "$n" link set lo up; done

declare -A PK ADDR
for n in r1 r2 r3 r4 m; do
    out=$("$B/skywire-control" --key "$W/$n.key" keygen 2>/dev/null)
    PK[$n]=$(awk '/^pk/ {print $2}' <<<"$out"); ADDR[$n]=$(awk '/^address/ {print $2}' <<<"$out")
done

veth() { # nsA ifA addrA nsB ifB addrB
    ip link add "$2" netns "$1" type veth peer name "$5" netns "$4"
    ip -n "$1" addr add "$3" dev "$2"; ip -n "$1" link set "$2" up
    ip -n "$4" addr add "$6" dev "$5"; ip -n "$4" link set "$5" up
}
declare -A NB
edge() { # x y net
    veth "dm_$1" "$1$2" "10.86.$3.1/24" "dm_$2" "$2$1" "10.86.$3.2/24"
    NB[$1]+="  - {pk: ${PK[$2]}, endpoint: \"10.86.$3.2:7100\"}"$'\n'
    NB[$2]+="  - {pk: ${PK[$1]}, endpoint: \"10.86.$3.1:7100\"}"$'\n'
}
edge r1 r2 1; edge r1 r3 2; edge r2 r4 3; edge r3 r4 4
veth dm_r4 r4inet 10.86.9.1/24 dm_inet inet 10.86.9.2/24
ip -n dm_m link add br0 type bridge; ip -n dm_m addr add 10.86.100.100/24 dev br0; ip -n dm_m link set br0 up
i=1
for n in r1 r2 r3 r4; do
    ip link add "${n}m" netns "dm_$n" type veth peer name "m$n" netns dm_m
    ip -n "dm_$n" addr add "10.86.100.$i/24" dev "${n}m"; ip -n "dm_$n" link set "${n}m" up
    ip -n dm_m link set "m$n" master br0; ip -n dm_m link set "m$n" up
    i=$((i + 1))
done

echo "== starting viscript in every namespace"
cat > "$W/m-config.yaml" <<Y
apps:
  messenger: {path: $B/skywire-control, daemon: true, autostart: true, default_args: ["--key", "$W/m.key", "messenger", "--listen", "0.0.0.0:7200"]}
Y
for n in r1 r2 r3 r4; do
    printf 'node:\n  listen: "0.0.0.0:7000"\n  shards: 1\n' > "$W/$n-node.yaml"
    cat > "$W/$n-control.yaml" <<Y
key: $W/$n.key
fib_socket: $W/$n.fib
listen: "0.0.0.0:7100"
data_port: 7000
keepalive_ms: 100
messengers:
  - {pk: ${PK[m]}, endpoint: "10.86.100.100:7200"}
neighbours:
${NB[$n]}
Y
    extra=""
    if [ $n = r4 ]; then
        extra="  socks-server: {path: $B/skywire-socks-server, daemon: true, autostart: true, after: [skywire-control], default_args: [\"sockssrv0\", \"$W/r4.ctl\", \"8001\", \"--allow\", \"${PK[r1]}\", \"--allow-dst\", \"10.86.9.2/32\"]}
  vpn-server: {path: $B/skywire-vpn-server, daemon: true, autostart: true, after: [skywire-control], default_args: [\"vpnsrv0\", \"$W/r4.ctl\", \"8100\", \"--allow\", \"${PK[r1]}\", \"--uplink\", \"r4inet\", \"--state-dir\", \"$W/r4-state\", \"--allow-dst\", \"10.86.9.2/32\"]}"
    elif [ $n = r1 ]; then
        extra="  socks-client: {path: $B/skywire-socks-client, daemon: true, autostart: true, after: [skywire-control], default_args: [\"sockscli0\", \"$W/r1.ctl\", \"9001\"]}
  vpn-client: {path: $B/skywire-vpn-client, daemon: true, autostart: true, after: [skywire-control], default_args: [\"vpncli0\", \"$W/r1.ctl\", \"--state-dir\", \"$W/r1-state\"]}"
    fi
    cat > "$W/$n-config.yaml" <<Y
settings: {shutdown_grace_ms: 1000}
apps:
  skywire-node: {path: $B/skywire-node, daemon: true, autostart: true, default_args: ["--static", "$W/$n-node.yaml", "--fib-socket", "$W/$n.fib", "--no-pin"]}
  skywire-control: {path: $B/skywire-control, daemon: true, autostart: true, after: [skywire-node], default_args: ["run", "--config", "$W/$n-control.yaml"]}
$extra
Y
done
for n in m r1 r2 r3 r4; do
    ip netns exec "dm_$n" "$B/viscript" --config "$W/$n-config.yaml" --socket "$W/$n.sock" serve >"$W/$n-viscript.log" 2>&1 &
done
mkdir -p "$W/www"; echo "Hello from the internet namespace, fetched through the Skywire mesh." > "$W/www/index.html"
ip netns exec dm_inet python3 -m http.server 8080 --bind 10.86.9.2 --directory "$W/www" >"$W/http.log" 2>&1 &
ip netns exec dm_inet iperf3 -s -B 10.86.9.2 -p 5201 >"$W/iperf3.log" 2>&1 &

V() { "$B/viscript" --socket "$W/$1.sock" "${@:2}"; }
step() { echo; echo "== $*"; }
# The last lines of router $1's component named $2 (logs takes an id: look it up in `list`).
logs_of() {
    local id
    id=$(V "$1" --json list | python3 -c 'import json,sys; print(next((c["id"] for c in json.load(sys.stdin)["data"] if c.get("app")==sys.argv[1]), ""))' "$2" 2>/dev/null)
    [ -n "$id" ] && V "$1" logs "$id" -n 10
}

step "waiting for r1 to reach r4 (${ADDR[r4]})"
ok=0
for _ in $(seq 40); do ip netns exec dm_r1 ping -c 1 -W 1 "${ADDR[r4]}" >/dev/null 2>&1 && { ok=1; break; }; done
[ $ok = 1 ] || { echo "FAILED: no route r1 -> r4"; exit 1; }
echo "ok"

step "curl through SOCKS: r1 -> (r2|r3) -> r4 -> internet"
# The SOCKS client listens once it has found the server through the messenger.
page=""
for _ in $(seq 30); do
    page=$(ip netns exec dm_r1 curl -sS --max-time 5 --socks5-hostname 127.0.0.1:9001 http://10.86.9.2:8080/ 2>/dev/null) && break
    sleep 1
done
grep -q "fetched through the Skywire mesh" <<<"$page" || { echo "FAILED: curl through socks"; (logs_of r1 socks-client || true); exit 1; }
echo "$page"

step "curl through the VPN: r1 (100.64.x.x) -> (r2|r3) -> r4 (NAT) -> internet"
page=""
for _ in $(seq 30); do
    page=$(ip netns exec dm_r1 curl -sS --max-time 3 http://10.86.9.2:8080/ 2>/dev/null) && break
    sleep 1
done
grep -q "fetched through the Skywire mesh" <<<"$page" || { echo "FAILED: curl through the vpn"; (logs_of r1 vpn-client || true); exit 1; }
echo "$page"
echo "r1's routes now:"; ip -n dm_r1 -4 route | sed 's/^/  /'

step "iperf3 through the VPN (3 s)"
ip netns exec dm_r1 iperf3 -c 10.86.9.2 -p 5201 -t 3 -f m >"$W/iperf3-client.log" 2>&1 || { echo "FAILED: iperf3 through the vpn"; cat "$W/iperf3-client.log"; exit 1; }
grep -E "sender|receiver" "$W/iperf3-client.log"

sleep 1.5   # the controlplane refreshes its routes/peers views every second
step "r1: components";  V r1 list
step "r1: peers";       V r1 peers
step "r1: routes";      V r1 routes

step "ru of every component"
for n in r1 r2 r3 r4 m; do
    for id in $(V "$n" --json list | python3 -c 'import json,sys; print(" ".join(str(c["id"]) for c in json.loads(sys.stdin.readline())["data"]))'); do
        echo "-- $n #$id"; V "$n" ru "$id"
    done
done

echo; echo "demo: every step worked"
