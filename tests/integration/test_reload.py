"""Reload (SIGHUP and the admin `reload`): under load, broken files, removed
servers, counters, resource use over many reloads, changing `workers`."""

import collections
import selectors
import signal
import socket
import time

import pytest

import ctltest as ct
import sluicetest as st
from ctltest import sockdir  # noqa: F401  (fixture)


@pytest.mark.threaded
def test_reload_under_load(sluice, backend, port, sockdir):
    """20 clients transfer and verify continuously while 100 SIGHUPs switch
    between two configs: different weights, server s3 added/removed, a second
    listener added/removed. The kept listener must not fail one connection."""
    t_start = time.monotonic()
    budget = 60.0
    reloads = 100
    srv = {n: backend(st.sinksource_handler, name=n) for n in ("s1", "s2", "s3")}
    port2 = st.free_port()
    sock = str(sockdir / "admin.sock")

    def cfg_a():
        return ct.ctl_config(port, [f"s1 {srv['s1'].addr} weight=1", f"s2 {srv['s2'].addr} weight=3"],
                             sock=sock, workers=2, glob={"access_log": "off"},
                             extra_listeners=[("second", port2, "main")])

    def cfg_b():
        return ct.ctl_config(port, [f"s1 {srv['s1'].addr} weight=3", f"s2 {srv['s2'].addr} weight=1",
                                    f"s3 {srv['s3'].addr} weight=2"],
                             sock=sock, workers=2, glob={"access_log": "off"})

    s = sluice(cfg_a())
    assert len(st.ss_listeners(port2)) == 2, st.ss_listeners(port2)
    load = ct.Load(port, 20, max_len=64 << 10).start()
    admin = ct.AdminConn(sock)
    try:
        load.wait_ok(20, 15.0 * st.SLOW)
        assert not load.failures, load.report()
        for i in range(1, reloads + 1):
            b_phase = i % 2 == 1
            ct.write_config(s.cfg, cfg_b() if b_phase else cfg_a())
            ct.sighup_reload(s, admin, 1 + i)
            want = 0 if b_phase else 2
            st.wait_for(lambda: len(st.ss_listeners(port2)) == want, 5.0 * st.SLOW,
                        lambda: f"reload {i}: {want} listening sockets on the second listener's port "
                                f"{port2}, ss shows {st.ss_listeners(port2)}")
            assert time.monotonic() - t_start < budget - 10, f"only {i} reloads done in {budget - 10:.0f}s"
            if load.failures:
                break
            # let some exchanges complete between reloads, so they interleave
            ok = load.ok
            load.wait_ok(ok + 3, 10.0 * st.SLOW)
        # traffic still flows after the last reload
        ok = load.ok
        load.wait_ok(ok + 20, 15.0 * st.SLOW)
    finally:
        load.stop()
        admin.close()
    assert not load.failures, f"failed exchanges on the kept listener during reloads: {load.report()}"
    assert load.ok >= 100, f"only {load.ok} exchanges completed during {reloads} reloads"
    info = ct.show_info(sock)
    assert info["reloads_ok"] == str(reloads) and info["reloads_failed"] == "0", info
    assert info["generation"] == str(reloads + 1), info
    for n, b in srv.items():
        assert not b.errors, f"backend {n} saw errors: {b.errors[:3]}"
        assert b.accepted > 0, f"backend {n} got no session"
    assert s.alive(), s.tail()
    print(f"{reloads} reloads under load: {load.ok} exchanges in {time.monotonic() - t_start:.1f}s")
    s.stop()
    assert time.monotonic() - t_start < budget, f"test took {time.monotonic() - t_start:.1f}s"


def test_broken_reload_changes_nothing(sluice, named, port, sockdir):
    a, b = named("a"), named("b")
    sock = str(sockdir / "admin.sock")
    good = ct.ctl_config(port, [f"a {a.addr}"], sock=sock)
    s = sluice(good)
    assert ct.pick(port) == "a"

    # the new pool would send everything to b, but the file has two errors
    broken = ct.ctl_config(port, [f"b {b.addr}"], sock=sock, pool={"wibble": "1", "retries": "lots"})
    l1, l2 = ct.line_of(broken, "wibble"), ct.line_of(broken, "retries")
    ct.write_config(s.cfg, broken)
    s.signal(signal.SIGHUP)
    s.wait_log("reload failed")
    log = s.log()
    for line, key in ((l1, "wibble"), (l2, "retries")):
        assert f"{s.cfg}:{line}: {key}: " in log, f"no '{s.cfg}:{line}: {key}: ...' error in the log\n{s.tail()}"
    info = ct.show_info(sock)
    assert info["generation"] == "1" and info["reloads_failed"] == "1" and info["reloads_ok"] == "0", info
    assert info["last_reload_result"].startswith("failed"), info
    assert {ct.pick(port) for _ in range(6)} == {"a"}, "a failed reload changed the pool"

    reply = ct.ask(sock, "reload")
    lines = reply.splitlines()
    assert any(l.startswith(f"{s.cfg}:{l1}: wibble: ") for l in lines), reply
    assert any(l.startswith(f"{s.cfg}:{l2}: retries: ") for l in lines), reply
    assert lines[-1].startswith("reload failed"), reply
    info = ct.show_info(sock)
    assert info["generation"] == "1" and info["reloads_failed"] == "2", info

    # a file that parses but cannot be applied (a bind in use) changes nothing either
    taken = st.Server(st.echo_handler)
    try:
        unbindable = ct.ctl_config(port, [f"b {b.addr}"], sock=sock,
                                   extra_listeners=[("x", taken.port, "main")])
        ct.write_config(s.cfg, unbindable)
        reply = ct.ask(sock, "reload")
        assert "reload failed" in reply, reply
    finally:
        taken.close()
    info = ct.show_info(sock)
    assert info["generation"] == "1" and info["reloads_failed"] == "3", info
    assert {ct.pick(port) for _ in range(6)} == {"a"}

    ct.write_config(s.cfg, ct.ctl_config(port, [f"b {b.addr}"], sock=sock))
    reply = ct.ask(sock, "reload")
    assert reply.startswith("reload ok: generation 2"), reply
    assert {ct.pick(port) for _ in range(6)} == {"b"}
    info = ct.show_info(sock)
    assert info["reloads_ok"] == "1" and info["reloads_failed"] == "3", info
    s.stop()


def test_removed_server_finishes_live_session(sluice, named, port, sockdir):
    a, b = named("a"), named("b")
    sock = str(sockdir / "admin.sock")
    s = sluice(ct.ctl_config(port, [f"a {a.addr}", f"b {b.addr}"], sock=sock))
    c, _ = ct.hold(port, want="b")
    local = c.getsockname()[1]
    try:
        ct.echo_chunks(c, 64 << 10)
        ct.write_config(s.cfg, ct.ctl_config(port, [f"a {a.addr}"], sock=sock))
        assert ct.ask(sock, "reload").startswith("reload ok"), s.tail()
        b_accepted = b.accepted
        got = collections.Counter(ct.pick(port) for _ in range(20))
        assert got == {"a": 20}, f"b was removed, new sessions went to {dict(got)}"
        # the session on the removed server goes on, both ways
        ct.echo_chunks(c, 512 << 10)
        text = ct.ask(sock, "show sessions")
        assert "main/b" in text, f"live session on the removed server not listed:\n{text}"
        c.shutdown(socket.SHUT_WR)
        rest, how = st.recv_until_close(c, 5.0 * st.SLOW)
        assert how == "eof" and rest == b"", (how, rest[:100])
    finally:
        c.close()
    e = s.access_for(local)
    assert e["backend"] == "b" and e["reason"] == "client_close", e
    assert int(e["up"]) == (64 << 10) + (512 << 10), e
    assert int(e["down"]) == (64 << 10) + (512 << 10) + 2, e
    assert b.accepted == b_accepted, "the removed server got new connections"
    s.stop()


def test_file_weights_override_set_weight(sluice, named, port, sockdir):
    """Weights come from the file at each reload (overriding `set weight`);
    admin state (disable) is kept, like health and counters."""
    a, b, c = named("a"), named("b"), named("c")
    sock = str(sockdir / "admin.sock")

    def cfg(wa):
        return ct.ctl_config(port, [f"a {a.addr} weight={wa}", f"b {b.addr}", f"c {c.addr}"], sock=sock)
    s = sluice(cfg(1))
    ct.ask(sock, "set weight main/a 0")
    ct.ask(sock, "disable server main/c")
    assert {ct.pick(port) for _ in range(6)} == {"b"}
    ct.write_config(s.cfg, cfg(3))
    assert ct.ask(sock, "reload").startswith("reload ok")
    assert ct.server_stats(sock, "main", "a")["weight"] == 3
    got = collections.Counter(ct.pick(port) for _ in range(40))
    assert got == {"a": 30, "b": 10}, f"weights 3:1 from the file (c disabled) gave {dict(got)}"
    assert ct.server_stats(sock, "main", "c")["admin"] == "disabled"
    s.stop()


@pytest.mark.threaded
def test_counters_continue_across_reloads(sluice, named, port, sockdir):
    a, b = named("a"), named("b")
    sock = str(sockdir / "admin.sock")

    def cfg(workers, wa=1):
        return ct.ctl_config(port, [f"a {a.addr} weight={wa}", f"b {b.addr}"], sock=sock, workers=workers)

    s = sluice(cfg(2))
    history = []

    def sessions(n):
        done = len(s.access())
        for _ in range(n):
            ct.pick(port)
        s.wait_access(done + n)
        doc = ct.stats_json(sock)
        history.append(doc)
        return doc

    def check_monotonic(label):
        prev, cur = history[-2], history[-1]
        assert cur["info"]["sessions_total"] >= prev["info"]["sessions_total"], (label, prev["info"], cur["info"])
        for key in ("accepted", "bytes_in", "bytes_out"):
            assert cur["listeners"][0][key] >= prev["listeners"][0][key], (label, key)
        ps = {x["name"]: x for x in prev["servers"]}
        for x in cur["servers"]:
            for key in ("sessions", "connect_attempts", "bytes_in", "bytes_out"):
                assert x[key] >= ps[x["name"]][key], (label, x["name"], key, ps[x["name"]][key], x[key])

    sessions(10)
    for step, (workers, wa) in enumerate([(2, 2), (1, 1), (1, 3)], 1):
        ct.write_config(s.cfg, cfg(workers, wa))
        assert ct.ask(sock, "reload").startswith("reload ok"), s.tail()
        history.append(ct.stats_json(sock))
        check_monotonic(f"reload {step}")
        sessions(10)
        check_monotonic(f"traffic after reload {step}")
    last = history[-1]
    assert last["info"]["sessions_total"] == 40, last["info"]
    assert last["listeners"][0]["accepted"] == 40, last["listeners"][0]
    assert sum(x["sessions"] for x in last["servers"]) == 40, last["servers"]
    assert last["info"]["generation"] == 4 and last["info"]["workers"] == 1, last["info"]
    assert last["process"]["end_reasons"]["client_close"] == 40, last["process"]
    s.stop()


@pytest.mark.threaded
def test_thousand_reloads_resources_flat(sluice, named, port, sockdir):
    """1000 reloads (every tenth by SIGHUP) alternating two configs (a server
    and a listener added/removed), one session held open through them: after a warm-up of 100 reloads the open fd
    count returns to its baseline +-2 and RSS grows by less than 8 MiB
    (96 MiB under sanitizers, whose allocators keep freed memory around)."""
    total = 1000
    warm = total // 10
    rss_bound_kib = (96 if st.SANITIZER else 8) * 1024
    a, b, c = named("a"), named("b"), named("c")
    sock = str(sockdir / "admin.sock")
    port2 = st.free_port()
    cfg_a = ct.ctl_config(port, [f"a {a.addr}", f"b {b.addr}"], sock=sock, workers=2,
                          glob={"access_log": "off"}, extra_listeners=[("second", port2, "main")])
    cfg_b = ct.ctl_config(port, [f"a {a.addr} weight=2", f"c {c.addr}"], sock=sock, workers=2,
                          glob={"access_log": "off"})
    s = sluice(cfg_a)
    t0 = time.monotonic()

    def reload_n(conn, start, n):
        for i in range(start, start + n):
            ct.write_config(s.cfg, cfg_b if i % 2 else cfg_a)  # B on odd reloads, A on even
            if i % 10 == 0:  # every tenth by SIGHUP
                ct.sighup_reload(s, conn, i + 1)
                continue
            r = conn.cmd("reload", timeout=10.0 * st.SLOW)
            assert r.startswith(f"reload ok: generation {i + 1}"), f"reload {i}: {r}\n{s.tail()}"
            if i % 100 == 0:
                assert ct.pick(port) in ("a", "b", "c"), "no traffic after reload"
            assert time.monotonic() - t0 < 120 * st.SLOW, f"only {i} reloads in {120 * st.SLOW:.0f}s"

    def settled(conn):
        """fds and rss once the workers adopted the last generation (config A)."""
        st.wait_for(lambda: len(st.ss_listeners(port2)) == 2, 5.0 * st.SLOW, "second listener back")
        return s.nfds(), s.rss_kib()

    with ct.AdminConn(sock) as conn:
        reload_n(conn, 1, warm)  # ends on an even reload: config A
        fd0, rss0 = settled(conn)
        # a session that lives through all the remaining reloads pins an old
        # generation; it must still work, and closing it must free everything
        held, _ = ct.hold(port)
        reload_n(conn, warm + 1, total - warm)
        st.roundtrip(held, b"still relaying after %d reloads\n" % total)
        held.close()
        st.wait_for(lambda: abs(s.nfds() - fd0) <= 2, 5.0 * st.SLOW,
                    lambda: f"open fds back to {fd0}+-2 after {total} reloads (now {s.nfds()})")
        fd1, rss1 = settled(conn)
        info = ct.parse_info(conn.cmd("show info"))
    assert info["reloads_ok"] == str(total) and info["generation"] == str(total + 1), info
    assert abs(fd1 - fd0) <= 2, f"fds {fd0} after {warm} reloads, {fd1} after {total}"
    assert rss1 - rss0 < rss_bound_kib, (
        f"RSS grew {rss1 - rss0} KiB from reload {warm} to {total} (bound {rss_bound_kib} KiB): "
        f"{rss0} -> {rss1} KiB")
    assert ct.pick(port) in ("a", "b")
    print(f"{total} reloads in {time.monotonic() - t0:.1f}s; fds {fd0}->{fd1}; rss {rss0}->{rss1} KiB")
    s.stop()


@pytest.mark.threaded
def test_workers_change_by_reload(sluice, backend, port, sockdir):
    """workers 2 -> 1 -> 3 by reload while clients keep transferring: ss
    follows and no connection fails."""
    sv = backend(st.sinksource_handler, name="s1")
    sock = str(sockdir / "admin.sock")

    def cfg(workers):
        return ct.ctl_config(port, [f"s1 {sv.addr}"], sock=sock, workers=workers)
    s = sluice(cfg(2))
    assert len(st.ss_listeners(port)) == 2
    load = ct.Load(port, 6, max_len=16 << 10).start()
    try:
        load.wait_ok(20, 10.0 * st.SLOW)
        ct.write_config(s.cfg, cfg(1))
        r = ct.ask(sock, "reload")
        assert r.startswith("reload ok") and "1 workers" in r, r
        st.wait_for(lambda: len(st.ss_listeners(port)) == 1, 5.0 * st.SLOW,
                    lambda: f"1 listening socket on :{port}, ss shows {st.ss_listeners(port)}")
        s.wait_log("worker 1: exited", timeout=10.0 * st.SLOW)
        ok = load.ok
        load.wait_ok(ok + 20, 10.0 * st.SLOW)
        assert ct.show_info(sock)["workers"] == "1"
        n_before = len(s.access())
        ct.write_config(s.cfg, cfg(3))
        r = ct.ask(sock, "reload")
        assert r.startswith("reload ok") and "3 workers" in r, r
        st.wait_for(lambda: len(st.ss_listeners(port)) == 3, 5.0 * st.SLOW,
                    lambda: f"3 listening sockets on :{port}, ss shows {st.ss_listeners(port)}")
        st.wait_for(lambda: {e["worker"] for e in s.access()[n_before:]} >= {"1", "2"}, 10.0 * st.SLOW,
                    lambda: f"sessions on the new workers 1 and 2 "
                            f"(seen {collections.Counter(e['worker'] for e in s.access()[n_before:])})")
        ok = load.ok
        load.wait_ok(ok + 20, 10.0 * st.SLOW)
    finally:
        load.stop()
    assert not load.failures, f"connections failed while workers changed: {load.report()}"
    assert ct.show_info(sock)["workers"] == "3"
    s.stop()


def _fault_build(s, var):
    """Skip unless sluice honours the fault variable (builds with assertions)."""
    if f"{var}=" not in s.log():
        pytest.skip(f"{var} needs a build with assertions (meson -Dassertions=true)")


def test_worker_start_failure_aborts_the_whole_reload(sluice, named, port, sockdir):
    """A reload 1 -> 4 workers whose third worker_start() fails (the second
    new worker, slot 2): the reload fails and changes nothing. Every socket
    it opened is closed: ss shows the one old listening socket, not the ones
    bound for slots 1-3 (an orphan in the SO_REUSEPORT group would take its
    share of new connections and never accept them), and 200 new clients in
    a row are all served."""
    a = named("a")
    sock = str(sockdir / "admin.sock")

    def cfg(workers):
        return ct.ctl_config(port, [f"a {a.addr}"], sock=sock, workers=workers)
    s = sluice(cfg(1), env={"SLUICE_FAULT_WORKER_START": "3"})
    _fault_build(s, "SLUICE_FAULT_WORKER_START")
    assert len(st.ss_listeners(port)) == 1, st.ss_listeners(port)

    ct.write_config(s.cfg, cfg(4))
    r = ct.ask(sock, "reload", timeout=10.0 * st.SLOW)
    assert r.startswith("reload failed: worker 2: cannot start its thread"), f"{r}\n{s.tail()}"
    assert "still running generation 1" in r, r
    info = ct.show_info(sock)
    assert info["generation"] == "1" and info["workers"] == "1", info
    assert info["reloads_failed"] == "1" and info["reloads_ok"] == "0", info
    # The abort is synchronous: when the reply is out, everything is closed.
    rows = st.ss_listeners(port)
    assert len(rows) == 1, (f"after the failed reload exactly the old listening socket should be on "
                            f":{port}; ss shows {len(rows)}: {rows}\n{s.tail()}")
    for i in range(200):
        try:
            got = ct.pick(port, timeout=2.0 * st.SLOW)
        except (AssertionError, OSError) as e:
            raise AssertionError(f"client {i} of 200 was not served after the failed reload "
                                 f"(ss: {st.ss_listeners(port)}): {e}\n{s.tail()}")
        assert got == "a", got
    s.wait_access(200)

    # The slots the aborted reload used are free again: the same reload
    # without the fault (its call has passed) starts all three workers.
    r = ct.ask(sock, "reload", timeout=10.0 * st.SLOW)
    assert r.startswith("reload ok: generation 2, 4 workers"), f"{r}\n{s.tail()}"
    st.wait_for(lambda: len(st.ss_listeners(port)) == 4, 5.0 * st.SLOW,
                lambda: f"4 listening sockets on :{port}, ss shows {st.ss_listeners(port)}")
    assert ct.pick(port) == "a"
    s.stop()



def _sessions_by_worker(sock):
    """show sessions -> {client local port: worker id}."""
    out = {}
    for line in ct.ask(sock, "show sessions").splitlines()[1:]:
        f = line.split()
        if len(f) >= 4 and f[0].isdigit():  # ID WORKER LISTENER CLIENT ...
            out[int(f[3].rsplit(":", 1)[1])] = int(f[1])
    return out


@pytest.mark.threaded
def test_show_sessions_while_a_retiring_worker_exits(sluice, named, port, sockdir):
    """A worker that exits while control_fanout() prepares its messages must
    not leave `show sessions` waiting forever. SLUICE_FAULT_FANOUT_WAIT_EXIT
    makes that interleaving certain: control_fanout() stops after choosing
    its workers until a retiring worker has exited, and the test makes
    worker 1 exit right then by closing its last session. Before the fix
    the worker was counted but not sent the call, and the reply never came."""
    a = named("a")
    sock = str(sockdir / "admin.sock")

    def cfg(workers):
        return ct.ctl_config(port, [f"a {a.addr}"], sock=sock, workers=workers)
    s = sluice(cfg(2), env={"SLUICE_FAULT_FANOUT_WAIT_EXIT": "1"})
    _fault_build(s, "SLUICE_FAULT_FANOUT_WAIT_EXIT")

    # Sessions on worker 1, the one a reload to 1 worker retires.
    on_w1 = []
    for _ in range(10):
        conns = [ct.hold(port)[0] for _ in range(8)]
        where = _sessions_by_worker(sock)
        for c in conns:
            if where.get(c.getsockname()[1]) == 1:
                on_w1.append(c)
            else:
                c.close()
        if on_w1:
            break
    assert on_w1, f"no session landed on worker 1 in 80 tries\n{s.tail()}"

    ct.write_config(s.cfg, cfg(1))
    assert ct.ask(sock, "reload").startswith("reload ok: generation 2, 1 workers"), s.tail()
    with ct.AdminConn(sock, timeout=5.0 * st.SLOW) as admin:
        admin.send(b"show sessions\n")
        s.wait_log("fault: fan-out waits for a worker to exit")
        for c in on_w1:
            c.close()
        s.wait_log("fault: worker 1 exited during the fan-out")
        try:
            reply = admin.reply()
        except AssertionError as e:
            raise AssertionError(f"show sessions did not answer after worker 1 exited mid fan-out: "
                                 f"{e}\n{s.tail()}")
        assert reply.rstrip().endswith("sessions"), reply
        # the admin client is not stuck either: its next command is answered
        assert ct.parse_info(admin.cmd("show info"))["workers"] == "1"
    s.wait_log("worker 1: exited")
    s.stop()


def test_reload_serves_clients_queued_on_a_removed_bind_at_max_conns(sluice, named, port, sockdir):
    """A bind removed by a reload while its listener is at max_conns: the
    clients already queued on it (connected at TCP level, in the accept
    queue) are served once the live session ends, not reset; afterwards
    the address is closed. docs/operations.md, "What a reload does"."""
    a = named("a")
    sock = str(sockdir / "admin.sock")
    port2 = st.free_port()
    base = dict(sock=sock, workers=1)
    with_old = ct.ctl_config(port, [f"a {a.addr}"], **base, extra_listeners=[("old", port2, "main")])
    with_old = with_old.replace(f"bind = 127.0.0.1:{port2}\n", f"bind = 127.0.0.1:{port2}\nmax_conns = 1\n")
    s = sluice(with_old)
    live, _ = ct.hold(port2)
    queued = []
    try:
        for i in range(3):
            c = st.connect(port2, timeout=5.0 * st.SLOW)  # the kernel completes the handshake
            c.sendall(b"queued %d\n" % i)
            queued.append(c)
        st.wait_for(lambda: [r[0] for r in st.ss_listeners(port2)] == [3], 5.0 * st.SLOW,
                    lambda: f"3 clients in the accept queue of :{port2}, ss shows {st.ss_listeners(port2)}")

        ct.write_config(s.cfg, ct.ctl_config(port, [f"a {a.addr}"], **base))
        r = ct.ask(sock, "reload")
        assert r.startswith("reload ok: generation 2"), f"{r}\n{s.tail()}"
        assert ct.pick(port) == "a"
        # still waiting for the slot, not reset
        for i, c in enumerate(queued):
            try:
                st.assert_open(c, 0.2)
            except AssertionError as e:
                raise AssertionError(f"queued client {i} on the removed bind: {e}\n{s.tail()}")
        st.roundtrip(live, b"live session still relaying\n")
        live.close()
        for i, c in enumerate(queued):
            try:
                assert st.recv_line(c, timeout=5.0 * st.SLOW) == b"a"
                assert st.recv_line(c, timeout=5.0 * st.SLOW) == b"queued %d" % i
                st.roundtrip(c, b"served after the reload\n")
            except (AssertionError, OSError) as e:
                raise AssertionError(f"queued client {i} on the removed bind was not served: {e!r}\n{s.tail()}")
            c.close()  # frees the slot for the next one
    finally:
        live.close()
        for c in queued:
            c.close()
    ends = s.wait_access(4, listener="old")
    assert {e["reason"] for e in ends} == {"client_close"}, ends
    # once its queue is served the removed address is closed
    st.wait_for(lambda: st.ss_listeners(port2) == [], 5.0 * st.SLOW,
                lambda: f"no listening socket on the removed :{port2}, ss shows {st.ss_listeners(port2)}")
    try:
        st.connect(port2, timeout=2.0).close()
        raise AssertionError(f"a connect to the removed bind :{port2} was accepted")
    except ConnectionRefusedError:
        pass
    s.stop()


def _serve_all(queued, s, timeout):
    """Wait for every queued client to get the backend's greeting and its
    own line back, closing each one served (freeing its slot for the next),
    in whatever order sluice serves them."""
    sel = selectors.DefaultSelector()
    bufs = {}
    for i, c in enumerate(queued):
        c.setblocking(False)
        sel.register(c, selectors.EVENT_READ, i)
        bufs[i] = b""
    deadline = time.monotonic() + timeout
    try:
        while bufs:
            left = deadline - time.monotonic()
            assert left > 0, (f"queued clients {sorted(bufs)} of {len(queued)} were not served within "
                              f"{timeout:.1f}s\n{s.tail()}")
            for key, _ in sel.select(min(left, 0.5)):
                i, c = key.data, key.fileobj
                try:
                    d = c.recv(4096)
                except ConnectionResetError:
                    raise AssertionError(f"queued client {i} was reset\n{s.tail()}")
                assert d, f"queued client {i} got EOF before its reply ({bufs[i]!r})\n{s.tail()}"
                bufs[i] += d
                if bufs[i] == b"a\nqueued %d\n" % i:
                    sel.unregister(c)
                    c.close()
                    del bufs[i]
    finally:
        sel.close()


@pytest.mark.threaded
def test_reload_serves_clients_queued_on_a_retiring_worker_at_max_conns(sluice, named, port, sockdir):
    """workers 2 -> 1 while the listener is at max_conns with clients queued
    on both workers' sockets: the ones queued on the retiring worker's
    socket are served as slots free up, not reset; the worker then exits."""
    a = named("a")
    sock = str(sockdir / "admin.sock")

    def cfg(workers):
        return ct.ctl_config(port, [f"a {a.addr}"], sock=sock, workers=workers,
                             listener={"max_conns": 1})
    s = sluice(cfg(2))
    live, _ = ct.hold(port)
    queued = []
    try:
        # until both sockets of the SO_REUSEPORT group hold queued clients
        for i in range(24):
            c = st.connect(port, timeout=5.0 * st.SLOW)
            c.sendall(b"queued %d\n" % i)
            queued.append(c)
            st.wait_for(lambda: sum(r[0] for r in st.ss_listeners(port)) == len(queued), 5.0 * st.SLOW,
                        lambda: f"{len(queued)} queued on :{port}, ss shows {st.ss_listeners(port)}")
            if all(r[0] >= 1 for r in st.ss_listeners(port)):
                break
        rows = st.ss_listeners(port)
        assert len(rows) == 2 and all(r[0] >= 1 for r in rows), f"clients queued on both sockets: {rows}"

        ct.write_config(s.cfg, cfg(1))
        r = ct.ask(sock, "reload")
        assert r.startswith("reload ok: generation 2, 1 workers"), f"{r}\n{s.tail()}"
        for i, c in enumerate(queued):
            try:
                st.assert_open(c, 0.05)
            except AssertionError as e:
                raise AssertionError(f"queued client {i}: {e}\n{s.tail()}")
        live.close()
        _serve_all(queued, s, 10.0 * st.SLOW)
    finally:
        live.close()
        for c in queued:
            c.close()
    s.wait_log("worker 1: exited", timeout=10.0 * st.SLOW)
    ends = s.wait_access(1 + len(queued))
    assert {e["reason"] for e in ends} == {"client_close"}, ends
    assert len(st.ss_listeners(port)) == 1, st.ss_listeners(port)
    s.stop()
