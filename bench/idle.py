#!/usr/bin/python3
"""The idle workload's two ends for scripts/bench (standard library only).

  idle.py echo PORT
      Echo server on 127.0.0.1:PORT (the backend). Runs until SIGTERM.

  idle.py client PORT N HOLD_SECS [DEADLINE_SECS]
      Opens N connections to 127.0.0.1:PORT, sends a unique line on each and
      checks that exactly that line comes back. Then prints
      "ok n=N connect_s=.. verify_s=.." and holds every connection open until
      SIGTERM or HOLD_SECS (0: close at once), then prints "held dropped=K"
      (connections the other side closed while held). If not every connection
      is verified within DEADLINE_SECS (default 60) it prints
      "fail verified=V n=N ..." and exits 1.

Both raise their soft fd limit to the hard limit: 8,000 connections need
8,000+ descriptors on each end.
"""

import os
import resource
import selectors
import signal
import socket
import sys
import time


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def echo(port):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", port))
    lsock.listen(4096)
    lsock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(lsock, selectors.EVENT_READ, None)
    while not stop:
        for key, _ in sel.select(timeout=0.5):
            if key.data is None:
                for _ in range(256):  # bounded accept burst
                    try:
                        c, _ = lsock.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as e:  # EMFILE: try again on the next event
                        print(f"echo: accept: {e}", file=sys.stderr)
                        time.sleep(0.01)
                        break
                    c.setblocking(False)
                    sel.register(c, selectors.EVENT_READ, 1)
                continue
            c = key.fileobj
            try:
                data = c.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(c)
                c.close()
                continue
            try:
                c.sendall(data)  # tiny lines: the send buffer never fills
            except OSError:
                sel.unregister(c)
                c.close()
    return 0


def client(port, n, hold, deadline_s):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    t0 = time.monotonic()
    deadline = t0 + deadline_s
    sel = selectors.DefaultSelector()
    want, got = {}, {}
    verified = 0
    bad = 0

    def drain(timeout):
        nonlocal verified, bad
        for key, _ in sel.select(timeout=timeout):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            fd = s.fileno()
            if not data:
                bad += 1
                sel.unregister(s)
                continue
            got[fd] += data
            if len(got[fd]) >= len(want[fd]):
                if got[fd] == want[fd]:
                    verified += 1
                else:
                    bad += 1
                sel.unregister(s)

    socks = []
    connect_err = None
    for i in range(n):
        if time.monotonic() > deadline:
            connect_err = "deadline while connecting"
            break
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            line = f"ping {i} {os.getpid()} {time.monotonic_ns()}\n".encode()
            s.sendall(line)
        except OSError as e:
            connect_err = f"connection {i}: {e}"
            break
        s.setblocking(False)
        socks.append(s)
        want[s.fileno()], got[s.fileno()] = line, b""
        sel.register(s, selectors.EVENT_READ)
        if i % 256 == 255:
            drain(0)
    t_conn = time.monotonic() - t0
    while verified + bad < len(socks) and time.monotonic() < deadline and not stop:
        drain(0.2)
    t_ver = time.monotonic() - t0
    if connect_err or verified != n:
        print(f"fail verified={verified} n={n} bad={bad} connected={len(socks)} "
              f"error={connect_err or '-'}", flush=True)
        return 1
    print(f"ok n={n} connect_s={t_conn:.3f} verify_s={t_ver:.3f}", flush=True)
    # Hold: watch for connections the proxy closes under us.
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    dropped = 0
    end = time.monotonic() + hold
    while not stop and time.monotonic() < end:
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                dropped += 1
                sel.unregister(s)
    print(f"held dropped={dropped}", flush=True)
    for s in socks:
        s.close()
    return 0


def main(argv):
    raise_nofile()
    if len(argv) >= 3 and argv[1] == "echo":
        return echo(int(argv[2]))
    if len(argv) >= 5 and argv[1] == "client":
        deadline = float(argv[5]) if len(argv) > 5 else 60.0
        return client(int(argv[2]), int(argv[3]), float(argv[4]), deadline)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
