"""A pool's queue (max_queue, queue_timeout): when every usable server is at
its max_conns, new clients wait in one FIFO per pool, shared by the workers,
instead of ending no_backend (docs/config.md, "max_queue and queue_timeout").

The FIFO property checked: clients are made to join the queue one after
another (each is seen in the backend or in the queue, `show stats json`,
before the next connects), and the backend lets one session go every 100 ms,
so each freed slot has been taken (the woken client has reached the
backend) before the next one frees. The order in which the clients reach
the backend must then be exactly the order in which they joined the queue,
whichever of the two workers accepted them."""

import re
import socket
import threading
import time

import ctltest as ct
import sluicetest as st
from ctltest import sockdir  # noqa: F401  (fixture)

HOLD = 0.1  # seconds the backend keeps each session once released


class Gate:
    """Backend handler: reads the client's id line, notes it (arrival order
    in srv.events), then waits until the test opens the gate; after that the
    sessions end one at a time, HOLD apart, each answering 'ok ID'."""

    def __init__(self):
        self.open = threading.Event()
        self.turn = threading.Lock()

    def handler(self, conn, srv):
        line = st.recv_line(conn, timeout=30.0 * st.SLOW)
        srv.note(line.decode().strip())
        if not self.open.wait(30.0 * st.SLOW):
            return
        with self.turn:
            time.sleep(HOLD)
            conn.sendall(b"ok " + line + b"\n")


def arrivals(*servers):
    """Client ids in the order they reached any of the backends."""
    ev = sorted((t, what) for s in servers for what, t in s.events)
    return [what for _t, what in ev]


def pool_stats(sock, name="main"):
    return next(p for p in ct.stats_json(sock)["pools"] if p["name"] == name)


def queue_config(port, servers, sock, *, workers=2, max_queue=100, queue_timeout="10s", **pool):
    keys = {"max_queue": max_queue, "queue_timeout": queue_timeout}
    keys.update(pool)
    return ct.ctl_config(port, servers, sock=sock, workers=workers, pool=keys)


def test_full_pool_queues_fifo_across_workers(sluice, backend, port, sockdir):
    gate = Gate()
    a, b = backend(gate.handler, "a"), backend(gate.handler, "b")
    sock = str(sockdir / "admin.sock")
    s = sluice(queue_config(port, [f"a {a.addr} max_conns=2", f"b {b.addr} max_conns=2"], sock))
    clients = []
    for i in range(20):
        c = st.connect(port)
        c.sendall(f"{i}\n".encode())
        clients.append(c)
        # Client i is at a backend or in the queue before i+1 connects.
        st.wait_for(lambda: len(arrivals(a, b)) + pool_stats(sock)["queue"] == i + 1,
                    5.0 * st.SLOW, lambda: f"client {i} at a backend or queued: "
                    f"{arrivals(a, b)}, {pool_stats(sock)}\n{s.tail()}")
    assert len(arrivals(a, b)) == 4 and pool_stats(sock)["queue"] == 16, pool_stats(sock)
    # Each client closes as soon as it has its answer, so the sessions end
    # (and free their slots) at the backend's pace, HOLD apart.
    got = {}

    def finish(i, c):
        try:
            got[i] = st.recv_line(c, timeout=20.0 * st.SLOW)
        except AssertionError as e:
            got[i] = str(e)
        c.close()

    threads = [threading.Thread(target=finish, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    gate.open.set()
    for t in threads:
        t.join(30.0 * st.SLOW)
    assert got == {i: f"ok {i}".encode() for i in range(20)}, got
    assert arrivals(a, b) == [str(i) for i in range(20)], "served out of FIFO order"
    log = s.wait_access(20)
    assert {e["reason"] for e in log} <= {"backend_close", "client_close"}, log
    queued = [e for e in log if int(e["queued_ms"]) > 0]
    assert len(queued) >= 15, f"16 clients waited, {len(queued)} with queued_ms > 0: {log}"
    assert {e["worker"] for e in queued} == {"0", "1"}, "the queue should hold both workers' clients"
    p = pool_stats(sock)
    assert (p["queue"], p["queued"], p["max_queue"]) == (0, 16, 100), p
    assert p["queue_wait_ms"] > 16 * HOLD * 1000 / 2, p
    assert ct.stats_json(sock)["process"]["end_reasons"]["no_backend"] == 0
    s.stop()


def test_burst_of_20_all_served_within_limits(sluice, backend, port, sockdir):
    """20 clients at once, 4 slots, 100 ms each: nobody is refused, no
    server ever holds more than its max_conns."""
    peak = {"a": 0, "b": 0}
    live = {"a": 0, "b": 0}
    lock = threading.Lock()

    def handler(conn, srv):
        with lock:
            live[srv.name] += 1
            peak[srv.name] = max(peak[srv.name], live[srv.name])
        line = st.recv_line(conn, timeout=10.0 * st.SLOW)
        time.sleep(HOLD)
        with lock:  # before the answer: sluice's session cannot end before this
            live[srv.name] -= 1
        conn.sendall(line + b"\n")

    a, b = backend(handler, "a"), backend(handler, "b")
    sock = str(sockdir / "admin.sock")
    s = sluice(queue_config(port, [f"a {a.addr} max_conns=2", f"b {b.addr} max_conns=2"], sock))
    got = {}

    def client(i):
        try:
            c = st.connect(port)
            c.sendall(f"{i}\n".encode())
            got[i] = st.recv_line(c, timeout=10.0 * st.SLOW)
            c.close()
        except Exception as e:  # noqa: BLE001  (reported below)
            got[i] = repr(e)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20.0 * st.SLOW)
    assert got == {i: f"{i}".encode() for i in range(20)}, got
    assert peak["a"] <= 2 and peak["b"] <= 2, peak
    log = s.wait_access(20)
    assert {e["reason"] for e in log} <= {"backend_close", "client_close"}, log
    assert pool_stats(sock)["queued"] >= 8, pool_stats(sock)
    s.stop()


def hold_all(port, n, servers):
    """n clients that each reach a backend and stay there."""
    held = []
    for i in range(n):
        c = st.connect(port)
        c.sendall(f"held{i}\n".encode())
        held.append(c)
    st.wait_for(lambda: sum(x.accepted for x in servers) == n, 5.0 * st.SLOW,
                f"{n} sessions at the backends")
    return held


def test_queue_timeout_ends_waiters(sluice, backend, port, sockdir):
    gate = Gate()
    a = backend(gate.handler, "a")
    sock = str(sockdir / "admin.sock")
    s = sluice(queue_config(port, [f"a {a.addr} max_conns=2"], sock, queue_timeout="300ms"))
    held = hold_all(port, 2, [a])
    t0 = time.monotonic()
    waiters = [st.connect(port) for _ in range(3)]
    for w in waiters:
        assert st.recv_until_close(w, timeout=5.0 * st.SLOW)[0] == b""
    took = time.monotonic() - t0
    assert 0.3 <= took <= 0.3 + 1.0 * st.SLOW, f"waiters ended after {took:.3f}s, queue_timeout 300ms"
    log = s.wait_access(3, reason="queue_timeout")
    for e in log:
        assert e["backend"] == "-" and 280 <= int(e["queued_ms"]) <= 300 + 1000 * st.SLOW, e
    assert a.accepted == 2
    assert ct.stats_json(sock)["process"]["end_reasons"]["queue_timeout"] == 3
    p = pool_stats(sock)
    assert (p["queue"], p["queued"], p["queue_timeout_ms"]) == (0, 3, 300), p
    gate.open.set()
    for c in held:
        assert st.recv_line(c).startswith(b"ok held")
        c.close()
    s.stop()


def test_queue_timeout_defaults_to_connect_timeout(sluice, backend, port, sockdir):
    a = backend(Gate().handler, "a")
    sock = str(sockdir / "admin.sock")
    s = sluice(ct.ctl_config(port, [f"a {a.addr} max_conns=1"], sock=sock,
                             pool={"max_queue": 5, "connect_timeout": "250ms"}))
    assert pool_stats(sock)["queue_timeout_ms"] == 250
    held = hold_all(port, 1, [a])
    w = st.connect(port)
    assert st.recv_until_close(w, timeout=5.0 * st.SLOW)[0] == b""
    assert s.wait_access(1, reason="queue_timeout")[0]["backend"] == "-"
    for c in held:
        c.close()
    s.stop()


def test_full_queue_ends_newcomer_at_once(sluice, backend, port, sockdir):
    gate = Gate()
    a = backend(gate.handler, "a")
    sock = str(sockdir / "admin.sock")
    s = sluice(queue_config(port, [f"a {a.addr} max_conns=2"], sock, max_queue=2))
    held = hold_all(port, 2, [a])
    waiters = [st.connect(port) for _ in range(2)]
    st.wait_for(lambda: pool_stats(sock)["queue"] == 2, 5.0 * st.SLOW, "2 clients queued")
    t0 = time.monotonic()
    late = st.connect(port)
    assert st.recv_until_close(late, timeout=5.0 * st.SLOW)[0] == b""
    took = time.monotonic() - t0
    assert took < 0.5 * st.SLOW, f"queue_full took {took:.3f}s, should be at once"
    e = s.wait_access(1, reason="queue_full")[0]
    assert (e["backend"], e["queued_ms"]) == ("-", "0"), e
    end = ct.stats_json(sock)["process"]["end_reasons"]
    assert (end["queue_full"], end["no_backend"]) == (1, 0), end
    # the two waiters are still served, in order, once slots free up
    for i, w in enumerate(waiters):
        w.sendall(f"w{i}\n".encode())
    gate.open.set()
    for c in held + waiters:
        assert st.recv_line(c, timeout=5.0 * st.SLOW).startswith(b"ok ")
        c.close()
    # Both served; not their order: they were not confirmed queued one by
    # one (two workers may have queued them either way round), and the two
    # slots free at once, so two wakes race (FIFO order is the job of
    # test_full_pool_queues_fifo_across_workers, which releases one slot at a time).
    assert sorted(arrivals(a)[2:]) == ["w0", "w1"]
    s.stop()


def test_without_max_queue_a_full_pool_refuses(sluice, backend, port, sockdir):
    """max_queue = 0 (the default): exactly as before, no_backend at once."""
    gate = Gate()
    a = backend(gate.handler, "a")
    sock = str(sockdir / "admin.sock")
    s = sluice(ct.ctl_config(port, [f"a {a.addr} max_conns=1"], sock=sock))
    held = hold_all(port, 1, [a])
    late = st.connect(port)
    assert st.recv_until_close(late, timeout=5.0 * st.SLOW)[0] == b""
    e = s.wait_access(1, reason="no_backend")[0]
    assert e["queued_ms"] == "0", e
    assert pool_stats(sock)["queued"] == 0
    gate.open.set()
    for c in held:
        c.close()
    s.stop()


def test_all_servers_down_does_not_queue(sluice, closed_port, port, sockdir):
    """Nothing to wait for when no server is merely full: no_backend."""
    dead = closed_port()
    sock = str(sockdir / "admin.sock")
    s = sluice(queue_config(port, [f"a 127.0.0.1:{dead.port} max_conns=1"], sock))
    assert ct.ask(sock, "disable server main/a").startswith("disabled")
    c = st.connect(port)
    assert st.recv_until_close(c, timeout=5.0 * st.SLOW)[0] == b""
    assert s.wait_access(1)[0]["reason"] == "no_backend"
    s.stop()


def test_queued_client_that_leaves_gives_up_its_turn(sluice, backend, port, sockdir):
    gate = Gate()
    a = backend(gate.handler, "a")
    sock = str(sockdir / "admin.sock")
    s = sluice(queue_config(port, [f"a {a.addr} max_conns=1"], sock))
    held = hold_all(port, 1, [a])
    quitter = st.connect(port)  # closes before sending anything: gave up
    st.wait_for(lambda: pool_stats(sock)["queue"] == 1, 5.0 * st.SLOW, "the quitter queued")
    resetter = st.connect(port)  # sends, then aborts
    resetter.sendall(b"reset\n")
    st.wait_for(lambda: pool_stats(sock)["queue"] == 2, 5.0 * st.SLOW, "the resetter queued")
    stayer = st.connect(port)
    stayer.sendall(b"stayer\n")
    st.wait_for(lambda: pool_stats(sock)["queue"] == 3, 5.0 * st.SLOW, "the stayer queued")
    half = st.connect(port)  # a complete request and a half-close: keeps its turn
    half.sendall(b"half\n")
    half.shutdown(socket.SHUT_WR)
    st.wait_for(lambda: pool_stats(sock)["queue"] == 4, 5.0 * st.SLOW, "4 clients queued")
    quitter.close()
    st.rst_close(resetter)
    st.wait_for(lambda: pool_stats(sock)["queue"] == 2, 5.0 * st.SLOW,
                lambda: f"the two leavers out of the queue: {pool_stats(sock)}\n{s.tail()}")
    reasons = sorted(e["reason"] for e in s.wait_access(2))
    assert reasons == ["client_close", "reset"], reasons
    assert all(e["backend"] == "-" for e in s.access()), s.access()
    gate.open.set()
    assert st.recv_line(held[0]).startswith(b"ok held")
    held[0].close()
    assert st.recv_line(stayer, timeout=5.0 * st.SLOW) == b"ok stayer"
    stayer.close()
    assert st.recv_line(half, timeout=5.0 * st.SLOW) == b"ok half"
    half.close()
    assert arrivals(a) == ["held0", "stayer", "half"], arrivals(a)
    s.wait_access(5)
    assert pool_stats(sock)["queue"] == 0
    s.stop()


def test_metrics_and_table_show_the_queue(sluice, backend, port, sockdir):
    gate = Gate()
    a = backend(gate.handler, "a")
    sock = str(sockdir / "admin.sock")
    http = st.free_port()
    s = sluice(ct.ctl_config(port, [f"a {a.addr} max_conns=1"], sock=sock, http=http,
                             pool={"max_queue": 10, "queue_timeout": "10s"}))
    held = hold_all(port, 1, [a])
    waiters = [st.connect(port) for _ in range(3)]
    st.wait_for(lambda: pool_stats(sock)["queue"] == 3, 5.0 * st.SLOW, "3 clients queued")
    row = next(l.split() for l in ct.ask(sock, "show stats").splitlines() if l.startswith("main "))
    # LISTENER row comes first; the pool row has 5 columns
    rows = [l.split() for l in ct.ask(sock, "show stats").splitlines()]
    pool_row = [r for r in rows if r and r[0] == "main" and len(r) == 5]
    assert pool_row and pool_row[0][1:4] == ["3", "10", "3"], rows
    assert row
    _h, fams = ct.scrape(http)
    v = ct.prom_samples(fams)
    assert v[("sluice_pool_queue_length", (("pool", "main"),))] == 3
    assert v[("sluice_pool_queued_total", (("pool", "main"),))] == 3
    gate.open.set()
    for i, w in enumerate(waiters):
        w.sendall(f"w{i}\n".encode())
    for c in held + waiters:
        assert st.recv_line(c, timeout=5.0 * st.SLOW).startswith(b"ok ")
        c.close()
    s.wait_access(4)
    _h, fams = ct.scrape(http)
    v = ct.prom_samples(fams)
    assert v[("sluice_pool_queue_length", (("pool", "main"),))] == 0
    assert v[("sluice_pool_queue_wait_seconds_total", (("pool", "main"),))] > HOLD
    s.stop()


def test_reload_keeps_the_waiters_in_order(sluice, backend, port, sockdir):
    """The queue belongs to the pool's name: a reload that keeps the pool
    keeps its waiters and their order; newcomers of the new generation queue
    behind them."""
    gate = Gate()
    a = backend(gate.handler, "a")
    sock = str(sockdir / "admin.sock")
    servers = [f"a {a.addr} max_conns=1"]
    s = sluice(queue_config(port, servers, sock, workers=2))
    held = hold_all(port, 1, [a])
    waiters = []
    for i in range(3):
        w = st.connect(port)
        w.sendall(f"old{i}\n".encode())
        waiters.append(w)
        st.wait_for(lambda: pool_stats(sock)["queue"] == i + 1, 5.0 * st.SLOW, f"old{i} queued")
    s.cfg.write_text(queue_config(port, servers, sock, workers=2, max_queue=50))
    ct.sighup_reload(s, sock, 2)
    assert pool_stats(sock)["queue"] == 3 and pool_stats(sock)["max_queue"] == 50
    for i in range(2):
        w = st.connect(port)
        w.sendall(f"new{i}\n".encode())
        waiters.append(w)
        st.wait_for(lambda: pool_stats(sock)["queue"] == 4 + i, 5.0 * st.SLOW, f"new{i} queued")
    gate.open.set()
    for c in held + waiters:
        assert st.recv_line(c, timeout=10.0 * st.SLOW).startswith(b"ok ")
        c.close()
    assert arrivals(a) == ["held0", "old0", "old1", "old2", "new0", "new1"], arrivals(a)
    s.wait_access(6)
    s.stop()


def documented_reasons(path, heading):
    text = path.read_text()
    start = text.index(heading)
    end = text.find("\n#", start + len(heading))
    section = text[start:end if end > 0 else len(text)]
    return {m.group(1) for m in re.finditer(r"^\| `([a-z_]+)` \|", section, re.M)}


def test_every_end_reason_is_documented(sluice, backend, port, sockdir):
    """The reasons sluice counts (queue_timeout and queue_full among them)
    are the ones docs/operations.md and docs/architecture.md list."""
    a = backend(st.echo_handler)
    sock = str(sockdir / "admin.sock")
    s = sluice(ct.ctl_config(port, [f"a {a.addr}"], sock=sock))
    served = set(ct.stats_json(sock)["process"]["end_reasons"])
    assert {"queue_timeout", "queue_full"} <= served, served
    assert documented_reasons(st.REPO / "docs" / "operations.md", "\n## End reasons") == served
    assert documented_reasons(st.REPO / "docs" / "architecture.md", "\n### End reasons") == served
    s.stop()


def test_graceful_stop_ends_waiters_with_shutdown(sluice, backend, port, sockdir):
    """SIGTERM: queued clients wait like live sessions, and at
    shutdown_timeout (2s here) end with reason shutdown; sluice exits 0."""
    a = backend(Gate().handler, "a")
    sock = str(sockdir / "admin.sock")
    s = sluice(queue_config(port, [f"a {a.addr} max_conns=1"], sock, queue_timeout="60s"))
    held = hold_all(port, 1, [a])
    waiters = [st.connect(port) for _ in range(3)]
    st.wait_for(lambda: pool_stats(sock)["queue"] == 3, 5.0 * st.SLOW, "3 clients queued")
    s.stop()
    assert sorted(e["reason"] for e in s.access()) == ["shutdown"] * 4, s.access()
    for c in held + waiters:
        c.close()
