# An attack tool of controlplane/tests/attack.rs (its doc there), also run by scripts/bench-attack.sh.
import socket, sys, random, time
rnd = random.Random(5); s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
deadline = time.time() + float(sys.argv[1]); cap = int(sys.argv[2]); n = 0; failed = 0
while time.time() < deadline and n < cap:
    a = 'fd73:6b79:' + ':'.join('%x' % rnd.getrandbits(16) for _ in range(6))
    try: s.sendto(b'x' * 64, (a, 9))
    except OSError: failed += 1
    n += 1
print(n, failed, flush=True)
