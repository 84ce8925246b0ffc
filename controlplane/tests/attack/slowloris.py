# An attack tool of controlplane/tests/attack.rs (its doc there), also run by scripts/bench-attack.sh.
import socket, sys, time, resource, signal
resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
signal.signal(signal.SIGTERM, lambda *_: setattr(sys.modules[__name__], 'deadline', 0))
host = sys.argv[1]; ports = [int(p) for p in sys.argv[2].split(',')]
srcs = sys.argv[3].split(','); want = int(sys.argv[4])
deadline = time.time() + float(sys.argv[5]); max_attempts = int(sys.argv[6])
conns = []; attempts = opened = closed = peak = 0
while time.time() < deadline and attempts < max_attempts:
    while len(conns) < want and attempts < max_attempts:
        s = socket.socket(); s.setblocking(False)
        try:
            s.bind((srcs[(attempts // len(ports)) % len(srcs)], 0))
            s.connect_ex((host, ports[attempts % len(ports)]))
            conns.append([s, 0]); opened += 1
        except OSError:
            s.close()
        attempts += 1
    peak = max(peak, len(conns))
    alive = []
    for c in conns:
        try:
            c[0].send(b'\x20' if c[1] == 1 else b'\x00'); c[1] += 1
            alive.append(c)
        except BlockingIOError:
            alive.append(c)
        except OSError:
            c[0].close(); closed += 1
    conns = alive
    time.sleep(0.5)
print(attempts, opened, closed, peak, flush=True)
