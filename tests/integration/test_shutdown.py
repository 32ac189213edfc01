"""SIGTERM: stop accepting at once, drain live sessions, exit 0."""

import hashlib
import os
import re
import signal
import socket
import time

import pytest

import sluicetest as st

CHUNK = os.urandom(64 << 10)
CHUNKS = 64            # 4 MiB
# s between chunks: the transfer takes ~1.6 s (scaled, so it still outlasts
# the 1 s * SLOW bound on the refusal after SIGTERM)
PACE = 0.025 * st.SLOW


def slow_source(conn, srv):
    assert st.recv_exact(conn, 2) == b"go"
    for _ in range(CHUNKS):
        conn.sendall(CHUNK)
        time.sleep(PACE)
    conn.shutdown(socket.SHUT_WR)
    srv.note("done")


def refused(port):
    try:
        c = st.connect(port, timeout=0.5 * st.SLOW)
    except ConnectionRefusedError:
        return True
    except (socket.timeout, ConnectionResetError):
        # Reset: the SYN reached a listening socket being closed right then;
        # not yet a clean refusal, so ask again.
        return False
    c.close()
    return False


@pytest.mark.threaded
def test_sigterm_drains_transfer_and_refuses_new(sluice, backend, port):
    b = backend(slow_source)
    s = sluice(st.make_config(port, [f"src {b.addr}"], workers=2, glob={"shutdown_timeout": "10s"}))
    c = st.connect(port)
    local = c.getsockname()[1]
    c.sendall(b"go")
    h = hashlib.sha256()
    got = st.recv_exact(c, 256 << 10)
    h.update(got)

    s.signal(signal.SIGTERM)
    t0 = time.monotonic()
    st.wait_for(lambda: refused(port), 1.0 * st.SLOW,
                "new connections to be refused after SIGTERM (listening sockets closed)")
    assert time.monotonic() - t0 < 1.0 * st.SLOW
    assert not [w for w, _ in b.events if w == "done"], "transfer ended before the check: test too fast"
    assert s.alive(), "sluice exited while a session was still transferring"
    s.wait_log("stopping")

    total = len(got)
    data, how = st.recv_until_close(c, timeout=10 * st.SLOW, limit=CHUNKS * len(CHUNK))
    c.close()
    h.update(data)
    total += len(data)
    assert how == "eof"
    assert total == CHUNKS * len(CHUNK), f"received {total} of {CHUNKS * len(CHUNK)} bytes"
    assert h.digest() == hashlib.sha256(CHUNK * CHUNKS).digest()

    rc = s.wait_exit(5 * st.SLOW)
    assert rc == 0, f"exit code {rc}\n{s.tail()}"
    assert s.access_for(local)["reason"] == "backend_close"
    lines = s.log().splitlines()
    stop_at = next(i for i, line in enumerate(lines) if "stopping" in line)
    assert any(re.search(r"\bexit\b", line) for line in lines[stop_at + 1:]), (
        f"no 'exit' line after 'stopping'\n{s.tail()}")


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.threaded)])
def test_shutdown_timeout_closes_stuck_session(sluice, backend, port, workers):
    b = backend(st.echo_handler)
    s = sluice(st.make_config(port, [f"b {b.addr}"], workers=workers, glob={"shutdown_timeout": "1s"}))
    # Several stuck sessions (the reuseport hash spreads them over the workers).
    socks = [st.connect(port) for _ in range(4)]
    for c in socks:
        st.roundtrip(c)
    c = socks[0]
    local = c.getsockname()[1]
    t0 = time.monotonic()
    s.signal(signal.SIGTERM)
    how, secs = st.wait_closed(c, 5 * st.SLOW)
    c.close()
    rc = s.wait_exit(5 * st.SLOW)
    elapsed = time.monotonic() - t0
    assert rc == 0, f"exit code {rc}\n{s.tail()}"
    assert 0.8 <= secs <= 1.0 + 1.0 * st.SLOW, f"stuck session closed ({how}) {secs:.2f}s after SIGTERM"
    assert elapsed <= 1.0 + 2.0 * st.SLOW, f"sluice took {elapsed:.2f}s to exit with shutdown_timeout=1s"
    assert s.access_for(local)["reason"] == "shutdown"
    for other in socks[1:]:
        assert st.wait_closed(other, 1.0 * st.SLOW)[1] < 1.0 * st.SLOW
        other.close()
    assert len(s.access(reason="shutdown")) == len(socks), s.tail()
