"""TCP keepalive (docs/config.md, "TCP keepalive"): a peer that vanishes
without a FIN or RST ends its session with reason `keepalive_timeout`
within keepalive_idle + keepalive_interval x keepalive_count, on the client
side (the listener's keys) and on the server side (the pool's).

Each test runs in network namespaces (netns.py): client ns -- sluice's ns
-- backend ns. The peer "vanishes" by an nftables rule in its own
namespace that drops every packet of that one connection, so sluice's
probes go unanswered and nothing else is touched.
"""

import ctypes
import os
import re
import socket
import time

import pytest

import ctltest as ct
import netns as nn
import sluicetest as st
from ctltest import sockdir  # noqa: F401  (fixture)

T = 5.0 * st.SLOW
# Small values, so a dead peer is noticed after 1 + 1 x 2 = 3 s of silence.
IDLE, INTERVAL, COUNT = 1, 1, 2
BOUND = IDLE + INTERVAL * COUNT
KEEPALIVE = {"tcp_keepalive": "on", "keepalive_idle": f"{IDLE}s",
             "keepalive_interval": f"{INTERVAL}s", "keepalive_count": COUNT}


@pytest.fixture
def net():
    why = nn.available()
    if why:
        pytest.fail(f"the keepalive tests need network namespaces: {why}", pytrace=False)
    topo = nn.Topology("k").up()
    yield topo
    topo.down()


def start(net, tmp_path, sock, servers, listener=None, pool=None):
    port = st.free_port()
    p = {"idle_timeout": "5m"}  # far beyond every bound here: only keepalive may end a session
    p.update(pool or {})
    http_port = st.free_port()  # 127.0.0.1 in sluice's namespace
    text = st.make_config(port, servers, workers=2, pool=p, listener=listener,
                          glob={"admin_socket": sock, "admin_http": f"127.0.0.1:{http_port}"})
    text = text.replace(f"bind = 127.0.0.1:{port}", f"bind = {nn.PROXY_IP}:{port}")
    s = st.Sluice(tmp_path, text, netns=net.proxy).start()
    s.http_port = http_port
    return s, port


def connect(net, port):
    with nn.inside(net.client):
        return st.connect(port, host=nn.PROXY_IP, timeout=T)


def drop_connection(net, ns, port):
    """Drop every packet to and from local TCP port `port` inside ns."""
    net.nft(ns, f"""
        table inet ka {{
            chain input {{ type filter hook input priority 0; policy accept;
                           tcp dport {port} drop; }}
            chain output {{ type filter hook output priority 0; policy accept;
                            tcp sport {port} drop; }}
        }}""")


def vanish(net, side, c, backend):
    """Make one side of c's session go silent; returns when the rule is in."""
    if side == "client":
        drop_connection(net, net.client, c.getsockname()[1])
    else:
        drop_connection(net, net.backend, backend.port)


def cases(keepalive_on):
    """(listener keys, pool keys) with keepalive on only for the side that vanishes."""
    return {"client": (KEEPALIVE if keepalive_on else {}, {}),
            "backend": ({}, KEEPALIVE if keepalive_on else {})}


@pytest.mark.parametrize("side", ["client", "backend"])
def test_vanished_peer_ends_with_keepalive_timeout(net, tmp_path, sockdir, backend, side):
    with nn.inside(net.backend):
        b = backend(st.watch_handler, name="k", host=nn.BACKEND_IP)
    listener, pool = cases(True)[side]
    s, port = start(net, tmp_path, sockdir / "a.sock", [f"k {b.addr}"], listener, pool)
    c = connect(net, port)
    local = c.getsockname()[1]
    st.roundtrip(c, b"hello\n", timeout=T)
    last_activity = time.monotonic()
    vanish(net, side, c, b)
    e = s.access_for(local, timeout=BOUND + 2.0 * st.SLOW)
    ended = time.monotonic() - last_activity
    assert e["reason"] == "keepalive_timeout" and e["backend"] == "k", e
    # Not earlier than the probes allow: it was keepalive, nothing else.
    assert ended >= BOUND - 0.5, f"ended {ended:.2f}s after the last byte, before {BOUND}s"
    # The other side gets a reset: the stream was cut, not finished.
    if side == "client":
        st.wait_for(lambda: b.events, T, "the backend to see its side end")
        with b.cond:
            assert b.events[0][0] == "reset", b.events
    else:
        _, how = st.recv_until_close(c, timeout=T)
        assert how == "reset", f"the client should see a reset, saw {how}"
    c.close()
    ends = ct.stats_json(sockdir / "a.sock")["process"]["end_reasons"]
    assert ends["keepalive_timeout"] == 1 and ends["reset"] == 0, ends
    with nn.inside(net.proxy):
        v = ct.prom_samples(ct.scrape(s.http_port)[1])
    assert v[("sluice_session_ends_total", (("reason", "keepalive_timeout"),))] == 1
    assert v[("sluice_session_ends_total", (("reason", "reset"),))] == 0
    assert int(ct.show_info(sockdir / "a.sock")["sessions_active"]) == 0
    assert not s.sanitizer_reports(), s.tail()
    s.stop()


@pytest.mark.parametrize("side", ["client", "backend"])
def test_without_keepalive_the_session_outlives_the_bound(net, tmp_path, sockdir, backend, side):
    """The same vanished peer with tcp_keepalive off (the default): nothing
    notices, and the session is still up well past the bound above."""
    with nn.inside(net.backend):
        b = backend(st.watch_handler, name="k", host=nn.BACKEND_IP)
    listener, pool = cases(False)[side]
    s, port = start(net, tmp_path, sockdir / "a.sock", [f"k {b.addr}"], listener, pool)
    c = connect(net, port)
    local = c.getsockname()[1]
    st.roundtrip(c, b"hello\n", timeout=T)
    vanish(net, side, c, b)
    time.sleep(BOUND + 2.0 * st.SLOW)  # the claim is the duration itself: it outlives the bound
    assert not [e for e in s.access() if st.client_port(e) == local], s.tail()
    assert int(ct.show_info(sockdir / "a.sock")["sessions_active"]) == 1
    c.close()
    assert not s.sanitizer_reports(), s.tail()
    s.stop()


# ---- the options are really set on sluice's sockets ----

SYS_pidfd_open, SYS_pidfd_getfd = 434, 438  # x86_64 and aarch64 alike
_libc = ctypes.CDLL(None, use_errno=True)


def sluice_tcp_sockets(pid):
    """{(local, peer): socket} for sluice's connected TCP sockets, as copies
    of its descriptors (pidfd_getfd): getsockopt then reads its settings."""
    pidfd = _libc.syscall(SYS_pidfd_open, pid, 0)
    assert pidfd >= 0, os.strerror(ctypes.get_errno())
    out = {}
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                    continue
            except OSError:
                continue
            fd = _libc.syscall(SYS_pidfd_getfd, pidfd, int(name), 0)
            if fd < 0:
                continue
            so = socket.socket(fileno=fd)
            try:
                if so.family in (socket.AF_INET, socket.AF_INET6) and so.type == socket.SOCK_STREAM:
                    out[(so.getsockname()[:2], so.getpeername()[:2])] = so
                    continue
            except OSError:
                pass  # a listening socket has no peer
            so.close()
    finally:
        os.close(pidfd)
    return out


def keepalive_of(so):
    if not so.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE):
        return None
    return (so.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            so.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            so.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT))


def keepalive_timers(net):
    """{(local, peer): 'timer:(...)'} of established sockets in sluice's ns (ss -tno)."""
    out = {}
    for line in net.run(net.proxy, "ss", "-tnoH", "state", "established").splitlines():
        m = re.match(r"^\s*\d+\s+\d+\s+(\S+):(\d+)\s+(\S+):(\d+)\s*(.*)$", line)
        if m:
            out[((m.group(1), int(m.group(2))), (m.group(3), int(m.group(4))))] = m.group(5)
    return out


def test_options_on_sluice_sockets_and_reload(net, tmp_path, sockdir, backend):
    """The listener's values on the client socket, the pool's on the backend
    socket (read back from sluice's own descriptors, and ss shows the
    keepalive timer); a reload's new values apply to new sessions only; a
    unix: server is skipped and works."""
    sock = sockdir / "a.sock"
    with nn.inside(net.backend):
        b = backend(st.echo_handler, name="k", host=nn.BACKEND_IP)
    upath = tmp_path / "u.sock"
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(str(upath))
    ls.listen(16)
    listener = {"tcp_keepalive": "on", "keepalive_idle": "70s", "keepalive_interval": "7s",
                "keepalive_count": 5}
    pool = {"tcp_keepalive": "on", "keepalive_idle": "90s", "keepalive_interval": "9s",
            "keepalive_count": 3}
    s, port = start(net, tmp_path, sock, [f"k {b.addr}"], listener, pool)

    def session():
        c = connect(net, port)
        st.roundtrip(c, b"ping\n", timeout=T)
        return c

    def sides(c):
        """sluice's (client socket, backend socket) for the client c."""
        here = c.getsockname()[:2]
        socks = sluice_tcp_sockets(s.pid)
        cs = socks.pop(((nn.PROXY_IP, port), here))
        bs = [so for (l, p), so in socks.items() if p == (nn.BACKEND_IP, b.port)]
        return cs, bs, socks

    c1 = session()
    cs, bs, rest = sides(c1)
    assert keepalive_of(cs) == (70, 7, 5)
    assert len(bs) == 1 and keepalive_of(bs[0]) == (90, 9, 3)
    timers = keepalive_timers(net)
    c_key = ((nn.PROXY_IP, port), c1.getsockname()[:2])
    assert timers[c_key].startswith("timer:(keepalive,"), timers
    assert any(k[1] == (nn.BACKEND_IP, b.port) and v.startswith("timer:(keepalive,")
               for k, v in timers.items()), timers
    for so in [cs] + bs + list(rest.values()):
        so.close()

    # Reload: client keepalive off, other pool values. c1 keeps its own.
    text = s.cfg.read_text().replace("tcp_keepalive = on\nkeepalive_idle = 70s",
                                     "tcp_keepalive = off\nkeepalive_idle = 70s")
    text = text.replace("keepalive_idle = 90s", "keepalive_idle = 30s")
    ct.write_config(s.cfg, text)
    ct.sighup_reload(s, sock, 2)
    c2 = session()
    cs2, bs2, rest2 = sides(c2)
    assert keepalive_of(cs2) is None
    got = sorted(keepalive_of(so) for so in bs2)
    assert got == [(30, 9, 3), (90, 9, 3)], got  # c2's new one, c1's old one
    cs1 = sluice_tcp_sockets(s.pid)[((nn.PROXY_IP, port), c1.getsockname()[:2])]
    assert keepalive_of(cs1) == (70, 7, 5)
    for so in [cs1, cs2] + bs2 + list(rest2.values()):
        so.close()

    # A unix: server in a pool with tcp_keepalive on: skipped, the session works.
    text = text.replace(f"server = k {b.addr}", f"server = u unix:{upath}")
    ct.write_config(s.cfg, text)
    ct.sighup_reload(s, sock, 3)
    c3 = connect(net, port)
    conn, _ = ls.accept()
    c3.sendall(b"via unix\n")
    assert st.recv_exact(conn, 9, timeout=T) == b"via unix\n"
    conn.sendall(b"back\n")
    assert st.recv_line(c3, timeout=T) == b"back"
    for x in (c1, c2, c3, conn, ls):
        x.close()
    st.wait_for(lambda: int(ct.show_info(sock)["sessions_active"]) == 0, T, "sessions to end")
    assert not s.sanitizer_reports(), s.tail()
    s.stop()
