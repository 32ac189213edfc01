"""Latency histograms: per server connect time, time to first byte and
session duration, per listener accept-to-connected; shown by `show stats
json` (latency_us), `show latency` and /metrics (Prometheus histograms).

A backend that answers its first byte FIRST_BYTE after the connection and
closes DURATION after it gives known values. The histogram reports within
1 % of the truth; the machine adds delay, never removes it, so lower bounds
are the value minus 1 %, upper bounds generous and scaled by SLOW. A known
connect time comes from a server whose accept queue is full: the kernel
drops the SYN and retransmits it after its initial RTO of 1 s."""

import json
import math
import socket
import threading
import time

import pytest

import ctltest as ct
import sluicetest as st
from ctltest import sockdir  # noqa: F401  (fixture)

FIRST_BYTE = 0.050  # s: the backend's first byte after its accept
DURATION = 0.200    # s: the backend closes this long after its accept
ERR = 1.0 / 128     # the histogram's relative error bound


def slow_handler(conn, srv):
    # The clock starts at the client's first byte, which sluice relays only
    # once it has stamped the connection connected: its connected -> first
    # byte interval then cannot be shorter than FIRST_BYTE, however late its
    # loop noticed the connect (the backend's accept can precede that).
    if conn.recv(1) != b"g":
        return
    t0 = time.monotonic()
    time.sleep(FIRST_BYTE)
    conn.sendall(b"x")
    time.sleep(max(0.0, t0 + DURATION - time.monotonic()))
    conn.shutdown(socket.SHUT_WR)
    while conn.recv(4096):
        pass


def sessions(port, n):
    """n concurrent clients, each reading until the backend closes."""
    errors = []

    def one():
        try:
            with st.connect(port) as c:
                c.sendall(b"g")
                data, how = st.recv_until_close(c, 10.0 * st.SLOW)
                assert data == b"x", (data, how)
        except Exception as e:  # reported below
            errors.append(repr(e))
    ts = [threading.Thread(target=one) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30.0 * st.SLOW)
    assert not errors, errors


def start(sluice, backend, port, sockdir, workers=1, http=None):
    slow = backend(slow_handler, name="slow")
    idle = backend(st.echo_handler, name="idle")
    sock = sockdir / "admin.sock"
    port2 = st.free_port()

    def cfg(extra_servers=(), weight=1):
        return ct.ctl_config(port, [f"slow {slow.addr} weight={weight}", *extra_servers], sock=sock,
                             http=http, workers=workers,
                             extra_listeners=[("second", port2, "other")],
                             extra_pools=[("other", [f"o1 {idle.addr}"], {})])
    s = sluice(cfg())
    return s, sock, cfg


def within(value_us, want_s, what):
    lo = want_s * 1e6 * (1 - ERR)
    hi = (want_s * 1.5 + 0.5 * st.SLOW) * 1e6
    assert lo <= value_us < hi, f"{what}: {value_us} us, expected {lo:.0f} .. {hi:.0f}"


def check_server_latency(lat, n):
    assert set(lat) == {"connect", "first_byte", "duration"}, lat
    for name, h in lat.items():
        assert set(h) == {"count", "p50", "p90", "p99", "p999"}, (name, h)
        assert h["count"] == n, (name, h, n)
        assert h["p50"] <= h["p90"] <= h["p99"] <= h["p999"], (name, h)
    for q in ("p50", "p99"):
        within(lat["first_byte"][q], FIRST_BYTE, f"first_byte {q}")
        # the session ends when the backend closes, DURATION after its accept
        within(lat["duration"][q], DURATION, f"duration {q}")
    # a loopback connect is far below the backend's first byte
    assert 0 <= lat["connect"]["p99"] < FIRST_BYTE * 1e6, lat["connect"]


@pytest.mark.threaded
def test_latency_in_stats_json_and_show_latency(sluice, backend, port, sockdir):
    s, sock, _cfg = start(sluice, backend, port, sockdir, workers=2)
    n = 12
    sessions(port, n)
    s.wait_access(n)
    doc = ct.stats_json(sock)
    srv = {(x["pool"], x["name"]): x for x in doc["servers"]}
    check_server_latency(srv[("main", "slow")]["latency_us"], n)
    # nothing measured yet: count 0 and null quantiles (docs/operations.md)
    assert srv[("other", "o1")]["latency_us"]["connect"] == {
        "count": 0, "p50": None, "p90": None, "p99": None, "p999": None}
    lst = {x["name"]: x for x in doc["listeners"]}
    lc = lst["main"]["latency_us"]
    assert set(lc) == {"connect"} and lc["connect"]["count"] == n, lc
    # accept to connected includes the connect itself
    assert lc["connect"]["p99"] >= srv[("main", "slow")]["latency_us"]["connect"]["p50"], lc
    assert lst["second"]["latency_us"]["connect"]["count"] == 0

    table = ct.ask(sock, "show latency main/slow")
    lines = table.splitlines()
    assert lines[0].startswith("main/slow "), table
    assert lines[1].split() == ["COUNT", "P50", "P90", "P99", "P99.9", "MAX"], table
    rows = {ln[:12].strip(): ln[12:].split() for ln in lines[2:]}
    assert set(rows) == {"connect", "first byte", "duration"}, table
    for r in rows.values():
        assert r[0] == str(n), table
    assert rows["first byte"][1].endswith("ms"), table
    fb = float(rows["first byte"][1][:-2])
    assert FIRST_BYTE * 1e3 * (1 - ERR) <= fb, table
    assert ct.ask(sock, "show latency other/o1").splitlines()[2].split() == \
        ["connect", "0", "-", "-", "-", "-", "-"]
    summary = ct.ask(sock, "show latency")
    assert summary.splitlines()[0].split()[:2] == ["SERVER", "CONNECTS"], summary
    row = next(ln.split() for ln in summary.splitlines() if ln.startswith("main/slow "))
    assert row[1] == str(n), summary
    assert any(ln.split()[:2] == ["main", str(n)] for ln in summary.splitlines()), summary
    assert ct.ask(sock, "show latency main/nope").startswith("error: no server"), "unknown server"
    assert ct.ask(sock, "show latency nope").startswith("error: expected POOL/NAME")
    assert "show latency" in ct.ask(sock, "help")
    # /stats.json is the same generator: asserted in test_prometheus_histograms
    s.stop()


def prom_histograms(fams, family):
    """{labels without le: {"buckets": [(le, v)], "sum": x, "count": n}}."""
    out = {}
    assert fams[family]["type"] == "histogram", fams[family]
    for name, labels, v in fams[family]["samples"]:
        key = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
        h = out.setdefault(key, {"buckets": []})
        if name == family + "_bucket":
            h["buckets"].append((labels["le"], v))
        elif name == family + "_sum":
            h["sum"] = v
        elif name == family + "_count":
            h["count"] = v
        else:
            raise AssertionError(f"{name} in histogram {family}")
    for key, h in out.items():
        les = [float(le) for le, _ in h["buckets"]]
        counts = [c for _, c in h["buckets"]]
        assert les[-1] == math.inf and h["buckets"][-1][0] == "+Inf", (family, key, les)
        assert les == sorted(les) and len(set(les)) == len(les), (family, key, les)
        assert 10 <= len(les) <= 25, (family, key, len(les))
        assert counts == sorted(counts), f"{family}{key}: buckets not cumulative {counts}"
        assert counts[-1] == h["count"], f"{family}{key}: +Inf {counts[-1]} != _count {h['count']}"
        assert h["sum"] >= 0
    return out


def test_prometheus_histograms(sluice, backend, port, sockdir):
    http = st.free_port()
    s, sock, _cfg = start(sluice, backend, port, sockdir, http=http)
    n = 5
    sessions(port, n)
    s.wait_access(n)
    _h, fams = ct.scrape(http)
    key = (("pool", "main"), ("server", "slow"))
    fb = prom_histograms(fams, "sluice_server_first_byte_seconds")
    dur = prom_histograms(fams, "sluice_server_session_seconds")
    conn = prom_histograms(fams, "sluice_server_connect_seconds")
    lst = prom_histograms(fams, "sluice_listener_connect_seconds")
    assert set(fb) == set(dur) == set(conn) == {key, (("pool", "other"), ("server", "o1"))}
    assert set(lst) == {(("listener", "main"),), (("listener", "second"),)}
    for h in (fb[key], dur[key], conn[key], lst[(("listener", "main"),)]):
        assert h["count"] == n, h
    buckets = dict(fb[key]["buckets"])
    assert buckets["0.025"] == 0, fb[key]  # every first byte came after 50 ms
    assert dict(dur[key]["buckets"])["0.1"] == 0, dur[key]
    assert fb[key]["sum"] >= n * FIRST_BYTE * (1 - ERR), fb[key]
    assert dur[key]["sum"] >= n * DURATION * (1 - ERR), dur[key]
    assert fams["sluice_server_connect_seconds"]["help"], "no HELP"
    # the same numbers on /stats.json
    status, _hd, body = ct.http_get(http, "/stats.json")
    assert status == 200
    doc = json.loads(body)
    sv = next(x for x in doc["servers"] if x["name"] == "slow")
    check_server_latency(sv["latency_us"], n)
    s.stop()


def test_histograms_survive_reload(sluice, backend, port, sockdir):
    s, sock, cfg = start(sluice, backend, port, sockdir)
    sessions(port, 3)
    s.wait_access(3)
    extra = backend(st.named_handler("b"), name="b")
    ct.write_config(s.cfg, cfg(extra_servers=[f"b {extra.addr} weight=0"], weight=2))
    r = ct.ask(sock, "reload")
    assert r.startswith("reload ok"), r
    lat = ct.server_stats(sock, "main", "slow")["latency_us"]
    assert all(h["count"] == 3 for h in lat.values()), lat
    assert ct.server_stats(sock, "main", "b")["latency_us"]["connect"]["count"] == 0
    sessions(port, 2)
    s.wait_access(5)
    lat = ct.server_stats(sock, "main", "slow")["latency_us"]
    check_server_latency(lat, 5)
    lst = next(x for x in ct.stats_json(sock)["listeners"] if x["name"] == "main")
    assert lst["latency_us"]["connect"]["count"] == 5, lst
    s.stop()


def test_connect_time_of_a_late_handshake(sluice, black_hole, port, sockdir):
    """A server whose accept queue is full drops the SYN; once there is
    room the kernel's SYN retransmission (initial RTO 1 s) connects: the
    server's connect time and the listener's accept-to-connected are then
    at least 1 s."""
    hole = black_hole()
    sock = sockdir / "admin.sock"
    s = sluice(ct.ctl_config(port, [f"hole {hole.addr}"], sock=sock,
                             pool={"connect_timeout": "10s"}))
    c = st.connect(port)
    st.wait_for(lambda: "connecting" in ct.ask(sock, "show sessions"), 5.0 * st.SLOW,
                "the session to be connecting to the black hole")
    t0 = time.monotonic()
    hole.lsock.setblocking(False)
    accepted = []

    def drained_and_connected():
        # Keep accepting (the black hole's own fillers retransmit too), so
        # sluice's retransmitted SYN finds room.
        try:
            while True:
                accepted.append(hole.lsock.accept()[0])
        except BlockingIOError:
            pass
        return ct.server_stats(sock, "main", "hole")["sessions"] == 1
    st.wait_for(drained_and_connected, 10.0 * st.SLOW, "the retransmitted SYN to connect")
    assert time.monotonic() - t0 < 5.0 * st.SLOW
    lat = ct.server_stats(sock, "main", "hole")["latency_us"]
    assert lat["connect"]["count"] == 1, lat
    within(lat["connect"]["p50"], 1.0, "connect after a dropped SYN")
    lst = next(x for x in ct.stats_json(sock)["listeners"] if x["name"] == "main")
    assert lst["latency_us"]["connect"]["p50"] >= lat["connect"]["p50"], (lst, lat)
    c.close()
    for a in accepted:
        a.close()
    s.stop()
