"""What a reload changes: the `reload` reply and the log after SIGHUP list
every change (listeners, pools, servers added/removed/changed, global keys)
and what stayed; `sluicectl reload --dry-run` (admin `reload dry-run`) prints
the same and applies nothing."""

import os
import signal
import socket

import pytest

import ctltest as ct
import sluicetest as st
from ctltest import sockdir  # noqa: F401  (fixture)
from test_dns import DNSMASQ, dns, servers  # noqa: F401  (fixtures: own dnsmasq, named servers)


def config(port, sock, servers, *, glob=None, extra=""):
    """One listener 'main' -> pool 'main', plus extra sections."""
    g = {"admin_socket": str(sock), "max_conns": "1000"}
    g.update(glob or {})
    return st.make_config(port, servers, glob=g, extra=extra)


def scenario(port, port2, sock, a, a2, b):
    """(A, B, diff A->B, diff B->A): B adds listener api, removes pool spare,
    moves server a to a2's address with weight 3, changes log_level and
    max_conns; server b stays as it is."""
    spare = "\n[pool spare]\nserver = x 127.0.0.1:9\n"
    api = f"\n[listener api]\nbind = 127.0.0.1:{port2}\npool = main\n"
    text_a = config(port, sock, [f"a {a.addr}", f"b {b.addr}"], extra=spare)
    text_b = config(port, sock, [f"a {a2.addr} weight=3", f"b {b.addr}"],
                    glob={"log_level": "debug", "max_conns": "500"}, extra=api)
    a_to_b = ["changed global log_level: info -> debug",
              "changed global max_conns: 1000 -> 500",
              f"added listener api: bind 127.0.0.1:{port2}, pool main",
              f"changed server main/a address: {a.addr} -> {a2.addr}",
              "changed server main/a weight: 1 -> 3",
              "removed pool spare: 1 servers",
              "unchanged: 1 listeners, 0 pools, 1 servers"]
    b_to_a = ["changed global log_level: debug -> info",
              "changed global max_conns: 500 -> 1000",
              "removed listener api",
              f"changed server main/a address: {a2.addr} -> {a.addr}",
              "changed server main/a weight: 3 -> 1",
              "added pool spare: 1 servers",
              "unchanged: 1 listeners, 0 pools, 1 servers"]
    return text_a, text_b, a_to_b, b_to_a


def refused(port):
    try:
        socket.create_connection((st.LOCALHOST, port), timeout=2.0 * st.SLOW).close()
    except ConnectionRefusedError:
        return True
    return False


def running_state(sock):
    """What a dry run must not change: generation and reload counters, the
    servers sluice knows and their weights, the listeners."""
    info = ct.show_info(sock)
    j = ct.stats_json(sock)
    servers = sorted((s["pool"], s["name"], s["address"], s["weight"]) for s in j["servers"])
    listeners = sorted(l["name"] for l in j["listeners"])
    return ({k: info[k] for k in ("generation", "reloads_ok", "reloads_failed", "last_reload_result")},
            servers, listeners, ct.ask(sock, "show backends"))


def test_dry_run_then_reload_list_the_changes(sluice, named, port, sockdir):
    a, a2, b = named("a"), named("a2"), named("b")
    port2 = st.free_port()
    sock = sockdir / "admin.sock"
    text_a, text_b, a_to_b, b_to_a = scenario(port, port2, sock, a, a2, b)
    s = sluice(text_a)
    before = running_state(sock)
    assert [l for l in before[1] if l[0] == "spare"], before

    # dry run: the diff, and nothing applied
    ct.write_config(s.cfg, text_b)
    r = ct.run_ctl(sock, "reload", "--dry-run")
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    lines = r.stdout.splitlines()
    assert lines[0] == "reload dry-run ok: generation 2 would have 1 workers, 2 listeners, 1 pools; " \
                       "nothing applied", r.stdout
    assert lines[1:] == a_to_b, r.stdout
    assert ct.ask(sock, "reload dry-run") == r.stdout  # the admin command it sends
    assert running_state(sock) == before, "a dry run changed the running state"
    assert st.ss_listeners(port2) == [], f"a dry run left port {port2} bound: {st.ss_listeners(port2)}"
    assert refused(port2), f"a dry run made port {port2} reachable"
    assert {ct.pick(port) for _ in range(8)} == {"a", "b"}, "a dry run moved server a"
    assert "reload dry-run ok" in s.log() and "reload: changed" not in s.log(), s.tail()

    # SIGHUP applies it: the log lists the same changes after the ok line
    s.signal(signal.SIGHUP)
    s.wait_log("reload ok: generation 2")
    logged = [l.split("[info] reload: ", 1)[1] for l in s.log().splitlines() if "[info] reload: " in l]
    assert logged == a_to_b, f"log lists {logged}\n{s.tail()}"
    st.wait_for(lambda: len(st.ss_listeners(port2)) == 1, 5.0 * st.SLOW, "listener api bound")
    assert {ct.pick(port) for _ in range(8)} == {"a2", "b"}
    assert ct.pick(port2) in ("a2", "b")

    # the admin reload back: its reply lists the reverse changes
    ct.write_config(s.cfg, text_a)
    reply = ct.ask(sock, "reload").splitlines()
    assert reply[0] == "reload ok: generation 3, 1 workers, 1 listeners, 2 pools", reply
    assert reply[1:] == b_to_a, reply
    st.wait_for(lambda: st.ss_listeners(port2) == [], 5.0 * st.SLOW, "listener api closed")

    # nothing changed: it says so, in the reply, the dry run and the log
    reply = ct.ask(sock, "reload").splitlines()
    assert reply == ["reload ok: generation 4, 1 workers, 1 listeners, 2 pools",
                     "no changes: 1 listeners, 2 pools, 3 servers as running"], reply
    dry = ct.ask(sock, "reload dry-run").splitlines()
    assert dry[1:] == ["no changes: 1 listeners, 2 pools, 3 servers as running"], dry
    s.wait_log("reload: no changes: 1 listeners, 2 pools, 3 servers as running")
    info = ct.show_info(sock)
    assert info["reloads_ok"] == "3" and info["reloads_failed"] == "0", info
    s.stop()


def test_dry_run_of_a_broken_file_changes_nothing(sluice, named, port, sockdir):
    a, a2, b = named("a"), named("a2"), named("b")
    port2 = st.free_port()
    sock = sockdir / "admin.sock"
    text_a, text_b, _, _ = scenario(port, port2, sock, a, a2, b)
    s = sluice(text_a)
    before = running_state(sock)

    broken = text_b.replace("[pool main]", "[pool main]\nretries = lots\nwibble = 1")
    l1, l2 = ct.line_of(broken, "retries = lots"), ct.line_of(broken, "wibble")
    ct.write_config(s.cfg, broken)
    r = ct.run_ctl(sock, "reload", "--dry-run")
    assert r.returncode == 1, (r.returncode, r.stdout)
    lines = r.stdout.splitlines()
    assert any(l.startswith(f"{s.cfg}:{l1}: retries: ") for l in lines), r.stdout
    assert any(l.startswith(f"{s.cfg}:{l2}: wibble: ") for l in lines), r.stdout
    assert lines[-1] == ("reload dry-run failed: 2 errors in the config file; nothing applied, still "
                         "running generation 1"), r.stdout
    assert not any(l.startswith(("changed ", "added ", "removed ")) for l in lines), r.stdout
    # a dry run's errors are its reply's, not the log's: nobody reloaded
    assert "[error]" not in s.log(), s.tail()

    # a new bind address that cannot be bound: found by the dry run too
    taken = st.Server(st.echo_handler)
    try:
        ct.write_config(s.cfg, text_b.replace(f"127.0.0.1:{port2}", f"127.0.0.1:{taken.port}"))
        r = ct.run_ctl(sock, "reload", "--dry-run")
        assert r.returncode == 1, (r.returncode, r.stdout)
        assert r.stdout.splitlines()[-1] == (
            f"reload dry-run failed: listener api: 127.0.0.1:{taken.port}: bind: Address already "
            "in use; nothing applied, still running generation 1"), r.stdout
        # and the real reload fails with the same reason
        r = ct.ask(sock, "reload")
        assert f"reload failed: listener api: 127.0.0.1:{taken.port}: bind: Address already in use" \
            in r, r
    finally:
        taken.close()
    after = running_state(sock)
    assert after[1:] == before[1:], "a failed dry run or reload changed the running state"
    assert after[0]["reloads_failed"] == "1" and after[0]["generation"] == "1", after[0]
    assert {ct.pick(port) for _ in range(8)} == {"a", "b"}
    s.stop()


def test_dry_run_keeps_descriptors_and_help(sluice, named, port, sockdir):
    """Many dry runs adding a listener leave no descriptor behind, and help
    lists the command."""
    a, a2, b = named("a"), named("a2"), named("b")
    port2 = st.free_port()
    sock = sockdir / "admin.sock"
    text_a, text_b, _, _ = scenario(port, port2, sock, a, a2, b)
    s = sluice(text_a)
    assert "reload dry-run" in ct.ask(sock, "help")
    ct.write_config(s.cfg, text_b)
    ct.ask(sock, "reload dry-run")
    n0 = s.nfds()
    for _ in range(20):
        assert ct.ask(sock, "reload dry-run").startswith("reload dry-run ok"), s.tail()
    assert s.nfds() == n0, f"{s.nfds() - n0} descriptors more after 20 dry runs"
    assert st.port_is_free(port2)
    assert ct.show_info(sock)["generation"] == "1"
    s.stop()


@pytest.mark.skipif(not os.path.exists(DNSMASQ), reason="dnsmasq not installed "
                    "(apt-get install dnsmasq-base; scripts/test installs it)")
def test_dry_run_resolves_new_host_names(sluice, dns, servers, port, sockdir, tmp_path):
    """A dry run resolves a new host name as a reload does (against the
    test's own dnsmasq): a name that resolves is listed as a changed
    address and not applied; one that does not fails the dry run with the
    located error, and nothing is logged as an error."""
    d = dns("127.0.0.2 api.test\n127.0.0.3 other.test\n")
    sock = sockdir / "admin.sock"

    def cfg(host):
        return ct.ctl_config(port, [f"api {host}:{servers}"], sock=sock,
                             glob={"resolvers": f"127.0.0.1:{d.port}"})

    s = sluice(cfg("api.test"))
    assert ct.pick(port) == "a"
    ct.write_config(s.cfg, cfg("other.test"))
    lines = ct.ask(sock, "reload dry-run").splitlines()
    assert lines[0].startswith("reload dry-run ok: generation 2"), lines
    assert lines[1:] == [f"changed server main/api address: api.test:{servers} -> other.test:{servers}",
                         "unchanged: 1 listeners, 0 pools, 0 servers"], lines
    assert ct.server_stats(sock, "main", "api")["address"] == f"127.0.0.2:{servers}"
    assert ct.pick(port) == "a", "a dry run applied the new name's address"

    text = cfg("nothere.test")
    ct.write_config(s.cfg, text)
    r = ct.run_ctl(sock, "reload", "--dry-run")
    assert r.returncode == 1, (r.returncode, r.stdout)
    line = ct.line_of(text, "nothere.test")
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"{s.cfg}:{line}: server: ") and "cannot resolve nothere.test" in lines[0], \
        r.stdout
    assert lines[-1] == ("reload dry-run failed: 1 host name did not resolve; nothing applied, still "
                         "running generation 1"), r.stdout
    assert "[error]" not in s.log(), s.tail()
    assert ct.generation(str(sock)) == 1 and ct.pick(port) == "a"
    s.stop()


def test_reload_lists_the_set_weight_it_undoes(sluice, named, port, sockdir):
    """A reload sets every weight from the file: a `set weight` it undoes
    is listed after what stayed; the dry run lists it and keeps it."""
    a, a2, b = named("a"), named("a2"), named("b")
    sock = sockdir / "admin.sock"
    text_a, _, _, _ = scenario(port, st.free_port(), sock, a, a2, b)
    s = sluice(text_a)
    assert ct.ask(sock, "set weight main/b 7").startswith("weight of main/b: 1 -> 7")
    same = "no changes: 1 listeners, 2 pools, 3 servers as running"
    undone = "undone: set weight main/b: 7 -> 1 (weights come from the file)"
    assert ct.ask(sock, "reload dry-run").splitlines()[1:] == [same, undone]
    assert ct.server_stats(str(sock), "main", "b")["weight"] == 7, "a dry run reset a weight"
    reply = ct.ask(sock, "reload").splitlines()
    assert reply[1:] == [same, undone], reply
    s.wait_log(f"reload: {undone}")
    assert ct.server_stats(str(sock), "main", "b")["weight"] == 1
    assert ct.ask(sock, "reload").splitlines()[1:] == [same]
    s.stop()
