"""idle_timeout closes idle sessions only."""

import os
import socket
import threading
import time

import sluicetest as st


def test_idle_session_closed_active_one_kept(sluice, backend, port):
    b = backend(st.echo_handler)
    s = sluice(st.make_config(port, [f"b {b.addr}"], pool={"idle_timeout": "1s"}))

    active = st.connect(port)
    active_port = active.getsockname()[1]
    active_result = []

    def keep_busy():
        # 2.5 s of traffic, a byte each 0.25 s: never idle for 1 s (the shape
        # of the load, not a bound: not scaled).
        try:
            end = time.monotonic() + 2.5
            while time.monotonic() < end:
                st.roundtrip(active, b"k", timeout=2.0 * st.SLOW)
                time.sleep(0.25)
            active_result.append("ok")
        except BaseException as e:  # noqa: BLE001
            active_result.append(e)

    t = threading.Thread(target=keep_busy, daemon=True)
    t.start()

    idle = st.connect(port)
    idle_port = idle.getsockname()[1]
    st.roundtrip(idle, b"once")
    how, secs = st.wait_closed(idle, 5.0 * st.SLOW)
    idle.close()
    assert 0.9 <= secs <= 1.0 + 1.0 * st.SLOW, f"idle session closed ({how}) after {secs:.2f}s, expected ~1s"
    e = s.access_for(idle_port)
    assert e["reason"] == "idle_timeout", e

    t.join(10 * st.SLOW)
    assert active_result == ["ok"], f"active session broke: {active_result}"
    active.close()
    e = s.access_for(active_port)
    assert e["reason"] == "client_close", e
    assert int(e["duration_ms"]) >= 2400, e
    s.stop()


def test_idle_timeout_with_bytes_still_buffered_resets_the_reader(sluice, backend, port, relay):
    """A client that stopped reading is timed out while sluice still holds
    bytes for it: it must get a reset after what reached it, not an EOF that
    would pass the cut stream off as complete."""
    block = os.urandom(1 << 20)

    def source(conn, srv):
        try:
            for _ in range(16):
                conn.sendall(block)
        except OSError:
            pass  # sluice gave up on the session: expected

    b = backend(source)
    s = sluice(st.make_config(port, [f"src {b.addr}"], relay=relay, pool={"idle_timeout": "1s"}))
    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    c.connect((st.LOCALHOST, port))
    local = c.getsockname()[1]
    e = s.access_for(local, timeout=10 * st.SLOW)
    assert e["reason"] == "idle_timeout", e
    data, how = st.recv_until_close(c, timeout=5 * st.SLOW, limit=32 << 20)
    c.close()
    assert how == "reset", f"after {len(data)} bytes the client saw {how}, expected a reset"
    assert len(data) < 16 * len(block)
    s.stop()
