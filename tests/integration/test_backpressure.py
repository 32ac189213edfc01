"""A client that stops reading costs bounded memory, and loses nothing."""

import hashlib
import os
import socket
import time

import pytest

import sluicetest as st

TOTAL = (256 << 20) if st.SANITIZER else (1 << 30)
BLOCK = os.urandom(1 << 20)
# Bound on sluice's resident memory while the backend is blocked.  With
# max_buffer=256k per direction the relay holds well under 1 MiB per session;
# a sanitizer build has shadow memory and a quarantine on top.
RSS_LIMIT_KIB = (384 << 10) if st.SANITIZER else (64 << 10)


def source_handler(conn, srv):
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)
    view = memoryview(BLOCK)
    sent = 0
    while sent < TOTAL:
        conn.sendall(view)
        sent += len(view)
        srv.state["sent"] = sent
    conn.shutdown(socket.SHUT_WR)
    srv.note("done")


@pytest.mark.heavy
def test_stalled_reader_bounded_rss_then_exact_bytes(sluice, backend, port, relay):
    b = backend(source_handler, conn_timeout=120 * st.SLOW)
    s = sluice(st.make_config(port, [f"src {b.addr}"], relay=relay,
                              glob={"max_buffer": "256k", "buffer_size": "16k"}))
    t_start = time.monotonic()
    rss_start = s.rss_kib()

    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    c.settimeout(5 * st.SLOW)
    c.connect((st.LOCALHOST, port))
    local = c.getsockname()[1]

    # Phase 1: don't read.  Wait until the backend makes no progress for 1 s.
    peak = rss_start
    last, last_change = -1, time.monotonic()
    deadline = time.monotonic() + 20 * st.SLOW
    while True:
        peak = max(peak, s.rss_kib())
        sent = b.state.get("sent", 0)
        now = time.monotonic()
        if sent != last:
            last, last_change = sent, now
        elif sent > 0 and now - last_change >= 1.0:  # a quiet window, not a bound
            break
        assert sent < TOTAL, "the backend sent everything although the client reads nothing"
        assert now < deadline, f"backend never stalled (sent {sent >> 20} MiB so far)"
        time.sleep(0.05)
    assert s.alive()
    assert last < (96 << 20), (f"backend got {last >> 20} MiB out while the client read nothing: "
                               f"sluice is not applying backpressure")
    assert peak < RSS_LIMIT_KIB, (f"sluice RSS peaked at {peak >> 10} MiB (start {rss_start >> 10} MiB) "
                                  f"with a stalled reader, bound {RSS_LIMIT_KIB >> 10} MiB")
    print(f"stalled after {last >> 20} MiB, RSS start {rss_start} KiB peak {peak} KiB")

    # Phase 2: read everything; count and content must be exact.
    h = hashlib.sha256()
    got = 0
    buf = bytearray(1 << 20)
    read_deadline = t_start + 55 * st.SLOW
    while True:
        left = read_deadline - time.monotonic()
        assert left > 0, f"read only {got} of {TOTAL} bytes in time"
        c.settimeout(left)
        n = c.recv_into(buf)
        if not n:
            break
        h.update(memoryview(buf)[:n])
        got += n
        if got % (64 << 20) < n:
            peak = max(peak, s.rss_kib())
    c.close()
    assert got == TOTAL, f"client received {got} bytes, backend sent {TOTAL}"
    expect = hashlib.sha256()
    for _ in range(TOTAL // len(BLOCK)):
        expect.update(BLOCK)
    assert h.digest() == expect.digest(), "content differs from what the backend sent"
    assert peak < RSS_LIMIT_KIB, f"sluice RSS peaked at {peak >> 10} MiB while draining"
    e = s.access_for(local)
    assert int(e["down"]) == TOTAL, e
    s.stop()
