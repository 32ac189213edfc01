"""The admin socket: every command, steering traffic, bad clients, the socket
file itself, and sluicectl."""

import collections
import json
import os
import select
import socket
import stat
import threading
import time

import pytest

import ctltest as ct
import sluicetest as st
from ctltest import sockdir  # noqa: F401  (fixture)

INFO_KEYS = ("version", "pid", "uptime_seconds", "workers", "config", "generation", "reloads_ok",
             "reloads_failed", "last_reload", "last_reload_result", "sessions_active",
             "sessions_total", "max_conns")
LISTENER_FIELDS = ("name", "binds", "pool", "active", "max_conns", "accepted", "no_backend",
                   "bytes_in", "bytes_out")
SERVER_FIELDS = ("pool", "name", "address", "state", "admin", "backup", "weight", "active", "check",
                 "check_ms", "checks_total", "checks_failed", "transitions", "sessions",
                 "connect_attempts", "connect_failures", "retries", "bytes_in", "bytes_out")


def two_named(sluice, named, port, sockdir, weights=(1, 1), **kw):
    a, b = named("a"), named("b")
    sock = sockdir / "admin.sock"
    s = sluice(ct.ctl_config(port, [f"a {a.addr} weight={weights[0]}", f"b {b.addr} weight={weights[1]}"],
                             sock=sock, **kw))
    return s, str(sock), a, b


def row(text, first):
    """The whitespace-split row of a table whose first column is `first`."""
    for line in text.splitlines():
        f = line.split()
        if f and f[0] == first:
            return f
    raise AssertionError(f"no row {first!r} in:\n{text}")


# --------------------------------------------------------------------------
# every command


def test_help_lists_every_command(sluice, named, port, sockdir):
    s, sock, _a, _b = two_named(sluice, named, port, sockdir)
    text = ct.ask(sock, "help")
    for cmd in ("help", "show info", "show stats", "show backends", "show sessions", "disable server",
                "enable server", "drain server", "set weight", "reload", "reopen", "quit"):
        assert cmd in text, f"help does not mention {cmd!r}:\n{text}"
    assert not text.startswith("error:"), text
    s.stop()


@pytest.mark.threaded
def test_show_info(sluice, named, port, sockdir):
    s, sock, _a, _b = two_named(sluice, named, port, sockdir, workers=2)
    for _ in range(3):
        ct.pick(port)
    s.wait_access(3)
    info = ct.show_info(sock)
    missing = [k for k in INFO_KEYS if k not in info]
    assert not missing, f"show info lacks {missing}: {info}"
    assert info["pid"] == str(s.pid), info
    assert info["workers"] == "2", info
    assert info["config"] == str(s.cfg), info
    assert info["generation"] == "1" and info["reloads_ok"] == "0" and info["reloads_failed"] == "0", info
    assert info["sessions_active"] == "0", info
    assert info["sessions_total"] == "3", info
    assert info["max_conns"] == "100000", info
    assert float(info["uptime_seconds"]) >= 0, info
    vers = st.run_sluice(["-V"]).stdout.split()
    assert info["version"] == vers[-1], f"show info version {info['version']} vs sluice -V {vers}"
    s.stop()


def test_show_stats_table(sluice, named, port, sockdir):
    s, sock, a, b = two_named(sluice, named, port, sockdir)
    got = collections.Counter(ct.pick(port) for _ in range(4))
    assert got == {"a": 2, "b": 2}, got
    s.wait_access(4)
    text = ct.ask(sock, "show stats")
    lst = row(text, "main")
    assert lst[1:3] == ["0", "4"], f"listener row ACTIVE/TOTAL: {lst}\n{text}"
    for name, srv in (("a", a), ("b", b)):
        r = row(text, f"main/{name}")
        assert r[1] == srv.addr and r[2] == "up", f"server row {r}\n{text}"
        assert r[5] == "2", f"main/{name} TOTAL should be 2: {r}\n{text}"
    s.stop()


def test_show_stats_json_fields(sluice, named, port, sockdir):
    s, sock, a, b = two_named(sluice, named, port, sockdir)
    c = st.connect(port)
    first = st.recv_line(c)
    st.roundtrip(c, b"x" * 1000)
    c.close()
    s.wait_access(1)
    doc = ct.stats_json(sock)
    for k in ("info", "process", "listeners", "servers"):
        assert k in doc, f"show stats json lacks {k!r}: {list(doc)}"
    assert all(k in doc["info"] for k in INFO_KEYS), doc["info"]
    assert doc["info"]["pid"] == s.pid
    assert "accepted" in doc["process"] and "end_reasons" in doc["process"], doc["process"]
    assert doc["process"]["accepted"] == 1
    assert doc["process"]["end_reasons"].get("client_close") == 1, doc["process"]["end_reasons"]
    assert len(doc["listeners"]) == 1
    lst = doc["listeners"][0]
    assert all(k in lst for k in LISTENER_FIELDS), f"listener fields: {sorted(lst)}"
    assert lst["name"] == "main" and lst["pool"] == "main" and lst["binds"] == [f"127.0.0.1:{port}"], lst
    assert lst["accepted"] == 1 and lst["bytes_in"] == 1000, lst
    assert lst["bytes_out"] == 1000 + len(first) + 1, lst
    servers = {sv["name"]: sv for sv in doc["servers"]}
    assert set(servers) == {"a", "b"}, servers
    for sv in servers.values():
        missing = [k for k in SERVER_FIELDS if k not in sv]
        assert not missing, f"server {sv.get('name')} lacks {missing}"
        assert sv["pool"] == "main" and sv["state"] == "up" and sv["admin"] == "enabled", sv
        assert sv["backup"] is False and sv["weight"] == 1, sv
    used = servers[first.decode()]
    assert used["sessions"] == 1 and used["connect_attempts"] == 1, used
    assert used["bytes_out"] == 1000 and used["bytes_in"] == 1000 + len(first) + 1, used
    assert servers["a"]["address"] == a.addr and servers["b"]["address"] == b.addr
    s.stop()


def test_show_backends(sluice, named, closed_port, port, sockdir):
    a = named("a")
    dead = closed_port()
    sock = str(sockdir / "admin.sock")
    s = sluice(ct.ctl_config(port, [f"a {a.addr}", f"dead {dead.addr}", f"spare {a.addr} backup",
                                    f"zero {a.addr} weight=0"], sock=sock,
                             pool={"check": "tcp", "check_interval": "100ms", "fall": "2"}))
    s.wait_log("main/dead DOWN (")
    text = ct.ask(sock, "show backends")
    assert row(text, "main/a")[2] == "up", text
    r = row(text, "main/dead")
    assert r[2] == "down" and "refused" in " ".join(r), f"dead server: {r}\n{text}"
    assert "[backup]" in " ".join(row(text, "main/spare")), text
    assert "weight 0" in " ".join(row(text, "main/zero")), text
    ct.ask(sock, "disable server main/a")
    assert row(ct.ask(sock, "show backends"), "main/a")[2] == "disabled"
    s.stop()


def test_show_sessions_live(sluice, named, port, sockdir):
    s, sock, _a, _b = two_named(sluice, named, port, sockdir)
    c, name = ct.hold(port)
    try:
        st.roundtrip(c, b"y" * 1234)
        local = f"127.0.0.1:{c.getsockname()[1]}"
        text = ct.ask(sock, "show sessions")
        lines = [l for l in text.splitlines() if local in l.split()]
        assert len(lines) == 1, f"session {local} not listed once:\n{text}"
        f = lines[0].split()
        assert f"main/{name}" in f, f"backend main/{name} not in {f}"
        assert "main" in f, f
        # BYTES_UP, BYTES_DOWN are the last two columns
        assert int(f[-2]) == 1234, f"bytes up {f[-2]} != 1234: {lines[0]}"
        assert int(f[-1]) == 1234 + len(name) + 1, f"bytes down {f[-1]}: {lines[0]}"
        assert "1 sessions" in text, text
        # the N limit
        c2, _ = ct.hold(port)
        text = ct.ask(sock, "show sessions 1")
        assert "2 sessions" in text and "1 shown" in text, text
        c2.close()
    finally:
        c.close()
    s.wait_access(2)
    assert "0 sessions" in ct.ask(sock, "show sessions")
    assert ct.ask(sock, "show sessions 0").startswith("error:")
    assert ct.ask(sock, "show sessions many").startswith("error:")
    s.stop()


@pytest.mark.threaded
def test_show_sessions_many_workers(sluice, named, port, sockdir):
    """show sessions asks every worker thread; all live sessions are listed."""
    s, sock, _a, _b = two_named(sluice, named, port, sockdir, workers=2)
    held = [ct.hold(port) for _ in range(8)]
    try:
        for c, _ in held:
            st.roundtrip(c, b"z" * 10)
        text = ct.ask(sock, "show sessions")
        assert "8 sessions" in text, text
        for c, name in held:
            local = f"127.0.0.1:{c.getsockname()[1]}"
            rows = [l.split() for l in text.splitlines() if local in l.split()]
            assert len(rows) == 1 and f"main/{name}" in rows[0] and rows[0][1] in ("0", "1"), (local, text)
        text = ct.ask(sock, "show sessions 1")
        assert "8 sessions" in text and "shown" in text, text
    finally:
        for c, _ in held:
            c.close()
    s.wait_access(8)
    st.wait_for(lambda: "0 sessions" in ct.ask(sock, "show sessions"), 5.0 * st.SLOW, "0 sessions listed")
    s.stop()


@pytest.mark.threaded
def test_show_sessions_lists_sessions_of_a_retired_worker(sluice, named, port, sockdir):
    """After a reload lowers `workers`, the retired worker keeps its live
    sessions until they end: show sessions must still list them (show info
    counts them in sessions_active)."""
    a = named("a")
    sock = str(sockdir / "admin.sock")

    def cfg(w):
        return ct.ctl_config(port, [f"a {a.addr}"], sock=sock, workers=w)
    s = sluice(cfg(2))
    held = []
    try:
        def on_both():
            held.append(ct.hold(port))
            text = ct.ask(sock, "show sessions")
            workers = {l.split()[1] for l in text.splitlines()[1:-1]}  # ID WORKER ...
            return workers == {"0", "1"} and len(held) >= 4
        st.wait_for(on_both, 10.0 * st.SLOW, "live sessions on both workers", interval=0)
        ct.write_config(s.cfg, cfg(1))
        assert ct.ask(sock, "reload").startswith("reload ok")
        st.wait_for(lambda: len(st.ss_listeners(port)) == 1, 5.0 * st.SLOW, "worker 1 to stop listening")
        info = ct.show_info(sock)
        text = ct.ask(sock, "show sessions")
        assert info["sessions_active"] == str(len(held)), info
        assert f"{len(held)} sessions" in text, (
            f"{len(held)} live sessions (show info: {info['sessions_active']}), but show sessions lists:\n{text}")
        for c, _ in held:  # and they all still work
            st.roundtrip(c, b"ok\n")
    finally:
        for c, _ in held:
            c.close()
    s.wait_log("worker 1: exited", timeout=10.0 * st.SLOW)
    s.stop()


# --------------------------------------------------------------------------
# steering traffic


def test_disable_and_enable(sluice, named, port, sockdir):
    s, sock, a, _b = two_named(sluice, named, port, sockdir)
    c, _ = ct.hold(port, want="a")
    try:
        reply = ct.ask(sock, "disable server main/a")
        assert reply.startswith("disabled main/a"), reply
        assert "1 live sessions" in reply, reply
        seen = collections.Counter(ct.pick(port) for _ in range(20))
        assert seen == {"b": 20}, f"a disabled, new sessions went to {dict(seen)}"
        st.roundtrip(c, b"still here\n")  # a live session on a disabled server goes on
    finally:
        c.close()
    assert ct.server_stats(sock, "main", "a")["admin"] == "disabled"
    assert ct.ask(sock, "enable server main/a").startswith("enabled main/a")
    seen = collections.Counter(ct.pick(port) for _ in range(20))
    assert 8 <= seen["a"] <= 12 and seen["a"] + seen["b"] == 20, f"after enable: {dict(seen)}"
    s.stop()


def test_drain_lets_live_session_finish(sluice, named, port, sockdir):
    s, sock, a, _b = two_named(sluice, named, port, sockdir)
    c, _ = ct.hold(port, want="a")
    local = c.getsockname()[1]
    try:
        reply = ct.ask(sock, "drain server main/a")
        assert reply.startswith("draining main/a"), reply
        text = ct.ask(sock, "show backends")
        assert row(text, "main/a")[2] == "draining", text
        seen = collections.Counter(ct.pick(port) for _ in range(10))
        assert seen == {"b": 10}, f"a draining, new sessions went to {dict(seen)}"
        ct.echo_chunks(c, 256 << 10)  # the live session keeps working fully
        c.shutdown(socket.SHUT_WR)
        rest, how = st.recv_until_close(c, 5.0 * st.SLOW)
        assert how == "eof" and rest == b"", (how, rest)
    finally:
        c.close()
    e = s.access_for(local)
    assert e["backend"] == "a" and e["reason"] in ("client_close", "backend_close"), e
    assert int(e["up"]) == 256 << 10, e
    st.wait_for(lambda: ct.server_stats(sock, "main", "a")["active"] == 0, 5.0 * st.SLOW, "main/a active 0")
    ct.ask(sock, "enable server main/a")
    assert "a" in {ct.pick(port) for _ in range(4)}
    s.stop()


def test_set_weight(sluice, named, port, sockdir):
    s, sock, _a, _b = two_named(sluice, named, port, sockdir)
    reply = ct.ask(sock, "set weight main/a 0")
    assert "1 -> 0" in reply, reply
    seen = collections.Counter(ct.pick(port) for _ in range(20))
    assert seen == {"b": 20}, f"weight 0 on a, got {dict(seen)}"
    assert ct.server_stats(sock, "main", "a")["weight"] == 0
    ct.ask(sock, "set weight main/a 3")
    seen = collections.Counter(ct.pick(port) for _ in range(200))
    assert set(seen) == {"a", "b"} and 2.7 <= seen["a"] / seen["b"] <= 3.3, f"weights 3:1 gave {dict(seen)}"
    ct.ask(sock, "set weight main/a 1")
    ct.ask(sock, "set weight main/b 4")
    seen = collections.Counter(ct.pick(port) for _ in range(200))
    assert 3.6 <= seen["b"] / seen["a"] <= 4.4, f"weights 1:4 gave {dict(seen)}"
    for bad in ("set weight main/a 257", "set weight main/a -1", "set weight main/a x",
                "set weight main/nosuch 1", "set weight nopool 1", "set weight main/a"):
        r = ct.ask(sock, bad)
        assert r.startswith("error:") and r.count("\n") == 1, f"{bad!r} -> {r!r}"
    s.stop()


def test_reopen_access_log(sluice, named, port, sockdir, tmp_path):
    """`reopen` does what SIGUSR1 does: after the log was moved away, the
    next line goes to a new file at the configured path."""
    a = named("a")
    sock = str(sockdir / "admin.sock")
    logdir = tmp_path / "logs"
    logdir.mkdir()
    log = logdir / "access.log"
    s = sluice(ct.ctl_config(port, [f"a {a.addr}"], sock=sock, glob={"access_log": str(log)}))

    def lines(path):
        return path.read_text().splitlines() if path.exists() else []
    c1 = ct.pick(port)
    st.wait_for(lambda: len(lines(log)) == 1, 5.0 * st.SLOW, "the first access-log line")
    rotated = logdir / "access.log.1"
    log.rename(rotated)
    r = ct.run_ctl(sock, "reopen")
    assert r.returncode == 0 and r.stdout == "access log reopened\n", (r.returncode, r.stdout, r.stderr)
    assert c1 == "a" and ct.pick(port) == "a"
    st.wait_for(lambda: len(lines(log)) == 1, 5.0 * st.SLOW, f"an access-log line in the new {log}")
    assert len(lines(rotated)) == 1, f"the rotated file got more lines: {lines(rotated)}"
    assert "admin: access log reopened" in s.log()

    # A failed reopen says why, and the open file stays in use.
    logdir.rename(tmp_path / "logs.old")
    r = ct.run_ctl(sock, "reopen")
    assert r.returncode == 1, (r.returncode, r.stdout)
    assert r.stdout == f"error: reopen access log {log}: No such file or directory\n", r.stdout
    ct.pick(port)
    st.wait_for(lambda: len(lines(tmp_path / "logs.old" / "access.log")) == 2, 5.0 * st.SLOW,
                "the next line in the file still open")
    s.stop()


# --------------------------------------------------------------------------
# bad clients


GARBAGE = [b"bogus", b"show", b"show nothing", b"show info extra", b"disable", b"disable server",
           b"disable server nosuch/x", b"disable server main", b"enable server main/a/b",
           b"drain main/a", b"set", b"set weight", b"reload now", b"\xff\xfe\x00\x01binary",
           b"a b c d e f g h i j k", b"HELP", b"show  stats  jsonx", b"\t", b"GET / HTTP/1.1"]


def test_garbage_gets_one_error_line(sluice, named, port, sockdir):
    s, sock, _a, _b = two_named(sluice, named, port, sockdir)
    with ct.AdminConn(sock) as bystander:
        for g in GARBAGE:
            data = ct.ask_raw(sock, g)
            assert data.startswith(b"error:"), f"{g!r} -> {data[:200]!r}"
            assert data.count(b"\n") == 2 and data.endswith(b"\n\n"), f"{g!r}: not one error line: {data!r}"
        # and several on one connection, each answered in order
        conn = ct.AdminConn(sock)
        conn.send(b"bogus1\nshow info\nbogus2\n")
        r1, r2, r3 = conn.reply(), conn.reply(), conn.reply()
        conn.close()
        assert r1.startswith("error:") and "bogus1" in r1, r1
        assert ct.parse_info(r2)["pid"] == str(s.pid), r2
        assert r3.startswith("error:") and "bogus2" in r3, r3
        assert ct.parse_info(bystander.cmd("show info"))["pid"] == str(s.pid)
    assert s.alive()
    assert ct.pick(port) in ("a", "b")
    s.stop()


def test_line_endings_and_nul(sluice, named, port, sockdir):
    """A trailing \\r and trailing spaces are ignored (a CRLF client works); a
    real NUL byte is still refused; a line of only a tab is an empty command."""
    s, sock, _a, _b = two_named(sluice, named, port, sockdir)
    for line in (b"show info\r", b"show info  \r", b"show info \r ", b"show info\r\r"):
        r = ct.ask_raw(sock, line)
        assert r.startswith(b"version: ") and f"pid: {s.pid}\n".encode() in r, f"{line!r} -> {r[:200]!r}"
    for line in (b"show\0info", b"show info\0", b"show info\0\r", b"\0"):
        r = ct.ask_raw(sock, line)
        assert r == b"error: NUL byte in command\n\n", f"{line!r} -> {r[:200]!r}"
    assert ct.ask_raw(sock, b"\t") == b"error: empty command (try help)\n\n"
    # and a CRLF client pipelining: every reply, in order
    r = ct.ask_raw(sock, b"show info\r\nbogus\r\nshow backends\r")
    replies = r[:-2].split(b"\n\n")
    assert len(replies) == 3 and replies[0].startswith(b"version: "), r[:300]
    assert replies[1] == b"error: unknown or malformed command 'bogus' (try help)", replies[1]
    assert b"main/a" in replies[2], replies[2]
    s.stop()


def test_long_line_rejected_and_closed(sluice, named, port, sockdir):
    s, sock, _a, _b = two_named(sluice, named, port, sockdir)
    bystander = ct.AdminConn(sock)
    # exactly at the limit (4095 bytes + newline) is still a line
    r = ct.ask(sock, "x" * 4095)
    assert r.startswith("error:") and "too long" not in r, f"4095-byte line: {r[:200]!r}"
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(sock)
    payload = b"A" * (1 << 20) + b"\nshow info\n"

    def send_all():
        try:
            c.sendall(payload)
        except OSError:
            pass  # the server closes while we are still sending
    t = threading.Thread(target=send_all, daemon=True)
    t.start()
    data = ct.read_to_eof(c, 10.0 * st.SLOW)
    t.join(10 * st.SLOW)
    c.close()
    assert data.startswith(b"error: line too long"), f"1 MiB line -> {data[:200]!r}"
    assert b"pid:" not in data, f"the connection should close after 'line too long': {data[:300]!r}"
    assert ct.parse_info(bystander.cmd("show info"))["pid"] == str(s.pid)
    bystander.close()
    assert ct.show_info(sock)["pid"] == str(s.pid)
    s.stop()


@pytest.mark.threaded
def test_fifty_concurrent_clients(sluice, named, port, sockdir):
    s, sock, _a, _b = two_named(sluice, named, port, sockdir, workers=2)
    errors = []
    barrier = threading.Barrier(50)

    def client(i):
        try:
            with ct.AdminConn(sock, timeout=10.0 * st.SLOW) as c:
                barrier.wait(10 * st.SLOW)
                for _ in range(5):
                    info = ct.parse_info(c.cmd("show info"))
                    assert info["pid"] == str(s.pid), info
                    assert c.cmd("show backends").count("main/") == 2
                    doc = json.loads(c.cmd("show stats json"))
                    assert len(doc["servers"]) == 2
        except BaseException as e:
            errors.append(f"client {i}: {e!r}")

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(50)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.1, 30 * st.SLOW - (time.monotonic() - t0)))
    assert not any(t.is_alive() for t in threads), "admin clients still waiting after 30s"
    assert not errors, f"{len(errors)} of 50 clients failed: {errors[:5]}"
    s.stop()


def test_silent_client_blocks_nobody(sluice, named, port, sockdir):
    s, sock, _a, _b = two_named(sluice, named, port, sockdir)
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.connect(sock)
    partial = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    partial.connect(sock)
    partial.sendall(b"show in")  # half a command, never finished
    try:
        for _ in range(5):
            t0 = time.monotonic()
            info = ct.show_info(sock, timeout=2.0 * st.SLOW)
            assert info["pid"] == str(s.pid)
            assert time.monotonic() - t0 < 1.0 * st.SLOW, "show info took over 1s next to idle clients"
        assert ct.pick(port) in ("a", "b")
    finally:
        silent.close()
        partial.close()
    s.stop()


MAX_CLIENTS = 256


def unix_client(sock, timeout=5.0 * st.SLOW):
    """A connected admin client. A Unix socket's connect() fails with EAGAIN
    while the listen backlog is full: retry until sluice has accepted."""
    def attempt():
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.settimeout(timeout)
        try:
            c.connect(sock)
            return c
        except BlockingIOError:
            c.close()
            return None
    return st.wait_for(attempt, timeout, "a free place in the admin socket's backlog", interval=0.005)


def stuck_reader(sock):
    """An admin client with a reply in progress: it pipelines more replies
    than the socket buffers hold and never reads."""
    c = unix_client(sock)
    c.sendall(b"help\n" * 800)
    return c


def test_full_table_evicts_the_oldest_idle_client(sluice, named, port, sockdir):
    """With every slot taken by idle clients, a new client is served and the
    client idle longest is told why and closed; the others stay."""
    s, sock, _a, _b = two_named(sluice, named, port, sockdir)
    idle = []
    try:
        for _ in range(MAX_CLIENTS):
            c = unix_client(sock)
            c.sendall(b"show info\n")
            assert b"pid:" in c.recv(65536)
            idle.append(c)
        assert ct.show_info(sock, timeout=2.0 * st.SLOW)["pid"] == str(s.pid)
        data = ct.read_to_eof(idle[0], 2.0 * st.SLOW)
        assert data == b"error: too many admin clients; closing this idle one\n\n", data
        for c in (idle[1], idle[-1]):  # the rest are untouched
            c.sendall(b"show info\n")
            assert b"pid:" in c.recv(65536)
    finally:
        for c in idle:
            c.close()
    s.stop()


def test_full_table_of_busy_clients_refuses_the_newest(sluice, named, port, sockdir):
    """When no client is idle (each has a reply in progress), nobody is
    evicted: the new client gets one error line at once (not a hang)."""
    s, sock, _a, _b = two_named(sluice, named, port, sockdir)
    busy = []
    try:
        for _ in range(MAX_CLIENTS):
            busy.append(stuck_reader(sock))
        # the table is full once the last one has its reply in progress
        st.wait_for(lambda: select.select([busy[-1]], [], [], 0)[0], ct.T, "the last reply to start")
        c = unix_client(sock, timeout=2.0 * st.SLOW)
        data = ct.read_to_eof(c, 2.0 * st.SLOW)
        c.close()
        assert data == b"error: too many admin clients\n\n", data[:200]
        busy.pop(0).close()
        st.wait_for(lambda: b"pid:" in ct.ask_raw(sock, b"show info"), 5.0 * st.SLOW,
                    "an admin slot to free up after a client left")
    finally:
        for c in busy:
            c.close()
    s.stop()


class Trickler:
    """Sends one byte to each socket every `every` seconds, never a whole
    request, from a thread, until stopped."""

    def __init__(self, socks, byte=b"x", every=0.5):
        self.socks, self.byte, self.every = socks, byte, every
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_ev.wait(self.every):
            for c in self.socks:
                try:
                    c.send(self.byte)
                except OSError:
                    pass

    def stop(self):
        self.stop_ev.set()
        self.thread.join(5 * st.SLOW)


def test_300_slow_clients_lock_nobody_out(sluice, named, port, sockdir):
    """300 silent, trickling and never-reading clients on the admin socket
    and on admin_http: a fresh sluicectl and a fresh GET /metrics are still
    answered at once."""
    s, sock, hport = admin_and_http(sluice, named, port, sockdir)
    socks, trickle = [], []
    tr = None
    try:
        for i in range(300):
            kind = i % 3
            if kind == 2:
                socks.append(stuck_reader(sock))
                continue
            c = unix_client(sock)
            socks.append(c)
            if kind == 1:
                c.sendall(b"show in")
                trickle.append(c)
        for i in range(300):
            c = st.connect(hport)
            socks.append(c)
            if i % 3 == 0:
                c.sendall(b"GET /metrics HTTP/1.1\r\n")
                trickle.append(c)
            elif i % 3 == 2:
                c.sendall(http_request_bytes())  # and never reads the response
        tr = Trickler(trickle)
        for _ in range(3):
            t0 = time.monotonic()
            r = ct.run_ctl(sock, "show", "info", timeout=2.0 * st.SLOW)
            took = time.monotonic() - t0
            assert r.returncode == 0 and f"pid: {s.pid}" in r.stdout, (r.returncode, r.stdout, r.stderr)
            assert took < 2.0 * st.SLOW, f"sluicectl show info took {took:.1f}s"
            t0 = time.monotonic()
            status, _h, body = ct.http_get(hport, "/metrics", timeout=2.0 * st.SLOW)
            took = time.monotonic() - t0
            assert status == 200 and b"sluice_info" in body, (status, body[:200])
            assert took < 2.0 * st.SLOW, f"GET /metrics took {took:.1f}s"
    finally:
        if tr:
            tr.stop()
        for c in socks:
            c.close()
    s.stop()


def test_http_trickling_client_closed_at_the_request_deadline(sluice, named, port, sockdir):
    """A byte every half second does not extend the 10 s deadline for the
    whole request head: the client gets a 408 and is closed."""
    s, _sock, hport = admin_and_http(sluice, named, port, sockdir)
    c = st.connect(hport)
    tr = Trickler([c], byte=b"y")
    try:
        c.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
        t0 = time.monotonic()
        data, _how = st.recv_until_close(c, 10.0 + 5.0 * st.SLOW)
        took = time.monotonic() - t0
    finally:
        tr.stop()
        c.close()
    assert 9.0 <= took <= 10.0 + 2.0 * st.SLOW, f"closed after {took:.1f}s, expected ~10s"
    assert data.startswith(b"HTTP/1.1 408 "), data[:200]
    s.stop()


@pytest.mark.heavy
def test_admin_client_that_never_reads_closed_at_the_reply_deadline(sluice, named, port, sockdir):
    """A client that never reads its reply holds its slot for at most 30 s."""
    s, sock, _a, _b = two_named(sluice, named, port, sockdir)
    c = stuck_reader(sock)
    st.wait_for(lambda: select.select([c], [], [], 0)[0], ct.T, "the reply to start")
    t0 = time.monotonic()
    # Closed while our receive queue is full: do not read until sluice has
    # let go of the connection (it disappears from its descriptors).
    before = s.nfds()
    st.wait_for(lambda: s.nfds() < before, 30.0 + 5.0 * st.SLOW,
                lambda: f"sluice to close the admin client that does not read\n{s.tail()}",
                interval=0.2)
    took = time.monotonic() - t0
    c.close()
    assert 28.0 <= took <= 30.0 + 3.0 * st.SLOW, f"closed after {took:.1f}s, expected ~30s"
    s.stop()


@pytest.mark.heavy
def test_idle_client_closed_after_30s(sluice, named, port, sockdir):
    s, sock, _a, _b = two_named(sluice, named, port, sockdir)
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(sock)
    t0 = time.monotonic()
    data = ct.read_to_eof(c, 40.0 * st.SLOW)
    took = time.monotonic() - t0
    c.close()
    assert 28.0 <= took <= 35.0 * st.SLOW, f"idle admin client closed after {took:.1f}s, expected ~30s"
    assert data.startswith(b"error:") and b"idle" in data, data
    s.stop()


# --------------------------------------------------------------------------
# pipelining: replies must be separable by their closing empty line


def test_pipelined_replies_are_framed(sluice, named, port, sockdir):
    """Every reply ends with an empty line; a client that sends several
    commands at once splits the stream there. No reply may contain an empty
    line of its own, or the split goes wrong."""
    s, sock, _a, _b = two_named(sluice, named, port, sockdir)
    cmds = ["help", "show info", "show stats", "show stats json", "show backends", "show sessions",
            "bogus", "show info"]
    data = ct.ask_raw(sock, "\n".join(cmds).encode()).decode()
    assert data.endswith("\n\n"), data[-100:]
    replies = data[:-2].split("\n\n")
    inner = {}
    for c in cmds:
        r = ct.ask(sock, c)
        if "\n\n" in r:
            inner[c] = r
    assert not inner, (f"replies with an empty line inside (cannot be framed): "
                       f"{ {c: r[:300] for c, r in inner.items()} }")
    assert len(replies) == len(cmds), f"{len(cmds)} commands, {len(replies)} framed replies"
    s.stop()


# --------------------------------------------------------------------------
# the socket file


def test_socket_mode_default_0600_and_parent_created(sluice, named, port, sockdir):
    a = named("a")
    sock = sockdir / "sub" / "dir" / "admin.sock"
    s = sluice(ct.ctl_config(port, [f"a {a.addr}"], sock=sock))
    m = os.lstat(sock).st_mode
    assert stat.S_ISSOCK(m), f"{sock} is not a socket"
    assert stat.S_IMODE(m) == 0o600, f"admin socket mode {oct(stat.S_IMODE(m))}, expected 0o600"
    assert ct.show_info(str(sock))["pid"] == str(s.pid)
    s.stop()
    assert not sock.exists(), "admin socket file left behind after exit"


def test_socket_admin_mode_0660(sluice, named, port, sockdir):
    a = named("a")
    sock = sockdir / "admin.sock"
    s = sluice(ct.ctl_config(port, [f"a {a.addr}"], sock=sock, glob={"admin_mode": "0660"}))
    mode = stat.S_IMODE(os.lstat(sock).st_mode)
    assert mode == 0o660, f"admin_mode = 0660 gave {oct(mode)}"
    s.stop()


def test_stale_socket_replaced(sluice, named, port, sockdir):
    a = named("a")
    sock = sockdir / "admin.sock"
    old = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old.bind(str(sock))
    old.close()  # the file stays: a stale socket from a dead process
    assert stat.S_ISSOCK(os.lstat(sock).st_mode)
    s = sluice(ct.ctl_config(port, [f"a {a.addr}"], sock=sock))
    assert ct.show_info(str(sock))["pid"] == str(s.pid)
    s.stop()
    assert not sock.exists()


def test_live_socket_refused(sluice, named, port, sockdir, tmp_path):
    a = named("a")
    sock = sockdir / "admin.sock"
    first = sluice(ct.ctl_config(port, [f"a {a.addr}"], sock=sock))
    second = sluice(ct.ctl_config(st.free_port(), [f"a {a.addr}"], sock=sock), name="second", wait=False)
    rc = second.wait_exit(10.0 * st.SLOW)
    assert rc == 1, f"second sluice on a live admin socket exited {rc}, expected 1\n{second.tail()}"
    assert "in use" in second.log(), second.tail()
    # the first one is untouched and its socket still answers
    assert ct.show_info(str(sock))["pid"] == str(first.pid)
    # a regular file in the way is not removed either
    blocker = sockdir / "file.sock"
    blocker.write_text("not a socket")
    third = sluice(ct.ctl_config(st.free_port(), [f"a {a.addr}"], sock=blocker), name="third", wait=False)
    assert third.wait_exit(10.0 * st.SLOW) == 1, third.tail()
    assert blocker.read_text() == "not a socket"
    first.stop()
    assert not sock.exists()


# --------------------------------------------------------------------------
# sluicectl


def test_sluicectl_exit_codes(sluice, named, port, sockdir):
    s, sock, _a, _b = two_named(sluice, named, port, sockdir)
    r = ct.run_ctl(sock, "show", "info")
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert ct.parse_info(r.stdout)["pid"] == str(s.pid)
    assert not r.stdout.endswith("\n\n"), "sluicectl should drop the protocol's empty line"
    r = ct.run_ctl(sock, "show", "stats", "json")
    assert r.returncode == 0 and json.loads(r.stdout)["info"]["pid"] == s.pid
    r = ct.run_ctl(sock, "bogus")
    assert r.returncode == 1 and r.stdout.startswith("error:"), (r.returncode, r.stdout)
    r = ct.run_ctl(sock, "disable", "server", "main/nosuch")
    assert r.returncode == 1, (r.returncode, r.stdout)
    r = ct.run_ctl(sock, "set", "weight", "main/a", "2")
    assert r.returncode == 0 and "1 -> 2" in r.stdout, (r.returncode, r.stdout)
    r = ct.run_ctl(sock, "reload")
    assert r.returncode == 0 and r.stdout.startswith("reload ok"), (r.returncode, r.stdout)
    s.cfg.write_text(s.cfg.read_text() + "\n[pool broken]\n")
    r = ct.run_ctl(sock, "reload")
    assert r.returncode == 1 and "reload failed" in r.stdout, (r.returncode, r.stdout)
    r = ct.run_ctl(str(sockdir / "nosuch.sock"), "show", "info")
    assert r.returncode == 1 and "nosuch.sock" in r.stderr, (r.returncode, r.stderr)
    r = ct.run_ctl(sock)
    assert r.returncode == 2 and "usage" in r.stderr, (r.returncode, r.stderr)
    r = ct.run_ctl(None, "-h")
    assert r.returncode == 0 and "usage" in r.stdout
    s.stop()


# --------------------------------------------------------------------------
# the socket across reloads


def test_reload_moves_admin_socket(sluice, named, port, sockdir):
    a = named("a")
    old, new = sockdir / "old.sock", sockdir / "new" / "admin.sock"
    s = sluice(ct.ctl_config(port, [f"a {a.addr}"], sock=old))
    ct.write_config(s.cfg, ct.ctl_config(port, [f"a {a.addr}"], sock=new, glob={"admin_mode": "0660"}))
    with ct.AdminConn(str(old)) as conn:
        r = conn.cmd("reload")
    assert r.startswith("reload ok"), r
    st.wait_for(lambda: new.exists() and not old.exists(), 5.0 * st.SLOW,
                lambda: f"admin socket moved (old exists: {old.exists()}, new exists: {new.exists()})")
    assert stat.S_IMODE(os.lstat(new).st_mode) == 0o660
    info = ct.show_info(str(new))
    assert info["generation"] == "2" and info["pid"] == str(s.pid), info
    s.stop()
    assert not new.exists()


def test_reload_with_unusable_admin_socket_keeps_the_old_one(sluice, named, port, sockdir):
    """A reload whose admin_socket cannot be created must not leave sluice
    without an admin socket (sluice would refuse that file at start-up)."""
    a = named("a")
    sock = sockdir / "admin.sock"
    blocker = sockdir / "not-a-socket"
    blocker.write_text("x")
    s = sluice(ct.ctl_config(port, [f"a {a.addr}"], sock=sock))
    ct.write_config(s.cfg, ct.ctl_config(port, [f"a {a.addr}"], sock=blocker))
    r = ct.ask(str(sock), "reload")
    alive = sock.exists()
    try:
        info = ct.show_info(str(sock))
    except (OSError, AssertionError) as e:
        info = None
        err = repr(e)
    assert info is not None, (
        f"after a reload to an unusable admin_socket ({blocker}) the old admin socket is gone "
        f"(file exists: {alive}; {err}); reload replied {r.strip()!r}\n{s.tail(6)}")
    assert r.startswith("reload failed") or "reload failed" in r, f"reload replied {r!r}"
    assert info["generation"] == "1", info
    s.stop()


def test_command_after_a_reload_that_moves_the_admin_socket(sluice, named, port, sockdir):
    """A reload that moves the admin socket orphans the connection that
    asked for it: the reply still arrives, a following command on the same
    connection must not crash sluice, and the new socket answers."""
    a = named("a")
    old, new = sockdir / "old.sock", sockdir / "new.sock"
    s = sluice(ct.ctl_config(port, [f"a {a.addr}"], sock=old))
    ct.write_config(s.cfg, ct.ctl_config(port, [f"a {a.addr}"], sock=new))
    c = ct._unix(str(old), ct.T)
    try:
        c.sendall(b"reload\nshow info\n")
        got = ct.read_to_eof(c, ct.T)
    finally:
        c.close()
    assert b"reload ok" in got, got
    assert s.alive(), f"sluice died after reload + command on the moved socket\n{s.tail(20)}"
    assert ct.show_info(str(new))["generation"] == "2"
    assert not old.exists(), "the old admin socket file was left behind"
    s.stop()


def test_failed_reload_keeps_weights_set_by_admin(sluice, named, port, sockdir):
    """Weights from the file apply only when a reload commits: a reload that
    fails late (here: admin_http on a port already in use) keeps `set weight`."""
    a, b = named("a"), named("b")
    sock = sockdir / "admin.sock"
    servers = [f"a {a.addr} weight=3", f"b {b.addr}"]
    s = sluice(ct.ctl_config(port, servers, sock=sock))
    assert ct.ask(str(sock), "set weight main/a 7").startswith("weight of main/a: 3 -> 7")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        ct.write_config(s.cfg, ct.ctl_config(port, servers, sock=sock,
                                             http=busy.getsockname()[1]))
        r = ct.ask(str(sock), "reload")
    finally:
        busy.close()
    assert "reload failed" in r, r
    assert ct.server_stats(str(sock), "main", "a")["weight"] == 7
    s.stop()


# --------------------------------------------------------------------------
# hostile conditions: out of descriptors, slow clients, pipelining


def admin_and_http(sluice, named, port, sockdir, **kw):
    a = named("a")
    sock = str(sockdir / "admin.sock")
    hport = st.free_port()
    s = sluice(ct.ctl_config(port, [f"a {a.addr}"], sock=sock, http=hport, **kw))
    return s, sock, hport


def http_request_bytes(target="/metrics"):
    return f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def test_out_of_fds_admin_and_http_pause_instead_of_spinning(sluice, named, port, sockdir):
    """Without descriptors the admin and HTTP listeners stay readable; accepting
    again at once would spin the main thread. They pause like the workers do,
    log once per burst, and serve again once descriptors are back."""
    s, sock, hport = admin_and_http(sluice, named, port, sockdir)
    assert ct.show_info(sock)["pid"] == str(s.pid)
    soft = st.get_nofile(s.pid)
    # The lowest free descriptor as the limit: sluice's next accept() fails.
    st.set_nofile(s.pid, st.lowest_free_fd(s.pid))
    waiting = []
    try:
        a = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        waiting.append(a)
        a.connect(sock)  # completes in the kernel's backlog
        a.sendall(b"show info\n")
        h = st.connect(hport)
        waiting.append(h)
        h.sendall(http_request_bytes())
        s.wait_log("accept: Too many open files", count=2)

        cpu0, t0 = st.thread_cpu_seconds(s.pid), time.monotonic()
        time.sleep(2.0)  # the measurement window itself, not a wait for a condition
        cpu1, t1 = st.thread_cpu_seconds(s.pid), time.monotonic()
        share = (cpu1 - cpu0) / (t1 - t0)
        assert share < 0.2 * st.SLOW, (
            f"main thread used {share:.0%} of a CPU while out of descriptors (spinning on accept?)\n"
            f"{s.tail(5)}")
        for name in ("admin socket", "admin http"):
            n = ct.log_lines(s, f"{name}: accept:")
            assert 1 <= len(n) <= 2, f"{len(n)} '{name}: accept:' log lines, want one per burst\n{s.tail(5)}"

        st.set_nofile(s.pid, soft)
        # What waited in the backlog is served, and so are new clients.
        a.sendall(b"quit\n")
        reply = ct.read_to_eof(a, 2.0 * st.SLOW)
        assert f"pid: {s.pid}\n".encode() in reply, f"queued admin client: {reply[:200]!r}"
        data, _how = st.recv_until_close(h, 2.0 * st.SLOW)
        assert data.startswith(b"HTTP/1.1 200 "), data[:200]
        assert b"sluice_info" in data, data[:200]
        assert ct.show_info(sock, timeout=2.0 * st.SLOW)["pid"] == str(s.pid)
        assert ct.http_get(hport, "/metrics", timeout=2.0 * st.SLOW)[0] == 200
    finally:
        for c in waiting:
            c.close()
    s.stop()


def test_pipelined_commands_wait_for_the_reply_to_drain(sluice, named, port, sockdir):
    """250 `show stats json` in one write, from a client that does not read:
    sluice runs the next command only once the previous reply has drained,
    so it never holds 250 copies of a big JSON document. Read later, all
    replies arrive complete and in order."""
    a = named("a")
    sock = str(sockdir / "admin.sock")
    # Many servers make the JSON big, so 250 copies would be tens of MB.
    s = sluice(ct.ctl_config(port, [f"s{i:03d} {a.addr}" for i in range(200)], sock=sock))
    size = len(ct.ask(sock, "show stats json"))
    bound = max(25 * size, 2 << 20)
    assert 250 * size > 4 * bound, f"JSON of {size} bytes is too small for this test"
    rss0 = s.rss_kib()
    n = 250
    batch = b"show stats json\n" * n + b"mark\n"
    assert len(batch) < 4096, "all commands must fit in one read of the admin input buffer"
    with ct.AdminConn(sock) as slow:
        slow.send(batch)
        # sluice has read the batch once the first reply bytes arrive; a
        # command on another connection answered after that means the
        # callback that ran the commands has returned (one loop, one thread).
        st.wait_for(lambda: select.select([slow.sock], [], [], 0)[0], ct.T,
                    "the first reply bytes to the pipelining client")
        assert ct.show_info(sock)["pid"] == str(s.pid)
        grown = (s.rss_kib() - rss0) * 1024
        assert grown < bound, (
            f"RSS grew by {grown >> 10} KiB for a client that pipelined {n} commands and reads "
            f"nothing (one reply is {size >> 10} KiB): replies are built before the previous one "
            f"drained")
        uptimes = []
        for i in range(n):
            r = slow.reply()
            try:
                doc = json.loads(r)
            except ValueError as e:
                raise AssertionError(f"reply {i} is not JSON ({e}): {r[:200]!r} ... {r[-200:]!r}")
            assert len(doc["servers"]) == 200, f"reply {i}: {len(doc['servers'])} servers"
            uptimes.append(doc["info"]["uptime_seconds"])
        assert uptimes == sorted(uptimes), "replies out of order"
        r = slow.reply()
        assert r.startswith("error: unknown or malformed command 'mark'"), r[:200]
        # and the connection still takes commands
        assert ct.parse_info(slow.cmd("show info"))["pid"] == str(s.pid)
    s.stop()
