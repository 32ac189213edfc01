"""The fault matrix: backends, clients, the network and the process failing
in every way the issue lists, each in network namespaces made for the test
(see netns.py), each once as is and once with a reload in the middle.

Every test proves the same four things:
  * the affected session ends the way it should (reason in the access log,
    the counters in `show stats json`);
  * a bystander session, open through the same sluice on another listener
    and pool before the fault, is untouched (echo before, during, after);
  * nothing leaks: afterwards no session is active and sluice holds the
    same descriptors as before the test's traffic;
  * sluice stays up (and, under ASan, reports nothing; see conftest).
"""

import hashlib
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import ctltest as ct
import netns as nn
import sluicetest as st
from ctltest import sockdir  # noqa: F401  (fixture)
from faultrelay import FaultRelay

HERE = Path(__file__).resolve().parent
T = 5.0 * st.SLOW

RELOAD = pytest.mark.parametrize("reload", [False, True], ids=["plain", "reload"])


@pytest.fixture
def net():
    why = nn.available()
    if why:
        pytest.fail(f"the fault matrix needs network namespaces: {why}", pytrace=False)
    topo = nn.Topology("f").up()
    yield topo
    topo.down()


class ProcBackend:
    """procbackend.py in the backend namespace: a process to kill or stop."""

    def __init__(self, net, name, port=0):
        self.net, self.name = net, name
        cmd = net.exec_prefix(net.backend) + [sys.executable if sys.executable else "/usr/bin/python3",
                                              str(HERE / "procbackend.py"), nn.BACKEND_IP,
                                              str(port), name, "300"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, text=True)
        line = self._first_line()
        assert line.startswith("listening "), f"procbackend {name}: {line!r}"
        self.port = int(line.split()[1])
        self.addr = f"{nn.BACKEND_IP}:{self.port}"

    def _first_line(self):
        out = []
        t = threading.Thread(target=lambda: out.append(self.proc.stdout.readline()), daemon=True)
        t.start()
        t.join(T)
        if not out:
            self.kill()
            raise AssertionError(f"procbackend {self.name} did not start within {T:.0f}s")
        return out[0]

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def stop(self):
        """SIGSTOP, and wait until every thread is stopped (signals are
        asynchronous: a thread already running could still read)."""
        self.signal(signal.SIGSTOP)

        def stopped():
            tasks = Path(f"/proc/{self.proc.pid}/task")
            return all((t / "stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
                       for t in tasks.iterdir())
        st.wait_for(stopped, T, f"procbackend {self.name} to be stopped")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(T)


class Rig:
    """sluice in the proxy namespace with two listeners:
    `main` (the pool under test) and `by` (the bystander's own pool)."""

    def __init__(self, net, tmp_path, sockdir, backend_fixture):
        self.net = net
        self.tmp_path = tmp_path
        self.sock = sockdir / "a.sock"
        self.port = st.free_port()
        self.by_port = st.free_port()
        self.procs = []
        self._backend = backend_fixture
        self.s = None
        self.text = None
        self.relay = None  # relay = ... on the listener under test (None: the default)
        with nn.inside(net.backend):
            self.by_backend = backend_fixture(st.named_handler("by"), host=nn.BACKEND_IP)

    # --- setup -------------------------------------------------------------
    def backend(self, handler, name=None):
        with nn.inside(self.net.backend):
            return self._backend(handler, name=name, host=nn.BACKEND_IP)

    def proc_backend(self, name, port=0):
        b = ProcBackend(self.net, name, port)
        self.procs.append(b)
        return b

    def config(self, servers, pool=None, listener=None, glob=None):
        g = {"workers": 2, "admin_socket": self.sock, "access_log": "stderr"}
        g.update(glob or {})
        p = {"connect_timeout": "1s", "idle_timeout": "30s", "retries": 1}
        p.update(pool or {})
        text = st.make_config(self.port, servers, glob=g, pool=p, listener=listener,
                              relay=self.relay,
                              extra=f"\n[listener by]\nbind = {nn.PROXY_IP}:{self.by_port}\n"
                                    f"pool = by\n\n[pool by]\n"
                                    f"server = by {self.by_backend.addr}\n")
        return text.replace(f"bind = 127.0.0.1:{self.port}", f"bind = {nn.PROXY_IP}:{self.port}")

    def start(self, servers, nofile=None, **kw):
        self.text = self.config(servers, **kw)
        self.s = st.Sluice(self.tmp_path, self.text, netns=self.net.proxy, nofile=nofile)
        self.s.start()
        self.gen = 1
        self.bystander = Bystander(self)
        self.base_fds = self.s.nfds() - 2  # the bystander's two descriptors
        return self.s

    # --- clients -----------------------------------------------------------
    def connect(self, port=None, timeout=T):
        with nn.inside(self.net.client):
            return st.connect(port or self.port, host=nn.PROXY_IP, timeout=timeout)

    # --- control -----------------------------------------------------------
    def reload(self, text=None):
        """SIGHUP with text (default: the same file) and wait for the new generation."""
        if text is not None:
            self.text = text
        ct.write_config(self.s.cfg, self.text)
        self.gen += 1
        ct.sighup_reload(self.s, self.sock, self.gen)

    def maybe_reload(self, reload):
        if reload:
            self.reload()

    def reasons(self):
        return ct.stats_json(self.sock)["process"]["end_reasons"]

    def server(self, name):
        return ct.server_stats(self.sock, "main", name)

    def settle(self):
        """The bystander is still fine; then, once it is closed, nothing is
        left: no session, no extra descriptor, no sanitizer report."""
        self.bystander.check_and_close()
        st.wait_for(lambda: int(ct.show_info(self.sock)["sessions_active"]) == 0, 10 * st.SLOW,
                    lambda: f"no active sessions\n{ct.ask(self.sock, 'show sessions')}")
        st.wait_for(lambda: self.s.nfds() == self.base_fds, 10 * st.SLOW,
                    lambda: f"sluice back to {self.base_fds} fds (has {self.s.nfds()}: "
                            f"{sorted(os.listdir(f'/proc/{self.s.pid}/fd'))})")
        assert self.s.alive(), self.s.tail()
        assert not self.s.sanitizer_reports(), self.s.tail()
        self.s.stop()

    def close(self):
        for b in self.procs:
            b.kill()
        if self.s is not None:
            self.s.kill()


class Bystander:
    """A session on the other listener, opened before the fault."""

    def __init__(self, rig):
        self.rig = rig
        self.c = rig.connect(rig.by_port)
        self.local = self.c.getsockname()[1]
        assert st.recv_line(self.c, timeout=T) == b"by"
        self.n = 0
        self.ping()

    def ping(self):
        self.n += 1
        msg = f"bystander {self.n}\n".encode()
        st.roundtrip(self.c, msg, timeout=T)  # asserts the echo

    def check_and_close(self):
        for _ in range(3):
            self.ping()
        self.c.close()
        e = self.rig.s.access_for(self.local)
        assert e["reason"] == "client_close" and e["backend"] == "by", e


@pytest.fixture
def rig(net, tmp_path, sockdir, backend):
    r = Rig(net, tmp_path, sockdir, backend)
    yield r
    r.close()
    if r.s is not None:
        reports = r.s.sanitizer_reports()
        assert not reports, "sanitizer reports:\n" + "\n".join(reports[:40])


def delta(after, before):
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def echo_lines(c, n, tag):
    for i in range(n):
        msg = f"{tag} {i}\n".encode()
        st.roundtrip(c, msg, timeout=T)


# ==========================================================================
# backends


@RELOAD
def test_backend_killed_mid_transfer(rig, reload):
    k = rig.proc_backend("k")
    s = rig.start([f"k {k.addr}"])
    c = rig.connect()
    local = c.getsockname()[1]
    assert st.recv_line(c) == b"k"
    echo_lines(c, 3, "before")
    before = rig.reasons()
    # Stopped first, so bytes sit unread in its socket when it dies: the
    # kernel then answers with RST, which sluice must pass on as a reset.
    k.stop()
    c.sendall(os.urandom(64 << 10))
    rig.maybe_reload(reload)
    k.kill()
    data, how = st.recv_until_close(c, timeout=T, limit=1 << 20)
    c.close()
    assert how == "reset", f"a backend that died must look aborted to the client, saw {how}"
    e = s.access_for(local)
    assert e["reason"] == "reset" and e["backend"] == "k", e
    assert delta(rig.reasons(), before).get("reset") == 1, delta(rig.reasons(), before)
    rig.settle()


@RELOAD
def test_backend_answers_with_rst(rig, reload):
    def handler(conn, srv):
        assert st.recv_line(conn, timeout=T) == b"go"
        srv.note("rst")
        st.rst_close(conn)

    b = rig.backend(handler, "r")
    s = rig.start([f"r {b.addr}"])
    rig.maybe_reload(reload)
    c = rig.connect()
    local = c.getsockname()[1]
    c.sendall(b"go\n")
    _, how = st.recv_until_close(c, timeout=T)
    c.close()
    assert how == "reset", f"the client should see the backend's reset, saw {how}"
    with b.cond:
        assert b.events and b.events[0][0] == "rst"
    assert s.access_for(local)["reason"] == "reset"
    rig.settle()


@RELOAD
def test_backend_accepts_and_never_reads(rig, reload):
    """Backpressure towards a backend that reads nothing: the client can
    only fill the buffers; sluice holds at most max_buffer, and
    idle_timeout ends the session once nothing moves."""
    stop = threading.Event()

    def handler(conn, srv):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        srv.note("accepted")
        stop.wait(60 * st.SLOW)

    b = rig.backend(handler, "deaf")
    s = rig.start([f"deaf {b.addr}"], pool={"idle_timeout": "2s"},
                  glob={"max_buffer": "256k"})
    rss0 = s.rss_kib()
    c = rig.connect()
    local = c.getsockname()[1]
    c.setblocking(False)
    sent = 0
    deadline = time.monotonic() + 10 * st.SLOW
    stalled_since = None
    while time.monotonic() < deadline:
        try:
            sent += c.send(b"x" * (256 << 10))
            stalled_since = None
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 0.3:  # a quiet window, not a bound
                break  # every buffer on the way is full
            time.sleep(0.01)
    assert stalled_since, "the client could send without limit to a backend that never reads"
    grown = s.rss_kib() - rss0
    assert grown < (64 << 10 if st.SANITIZER else 8 << 10), f"sluice grew {grown} KiB"
    rig.maybe_reload(reload)
    e = s.access_for(local, timeout=10 * st.SLOW)
    assert e["reason"] == "idle_timeout", e
    assert 0 < int(e["up"]) < sent, (e, sent)
    stop.set()
    c.close()
    rig.settle()


@RELOAD
def test_syn_dropped_connect_timeout_then_retry(rig, net, reload):
    """A backend whose SYNs vanish (nftables in the backend namespace):
    connect_timeout fires, the failure counts against it, the session is
    retried on the other server."""
    ok = rig.backend(st.named_handler("ok"), "ok")
    hole_port = st.free_port()
    net.nft(net.backend, f"""
        table inet fault {{
            chain input {{
                type filter hook input priority 0; policy accept;
                tcp dport {hole_port} tcp flags syn drop
            }}
        }}""")
    s = rig.start([f"hole {nn.BACKEND_IP}:{hole_port}", f"ok {ok.addr}"],
                  pool={"connect_timeout": "500ms", "retries": 1, "fall": 100})
    rig.maybe_reload(reload)
    locals_ = []
    for _ in range(4):
        c = rig.connect()
        locals_.append(c.getsockname()[1])
        assert st.recv_line(c, timeout=T) == b"ok"
        c.close()
    for lp in locals_:
        e = s.access_for(lp)
        assert e["backend"] == "ok" and e["reason"] == "client_close", e
    hole = rig.server("hole")
    assert hole["connect_failures"] >= 1 and hole["connect_attempts"] == hole["connect_failures"], hole
    assert rig.server("ok")["retries"] + hole["retries"] >= 1, (hole, rig.server("ok"))
    # Counted, not timed: with retries = 1 every failure on the hole is
    # followed by a try on ok, and every session ended on ok at its first
    # try there (a session's duration would say the same only on an idle
    # machine).
    okv = rig.server("ok")
    assert hole["retries"] == hole["connect_failures"], hole
    assert (okv["connect_attempts"], okv["connect_failures"], okv["retries"]) == (4, 0, 0), okv

    # Every server dropping SYNs: the client is closed after retries+1 timeouts.
    net.nft(net.backend, f"add rule inet fault input tcp dport {ok.port} tcp flags syn drop")
    c = rig.connect()
    local = c.getsockname()[1]
    data, how = st.recv_until_close(c, timeout=T)
    c.close()
    e = s.access_for(local)
    assert e["reason"] == "connect_failed" and data == b"", e
    assert int(e["duration_ms"]) >= 900, e
    rig.settle()


@RELOAD
def test_backend_sigstopped_longer_than_idle_timeout(rig, reload):
    z = rig.proc_backend("z")
    s = rig.start([f"z {z.addr}"], pool={"idle_timeout": "2s"})
    c = rig.connect()
    local = c.getsockname()[1]
    assert st.recv_line(c) == b"z"
    z.stop()
    try:
        c.sendall(b"anyone there?\n")
        rig.maybe_reload(reload)
        data, how = st.recv_until_close(c, timeout=10 * st.SLOW)
        c.close()
        e = s.access_for(local)
        assert e["reason"] == "idle_timeout" and data == b"", (e, data)
    finally:
        z.signal(signal.SIGCONT)
    # Awake again: new sessions reach it.
    c = rig.connect()
    assert st.recv_line(c) == b"z"
    echo_lines(c, 2, "awake")
    c.close()
    rig.settle()


@RELOAD
def test_backend_restarts_while_health_checks_run(rig, reload):
    r = rig.proc_backend("r")
    other = rig.backend(st.named_handler("other"), "other")
    s = rig.start([f"r {r.addr}", f"other {other.addr}"],
                  pool={"check": "tcp", "check_interval": "200ms", "check_timeout": "200ms",
                        "rise": 2, "fall": 2})
    port = r.port
    r.kill()
    s.wait_log("main/r DOWN", timeout=T)
    rig.maybe_reload(reload)
    for _ in range(4):  # all to the live one, none refused
        c = rig.connect()
        assert st.recv_line(c) == b"other"
        c.close()
    r2 = rig.proc_backend("r", port=port)
    s.wait_log("main/r UP", timeout=T)
    names = set()
    for _ in range(6):
        c = rig.connect()
        names.add(st.recv_line(c))
        c.close()
    assert names == {b"r", b"other"}, names
    assert r2.port == port
    assert rig.reasons()["connect_failed"] == 0
    rig.settle()


# ==========================================================================
# clients


def source_handler(total, block):
    def handler(conn, srv):
        view = memoryview(block)
        sent = 0
        while sent < total:
            conn.sendall(view)
            sent += len(view)
        conn.shutdown(socket.SHUT_WR)
        srv.note("sent")
    return handler


def session_bytes_down(rig, client_port):
    """BYTES_DOWN of the session of client_port in `show sessions`; None
    while the worker has not accepted it yet (a connect completes in the
    kernel before sluice's accept)."""
    for line in ct.ask(rig.sock, "show sessions").splitlines():
        f = line.split()
        if len(f) >= 9 and f[3].endswith(f":{client_port}"):  # ID WORKER LISTENER CLIENT ...
            return int(f[-1])
    return None


@RELOAD
def test_client_stops_reading(rig, reload):
    total = (32 << 20) if st.SANITIZER else (256 << 20)
    block = os.urandom(1 << 20)
    b = rig.backend(source_handler(total, block), "src")
    s = rig.start([f"src {b.addr}"], glob={"max_buffer": "256k"})
    rss0 = s.rss_kib()
    c = rig.connect(timeout=60 * st.SLOW)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    local = c.getsockname()[1]
    # Not reading: wait until sluice's byte count for the session stops growing.
    st.wait_for(lambda: session_bytes_down(rig, local) is not None, 5 * st.SLOW,
                f"the session of client port {local} in show sessions")
    last, same_since = -1, time.monotonic()
    deadline = time.monotonic() + 10 * st.SLOW
    while time.monotonic() - same_since < 0.5:  # a quiet window, not a bound
        assert time.monotonic() < deadline, f"the session never stalled (down={last})"
        down = session_bytes_down(rig, local)
        if down != last:
            last, same_since = down, time.monotonic()
        time.sleep(0.05)
    assert 0 < last < total, f"{last} bytes relayed to a client that reads nothing"
    grown = s.rss_kib() - rss0
    assert grown < (64 << 10 if st.SANITIZER else 8 << 10), f"sluice grew {grown} KiB"
    rig.bystander.ping()
    rig.maybe_reload(reload)
    # Now read everything: every byte, in order.
    n, digest = st.hash_until_eof(c, timeout=30 * st.SLOW)
    c.close()
    want = hashlib.sha256()
    for _ in range(total // len(block)):
        want.update(block)
    assert n == total and digest == want.digest(), f"got {n} of {total} bytes"
    e = s.access_for(local)
    assert int(e["down"]) == total, e
    rig.settle()


@RELOAD
def test_client_resets_mid_transfer(rig, reload):
    b = rig.backend(st.watch_handler, "w")
    s = rig.start([f"w {b.addr}"])
    c = rig.connect()
    local = c.getsockname()[1]
    st.roundtrip(c, b"y" * 5000)
    rig.maybe_reload(reload)
    before = rig.reasons()
    st.rst_close(c)
    with b.cond:
        assert b.cond.wait_for(lambda: b.events, T), "the backend never saw the client go"
        assert b.events[0][0] == "reset", f"the backend should see a reset, saw {b.events[0][0]}"
    e = s.access_for(local)
    assert e["reason"] == "reset" and e["up"] == "5000" and e["down"] == "5000", e
    assert delta(rig.reasons(), before) == {"reset": 1}, delta(rig.reasons(), before)
    rig.settle()


@RELOAD
def test_client_half_closes_and_waits(rig, reload):
    def handler(conn, srv):
        n, _ = st.hash_until_eof(conn)
        srv.note("eof")
        with srv.cond:
            srv.cond.wait_for(lambda: srv.state.get("answer"), T)
        conn.sendall(f"got {n}\n".encode())
        conn.shutdown(socket.SHUT_WR)

    b = rig.backend(handler, "h")
    s = rig.start([f"h {b.addr}"])
    c = rig.connect()
    local = c.getsockname()[1]
    c.sendall(b"z" * 100000)
    c.shutdown(socket.SHUT_WR)
    with b.cond:
        assert b.cond.wait_for(lambda: b.events, T), "the backend never saw EOF"
    rig.maybe_reload(reload)
    with b.cond:  # the client waited, half-closed, through the reload
        b.state["answer"] = True
        b.cond.notify_all()
    data, how = st.recv_until_close(c, timeout=T)
    c.close()
    assert (data, how) == (b"got 100000\n", "eof"), (data, how)
    e = s.access_for(local)
    assert e["up"] == "100000" and e["reason"] in ("backend_close", "client_close"), e
    rig.settle()


@RELOAD
def test_client_sends_nothing_until_idle_timeout(rig, reload):
    b = rig.backend(st.watch_handler, "w")
    s = rig.start([f"w {b.addr}"], pool={"idle_timeout": "1500ms"})
    c = rig.connect()
    local = c.getsockname()[1]
    rig.maybe_reload(reload)
    data, how = st.recv_until_close(c, timeout=10 * st.SLOW)
    c.close()
    e = s.access_for(local)
    assert e["reason"] == "idle_timeout" and data == b"", e
    assert 1400 <= int(e["duration_ms"]) < 1500 + 3000 * st.SLOW, e
    with b.cond:
        assert b.cond.wait_for(lambda: b.events, T), "the backend connection was not closed"
    rig.settle()


# ==========================================================================
# the network


class PacedEcho:
    """A client thread echoing 16 KiB chunks through sluice one at a time
    (each checked), so a fault can be applied while it is mid-transfer."""

    CHUNK = 16 << 10

    def __init__(self, rig, chunks):
        self.c = rig.connect(timeout=60 * st.SLOW)
        assert st.recv_line(self.c) == b"e"
        self.local = self.c.getsockname()[1]
        self.done = 0
        self.chunks = chunks
        self.error = None
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        try:
            for i in range(self.chunks):
                msg = struct.pack("!I", i) * (self.CHUNK // 4)
                self.c.sendall(msg)
                assert st.recv_exact(self.c, len(msg), timeout=60 * st.SLOW) == msg
                self.done = i + 1
        except BaseException as e:  # reported by finish()
            self.error = e

    def wait_progress(self, n):
        st.wait_for(lambda: self.done >= n or self.error, T, f"{n} chunks echoed")
        assert self.error is None, self.error

    def finish(self):
        self.t.join(90 * st.SLOW)
        assert not self.t.is_alive(), f"transfer stuck at chunk {self.done}"
        assert self.error is None, f"chunk {self.done}: {self.error!r}"
        self.c.close()


@RELOAD
def test_packets_dropped_for_seconds_mid_transfer(rig, net, reload):
    e_srv = rig.backend(st.named_handler("e"), "e")
    s = rig.start([f"e {e_srv.addr}"])
    t = PacedEcho(rig, 400)
    t.wait_progress(20)
    net.nft(net.backend, """
        table inet fault {
            chain input { type filter hook input priority 0; policy drop; }
            chain output { type filter hook output priority 0; policy drop; }
        }""")
    stuck_at = t.done
    rig.maybe_reload(reload)
    time.sleep(3)  # the fault is the duration itself: 3 s of silence
    assert t.done <= stuck_at + 1, "traffic passed a drop-everything rule"
    net.run(net.backend, "/usr/sbin/nft", "delete", "table", "inet", "fault")
    t.finish()
    assert t.done == 400
    e = s.access_for(t.local)
    assert e["reason"] == "client_close" and int(e["up"]) == 400 * PacedEcho.CHUNK, e
    rig.settle()


@RELOAD
def test_link_down_and_up(rig, net, reload):
    e_srv = rig.backend(st.named_handler("e"), "e")
    s = rig.start([f"e {e_srv.addr}"], pool={"fall": 100})
    t = PacedEcho(rig, 300)
    t.wait_progress(20)
    net.link(net.proxy, "p1", "down")
    try:
        rig.maybe_reload(reload)
        # A new session while the backend side is down: connect fails at once.
        c = rig.connect()
        local = c.getsockname()[1]
        data, how = st.recv_until_close(c, timeout=T)
        c.close()
        assert s.access_for(local)["reason"] == "connect_failed"
        time.sleep(1)  # the fault is the duration: the link stays down a while
    finally:
        net.link(net.proxy, "p1", "up")
    t.finish()
    assert s.access_for(t.local)["reason"] == "client_close"
    assert rig.server("e")["connect_failures"] >= 1
    rig.settle()


@pytest.mark.heavy
def test_delay_and_chopped_segments_each_way(rig, net):
    """20 ms added and every write cut into 1..7-byte segments, in both
    directions, by fault relays on both sides of sluice (client side: what
    the client sends; backend side: what the backend sends), so sluice
    reads tiny segments late from both peers: 64 MiB up and 64 MiB down
    arrive byte-exact."""
    total = 64 << 20
    block = os.urandom(1 << 20)
    with nn.inside(net.backend):  # on the backend namespace's loopback, behind its relay
        echo = st.Server(st.echo_handler, name="echo", host="127.0.0.1", conn_timeout=600 * st.SLOW)
    try:
        slow = ("--delay", "20", "--chop", "1-7", "--max-seconds", str(int(900 * st.SLOW)))
        with FaultRelay(nn.BACKEND_IP, echo.addr, *slow, "--only", "down",
                        netns=net.backend) as back:
            s = rig.start([f"echo {back.addr}"], pool={"idle_timeout": "5m"})
            port = rig.port
            with FaultRelay("127.0.0.1", f"{nn.PROXY_IP}:{port}", *slow, "--only", "up",
                            netns=net.client) as front:
                with nn.inside(net.client):
                    c = st.connect(front.port, timeout=60 * st.SLOW)
                local_hash, got = hashlib.sha256(), 0
                sent_hash = hashlib.sha256()
                for _ in range(total // len(block)):
                    sent_hash.update(block)

                def on_data(mv):
                    nonlocal got
                    local_hash.update(mv)
                    got += len(mv)

                t0 = time.monotonic()
                st.duplex(c, [block] * (total // len(block)), on_data,
                          t0 + (600 if st.SANITIZER else 300))
                took = time.monotonic() - t0
                c.close()
                assert got == total and local_hash.digest() == sent_hash.digest(), (
                    f"echo through delay+chop: {got} of {total} bytes, or different bytes")
        # Both relays really cut their direction into pieces of at most 7 bytes.
        assert int(front.stats()["up_sends"]) >= total // 7, front.stats()
        assert int(back.stats()["down_sends"]) >= total // 7, back.stats()
        e = s.access(backend="echo")
        assert len(e) == 1 and int(e[0]["up"]) == total and int(e[0]["down"]) == total, e
        assert e[0]["reason"] in ("client_close", "backend_close"), e
        print(f"delay+chop: {total >> 20} MiB each way in {took:.1f}s")
    finally:
        echo.close()
    rig.settle()


# ==========================================================================
# the process


@RELOAD
def test_descriptors_exhausted(rig, reload):
    nofile = 48
    b = rig.backend(st.echo_handler, "e")
    s = rig.start([f"e {b.addr}"], nofile=nofile)
    sessions, extra = [], []
    try:
        while s.nfds() + 2 <= nofile - 1:
            c = rig.connect()
            st.roundtrip(c, b"fill\n")
            sessions.append(c)
        st.set_nofile(s.pid, s.nfds())  # not one descriptor left
        extra = [rig.connect() for _ in range(5)]
        s.wait_log("too many open files", timeout=T)
        rig.bystander.ping()
        st.roundtrip(sessions[0], b"still\n")
        if reload:
            # Even reading the config needs a descriptor: the reload fails
            # cleanly and the old generation keeps serving.
            s.signal(signal.SIGHUP)
            s.wait_log("reload failed", timeout=T)
            st.roundtrip(sessions[-1], b"still\n")
    finally:
        for c in sessions:
            c.close()
    st.set_nofile(s.pid, nofile)
    for c in extra:  # the queued clients are served now
        st.roundtrip(c, b"late\n", timeout=T)
        c.close()
    assert s.alive()
    rig.settle()


@RELOAD
def test_max_conns_reached(rig, reload):
    b = rig.backend(st.echo_handler, "e")
    rig.start([f"e {b.addr}"], listener={"max_conns": 3})
    held = [rig.connect() for _ in range(3)]
    for c in held:
        st.roundtrip(c, b"in\n")
    waiting = rig.connect()
    waiting.sendall(b"queued\n")
    rig.maybe_reload(reload)
    with pytest.raises(socket.timeout):
        waiting.settimeout(0.5)  # a window: nothing may arrive in it
        waiting.recv(100)
    rig.bystander.ping()  # another listener: not limited
    held.pop().close()
    assert st.recv_exact(waiting, 7, timeout=T) == b"queued\n"
    for c in held + [waiting]:
        c.close()
    rig.settle()


# ==========================================================================
# relay = uring: the resets, half-closes and stalled readers above once
# more with the listener under test relaying through io_uring.

URING_CASES = ["test_backend_killed_mid_transfer", "test_backend_answers_with_rst",
               "test_backend_accepts_and_never_reads", "test_client_stops_reading",
               "test_client_resets_mid_transfer", "test_client_half_closes_and_waits",
               "test_client_sends_nothing_until_idle_timeout"]


@pytest.mark.parametrize("case", URING_CASES, ids=[c[len("test_"):] for c in URING_CASES])
def test_uring(rig, case):
    why = st.uring_unavailable()
    if why:
        pytest.skip(f"relay = uring: {why}")
    rig.relay = "uring"
    globals()[case](rig, reload=False)
    assert "io_uring ready" in rig.s.log(), "the listener never relayed through io_uring"
