#!/usr/bin/env bash
# Soak: a mesh of six routers (a 2x3 grid r1-r2-r3 / r4-r5-r6 with rungs r1-r4, r2-r5, r3-r6)
# and a messenger, each a network namespace running viscript with its components, under
# continuous traffic and faults for DURATION seconds:
#   traffic  iperf3 r1 -> r6 in 10 s rounds, and a loop of 256 KiB checksummed transfers r3 -> r4
#   faults   every FAULT_SECS (3) one at random: a link flapped (down 1 s), a skywire-node or a
#            skywire-control of a random router killed with SIGKILL (viscript restarts it), the
#            messenger killed; data keys rotate every 3 s, route keys every 5 s
#   samples  every SAMPLE_SECS (5): RSS, open fds and threads of every component (by name, so a
#            restarted one is followed) and of every viscript
# At the end: per process kind the first, last and max of each figure, and a verdict: flat when
# every router's last <= first + slack (RSS 16 MiB or 25 %, fds 16, threads 8), taken after a
# 20 s warm-up and after the faults stopped and the mesh settled; then a final transfer that must
# succeed. Exits 0 only when everything is flat, the final transfer worked and at least half
# of the transfers during the faults did.
# Usage: scripts/soak.sh DURATION [--debug]   (--debug: target/debug binaries, no release build)
# Needs root; installs iproute2, iperf3, python3, iputils-ping if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:?usage: scripts/soak.sh DURATION [--debug]}
PROFILE=release; [ "${2:-}" = "--debug" ] && PROFILE=debug
FAULT_SECS=${FAULT_SECS:-3}
SAMPLE_SECS=${SAMPLE_SECS:-5}
WARMUP=20
need=()
for pc in iproute2:ip python3:python3 iputils-ping:ping iperf3:iperf3; do command -v "${pc##*:}" >/dev/null || need+=("${pc%%:*}"); done
if [ ${#need[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ $PROFILE = release ]; then
    cargo build --release --locked --workspace --bins >/dev/null 2>&1 || cargo build --release --locked --workspace --bins
else
    cargo build --locked --workspace --bins >/dev/null 2>&1 || cargo build --locked --workspace --bins
fi
B=$PWD/target/$PROFILE
W=$(mktemp -d /tmp/skywire-soak.XXXX)
R=(r1 r2 r3 r4 r5 r6)
# Namespace names carry this run's pid: a second soak (the test command's beside a long one)
# must not take over or delete the first one's namespaces.
S=sk$$
NS=("${S}_r1" "${S}_r2" "${S}_r3" "${S}_r4" "${S}_r5" "${S}_r6" "${S}_m")
JOBS=()
cleanup() {
    for j in "${JOBS[@]}"; do kill "$j" 2>/dev/null || true; done
    for n in "${NS[@]}"; do [ -S "$W/${n#"${S}"_}.sock" ] && timeout 10 "$B/viscript" --socket "$W/${n#"${S}"_}.sock" quit >/dev/null 2>&1 || true; done
    for n in "${NS[@]}"; do ip netns pids "$n" 2>/dev/null | xargs -r kill -9 2>/dev/null || true; done
    sleep 0.3
    for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
    if [ -n "${KEEP:-}" ]; then echo "kept $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
for n in "${NS[@]}"; do ip netns add "$n"; ip -n "$n" link set lo up; done

declare -A PK ADDR NB
for n in "${R[@]}" m; do
    out=$("$B/skywire-control" --key "$W/$n.key" keygen 2>/dev/null)
    PK[$n]=$(awk '/^pk/ {print $2}' <<<"$out"); ADDR[$n]=$(awk '/^address/ {print $2}' <<<"$out")
done
EDGES=()
edge() { # x y net
    ip link add "$1$2" netns "${S}_$1" type veth peer name "$2$1" netns "${S}_$2"
    ip -n "${S}_$1" addr add "10.87.$3.1/24" dev "$1$2"; ip -n "${S}_$1" link set "$1$2" up
    ip -n "${S}_$2" addr add "10.87.$3.2/24" dev "$2$1"; ip -n "${S}_$2" link set "$2$1" up
    NB[$1]+="  - {pk: ${PK[$2]}, endpoint: \"10.87.$3.2:7100\"}"$'\n'
    NB[$2]+="  - {pk: ${PK[$1]}, endpoint: \"10.87.$3.1:7100\"}"$'\n'
    EDGES+=("$1:$2")
}
edge r1 r2 1; edge r2 r3 2; edge r4 r5 3; edge r5 r6 4; edge r1 r4 5; edge r2 r5 6; edge r3 r6 7
ip -n "${S}_m" link add br0 type bridge; ip -n "${S}_m" addr add 10.87.100.100/24 dev br0; ip -n "${S}_m" link set br0 up
i=1
for n in "${R[@]}"; do
    ip link add "${n}m" netns "${S}_$n" type veth peer name "m$n" netns "${S}_m"
    ip -n "${S}_$n" addr add "10.87.100.$i/24" dev "${n}m"; ip -n "${S}_$n" link set "${n}m" up
    ip -n "${S}_m" link set "m$n" master br0; ip -n "${S}_m" link set "m$n" up
    i=$((i + 1))
done

cat > "$W/m-config.yaml" <<Y
apps:
  messenger: {path: $B/skywire-control, daemon: true, autostart: true, default_args: ["--key", "$W/m.key", "messenger", "--listen", "0.0.0.0:7200"]}
Y
for n in "${R[@]}"; do
    printf 'node:\n  listen: "0.0.0.0:7000"\n  shards: 1\n' > "$W/$n-node.yaml"
    cat > "$W/$n-control.yaml" <<Y
key: $W/$n.key
fib_socket: $W/$n.fib
listen: "0.0.0.0:7100"
data_port: 7000
keepalive_ms: 100
rekey_secs: 3
route_rekey_secs: 5
messengers:
  - {pk: ${PK[m]}, endpoint: "10.87.100.100:7200"}
neighbours:
${NB[$n]}
Y
    cat > "$W/$n-config.yaml" <<Y
settings: {shutdown_grace_ms: 1000}
apps:
  skywire-node: {path: $B/skywire-node, daemon: true, autostart: true, default_args: ["--static", "$W/$n-node.yaml", "--fib-socket", "$W/$n.fib", "--no-pin"]}
  skywire-control: {path: $B/skywire-control, daemon: true, autostart: true, after: [skywire-node], default_args: ["run", "--config", "$W/$n-control.yaml"]}
Y
done
for n in m "${R[@]}"; do
    ip netns exec "${S}_$n" "$B/viscript" --config "$W/$n-config.yaml" --socket "$W/$n.sock" serve >"$W/$n-viscript.log" 2>&1 &
    echo $! > "$W/$n-viscript.pid"
done
V() { "$B/viscript" --socket "$W/$1.sock" "${@:2}"; }
# pid of component APP under router $1's viscript (empty if none runs)
pid_of() {
    V "$1" --json list 2>/dev/null | python3 -c '
import json, sys
try:
    d = json.loads(sys.stdin.readline())["data"]
except Exception:
    sys.exit(0)
print(next((c["pid"] for c in d if c.get("app") == sys.argv[1] and c.get("pid")), ""))' "$2"
}
reach() { # ns addr tries
    for _ in $(seq "$3"); do ip netns exec "$1" ping -c 1 -W 1 "$2" >/dev/null 2>&1 && return 0; done
    return 1
}
reach "${S}_r1" "${ADDR[r6]}" 60 || { echo "FAILED: r1 cannot reach r6" >&2; exit 1; }
reach "${S}_r3" "${ADDR[r4]}" 30 || { echo "FAILED: r3 cannot reach r4" >&2; exit 1; }
echo "mesh up: 6 routers, ${#EDGES[@]} links; soaking for ${DURATION}s (faults every ${FAULT_SECS}s)"

# ---- checksummed transfers r3 -> r4 ---------------------------------------------------------
cat > "$W/xfer.py" <<'PY'
import hashlib, os, socket, sys
mode, addr = sys.argv[1], sys.argv[2]
if mode == "serve":
    s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, 9300)); s.listen(8)
    while True:
        c, _ = s.accept(); c.settimeout(20); h = hashlib.sha256(); n = 0
        try:
            while True:
                b = c.recv(65536)
                if not b: break
                h.update(b); n += len(b)
            c.sendall(f"{n} {h.hexdigest()}".encode())
        except OSError:
            pass
        c.close()
else:
    data = os.urandom(256 << 10)
    c = socket.create_connection((addr, 9300), timeout=20)
    c.sendall(data); c.shutdown(socket.SHUT_WR)
    got = c.recv(200).decode()
    sys.exit(0 if got == f"{len(data)} {hashlib.sha256(data).hexdigest()}" else 1)
PY
ip netns exec "${S}_r4" python3 "$W/xfer.py" serve "${ADDR[r4]}" >/dev/null 2>&1 & JOBS+=($!)
ip netns exec "${S}_r6" iperf3 -s -B "${ADDR[r6]}" >/dev/null 2>&1 & JOBS+=($!)
sleep 0.5
end=$((SECONDS + DURATION))
(
    ok=0; fail=0
    while [ $SECONDS -lt $end ]; do
        if timeout 25 ip netns exec "${S}_r3" python3 "$W/xfer.py" send "${ADDR[r4]}" >/dev/null 2>&1; then ok=$((ok + 1)); else fail=$((fail + 1)); sleep 0.5; fi
        echo "$ok $fail" > "$W/xfer.count"
    done
) & JOBS+=($!)
(
    while [ $SECONDS -lt $((end - 2)) ]; do
        timeout 15 ip netns exec "${S}_r1" iperf3 -c "${ADDR[r6]}" -t 10 -J >>"$W/iperf3.json" 2>/dev/null || sleep 1
    done
) & JOBS+=($!)

# ---- samples --------------------------------------------------------------------------------
sample() { # t
    for n in "${R[@]}"; do
        for app in skywire-node skywire-control viscript; do
            if [ $app = viscript ]; then p=$(cat "$W/$n-viscript.pid"); else p=$(pid_of "$n" $app); fi
            [ -n "$p" ] && [ -d "/proc/$p" ] || continue
            rss=$(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
            thr=$(awk '/^Threads/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
            fds=$(ls "/proc/$p/fd" 2>/dev/null | wc -l)
            echo "$1 $n $app $rss $fds $thr" >> "$W/samples"
        done
    done
}
# ---- faults ---------------------------------------------------------------------------------
faults=0
fault() {
    local k=$((RANDOM % 4)) r=${R[$((RANDOM % 6))]}
    case $k in
        0) local e=${EDGES[$((RANDOM % ${#EDGES[@]}))]}; local x=${e%%:*} y=${e##*:}
           echo "$((SECONDS)) flap $x-$y" >> "$W/faults"
           ip -n "${S}_$x" link set "$x$y" down; (sleep 1; ip -n "${S}_$x" link set "$x$y" up) & ;;
        1) local p; p=$(pid_of "$r" skywire-node); [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true
           echo "$((SECONDS)) kill $r skywire-node" >> "$W/faults" ;;
        2) local p; p=$(pid_of "$r" skywire-control); [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true
           echo "$((SECONDS)) kill $r skywire-control" >> "$W/faults" ;;
        3) local p; p=$(pid_of m messenger); [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true
           echo "$((SECONDS)) kill messenger" >> "$W/faults" ;;
    esac
    faults=$((faults + 1))
}
start=$SECONDS
next_fault=$((start + WARMUP / 2)); next_sample=$((start + WARMUP))
while [ $SECONDS -lt $end ]; do
    if [ $SECONDS -ge $next_sample ]; then sample $((SECONDS - start)); next_sample=$((SECONDS + SAMPLE_SECS)); fi
    if [ $SECONDS -ge $next_fault ] && [ $SECONDS -lt $((end - 15)) ]; then fault; next_fault=$((SECONDS + FAULT_SECS)); fi
    sleep 0.5
done
wait "${JOBS[2]}" 2>/dev/null || true
# Settle: every link and route heals, then the last sample and a final transfer.
reach "${S}_r1" "${ADDR[r6]}" 30 || true
sleep 3
sample $((SECONDS - start))
final=ok
timeout 30 ip netns exec "${S}_r3" python3 "$W/xfer.py" send "${ADDR[r4]}" >/dev/null 2>&1 || final=FAILED
read -r ok fail < "$W/xfer.count" || { ok=0; fail=0; }
mbps=$(python3 - "$W/iperf3.json" <<'PY'
import json, re, sys, statistics
txt = open(sys.argv[1]).read() if __import__("os").path.exists(sys.argv[1]) else ""
rates = []
for m in re.finditer(r'"sum_received"\s*:\s*\{[^}]*"bits_per_second"\s*:\s*([0-9.e+]+)', txt):
    rates.append(float(m.group(1)) / 1e6)
print(f"{statistics.median(rates):.0f} (median of {len(rates)} rounds)" if rates else "nan")
PY
)
echo "faults: $faults ($(awk '{k = $2; if (k == "kill") k = "kill " $NF; print k}' "$W/faults" 2>/dev/null | sort | uniq -c | awk '{printf "%s%s %s %s", (NR > 1 ? ", " : ""), $1, $2, $3}'))"
echo "transfers r3 -> r4 during the soak: $ok ok, $fail failed; final transfer: $final"
echo "iperf3 r1 -> r6 under faults: $mbps Mbit/s"
verdict=$(python3 - "$W/samples" <<'PY'
import sys, collections
rows = [l.split() for l in open(sys.argv[1])]
by = collections.defaultdict(list)
for t, n, app, rss, fds, thr in rows:
    by[(n, app)].append((int(t), int(rss), int(fds), int(thr)))
flat = True
kinds = collections.defaultdict(list)
for (n, app), s in sorted(by.items()):
    first, last = s[0], s[-1]
    mx = tuple(max(x[i] for x in s) for i in range(4))
    kinds[app].append((first, last, mx))
    ok = (last[1] <= first[1] + max(16384, first[1] // 4)) and last[2] <= first[2] + 16 and last[3] <= first[3] + 8
    if not ok:
        flat = False
        print(f"  GROWTH {n} {app}: rss {first[1]}->{last[1]} KiB fds {first[2]}->{last[2]} threads {first[3]}->{last[3]}")
print(f"{'component':16} {'rss KiB first/last/max (median over routers)':48} {'fds':14} threads")
med = lambda v: sorted(v)[len(v) // 2]
for app, l in sorted(kinds.items()):
    f = lambda i: f"{med([x[0][i] for x in l])}/{med([x[1][i] for x in l])}/{max(x[2][i] for x in l)}"
    print(f"{app:16} {f(1):48} {f(2):14} {f(3)}")
print("verdict: flat" if flat else "verdict: GROWING")
PY
)
echo "$verdict"
grep -q "verdict: flat" <<<"$verdict" && [ "$final" = ok ] && [ $((ok * 2)) -ge $((ok + fail)) ] && [ "$ok" -gt 0 ] || { echo "soak: FAILED"; exit 1; }
echo "soak: passed"
