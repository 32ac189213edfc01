"""idle_timeout closes idle sessions only."""

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
        # 2.5 s of traffic, a byte each 0.25 s: never idle for 1 s.
        try:
            end = time.monotonic() + 2.5
            while time.monotonic() < end:
                st.roundtrip(active, b"k", timeout=2.0)
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

    t.join(10)
    assert active_result == ["ok"], f"active session broke: {active_result}"
    active.close()
    e = s.access_for(active_port)
    assert e["reason"] == "client_close", e
    assert int(e["duration_ms"]) >= 2400, e
    s.stop()
