"""Per-source limits (max_conns_per_source, rate_per_source, the bounded
source table) and the listener-wide max_conn_rate, end to end: clients bound
to many addresses in 127.0.0.0/8 (and IPv6 ones in a network namespace),
under two workers, through reloads and PROXY headers."""

import os
import socket
import threading
import time

import pytest

import ctltest as ct
import netns
import sluicetest as st
from ctltest import sockdir  # noqa: F401  (fixture)

T = 5.0 * st.SLOW


def try_session(port, src, host=st.LOCALHOST, timeout=T, hdr=b""):
    """Connect from src and round-trip a line: the open socket when sluice
    served it, or the exception name it ended with (a refused client gets a
    reset, since sluice closes it with SO_LINGER 0)."""
    try:
        c = st.connect(port, host=host, src=src, timeout=timeout)
    except ConnectionResetError as e:  # the reset came before connect() returned
        return type(e).__name__
    try:
        c.sendall(hdr + b"hello\n")
        got = st.recv_exact(c, 6, timeout)
        if got == b"hello\n":
            return c
        c.close()
        return "short"
    except (ConnectionResetError, BrokenPipeError) as e:
        c.close()
        return type(e).__name__
    except (EOFError, AssertionError, socket.timeout, OSError) as e:
        c.close()
        return type(e).__name__


def served(r):
    return isinstance(r, socket.socket)


def end_reasons(sock):
    j = ct.stats_json(sock)
    for v in j.values():
        if isinstance(v, dict) and "end_reasons" in v:
            return v["end_reasons"]
    raise AssertionError(f"no end_reasons in show stats json: {list(j)}")


def listener(sock, name="main"):
    for lst in ct.stats_json(sock)["listeners"]:
        if lst["name"] == name:
            return lst
    raise AssertionError(f"no listener {name} in show stats json")


def sources(sock, *args):
    """show sources rows: [(listener, source, live, rate, refused)]."""
    out = ct.ask(sock, " ".join(("show", "sources") + args))
    lines = out.strip().splitlines()
    assert lines and lines[0].split()[:2] == ["LISTENER", "SOURCE"], out
    rows = []
    for ln in lines[1:]:
        f = ln.split()
        rows.append((f[0], f[1], int(f[2]), float(f[3]), int(f[4])))
    return rows


def config(port, b, sock, workers=1, **listener_keys):
    return ct.ctl_config(port, [f"b {b.addr}"], sock=sock / "admin.sock", workers=workers,
                         listener=listener_keys)


def test_conn_limit_exact_under_two_workers(sluice, backend, port, sockdir):
    b = backend(st.echo_handler)
    s = sluice(config(port, b, sockdir, workers=2, max_conns_per_source=3))
    sock = sockdir / "admin.sock"
    results = []
    lock = threading.Lock()
    start = threading.Barrier(24)

    def one():
        start.wait(T)
        r = try_session(port, "127.0.0.5")
        with lock:
            results.append(r)

    threads = [threading.Thread(target=one) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(4 * T)
    ok = [r for r in results if served(r)]
    refused = [r for r in results if not served(r)]
    assert len(results) == 24
    assert len(ok) == 3, f"exactly 3 sessions from one source, got {len(ok)}: {refused}\n{s.tail()}"
    assert all(r == "ConnectionResetError" for r in refused), refused
    assert b.accepted == 3
    assert end_reasons(sock)["source_conn_limit"] == 21
    lst = listener(sock)
    assert lst["source_conn_refused"] == 21 and lst["source_entries"] == 1
    # another source is not affected
    other = try_session(port, "127.0.0.6")
    assert served(other)
    rows = sources(sock)
    assert rows[0][:3] == ("main", "127.0.0.5/32", 3) and rows[0][4] == 21, rows
    assert ("main", "127.0.0.6/32", 1) in [r[:3] for r in rows], rows
    # a session's end gives its slot back
    ok[0].close()
    st.wait_for(lambda: sources(sock)[0][2] == 2, T, "the live count to drop to 2")
    again = try_session(port, "127.0.0.5")
    assert served(again)
    # refusals are logged, but at most once a second per listener
    s.wait_log("refused: source_conn_limit")
    assert s.log().count("refused: source_conn_limit") <= 3, s.tail()
    for c in ok[1:] + [other, again]:
        c.close()
    s.stop()


def test_rate_limit_within_one_token(sluice, backend, port, sockdir):
    b = backend(st.echo_handler)
    s = sluice(config(port, b, sockdir, workers=2, rate_per_source="5/1s"))
    sock = sockdir / "admin.sock"
    admitted = 0
    t0 = time.monotonic()
    for _ in range(400):
        r = try_session(port, "127.0.0.9")
        if served(r):
            admitted += 1
            r.close()
        if time.monotonic() - t0 > 1.5:
            break
        time.sleep(0.005)
    elapsed = time.monotonic() - t0
    assert admitted <= 5 + int(elapsed * 5) + 1, f"{admitted} admitted in {elapsed:.2f}s"
    assert admitted >= 5, f"only {admitted} admitted: the first bucketful should pass"
    lst = listener(sock)
    assert lst["source_rate_refused"] > 0
    assert end_reasons(sock)["source_rate_limit"] == lst["source_rate_refused"]
    assert served(try_session(port, "127.0.0.10"))  # its own bucket
    s.stop()


def test_table_evicts_idle_sources_at_capacity(sluice, backend, port, sockdir):
    b = backend(st.echo_handler)
    s = sluice(config(port, b, sockdir, max_conns_per_source=1, source_table_size=4))
    sock = sockdir / "admin.sock"
    held = try_session(port, "127.0.1.1")
    assert served(held)
    for i in range(2, 12):
        r = try_session(port, f"127.0.1.{i}")
        assert served(r), f"127.0.1.{i}: {r}"
        r.close()
    st.wait_for(lambda: sum(r[2] for r in sources(sock)) == 1, T, "sessions to end")
    rows = sources(sock)
    assert len(rows) == 4, rows
    assert rows[0][:3] == ("main", "127.0.1.1/32", 1), rows  # live: never evicted
    # the 3 most recently seen idle ones stay
    assert {r[1] for r in rows[1:]} == {"127.0.1.9/32", "127.0.1.10/32", "127.0.1.11/32"}, rows
    assert listener(sock)["source_entries"] == 4
    # still at its limit: its count survived all that churn
    assert try_session(port, "127.0.1.1") == "ConnectionResetError"
    assert "SRC_ENTRIES" in ct.ask(sock, "show stats")
    held.close()
    s.stop()


def test_prefix_groups_v4_sources(sluice, backend, port, sockdir):
    b = backend(st.echo_handler)
    s = sluice(config(port, b, sockdir, max_conns_per_source=2, source_prefix_v4=24))
    sock = sockdir / "admin.sock"
    a = try_session(port, "127.0.2.1")
    c = try_session(port, "127.0.2.200")
    assert served(a) and served(c)
    assert try_session(port, "127.0.2.77") == "ConnectionResetError"
    d = try_session(port, "127.0.3.1")
    assert served(d)
    assert ("main", "127.0.2.0/24", 2) in [r[:3] for r in sources(sock, "main", "5")]
    assert [r[1] for r in sources(sock, "1")] == ["127.0.2.0/24"]  # the busiest only
    assert ct.ask(sock, "show sources nope").startswith("error: no listener 'nope'")
    assert ct.ask(sock, "show sources main 0").startswith("error: N must be 1..10000")
    assert "show sources [LISTENER] [N]" in ct.ask(sock, "help")
    for x in (a, c, d):
        x.close()
    s.stop()


def test_proxy_header_address_is_the_key(sluice, backend, port, sockdir):
    b = backend(st.echo_handler)
    s = sluice(config(port, b, sockdir, workers=2, accept_proxy="on", max_conns_per_source=1))
    sock = sockdir / "admin.sock"

    def hdr(src):
        return f"PROXY TCP4 {src} 127.0.0.1 40000 {port}\r\n".encode()

    first = try_session(port, "127.0.0.1", hdr=hdr("203.0.113.9"))
    assert served(first)
    # same connection address, another header address: admitted
    other = try_session(port, "127.0.0.1", hdr=hdr("203.0.113.10"))
    assert served(other)
    # same header address from another connection address: refused
    again = try_session(port, "127.0.0.2", hdr=hdr("203.0.113.9"))
    assert not served(again)
    s.wait_access(1, reason="source_conn_limit")
    assert [e["client"] for e in s.access(reason="source_conn_limit")] == ["203.0.113.9:40000"]
    rows = sources(sock)
    assert {r[1] for r in rows} == {"203.0.113.9/32", "203.0.113.10/32"}, rows
    assert b.accepted == 2
    first.close()
    other.close()
    s.stop()


def test_reload_keeps_live_counts(sluice, backend, port, sockdir, tmp_path):
    b = backend(st.echo_handler)
    text = config(port, b, sockdir, workers=2, max_conns_per_source=2)
    s = sluice(text)
    sock = sockdir / "admin.sock"
    held = [try_session(port, "127.0.4.1") for _ in range(2)]
    assert all(served(h) for h in held)
    gen = ct.generation(sock)
    s.cfg.write_text(text.replace("[pool main]", "[pool main]\nretries = 1"))
    ct.sighup_reload(s, sock, gen + 1)
    assert try_session(port, "127.0.4.1") == "ConnectionResetError"
    held[0].close()  # a session of the old generation gives back its count
    st.wait_for(lambda: sources(sock)[0][2] == 1, T, "the count to drop after the old session ended")
    third = try_session(port, "127.0.4.1")
    assert served(third)
    # a raised limit applies to the kept counts at once
    s.cfg.write_text(text.replace("max_conns_per_source = 2", "max_conns_per_source = 3"))
    ct.sighup_reload(s, sock, gen + 2)
    fourth = try_session(port, "127.0.4.1")
    assert served(fourth)
    assert try_session(port, "127.0.4.1") == "ConnectionResetError"
    # a changed table size starts a new, empty table
    s.cfg.write_text(text.replace("max_conns_per_source = 2",
                                  "max_conns_per_source = 3\nsource_table_size = 100"))
    ct.sighup_reload(s, sock, gen + 3)
    assert sources(sock) == []
    for c in [held[1], third, fourth]:
        c.close()
    s.stop()


def test_max_conn_rate_delays_not_refuses(sluice, backend, port, sockdir):
    b = backend(st.echo_handler)
    s = sluice(config(port, b, sockdir, workers=2, max_conn_rate="10/1s"))
    sock = sockdir / "admin.sock"
    n = 30
    t0 = time.monotonic()
    clients = [st.connect(port, timeout=10 * T) for _ in range(n)]  # the kernel completes them
    for c in clients:
        c.sendall(b"hello\n")
    for c in clients:
        assert st.recv_exact(c, 6, 10 * T) == b"hello\n"
    elapsed = time.monotonic() - t0
    # 10 at once, then 10 a second: 20 more need about 2 s (a lower bound only)
    assert elapsed >= 1.5, f"{n} connections served in {elapsed:.2f}s: not paced"
    assert b.accepted == n
    lst = listener(sock)
    assert lst["rate_pauses"] > 0
    assert all(v == 0 for k, v in end_reasons(sock).items() if k.startswith("source_"))
    m = ct.ask(sock, "show stats")
    assert "RATE_PAUSES" in m
    for c in clients:
        c.close()
    s.stop()


def test_unix_clients_are_not_limited(sluice, backend, port, sockdir):
    b = backend(st.echo_handler)
    path = sockdir / "l.sock"
    text = config(port, b, sockdir, max_conns_per_source=1).replace(
        "bind = 127.0.0.1", f"bind = unix:{path}\nbind = 127.0.0.1")
    s = sluice(text)
    held = []
    for _ in range(3):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.settimeout(T)
        c.connect(str(path))
        st.roundtrip(c, b"hi\n")
        held.append(c)
    for c in held:
        c.close()
    s.stop()


def test_metrics_families(sluice, backend, port, sockdir):
    b = backend(st.echo_handler)
    http = st.free_port()
    text = ct.ctl_config(port, [f"b {b.addr}"], sock=sockdir / "admin.sock", http=http,
                         listener={"max_conns_per_source": 1})
    s = sluice(text)
    held = try_session(port, "127.0.5.1")
    assert try_session(port, "127.0.5.1") == "ConnectionResetError"
    _, fams = ct.scrape(http)
    samples = ct.prom_samples(fams)
    assert samples[("sluice_listener_source_conn_refused_total", (("listener", "main"),))] == 1
    assert samples[("sluice_listener_source_entries", (("listener", "main"),))] == 1
    assert samples[("sluice_session_ends_total", (("reason", "source_conn_limit"),))] == 1
    held.close()
    s.stop()


def test_ipv6_sources_group_by_64(sluice, tmp_path):
    why = netns.available()
    if why:
        pytest.skip(why)
    addrs = [f"{a}/128" for a in ("2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:3::1",
                                  "2001:db8::100")]
    with netns.loopback_ns("slsrc", addrs) as ns:
        with netns.inside(ns):
            b = st.Server(st.echo_handler, host="2001:db8::100")
        try:
            p = 18000 + os.getpid() % 1000
            text = st.make_config(p, [f"b [2001:db8::100]:{b.port}"],
                                  listener={"max_conns_per_source": 1}).replace(
                "bind = 127.0.0.1:", "bind = [2001:db8::100]:")
            s = sluice(text, netns=ns)
            with netns.inside(ns):
                first = try_session(p, "2001:db8:1:2::1", host="2001:db8::100")
                same64 = try_session(p, "2001:db8:1:2::2", host="2001:db8::100")
                other64 = try_session(p, "2001:db8:1:3::1", host="2001:db8::100")
            assert served(first), first
            assert same64 == "ConnectionResetError", same64
            assert served(other64), other64
            first.close()
            other64.close()
            s.stop()
        finally:
            b.close()


def test_full_table_admits_untracked(sluice, backend, port, sockdir):
    """Every entry has live sessions: a new source is admitted without
    per-source accounting (and counted), not refused."""
    b = backend(st.echo_handler)
    s = sluice(config(port, b, sockdir, max_conns_per_source=1, source_table_size=2))
    sock = sockdir / "admin.sock"
    held = [try_session(port, f"127.0.6.{i}") for i in (1, 2)]
    assert all(served(h) for h in held)
    extra = [try_session(port, "127.0.6.3") for _ in range(2)]
    assert all(served(e) for e in extra), extra  # untracked: its limit cannot apply
    lst = listener(sock)
    assert lst["source_table_full"] == 2 and lst["source_entries"] == 2
    s.wait_log("source_table_size full")
    held[0].close()
    st.wait_for(lambda: sum(r[2] for r in sources(sock)) == 1, T, "a live count to drop")
    again = try_session(port, "127.0.6.3")  # an idle entry to reuse: tracked again
    assert served(again)
    assert try_session(port, "127.0.6.3") == "ConnectionResetError"
    for c in held[1:] + extra + [again]:
        c.close()
    s.stop()
