# An attack tool of controlplane/tests/attack.rs (its doc there), also run by scripts/bench-attack.sh.
import socket, sys, random, time, struct
rnd = random.Random(3); s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
host = sys.argv[1]; ports = [int(p) for p in sys.argv[2].split(',')]
deadline = time.time() + float(sys.argv[3]); cap = int(sys.argv[4])
data = open(sys.argv[5], 'rb').read(); frames = []; off = 0
while off + 2 <= len(data):
    n = struct.unpack('>H', data[off:off + 2])[0]; frames.append(data[off + 2:off + 2 + n]); off += 2 + n
frames = [f for f in frames if len(f) >= 60]
n = 0; kinds = [0] * 5
while time.time() < deadline and n < cap:
    k = n % 5
    if k == 0: b = rnd.randbytes(rnd.randrange(0, 1400))
    elif k == 1: b = bytes([rnd.randrange(3, 256)]) + rnd.randbytes(60)
    elif k == 2: b = bytes([2, 0, 0, 0]) + struct.pack('<IQIQ', rnd.randrange(1, 17), rnd.getrandbits(40), 100, rnd.getrandbits(40)) + rnd.randbytes(rnd.randrange(32, 1200))
    elif k == 3: b = frames[(n // 5) % len(frames)]
    else:
        f = bytearray(frames[(n // 5) % len(frames)])
        f[8:16] = struct.pack('<Q', (1 << 40) + n); f[-1] ^= 0xff; b = bytes(f)
    try: s.sendto(b, (host, ports[n % len(ports)]))
    except OSError: pass
    n += 1; kinds[k] += 1
print(n, len(frames), *kinds, flush=True)
