"""Runtime servers (add/del server, set server addr), shutting sessions
(shutdown session ID, shutdown sessions server), show config, and what a
reload does to runtime changes."""

import os
import subprocess

import pytest

import ctltest as ct
import sluicetest as st
import test_dns
from ctltest import sockdir  # noqa: F401  (fixture)
from test_dns import dns, trio  # noqa: F401  (fixtures)


def start(sluice, named, port, sockdir, names=("a",), workers=1, **kw):
    backs = {n: named(n) for n in names}
    sock = str(sockdir / "admin.sock")
    s = sluice(ct.ctl_config(port, [f"{n} {b.addr}" for n, b in backs.items()], sock=sock,
                             workers=workers, **kw))
    return s, sock, backs


def names_seen(port, n):
    return [ct.pick(port) for _ in range(n)]


def sessions(sock):
    """show sessions -> list of rows {id, worker, backend, client}."""
    out = []
    for line in ct.ask(sock, "show sessions").splitlines()[1:]:
        f = line.split()
        if len(f) >= 9 and f[0].isdigit():
            out.append({"id": f[0], "worker": f[1], "client": f[3], "backend": f[4]})
    return out


def session_of(sock, c):
    local = f"127.0.0.1:{c.getsockname()[1]}"
    rows = st.wait_for(lambda: [r for r in sessions(sock) if r["client"] == local] or None,
                       5 * st.SLOW, f"session of {local} in show sessions")
    return rows[0]


def backends(sock):
    """show backends without the columns that move (counts, check times)."""
    return ct.ask(sock, "show backends")


def state_of(sock, key):
    for line in backends(sock).splitlines():
        f = line.split()
        if f and f[0] == key:
            return f[2]
    return None


# --------------------------------------------------------------------------
# add server


@pytest.mark.threaded
def test_add_server_takes_traffic_on_every_worker(sluice, named, port, sockdir):
    s, sock, _ = start(sluice, named, port, sockdir, workers=2)
    b = named("b")
    r = ct.ask(sock, f"add server main/b {b.addr} weight=3")
    assert r.startswith("added server main/b"), r
    assert "main/b" in backends(sock), backends(sock)
    # weight 3 against 1: b takes most new sessions, on both workers
    seen = names_seen(port, 40)
    assert seen.count("b") >= 20, seen
    s.wait_access(seen.count("b"), backend="b")
    st.wait_for(lambda: {e["worker"] for e in s.access(backend="b")} == {"0", "1"}, 5 * st.SLOW,
                lambda: f"b reached from both workers: {[e['worker'] for e in s.access(backend='b')]}")
    assert "admin: add server main/b" in s.log()
    s.stop()


def test_add_server_errors(sluice, named, port, sockdir):
    s, sock, backs = start(sluice, named, port, sockdir)
    a = backs["a"].addr
    cases = {
        f"add server main/a {a}": "already has a server 'a'",
        f"add server nopool/x {a}": "no pool 'nopool'",
        f"add server main {a}": "expected POOL/NAME",
        f"add server main/ {a}": "expected POOL/NAME",
        "add server main/x 127.0.0.1": "127.0.0.1",
        "add server main/x 127.0.0.1:99999": "127.0.0.1:99999",
        "add server main/x backend.example:80": "host names are not taken at runtime",
        f"add server main/x {a} weight=300": "weight must be 0..256",
        f"add server main/x {a} weight=x": "weight must be 0..256",
        f"add server main/x {a} max_conns=-1": "max_conns must be 0..1000000",
        f"add server main/x {a} bogus": "unknown option 'bogus'",
        f"add server main/bad!name {a}": "not a valid server name",
        "add server main/x": "unknown or malformed command",
    }
    for cmd, want in cases.items():
        r = ct.ask(sock, cmd)
        assert r.startswith("error:") and want in r and r.count("\n") == 1, (cmd, r)
    # nothing changed
    assert ct.show_info(sock)["generation"] == "1"
    assert "main/x" not in backends(sock)
    # sluicectl exits 1 on them
    p = subprocess.run([str(ct.sluicectl_bin()), "-s", sock, "add", "server", "main/a", a],
                       capture_output=True, text=True, timeout=10 * st.SLOW)
    assert p.returncode == 1 and p.stdout.startswith("error:"), p
    s.stop()


def test_add_server_with_health_checks(sluice, named, port, sockdir, closed_port):
    s, sock, _ = start(sluice, named, port, sockdir,
                       pool={"check": "tcp", "check_interval": "200ms", "check_timeout": "200ms",
                             "fall": "1", "rise": "1"})
    dead = closed_port()
    r = ct.ask(sock, f"add server main/dead {dead.addr}")
    assert r.startswith("added server") and "health checks on" in r, r
    # the health thread checks it: it goes down
    st.wait_for(lambda: state_of(sock, "main/dead") == "down", 5 * st.SLOW,
                lambda: f"main/dead down by its checks:\n{backends(sock)}")
    assert set(names_seen(port, 6)) == {"a"}
    s.stop()


# --------------------------------------------------------------------------
# del server


def test_del_server_refuses_while_sessions_remain(sluice, named, port, sockdir):
    s, sock, _ = start(sluice, named, port, sockdir, names=("a", "b"))
    c, _ = ct.hold(port, want="b")
    try:
        st.roundtrip(c)
        r = ct.ask(sock, "del server main/b")
        assert r.startswith("error:") and "1 live session" in r and "draining" in r, r
        # drained: no new sessions go there, the live one keeps relaying
        assert set(names_seen(port, 6)) == {"a"}
        st.roundtrip(c, b"still here\n")
    finally:
        c.close()
    st.wait_for(lambda: "0 sessions" in ct.ask(sock, "show sessions"), 5 * st.SLOW, "session ended")
    r = ct.ask(sock, "del server main/b")
    assert r.startswith("deleted server main/b"), r
    assert "main/b" not in backends(sock)
    assert set(names_seen(port, 4)) == {"a"}
    # errors
    for cmd, want in {"del server main/b": "no server 'main/b'",
                      "del server main/a": "last server of pool main",
                      "del server main/a now": "unknown option 'now'",
                      "del server nowhere": "expected POOL/NAME"}.items():
        r = ct.ask(sock, cmd)
        assert r.startswith("error:") and want in r and r.count("\n") == 1, (cmd, r)
    s.stop()


@pytest.mark.threaded
def test_del_server_force_ends_sessions_with_reason_admin(sluice, named, port, sockdir):
    s, sock, _ = start(sluice, named, port, sockdir, names=("a", "b"), workers=2)
    held = []
    try:
        while len(held) < 3:
            held.append(ct.hold(port, want="b")[0])
        other, _ = ct.hold(port, want="a")
        held_ports = {c.getsockname()[1] for c in held}
        for c in held:
            st.roundtrip(c)
        r = ct.ask(sock, "del server main/b force")
        assert r.startswith("deleted server main/b: 3 sessions shut (reason admin)"), r
        for c in held:
            st.wait_closed(c, 5 * st.SLOW)
        for p in held_ports:
            assert s.access_for(p)["reason"] == "admin", s.access_for(p)
        # the session on a stays
        st.roundtrip(other)
        other.close()
    finally:
        for c in held:
            c.close()
    assert "main/b" not in backends(sock)
    assert set(names_seen(port, 4)) == {"a"}
    s.stop()


# --------------------------------------------------------------------------
# set server addr


@pytest.mark.threaded
def test_set_server_addr_moves_new_sessions_only(sluice, named, port, sockdir):
    s, sock, _ = start(sluice, named, port, sockdir, workers=2)
    new = named("new")
    old_c, name = ct.hold(port)
    assert name == "a"
    try:
        st.roundtrip(old_c)
        r = ct.ask(sock, f"set server main/a addr {new.addr}")
        assert r.startswith("address of main/a:") and f"-> {new.addr}" in r and "1 live" in r, r
        # new sessions reach the new address (the server keeps its name)
        assert set(names_seen(port, 6)) == {"new"}
        # the old one keeps relaying to the old backend
        st.roundtrip(old_c, b"old one\n")
        assert new.addr in backends(sock)
        assert ct.ask(sock, f"set server main/a addr {new.addr}").startswith("address of main/a is already")
    finally:
        old_c.close()
    for cmd, want in {"set server main/zz addr 127.0.0.1:1": "no server 'main/zz'",
                      "set server main/a addr nowhere": "nowhere",
                      "set server main/a addr host.example:1": "host names are not taken",
                      "set server main/a address 127.0.0.1:1": "unknown or malformed"}.items():
        r = ct.ask(sock, cmd)
        assert r.startswith("error:") and want in r and r.count("\n") == 1, (cmd, r)
    s.stop()


# --------------------------------------------------------------------------
# shutdown session(s)


@pytest.mark.threaded
def test_shutdown_session_by_id(sluice, named, port, sockdir):
    s, sock, _ = start(sluice, named, port, sockdir, workers=2)
    c1, _ = ct.hold(port)
    c2, _ = ct.hold(port)
    try:
        row = session_of(sock, c1)
        r = ct.ask(sock, f"shutdown session {row['id']}")
        assert r.startswith("1 session shut (reason admin)"), r
        st.wait_closed(c1, 5 * st.SLOW)
        entry = s.access_for(c1.getsockname()[1])
        assert entry["reason"] == "admin"
        assert entry["id"] == str(row["id"]), entry  # the access log names it the same way
        st.roundtrip(c2)  # the other one is untouched
        r = ct.ask(sock, f"shutdown session {row['id']}")
        assert r.startswith("error: no session"), r
        for cmd in ("shutdown session x", "shutdown session -1", "shutdown session 0",
                    "shutdown session"):
            r = ct.ask(sock, cmd)
            assert r.startswith("error:") and r.count("\n") == 1, (cmd, r)
    finally:
        c1.close()
        c2.close()
    s.stop()


@pytest.mark.threaded
def test_shutdown_sessions_server(sluice, named, port, sockdir):
    s, sock, _ = start(sluice, named, port, sockdir, names=("a", "b"), workers=2)
    on_b = [ct.hold(port, want="b")[0] for _ in range(2)]
    on_a, _ = ct.hold(port, want="a")
    try:
        r = ct.ask(sock, "shutdown sessions server main/b")
        assert r.startswith("main/b: 2 sessions shut (reason admin)"), r
        for c in on_b:
            st.wait_closed(c, 5 * st.SLOW)
            assert s.access_for(c.getsockname()[1])["reason"] == "admin"
        st.roundtrip(on_a)
        # the server stays in service
        assert "b" in names_seen(port, 6)
        st.wait_for(lambda: len(sessions(sock)) == 1, 5 * st.SLOW, "only the session on a left")
        assert ct.ask(sock, "shutdown sessions server main/b").startswith("main/b: 0 sessions shut")
        for cmd, want in {"shutdown sessions server main/zz": "no server",
                          "shutdown sessions server main": "expected POOL/NAME",
                          "shutdown sessions pool main": "unknown or malformed"}.items():
            r = ct.ask(sock, cmd)
            assert r.startswith("error:") and want in r and r.count("\n") == 1, (cmd, r)
    finally:
        for c in on_b + [on_a]:
            c.close()
    s.stop()


# --------------------------------------------------------------------------
# show config, reload


def test_show_config_round_trip(sluice, named, port, sockdir, tmp_path):
    s, sock, backs = start(sluice, named, port, sockdir, names=("a", "b"))
    c = named("c")
    assert ct.ask(sock, f"add server main/c {c.addr} weight=2 backup").startswith("added")
    assert ct.ask(sock, "set weight main/a 7").startswith("weight of main/a")
    d = named("d")
    assert ct.ask(sock, f"set server main/b addr {d.addr}").startswith("address of main/b")
    text = ct.ask(sock, "show config")
    assert f"add server main/c {c.addr}" in text and "runtime changes" in text, text
    assert f"server = c {c.addr} weight=2" in text and "backup" in text, text
    assert f"server = b {d.addr}" in text and "weight=7" in text, text
    saved = tmp_path / "saved.ini"
    saved.write_text(text)
    p = st.run_sluice(["-t", "-c", str(saved)])
    assert p.returncode == 0, p.stdout + p.stderr
    before = backends(sock)
    # reload from the saved file: nothing is dropped, show backends is the same
    ct.write_config(s.cfg, text)
    r = ct.ask(sock, "reload")
    assert r.startswith("reload ok") and "dropped" not in r, r
    after = backends(sock)
    assert _stable(before) == _stable(after), f"before:\n{before}\nafter:\n{after}"
    assert "no runtime changes" in ct.ask(sock, "show config")
    s.stop()


def _stable(table):
    """show backends rows without the columns that move with checks."""
    return [l.split()[:4] for l in table.splitlines()]


def test_reload_drops_runtime_changes(sluice, named, port, sockdir):
    s, sock, backs = start(sluice, named, port, sockdir, names=("a", "b"))
    c = named("c")
    assert ct.ask(sock, f"add server main/c {c.addr}").startswith("added")
    assert ct.ask(sock, "del server main/b").startswith("deleted")
    assert set(names_seen(port, 6)) == {"a", "c"}
    r = ct.ask(sock, "reload")
    assert r.startswith("warning: runtime change dropped"), r
    assert f"add server main/c {c.addr}" in r and "del server main/b" in r, r
    assert "2 runtime changes dropped" in r and "reload ok" in r, r
    s.wait_log("runtime change dropped")
    # the file's servers again
    assert set(names_seen(port, 6)) == {"a", "b"}
    assert "main/c" not in backends(sock)
    # a change the file also has is not reported
    assert ct.ask(sock, f"add server main/c {c.addr}").startswith("added")
    ct.write_config(s.cfg, ct.ctl_config(port, [f"a {backs['a'].addr}", f"b {backs['b'].addr}",
                                                f"c {c.addr}"], sock=sock))
    r = ct.ask(sock, "reload")
    assert "dropped" not in r and r.startswith("reload ok"), r
    s.stop()


def test_show_sessions_has_ids(sluice, named, port, sockdir):
    s, sock, _ = start(sluice, named, port, sockdir)
    c1, _ = ct.hold(port)
    c2, _ = ct.hold(port)
    try:
        text = ct.ask(sock, "show sessions")
        assert text.split()[0] == "ID", text
        ids = [r["id"] for r in sessions(sock)]
        assert len(ids) == 2 and len(set(ids)) == 2, text
    finally:
        c1.close()
        c2.close()
    s.stop()


def test_show_config_lists_what_differs_from_the_file(sluice, named, port, sockdir):
    """Changes fold per server: an add then a del leaves nothing, a second
    address replaces the first (in the add's line too)."""
    s, sock, backs = start(sluice, named, port, sockdir, names=("a", "b"))
    c, d = named("c"), named("d")
    assert ct.ask(sock, f"add server main/c {c.addr}").startswith("added")
    assert ct.ask(sock, "del server main/c").startswith("deleted")
    assert "no runtime changes" in ct.ask(sock, "show config")
    assert ct.ask(sock, f"add server main/c {c.addr}").startswith("added")
    assert ct.ask(sock, f"set server main/c addr {d.addr}").startswith("address of main/c")
    assert ct.ask(sock, f"set server main/b addr {c.addr}").startswith("address of main/b")
    assert ct.ask(sock, f"set server main/b addr {d.addr}").startswith("address of main/b")
    head = [l for l in ct.ask(sock, "show config").splitlines() if l.startswith(";   ")]
    assert head == [f";   add server main/c {d.addr} weight=1 max_conns=0",
                    f";   set server main/b addr {d.addr}"], head
    assert set(names_seen(port, 6)) == {"a", "d"}
    s.stop()


@pytest.mark.skipif(not os.path.exists(test_dns.DNSMASQ), reason="dnsmasq not installed")
def test_runtime_change_in_a_pool_that_follows_dns(sluice, dns, trio, named, port, sockdir):
    """A pool with a resolve=all name: a server added at runtime stays when
    the DNS answer changes (the DNS update re-parses the running text, which
    has it), and the servers made from the answer refuse del and set addr."""
    d = dns("127.0.0.2 api.test\n")
    sock = str(sockdir / "admin.sock")
    s = sluice(test_dns.config(port, sock, d.port, f"api api.test:{trio} resolve=all"))
    x = named("x")
    assert ct.ask(sock, f"add server main/x {x.addr}").startswith("added")
    for cmd in ("del server main/api#1", f"set server main/api#1 addr {x.addr}"):
        r = ct.ask(sock, cmd)
        assert r.startswith("error: main/api#1 comes from the DNS answer"), (cmd, r)
    d.set_hosts("127.0.0.2 api.test\n127.0.0.3 api.test\n")
    st.wait_for(lambda: len(test_dns.servers_of(sock)) == 3, 5.0 * st.SLOW, "a server per address, and x")
    assert "x" in test_dns.servers_of(sock)
    assert test_dns.picks(port, 12) == {"a", "b", "x"}
    assert f"add server main/x {x.addr}" in ct.ask(sock, "show config")
    s.stop()


def test_help_lists_the_commands(sluice, named, port, sockdir):
    s, sock, _ = start(sluice, named, port, sockdir)
    text = ct.ask(sock, "help")
    for cmd in ("add server POOL/NAME ADDRESS", "del server POOL/NAME [force]",
                "set server POOL/NAME addr ADDRESS", "shutdown session ID",
                "shutdown sessions server POOL/NAME", "show config"):
        assert cmd in text, f"help does not mention {cmd!r}:\n{text}"
    s.stop()


def test_counters_survive_a_runtime_change(sluice, named, port, sockdir):
    s, sock, _ = start(sluice, named, port, sockdir, names=("a", "b"))
    names_seen(port, 6)
    s.wait_access(6)

    def sessions_of(name):
        return [x for x in ct.stats_json(sock)["servers"] if x["name"] == name][0]["sessions"]
    before = sessions_of("a")
    assert before >= 3
    c = named("c")
    assert ct.ask(sock, f"add server main/c {c.addr}").startswith("added")
    assert ct.ask(sock, "del server main/b").startswith("deleted")
    assert sessions_of("a") == before
    info = ct.show_info(sock)
    assert info["generation"] == "3" and info["runtime_changes"] == "2", info
    s.stop()
