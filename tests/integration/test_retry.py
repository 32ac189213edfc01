"""Connect failures: retries to other backends, connect_failed, connect_timeout."""

import time

import pytest

import sluicetest as st


def serve_name(port, timeout=5.0 * st.SLOW):
    """Connect, read the named backend's greeting, check echo, close."""
    c = st.connect(port, timeout=timeout)
    try:
        name = st.recv_line(c, timeout).decode()
        st.roundtrip(c, b"hi\n", timeout)
        return name, c.getsockname()[1]
    finally:
        c.close()


@pytest.mark.parametrize("balance", ["first", "roundrobin"])
def test_refused_backend_is_skipped(sluice, named, closed_port, port, balance):
    dead = closed_port()
    good = named("good")
    s = sluice(st.make_config(port, [f"dead {dead.addr}", f"good {good.addr}"], balance=balance,
                              pool={"retries": 1}))
    for _ in range(10):
        name, local = serve_name(port)
        assert name == "good"
        e = s.access_for(local)
        assert (e["backend"], e["addr"]) == ("good", good.addr), e
    s.stop()


def test_all_down_prompt_close_connect_failed(sluice, closed_port, port):
    a, b = closed_port(), closed_port()
    s = sluice(st.make_config(port, [f"a {a.addr}", f"b {b.addr}"],
                              pool={"retries": 2, "fall": 10}))
    for _ in range(3):
        c = st.connect(port)
        local = c.getsockname()[1]
        how, secs = st.wait_closed(c, 5.0 * st.SLOW)
        c.close()
        assert secs < 1.0 * st.SLOW, f"client closed only after {secs:.2f}s ({how})"
        e = s.access_for(local)
        assert e["reason"] == "connect_failed", e
        assert e["up"] == "0" and e["down"] == "0", e
    s.stop()


def test_connect_timeout_then_retry_succeeds(sluice, named, black_hole, port):
    hole = black_hole()
    good = named("good")
    s = sluice(st.make_config(port, [f"hole {hole.addr}", f"good {good.addr}"], balance="first",
                              pool={"connect_timeout": "500ms", "retries": 1, "fall": 10}))
    t0 = time.monotonic()
    name, local = serve_name(port)
    secs = time.monotonic() - t0
    assert name == "good"
    # 'first' tries the black hole first: the client waits for its connect_timeout.
    assert 0.45 <= secs < 0.5 + 1.0 * st.SLOW, f"served after {secs:.2f}s, expected ~0.5s"
    assert s.access_for(local)["backend"] == "good"
    s.stop()


@pytest.mark.parametrize("retries", [1, 2])
def test_connect_timeout_all_black_holes(sluice, black_hole, port, retries):
    holes = [black_hole() for _ in range(retries + 1)]
    s = sluice(st.make_config(port, [f"h{i} {h.addr}" for i, h in enumerate(holes)],
                              pool={"connect_timeout": "500ms", "retries": retries, "fall": 10}))
    expect = 0.5 * (retries + 1)
    c = st.connect(port)
    local = c.getsockname()[1]
    how, secs = st.wait_closed(c, expect + 5.0 * st.SLOW)
    c.close()
    assert expect - 0.1 <= secs <= expect + 0.6 * st.SLOW, (
        f"closed ({how}) after {secs:.2f}s, expected ~{expect:.1f}s = connect_timeout * (retries+1)")
    e = s.access_for(local)
    assert e["reason"] == "connect_failed", e
    s.stop()


def test_connect_timeout_single_black_hole(sluice, black_hole, port):
    """Only one (black-hole) server: the contract retries *other* backends, so
    sluice may give up after one attempt or retry the same server; either
    way the client is closed after connect_timeout, at most (retries+1) times."""
    hole = black_hole()
    s = sluice(st.make_config(port, [f"hole {hole.addr}"],
                              pool={"connect_timeout": "500ms", "retries": 2, "fall": 10}))
    c = st.connect(port)
    local = c.getsockname()[1]
    how, secs = st.wait_closed(c, 5.0 * st.SLOW)
    c.close()
    assert 0.45 <= secs <= 1.5 + 0.6 * st.SLOW, f"closed ({how}) after {secs:.2f}s"
    assert s.access_for(local)["reason"] == "connect_failed"
    s.stop()
