"""Half-close in both directions, and resets on either side."""

import hashlib
import os
import socket
import time

import sluicetest as st

BOUND = 1.0 * st.SLOW  # "promptly"


def test_client_half_close_backend_still_replies(sluice, backend, port, relay):
    reply_tail = os.urandom(1 << 20)

    def handler(conn, srv):
        n, digest = st.hash_until_eof(conn)
        srv.note("eof")
        # The client's write side is shut; ours must still reach it, all of it.
        conn.sendall(f"{n} {digest.hex()}\n".encode() + reply_tail)
        conn.shutdown(socket.SHUT_WR)

    b = backend(handler)
    s = sluice(st.make_config(port, [f"b {b.addr}"], relay=relay))
    payload = os.urandom(1 << 20)
    c = st.connect(port)
    local = c.getsockname()[1]
    c.sendall(payload)
    c.shutdown(socket.SHUT_WR)
    data, how = st.recv_until_close(c, timeout=10 * st.SLOW)
    c.close()
    assert how == "eof", "client should see a clean EOF after the reply"
    line, _, rest = data.partition(b"\n")
    assert line == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}".encode(), (
        f"backend did not get the whole upload before EOF: {line[:100]!r}")
    assert rest == reply_tail, f"reply after half-close: got {len(rest)} bytes, expected {len(reply_tail)}"
    e = s.access_for(local)
    assert (int(e["up"]), int(e["down"])) == (len(payload), len(data)), e
    s.stop()


def test_backend_half_close_client_still_sends(sluice, backend, port, relay):
    def handler(conn, srv):
        conn.sendall(b"hello\n")
        conn.shutdown(socket.SHUT_WR)
        n, digest = st.hash_until_eof(conn)
        srv.state["got"] = (n, digest.hex())
        srv.note("eof")

    b = backend(handler)
    s = sluice(st.make_config(port, [f"b {b.addr}"], relay=relay))
    c = st.connect(port)
    data, how = st.recv_until_close(c, timeout=5 * st.SLOW)
    assert (data, how) == (b"hello\n", "eof"), "client should get the banner then EOF"
    # Our direction is still open: send after having seen EOF.
    payload = os.urandom(512 << 10)
    c.sendall(payload)
    c.shutdown(socket.SHUT_WR)
    with b.cond:
        assert b.cond.wait_for(lambda: "got" in b.state, 5 * st.SLOW), (
            "backend never saw the client's data + EOF after its own half-close")
    assert b.state["got"] == (len(payload), hashlib.sha256(payload).hexdigest())
    rest, how = st.recv_until_close(c, timeout=5 * st.SLOW)
    assert rest == b""
    c.close()
    s.stop()


def test_backend_rst_mid_stream_closes_client(sluice, backend, port, relay):
    def handler(conn, srv):
        assert st.recv_exact(conn, 2) == b"go"
        conn.sendall(os.urandom(200 << 10))
        srv.note("rst")
        st.rst_close(conn)

    b = backend(handler)
    s = sluice(st.make_config(port, [f"b {b.addr}"], relay=relay))
    c = st.connect(port)
    local = c.getsockname()[1]
    c.sendall(b"go")
    _, how = st.recv_until_close(c, timeout=5 * st.SLOW, limit=1 << 20)
    closed_at = time.monotonic()
    assert how == "reset", f"the backend's RST must reach the client as a reset, not {how}"
    c.close()
    rst_at = [t for what, t in b.events if what == "rst"]
    assert rst_at, f"backend handler did not run: {b.errors}"
    assert closed_at - rst_at[0] < BOUND, f"client closed {closed_at - rst_at[0]:.2f}s after backend RST"
    e = s.access_for(local)
    assert e["reason"] == "reset", f"backend RST should end the session with reason reset: {e}"
    s.stop()


def test_client_rst_frees_backend(sluice, backend, port, relay):
    b = backend(st.watch_handler)
    s = sluice(st.make_config(port, [f"b {b.addr}"], relay=relay))
    c = st.connect(port)
    local = c.getsockname()[1]
    st.roundtrip(c, b"x" * 1000)
    t0 = time.monotonic()
    st.rst_close(c)
    with b.cond:
        assert b.cond.wait_for(lambda: b.events, 5 * st.SLOW), "backend side never saw EOF or RST"
        what, t = b.events[0]
    assert what == "reset", f"the client's RST must reach the backend as a reset, not {what}"
    assert t - t0 < BOUND, f"backend side freed {t - t0:.2f}s after client RST ({what})"
    e = s.access_for(local)
    assert e["reason"] == "reset", f"client RST should end the session with reason reset: {e}"
    assert e["up"] == "1000" and e["down"] == "1000", e
    s.stop()
