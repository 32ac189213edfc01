"""Promises of docs/config.md and docs/operations.md that had no test.

Each test names the promise it checks; each asserts exactly what the docs
say (the quoted words are theirs)."""

import os
import re
import signal
import time

import ctltest as ct
import sluicetest as st
from ctltest import sockdir  # noqa: F401  (fixture)


def second_listener(port2, pool="main"):
    return f"\n[listener two]\nbind = 127.0.0.1:{port2}\npool = {pool}\n"


def nofile_leaving(pid, n):
    """The RLIMIT_NOFILE that leaves exactly the n lowest free descriptor
    numbers of `pid` usable (the kernel hands out the lowest free one)."""
    used = {int(x) for x in os.listdir(f"/proc/{pid}/fd")}
    free, fd = [], 0
    while len(free) < n:
        if fd not in used:
            free.append(fd)
        fd += 1
    return free[-1] + 1


# --------------------------------------------------------------------------
# [global]


def test_global_max_conns_stops_accepting_on_every_listener(sluice, backend, port):
    """docs/config.md: "at the limit sluice stops accepting on every listener
    (the kernel queues new connections in the listen backlog) and resumes
    when a session ends. Connections are never accepted and then dropped"."""
    b = backend(st.echo_handler)
    port2 = st.free_port()
    s = sluice(st.make_config(port, [f"b {b.addr}"], glob={"max_conns": 2},
                              extra=second_listener(port2)))
    held = [st.connect(port), st.connect(port2)]
    for c in held:
        st.roundtrip(c)
    waiting = []
    for p in (port, port2):
        c = st.connect(p)  # the kernel completes the handshake
        c.sendall(b"queued\n")
        waiting.append(c)
    for c in waiting:
        st.assert_open(c, 0.5)  # a window: not served, not closed
    for p in (port, port2):
        rows = st.ss_listeners(p)
        assert rows and rows[0][0] == 1, f"the client on port {p} should wait in the accept queue: {rows}"
    assert b.accepted == 2, f"backend saw {b.accepted} connections at max_conns = 2"
    assert not s.access(), f"nothing may end while the limit holds\n{s.tail()}"
    # One session ends: one waiting client is served (the limit is still 2).
    held.pop().close()
    st.wait_for(lambda: b.accepted == 3, 5 * st.SLOW, "a waiting client to be accepted below the limit")
    queued = sum(st.ss_listeners(p)[0][0] for p in (port, port2))
    assert queued == 1, f"at the limit again, one client should still wait; queued: {queued}"
    held.pop().close()
    for c in waiting:
        assert st.recv_exact(c, 7) == b"queued\n"
        c.close()
    assert b.accepted == 4
    assert {e["reason"] for e in s.wait_access(4)} == {"client_close"}, s.tail()
    s.stop()


def test_log_level_filters_lines(sluice, backend, port, tmp_path):
    """docs/config.md: log_level is the "least severe level written to
    stderr": at warn no info line, at debug the debug lines too."""
    b = backend(st.echo_handler)

    def run(level, name):
        p = st.free_port()
        s = sluice(st.make_config(p, [f"b {b.addr}"], glob={"log_level": level,
                                                             "access_log": "off"}),
                   name=name, wait=False)
        st.wait_for(lambda: st.ss_listeners(p), 10 * st.SLOW, f"sluice ({level}) to listen on {p}")
        with st.connect(p) as c:
            st.roundtrip(c)
        s.stop()
        return s.log()

    levels = {lv: re.findall(r"^\S+ \[(\w+)\] ", run(lv, f"s-{lv}"), re.M)
              for lv in ("warn", "info", "debug")}
    assert "info" not in levels["warn"] and "debug" not in levels["warn"], levels["warn"]
    assert "info" in levels["info"] and "debug" not in levels["info"], levels["info"]
    assert "debug" in levels["debug"] and "info" in levels["debug"], levels["debug"]


def test_buffer_size_1k_and_1m_relay_byte_exact(sluice, backend, port, tmp_path):
    """docs/config.md: buffer_size 1k..1m is "the size of one relay buffer
    block": at both ends of its range 8 MiB each way arrive byte-exact, and
    the running config says the size is in use."""
    import random
    st.blob()
    for size in ("1k", "1m"):
        b = backend(st.sinksource_handler, name=f"s{size}")
        p = st.free_port()
        s = sluice(st.make_config(p, [f"s {b.addr}"], relay="copy",
                                  glob={"buffer_size": size, "max_buffer": "4m"}),
                   name=f"buf{size}")
        st.sinksource_client(p, 8 << 20, 8 << 20, random.Random(size))
        r = st.run_sluice(["-T", "-c", s.cfg])
        assert r.returncode == 0 and re.search(rf"^buffer_size = {size}$", r.stdout, re.M), (
            f"sluice -T does not show buffer_size = {size}:\n{r.stdout}{r.stderr}")
        s.stop()


def test_workers_auto_is_one_per_online_cpu(sluice, backend, port):
    """docs/config.md: "`auto` = one per online CPU (at most 256)", and
    "`ss -ltn` shows `workers` sockets per bind"."""
    b = backend(st.echo_handler)
    s = sluice(st.make_config(port, [f"b {b.addr}"], workers="auto"))
    want = min(os.sysconf("SC_NPROCESSORS_ONLN"), 256)
    st.wait_for(lambda: len(st.ss_listeners(port)) == want, 5 * st.SLOW,
                lambda: f"{want} listening sockets, ss shows {st.ss_listeners(port)}")
    s.stop()


def test_listener_backlog_is_the_listen_backlog(sluice, backend, port):
    """docs/config.md: backlog is the "`listen(2)` backlog of each listening
    socket"; `ss -ltn` shows it as Send-Q of a listening socket."""
    b = backend(st.echo_handler)
    s = sluice(st.make_config(port, [f"b {b.addr}"], workers=2, listener={"backlog": 37}))
    rows = st.wait_for(lambda: len(st.ss_listeners(port)) == 2 and st.ss_listeners(port), 5 * st.SLOW,
                       "two listening sockets")
    assert [r[1] for r in rows] == [37, 37], f"Send-Q of the listening sockets: {rows}"
    s.stop()


def test_splice_without_pipes_falls_back_to_copy(sluice, backend, port):
    """docs/config.md: "A direction that cannot get a pipe (out of
    descriptors or memory) falls back to copying"; a debug line says so.
    sluice gets just the two descriptors a session needs for its sockets,
    so pipe2() fails with EMFILE: the bytes still flow, both ways."""
    b = backend(st.echo_handler)
    s = sluice(st.make_config(port, [f"b {b.addr}"], relay="splice", glob={"log_level": "debug"}))
    st.set_nofile(s.pid, nofile_leaving(s.pid, 2))
    c = st.connect(port)
    local = c.getsockname()[1]
    data = os.urandom(1 << 20)
    got = bytearray()
    st.duplex(c, [data], lambda mv: got.extend(mv), time.monotonic() + 20 * st.SLOW)
    c.close()
    assert bytes(got) == data, f"echo through the fallback: {len(got)} of {len(data)} bytes, equal={bytes(got) == data}"
    e = s.access_for(local)
    assert e["reason"] == "client_close" and int(e["up"]) == len(data) == int(e["down"]), e
    assert "no pipe for splice (Too many open files): copying instead" in s.log(), s.tail()
    s.stop()


def test_config_file_over_16_mib_is_refused(tmp_path):
    """docs/config.md: a "file over 16 MiB" is an error at "line 0; key
    `file`": `FILE:0: file: larger than 16 MiB`. Exactly 16 MiB is fine."""
    base = st.make_config(st.free_port(), ["a 127.0.0.1:9"]).encode()
    limit = 16 << 20
    for size, ok in ((limit, True), (limit + 1, False)):
        f = tmp_path / f"big{size}.ini"
        pad = size - len(base)
        # comment lines of 100 bytes, then one shorter comment to hit `size`
        body = (b"#" * 99 + b"\n") * (pad // 100)
        rest = pad - len(body)
        body += (b"#" * (rest - 1) + b"\n") if rest else b""
        f.write_bytes(base + body)
        assert f.stat().st_size == size
        r = st.run_sluice(["-t", "-c", f])
        if ok:
            assert r.returncode == 0, f"a file of exactly 16 MiB: rc {r.returncode}\n{r.stderr[-500:]}"
        else:
            assert r.returncode == 1, r
            assert f"{f}:0: file: larger than 16 MiB" in r.stderr, r.stderr[-500:]


# --------------------------------------------------------------------------
# end reasons no_backend and local_error: access log and counters


def end_reasons(sock):
    return ct.stats_json(sock)["process"]["end_reasons"]


def test_no_backend_logged_and_counted(sluice, named, port, sockdir):
    """docs/operations.md: `no_backend` when "no server was usable when the
    client arrived ... the client was closed at once"; backend `-`."""
    a = named("a")
    sock = str(sockdir / "admin.sock")
    http = st.free_port()
    s = sluice(ct.ctl_config(port, [f"a {a.addr} weight=0"], sock=sock, http=http))
    c = st.connect(port)
    local = c.getsockname()[1]
    data, _how = st.recv_until_close(c)
    c.close()
    assert data == b""
    e = s.access_for(local)
    assert (e["reason"], e["backend"], e["up"], e["down"]) == ("no_backend", "-", "0", "0"), e
    assert end_reasons(sock)["no_backend"] == 1
    doc = ct.stats_json(sock)
    assert [l["no_backend"] for l in doc["listeners"] if l["name"] == "main"] == [1], doc["listeners"]
    v = ct.prom_samples(ct.scrape(http)[1])
    assert v[("sluice_session_ends_total", (("reason", "no_backend"),))] == 1
    assert v[("sluice_listener_no_backend_total", (("listener", "main"),))] == 1
    s.stop()


def test_local_error_logged_and_counted(sluice, named, port, sockdir):
    """docs/operations.md: a connect that fails for lack of descriptors on
    sluice's side "ends with reason `local_error`", is counted in the
    server's `local_errors`, never as a connect failure. One descriptor is
    left: the accept gets it, socket() for the backend fails (EMFILE)."""
    a = named("a")
    sock = str(sockdir / "admin.sock")
    http = st.free_port()
    s = sluice(ct.ctl_config(port, [f"a {a.addr}"], sock=sock, http=http, pool={"retries": 0}))
    ct.show_info(sock)  # the admin plane's own descriptors are settled
    soft = st.get_nofile(s.pid)
    st.set_nofile(s.pid, nofile_leaving(s.pid, 1))
    try:
        c = st.connect(port)
        local = c.getsockname()[1]
        data, _how = st.recv_until_close(c)
        c.close()
        e = s.access_for(local)
    finally:
        st.set_nofile(s.pid, soft)
    assert data == b"" and (e["reason"], e["up"], e["down"]) == ("local_error", "0", "0"), e
    assert end_reasons(sock)["local_error"] == 1
    sv = ct.server_stats(sock, "main", "a")
    assert sv["local_errors"] == 1 and sv["connect_failures"] == 0 and sv["state"] == "up", sv
    v = ct.prom_samples(ct.scrape(http)[1])
    assert v[("sluice_session_ends_total", (("reason", "local_error"),))] == 1
    assert v[("sluice_server_local_errors_total", (("pool", "main"), ("server", "a")))] == 1
    s.stop()


# --------------------------------------------------------------------------
# admin_http: HEAD, 431, the client cap (405 and 400: test_metrics.py)


def test_admin_http_head_431_and_client_cap(sluice, named, port, sockdir):
    """docs/operations.md: "`HEAD` of either: the headers only"; "request
    head over 4095 bytes: 431"; "At most 256 clients at once; when all are
    taken, the one waiting longest for its request is closed with `503
    Service Unavailable` to make room"."""
    a = named("a")
    http = st.free_port()
    s = sluice(ct.ctl_config(port, [f"a {a.addr}"], sock=str(sockdir / "admin.sock"), http=http))
    for target in ("/metrics", "/stats.json"):
        status, headers, body = ct.http_get(http, target)
        hstatus, hheaders, hbody = ct.http_get(http, target, method="HEAD")
        assert (hstatus, hbody) == (200, b""), (target, hstatus, hbody[:100])
        assert hheaders["content-type"] == headers["content-type"], (hheaders, headers)
        assert int(hheaders["content-length"]) > 0, hheaders
    # 431: a head of 4096 bytes and more
    c = st.connect(http)
    c.sendall(b"GET /metrics HTTP/1.1\r\nX-Big: " + b"x" * 4100 + b"\r\n\r\n")
    data, _how = st.recv_until_close(c)
    c.close()
    assert data.startswith(b"HTTP/1.1 431 "), data[:100]
    # The cap: 256 silent clients, then one more.
    silent = []
    try:
        for _ in range(256):
            silent.append(st.connect(http))
            silent[-1].sendall(b"GET")  # a request begun, never finished
        st.wait_for(lambda: s.nfds() >= 256, 5 * st.SLOW, "sluice to hold the 256 clients")
        status, _h, body = ct.http_get(http, "/metrics")
        assert status == 200 and b"sluice_info" in body, status
        data, how = st.recv_until_close(silent[0])
        assert data.startswith(b"HTTP/1.1 503 "), (data[:100], how)
        for c in (silent[1], silent[-1]):
            st.assert_open(c, 0.2)  # a window: the others stay
    finally:
        for c in silent:
            c.close()
    s.stop()


# --------------------------------------------------------------------------
# signals


def test_sigint_is_a_graceful_stop(sluice, backend, port):
    """docs/operations.md: "Graceful stop (SIGTERM or SIGINT)": stop
    accepting, live sessions go on, exit 0."""
    b = backend(st.echo_handler)
    s = sluice(st.make_config(port, [f"b {b.addr}"], glob={"shutdown_timeout": "30s"}))
    c = st.connect(port)
    st.roundtrip(c)
    s.signal(signal.SIGINT)
    s.wait_log("stopping")
    st.wait_for(lambda: not st.ss_listeners(port), 5 * st.SLOW, "the listening socket to close")
    st.roundtrip(c, b"still relayed after SIGINT\n")
    assert s.alive()
    local = c.getsockname()[1]
    c.close()
    assert s.wait_exit(10 * st.SLOW) == 0, s.tail()
    assert s.access_for(local)["reason"] == "client_close"


def test_second_sigterm_closes_everything_at_once(sluice, backend, port):
    """docs/operations.md: sessions still open "when a second SIGTERM/SIGINT
    arrives, are closed with reason `shutdown`", then exit 0."""
    b = backend(st.echo_handler)
    s = sluice(st.make_config(port, [f"b {b.addr}"], workers=2, glob={"shutdown_timeout": "60s"}))
    socks = [st.connect(port) for _ in range(3)]
    for c in socks:
        st.roundtrip(c)
    s.signal(signal.SIGTERM)
    s.wait_log("stopping")
    st.roundtrip(socks[0], b"draining\n")
    s.signal(signal.SIGTERM)
    for c in socks:
        how, secs = st.wait_closed(c, 5 * st.SLOW)  # far below the 60 s shutdown_timeout
    assert s.wait_exit(5 * st.SLOW) == 0, s.tail()
    ports = {c.getsockname()[1] for c in socks}
    assert {st.client_port(e) for e in s.access(reason="shutdown")} == ports, s.tail()
    for c in socks:
        c.close()


# --------------------------------------------------------------------------
# sluicectl


def test_sluicectl_version_and_usage_exit_codes(sockdir):
    """docs/operations.md: `-V` prints the version and exits (0); "2: usage
    error: no command, unknown option, both `-s` and `-c`, a command over
    4094 bytes, a socket path over 107 bytes"; 1: unreachable."""
    r = ct.run_ctl(None, "-V")
    v = st.run_sluice(["-V"])
    assert r.returncode == 0 and r.stdout.split() == ["sluicectl", v.stdout.split()[1]], (r, v.stdout)
    sock = str(sockdir / "none.sock")
    for args in (["-s", sock], ["-s", sock, "--bogus", "show", "info"],
                 ["-s", sock, "-c", "/etc/sluice/sluice.ini", "show", "info"],
                 ["-s", sock, "x" * 4095],
                 ["-s", "/tmp/" + "p" * 110, "show", "info"]):
        r = ct.run_ctl(None, *args)
        assert r.returncode == 2, (args[:4], r.returncode, r.stderr[-300:])
    r = ct.run_ctl(None, "-s", sock, "x" * 4094)
    assert r.returncode == 1, ("a 4094-byte command is not a usage error", r.returncode, r.stderr[-200:])
    r = ct.run_ctl(sock, "show", "info")
    assert r.returncode == 1 and "none.sock" in r.stderr, (r.returncode, r.stderr)
