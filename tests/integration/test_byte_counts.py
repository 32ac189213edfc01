"""Byte counts are what was delivered: the access log's up/down and the
listener and server byte counters count bytes written to the other side,
not bytes read, so a session that ends with data still buffered (reset,
timeout) does not claim to have relayed it."""

import socket
import threading
import time

import pytest

import ctltest as ct
import sluicetest as st
from ctltest import sockdir  # noqa: F401  (fixture)

TOTAL = 12 << 20  # more than a socket send buffer can take (tcp_wmem max: 4 MiB)


def test_bytes_buffered_at_the_end_are_not_counted(sluice, backend, port, sockdir, relay):
    if relay == "splice":
        pytest.skip("a splice direction buffers at most one pipe (fs.pipe-max-size), "
                    "not the 16m this test needs")
    sent = {"n": 0}
    done = threading.Event()

    def blast(conn, srv):
        chunk = b"d" * (64 << 10)
        while sent["n"] < TOTAL:
            conn.sendall(chunk)
            sent["n"] += len(chunk)
        done.set()
        while conn.recv(4096):
            pass

    b = backend(blast)
    sock = sockdir / "admin.sock"
    # max_buffer above TOTAL: sluice reads all of it while the client reads
    # nothing, so at the idle timeout most of it was read but never delivered.
    s = sluice(ct.ctl_config(port, [f"b {b.addr}"], sock=sock, glob={"max_buffer": "16m"}, relay=relay,
                             pool={"idle_timeout": f"{int(1000 * st.SLOW)}ms"}))
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.settimeout(5 * st.SLOW)
    c.connect(("127.0.0.1", port))
    with c:
        assert done.wait(10 * st.SLOW), "the backend could not send its bytes"
        line = s.wait_access(reason="idle_timeout", timeout=10 * st.SLOW)[0]
        # What reached the client's socket; read it all now to compare.
        got = 0
        c.settimeout(2 * st.SLOW)
        try:
            while True:
                d = c.recv(1 << 16)
                if not d:
                    break
                got += len(d)
        except (ConnectionResetError, socket.timeout):
            pass
    down = int(line["down"])
    assert 0 < down < TOTAL * 3 // 4, f"down={down}: counts bytes read ({TOTAL}), not delivered"
    assert got <= down, f"the client read {got} bytes, more than the logged down={down}"
    srv = ct.server_stats(sock, "main", "b")
    lst = next(x for x in ct.stats_json(sock)["listeners"] if x["name"] == "main")
    assert srv["bytes_in"] == down and lst["bytes_out"] == down, (srv, lst, down)
    s.stop()


def test_counts_agree_on_a_complete_session(sluice, backend, port, sockdir, relay):
    b = backend(st.echo_handler)
    sock = sockdir / "admin.sock"
    s = sluice(ct.ctl_config(port, [f"b {b.addr}"], sock=sock, relay=relay))
    with st.connect(port) as c:
        st.roundtrip(c, b"x" * 100000)
        c.shutdown(socket.SHUT_WR)
        data, how = st.recv_until_close(c)
    line = s.wait_access(reason="client_close")[0]
    assert line["up"] == "100000" and line["down"] == "100000", line
    srv = ct.server_stats(sock, "main", "b")
    assert srv["bytes_out"] == 100000 and srv["bytes_in"] == 100000, srv
    s.stop()
