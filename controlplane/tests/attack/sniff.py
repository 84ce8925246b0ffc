# An attack tool of controlplane/tests/attack.rs (its doc there), also run by scripts/bench-attack.sh.
import socket, sys, time, struct, select
ifs = sys.argv[1].split(','); port = int(sys.argv[2])
deadline = time.time() + float(sys.argv[3]); cap = int(sys.argv[4]); out = sys.argv[5]
socks = []
for i in ifs:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0800)); s.bind((i, 0))
    socks.append(s)
print('ready', flush=True)
got = []
while time.time() < deadline and len(got) < cap:
    r, _, _ = select.select(socks, [], [], 0.2)
    for s in r:
        p, addr = s.recvfrom(65535)
        if addr[2] == socket.PACKET_OUTGOING: continue
        ip = p[14:]
        if len(ip) < 28 or ip[9] != 17: continue
        udp = ip[(ip[0] & 15) * 4:]
        dport, ulen = struct.unpack('>HH', udp[2:6])
        pl = udp[8:]
        if dport != port or ulen != len(pl) + 8 or len(pl) > 1472: continue
        got.append(pl)
with open(out, 'wb') as f:
    for pl in got: f.write(struct.pack('>H', len(pl)) + pl)
print(len(got), flush=True)
