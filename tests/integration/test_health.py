"""Active health checks (tcp, send-expect) and passive marking."""

import collections
import socket
import time

import pytest

import ctltest as ct
import sluicetest as st
from ctltest import port_server, sockdir  # noqa: F401  (fixtures)

INTERVAL = 0.2  # check_interval in these tests (s)
TIMEOUT = 0.3  # check_timeout (s)
MARGIN = 0.6 * st.SLOW  # scheduling, jitter (+-10% of the interval), log polling


def health_pool(**kw):
    p = {"check": "tcp", "check_interval": f"{int(INTERVAL * 1000)}ms",
         "check_timeout": f"{int(TIMEOUT * 1000)}ms", "fall": 3, "rise": 2}
    p.update(kw)
    return p


def wait_log_timed(s, needle, bound, t0):
    """Wait for `needle` in the log (up to bound + 2 s); return seconds since t0."""
    s.wait_log(needle, timeout=bound + 2.0 * st.SLOW)
    return time.monotonic() - t0


def picks(port, n):
    return collections.Counter(ct.pick(port) for _ in range(n))


def test_killed_backend_goes_down_and_comes_back(sluice, port_server, port, sockdir):
    fall, rise = 3, 2
    a = port_server(st.named_handler("a"), name="a")
    b = port_server(st.named_handler("b"), name="b")
    sock = str(sockdir / "admin.sock")
    s = sluice(ct.ctl_config(port, [f"a {a.addr}", f"b {b.addr}"], sock=sock,
                             pool=health_pool(fall=fall, rise=rise)))
    st.wait_for(lambda: ct.server_stats(sock, "main", "a")["checks_total"] >= 2, 3.0 * st.SLOW,
                "two health checks of main/a")
    sv = ct.server_stats(sock, "main", "a")
    assert sv["state"] == "up" and sv["check"] == "ok" and sv["checks_failed"] == 0, sv
    assert picks(port, 4) == {"a": 2, "b": 2}

    a.stop()
    t0 = time.monotonic()
    bound = fall * INTERVAL + TIMEOUT + MARGIN
    took = wait_log_timed(s, "main/a DOWN (", bound, t0)
    print(f"DOWN after {took:.2f}s (bound {bound:.2f}s)")
    assert took <= bound, f"main/a DOWN logged {took:.2f}s after the kill, bound {bound:.2f}s"
    low = (fall - 1) * INTERVAL * 0.9 - 0.05
    assert took >= low, f"main/a DOWN after {took:.2f}s: too early for fall={fall} (at least {low:.2f}s)"
    line = ct.log_lines(s, "main/a DOWN (")[-1]
    assert f"after {fall} failed checks" in line and "refused" in line, line
    assert "[warn]" in line or "[error]" in line, line
    sv = ct.server_stats(sock, "main", "a")
    assert sv["state"] == "down" and sv["transitions"] == 1, sv
    assert "down" in ct.ask(sock, "show backends").split("main/a", 1)[1].splitlines()[0]

    attempts = sv["connect_attempts"]
    assert picks(port, 20) == {"b": 20}
    assert ct.server_stats(sock, "main", "a")["connect_attempts"] == attempts, "a DOWN server got connects"

    a.start()
    t1 = time.monotonic()
    bound = rise * INTERVAL * 1.1 + TIMEOUT + MARGIN
    took = wait_log_timed(s, "main/a UP (", bound, t1)
    print(f"UP after {took:.2f}s (bound {bound:.2f}s)")
    assert took <= bound, f"main/a UP logged {took:.2f}s after the restart, bound {bound:.2f}s"
    low = (rise - 1) * INTERVAL * 0.9 - 0.05
    assert took >= low, f"main/a UP after {took:.2f}s: too early for rise={rise} (at least {low:.2f}s)"
    line = ct.log_lines(s, "main/a UP (")[-1]
    assert f"after {rise} successful checks" in line, line
    sv = ct.server_stats(sock, "main", "a")
    assert sv["state"] == "up" and sv["transitions"] == 2, sv
    got = picks(port, 10)
    assert got["a"] >= 4, f"after UP, a got {dict(got)}"
    s.stop()


def check_responder(answer, request=None):
    """Backend for send-expect: read the request line, answer, close."""
    def handler(conn, srv):
        conn.settimeout(5 * st.SLOW)
        req = b""
        while not req.endswith(b"\n") and len(req) < 256:
            d = conn.recv(256)
            if not d:
                break
            req += d
        srv.state.setdefault("requests", []).append(req)
        if request is None or req == request:
            conn.sendall(answer)
        else:
            conn.sendall(b"WRONG REQUEST\r\n")
    return handler


def mute_handler(conn, srv):
    """Accepts, reads, never answers."""
    conn.settimeout(10 * st.SLOW)
    try:
        while conn.recv(256):
            pass
    except (socket.timeout, OSError):
        pass


def test_send_expect(sluice, backend, port, sockdir):
    fall = 2
    good = backend(check_responder(b"PONG ok\r\n", request=b"PING!\r\n"), name="good")
    bad = backend(check_responder(b"NOPE\r\n"), name="bad")
    mute = backend(mute_handler, name="mute")
    sock = str(sockdir / "admin.sock")
    t0 = time.monotonic()
    s = sluice(ct.ctl_config(port, [f"good {good.addr}", f"bad {bad.addr}", f"mute {mute.addr}"], sock=sock,
                             pool=health_pool(check="send-expect", check_send=r"PING\x21\r\n",
                                              check_expect="PONG", fall=fall)))
    bound = fall * INTERVAL * 1.1 + MARGIN
    took = wait_log_timed(s, "main/bad DOWN (bad_reply", bound, t0)
    assert took <= bound + 0.5 * st.SLOW, f"main/bad DOWN after {took:.2f}s, bound {bound:.2f}s\n{s.tail()}"
    line = ct.log_lines(s, "main/bad DOWN (")[-1]
    assert f"after {fall} failed checks" in line, line
    bound = fall * (INTERVAL * 1.1 + TIMEOUT) + MARGIN
    took = wait_log_timed(s, "main/mute DOWN (timeout", bound, t0)
    assert took <= bound + 0.5 * st.SLOW, f"main/mute DOWN after {took:.2f}s, bound {bound:.2f}s\n{s.tail()}"

    st.wait_for(lambda: ct.server_stats(sock, "main", "good")["checks_total"] >= 6, 5.0 * st.SLOW,
                "6 checks of main/good")
    sv = ct.server_stats(sock, "main", "good")
    assert sv["state"] == "up" and sv["check"] == "ok" and sv["checks_failed"] == 0, sv
    assert not ct.log_lines(s, "main/good DOWN"), s.tail()
    reqs = good.state["requests"]
    assert reqs and all(r == b"PING!\r\n" for r in reqs), f"check_send escapes: good got {set(reqs)}"
    sv = ct.server_stats(sock, "main", "bad")
    assert sv["state"] == "down" and sv["check"] == "bad_reply", sv
    sv = ct.server_stats(sock, "main", "mute")
    assert sv["state"] == "down" and sv["check"] == "timeout", sv
    assert 0.8 * TIMEOUT * 1000 <= sv["check_ms"] <= TIMEOUT * 1000 + 200 * st.SLOW, (
        f"a timed-out check took {sv['check_ms']}ms with check_timeout {TIMEOUT * 1000:.0f}ms")
    s.stop()


@pytest.mark.threaded
def test_traffic_never_sent_to_down_server(sluice, named, port, sockdir):
    # The check expects the reply to start with "OK-": named backends send
    # their name first, so "OK-a" passes and "XX-b" fails, while both would
    # happily serve proxied sessions.
    a, b = named("OK-a"), named("XX-b")
    sock = str(sockdir / "admin.sock")
    s = sluice(ct.ctl_config(port, [f"a {a.addr}", f"b {b.addr}"], sock=sock, workers=2,
                             pool=health_pool(check="send-expect", check_expect="OK-", fall=2)))
    s.wait_log("main/b DOWN (bad_reply", timeout=3.0 * st.SLOW)
    down_at = len(s.access())
    got = picks(port, 40)
    assert got == {"OK-a": 40}, f"b is DOWN, yet sessions went to {dict(got)}"
    after = s.wait_access(down_at + 40)[down_at:]
    assert all(e["backend"] == "a" for e in after), [e["backend"] for e in after]
    sv = ct.server_stats(sock, "main", "b")
    assert sv["state"] == "down", sv
    # b keeps failing its checks for a while: still no traffic
    n0 = sv["checks_total"]
    st.wait_for(lambda: ct.server_stats(sock, "main", "b")["checks_total"] >= n0 + 3, 3.0 * st.SLOW,
                "three more checks of main/b")
    assert picks(port, 10) == {"OK-a": 10}
    assert not ct.log_lines(s, "main/b UP"), s.tail()
    s.stop()


def test_down_state_survives_reload(sluice, named, port, sockdir):
    a, b = named("OK-a"), named("XX-b")
    sock = str(sockdir / "admin.sock")

    def cfg(wa):
        return ct.ctl_config(port, [f"a {a.addr} weight={wa}", f"b {b.addr}"], sock=sock,
                             pool=health_pool(check="send-expect", check_expect="OK-", fall=2))
    s = sluice(cfg(1))
    s.wait_log("main/b DOWN (bad_reply", timeout=3.0 * st.SLOW)
    before = ct.server_stats(sock, "main", "b")
    ct.write_config(s.cfg, cfg(2))
    r = ct.ask(sock, "reload")
    assert r.startswith("reload ok"), r
    sv = ct.server_stats(sock, "main", "b")
    assert sv["state"] == "down", f"main/b forgot it is DOWN over a reload: {sv}"
    assert sv["transitions"] == before["transitions"] and sv["checks_total"] >= before["checks_total"], (before, sv)
    assert picks(port, 10) == {"OK-a": 10}
    assert ct.server_stats(sock, "main", "a")["weight"] == 2
    assert len(ct.log_lines(s, "main/b DOWN")) == 1, s.tail()
    s.stop()


def test_passive_marking_without_checks(sluice, named, closed_port, port, sockdir):
    # hold (fail_timeout) scales: the 10 picks below must fit inside it.
    fall, hold = 2, 2.0 * st.SLOW
    dead = closed_port()
    b = named("b")
    sock = str(sockdir / "admin.sock")
    s = sluice(ct.ctl_config(port, [f"dead {dead.addr}", f"b {b.addr}"], sock=sock,
                             pool={"fall": fall, "fail_timeout": f"{int(hold * 1000)}ms", "retries": 2}))
    got = picks(port, 4)
    assert got == {"b": 4}, f"failed connects should be retried on b: {dict(got)}"
    s.wait_log("main/dead DOWN (passive:", timeout=2.0 * st.SLOW)
    t_down = time.monotonic()
    line = ct.log_lines(s, "main/dead DOWN (passive:")[0]
    assert f"{fall} consecutive connect failures" in line, line
    sv = ct.server_stats(sock, "main", "dead")
    assert sv["connect_attempts"] == fall and sv["connect_failures"] == fall, sv
    assert sv["state"] == "down", sv
    why = ct.ask(sock, "show backends").split("main/dead", 1)[1].splitlines()[0]
    assert "passive" in why, why
    # skipped while held down
    got = picks(port, 10)
    assert time.monotonic() - t_down < hold, "too slow to observe the hold-down"
    assert got == {"b": 10}
    assert ct.server_stats(sock, "main", "dead")["connect_attempts"] == fall, "a held-down server got connects"
    assert all(e["backend"] == "b" and e["reason"] == "client_close" for e in s.wait_access(14)), s.tail()
    # after fail_timeout it is tried again
    st.wait_for(lambda: time.monotonic() - t_down > hold + 0.1, hold + 1 * st.SLOW,
                "the hold-down to pass")

    def retried():
        ct.pick(port)
        return ct.server_stats(sock, "main", "dead")["connect_attempts"] > fall
    st.wait_for(retried, 3.0 * st.SLOW, "main/dead to be tried again after fail_timeout")
    s.stop()


def test_passive_marking_with_active_checks(sluice, named, closed_port, port, sockdir):
    dead = closed_port()
    b = named("b")
    sock = str(sockdir / "admin.sock")
    # Checks so rare that only the data path can mark the server down here.
    s = sluice(ct.ctl_config(port, [f"dead {dead.addr}", f"b {b.addr}"], sock=sock,
                             pool=health_pool(check_interval="60s", fall=2)))
    assert picks(port, 4) == {"b": 4}
    s.wait_log("main/dead DOWN (passive:", timeout=2.0 * st.SLOW)
    attempts = ct.server_stats(sock, "main", "dead")["connect_attempts"]
    assert picks(port, 10) == {"b": 10}
    sv = ct.server_stats(sock, "main", "dead")
    assert sv["state"] == "down" and sv["connect_attempts"] == attempts, sv
    s.stop()


def test_passive_mark_down_restarts_the_rise_streak(sluice, port, sockdir):
    """A server marked down passively (fall connect failures of real
    sessions) needs `rise` fresh passed checks, even though every check
    before the mark-down passed: the passed checks of an up server do not
    count towards bringing it back (docs/operations.md, passive health)."""
    rise = 2
    bport = st.free_port()

    def listen():
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", bport))
        ls.listen(64)
        return ls

    ls = listen()
    sock = str(sockdir / "admin.sock")
    interval = 1.5 * st.SLOW  # long enough to fail 3 connects between two checks
    s = sluice(ct.ctl_config(port, [f"a 127.0.0.1:{bport}"], sock=sock, pool=health_pool(
        check_interval=f"{int(interval * 1000)}ms", rise=rise, fall=3, retries=0)))
    checks = lambda: ct.server_stats(sock, "main", "a")["checks_total"]  # noqa: E731
    st.wait_for(lambda: checks() >= 3, 4 * interval + MARGIN, "three passed checks")
    # Right after a check: refuse three real sessions, then listen again
    # before the next check runs.
    n0 = checks()
    st.wait_for(lambda: checks() > n0, interval * 1.2 + MARGIN, "the next check")
    n = checks()
    ls.close()
    for _ in range(3):
        with st.connect(port) as c:
            st.recv_until_close(c)
    s.wait_log("main/a DOWN (passive: 3 consecutive connect failures")
    ls = listen()
    try:
        assert checks() == n, "a check ran during the passive mark-down: test timing broken"
        st.wait_for(lambda: checks() >= n + 1, interval * 1.2 + MARGIN, "the first check after")
        assert ct.server_stats(sock, "main", "a")["state"] == "down", \
            "one passed check brought a passively marked server back (rise = 2)"
        st.wait_for(lambda: ct.server_stats(sock, "main", "a")["state"] == "up",
                    interval * 1.2 + MARGIN, "up after the second passed check")
        s.wait_log(f"main/a UP (after {rise} successful checks)")
    finally:
        ls.close()
