"""Servers given by host name (`server = api api.test:PORT`): resolved at
load, re-resolved while running on the resolver thread, held while the
DNS fails, down after resolve_hold; against a dnsmasq of the test's own on
a loopback port with its own hosts file (never a real network name)."""

import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

import ctltest as ct
import sluicetest as st
from ctltest import sockdir  # noqa: F401  (fixture)

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
pytestmark = pytest.mark.skipif(not os.path.exists(DNSMASQ), reason="dnsmasq not installed "
                                "(apt-get install dnsmasq-base; scripts/test installs it)")


def dns_query(port, name, timeout=0.5):
    """One A query to 127.0.0.1:port: (rcode, [addresses]) or None on no reply."""
    qid = os.getpid() & 0xFFFF
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    q += struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(q, ("127.0.0.1", port))
        r, _ = s.recvfrom(2048)
    except OSError:
        return None
    finally:
        s.close()
    rcode = r[3] & 0xF
    an = struct.unpack(">H", r[6:8])[0]
    pos = len(q)
    addrs = []
    for _ in range(an):
        pos += 2 if r[pos] & 0xC0 == 0xC0 else r.index(b"\0", pos) + 1 - pos
        typ, _cls, _ttl, rdlen = struct.unpack(">HHIH", r[pos:pos + 10])
        pos += 10
        if typ == 1:
            addrs.append(socket.inet_ntoa(r[pos:pos + 4]))
        pos += rdlen
    return rcode, addrs


class Dnsmasq:
    """dnsmasq on 127.0.0.1:port answering *.test from its own hosts file
    (TTL 1 s), NXDOMAIN for other *.test names."""

    def __init__(self, tmp_path, hosts=""):
        self.port = st.free_port()
        self.hosts = tmp_path / "dns.hosts"
        self.hosts.write_text(hosts)
        self.log = tmp_path / "dnsmasq.log"
        self.proc = None
        self.extra = []
        self.start()

    def start(self):
        cmd = [DNSMASQ, "--no-daemon", "--conf-file=/dev/null", f"--port={self.port}",
               "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
               f"--addn-hosts={self.hosts}", "--local-ttl=1", "--local=/test/",
               "--user=root", "--group=root", "--log-facility=-", "--pid-file", *self.extra]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        st.wait_for(lambda: dns_query(self.port, "probe.test") is not None, 5.0 * st.SLOW,
                    "dnsmasq answering")

    def set_hosts(self, text, name=None, want=None):
        """Rewrite the hosts file, SIGHUP, and wait until name answers want."""
        self.hosts.write_text(text)
        self.proc.send_signal(signal.SIGHUP)
        if name is not None:
            st.wait_for(lambda: (dns_query(self.port, name) or (None, None))[1] == want,
                        5.0 * st.SLOW, f"dnsmasq answering {name} with {want}")

    def restart(self, extra):
        """dnsmasq re-reads its hosts file on SIGHUP but not --srv-host:
        restart it on the same port with these extra options."""
        self.stop()
        self.extra = extra
        self.start()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def dns(tmp_path):
    made = []

    def make(hosts=""):
        d = Dnsmasq(tmp_path, hosts)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()


class NamedServer:
    """A TCP server on ip:port that sends its name and a newline, then
    closes (echo=True: then echoes what it gets until the client closes)."""

    def __init__(self, ip, port, name, echo=False):
        self.name = name
        self.echo = echo
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, port))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        self.sock.settimeout(0.1)
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            if self.echo:
                threading.Thread(target=self._echo, args=(c,), daemon=True).start()
                continue
            try:
                c.sendall(self.name.encode() + b"\n")
            except OSError:
                pass
            c.close()

    def _echo(self, c):
        try:
            c.sendall(self.name.encode() + b"\n")
            while True:
                data = c.recv(4096)
                if not data:
                    break
                c.sendall(data)
        except OSError:
            pass
        c.close()

    def close(self):
        self.stopping = True
        self.sock.close()


@pytest.fixture
def servers():
    """Two named servers on one port: "a" on 127.0.0.2, "b" on 127.0.0.3."""
    made = []
    for _ in range(20):
        a = NamedServer("127.0.0.2", 0, "a")
        try:
            b = NamedServer("127.0.0.3", a.port, "b")
        except OSError:
            a.close()
            continue
        made = [a, b]
        break
    assert made, "no port free on both 127.0.0.2 and 127.0.0.3"
    yield made[0].port
    for s in made:
        s.close()


def config(port, sock, dns_port, server, pool=None, glob=None):
    g = {"resolvers": f"127.0.0.1:{dns_port}"}
    g.update(glob or {})
    return ct.ctl_config(port, [server], sock=sock, glob=g, pool=pool)


def backend_row(sock, key="main/api"):
    return ct.ask(sock, "show backends").split(key, 1)[1].splitlines()[0]


def try_pick(port):
    """The name a session reached, or None when sluice closed it at once."""
    try:
        return ct.pick(port, timeout=2.0 * st.SLOW) or None
    except (OSError, AssertionError):  # refused, or closed without a line
        return None


def test_name_is_resolved_and_followed(sluice, dns, servers, port, sockdir):
    d = dns("127.0.0.2 api.test\n")
    sock = str(sockdir / "admin.sock")
    s = sluice(config(port, sock, d.port, f"api api.test:{servers}"))
    assert ct.pick(port) == "a"
    row = backend_row(sock)
    assert f"127.0.0.2:{servers}" in row and f"[dns api.test:{servers}: ok]" in row, row
    sv = ct.server_stats(sock, "main", "api")
    assert sv["address"] == f"127.0.0.2:{servers}" and sv["host"] == f"api.test:{servers}", sv
    assert sv["dns"] == "ok" and sv["dns_changes"] == 0, sv

    # The address changes: the TTL is 1 s, so sluice follows within ~1-2 s.
    d.set_hosts("127.0.0.3 api.test\n", "api.test", ["127.0.0.3"])
    st.wait_for(lambda: try_pick(port) == "b", 5.0 * st.SLOW, "sessions going to the new address")
    s.wait_log(f"main/api: api.test:{servers} is now 127.0.0.3:{servers} (was 127.0.0.2:{servers})")
    sv = ct.server_stats(sock, "main", "api")
    assert sv["dns_changes"] == 1 and sv["dns_resolutions"] >= 2 and sv["dns_failures"] == 0, sv
    assert [try_pick(port) for _ in range(5)] == ["b"] * 5


def test_failures_hold_the_last_answer_then_down(sluice, dns, servers, port, sockdir):
    d = dns("127.0.0.2 api.test\n")
    sock = str(sockdir / "admin.sock")
    s = sluice(config(port, sock, d.port, f"api api.test:{servers}", pool={"resolve_hold": "3s"}))
    assert ct.pick(port) == "a"

    # NXDOMAIN: the last good answer is kept for resolve_hold ...
    d.set_hosts("", "api.test", [])
    t0 = time.monotonic()
    s.wait_log("main/api: dns: NXDOMAIN for api.test", timeout=5.0 * st.SLOW)
    assert ct.pick(port) == "a"
    assert "up" in backend_row(sock)
    # ... and then the server is down, with the reason.
    s.wait_log("main/api DOWN (dns: NXDOMAIN for api.test", timeout=8.0 * st.SLOW)
    assert time.monotonic() - t0 >= 2.5, "down before resolve_hold ran out"
    row = backend_row(sock)
    assert "down" in row and "dns: NXDOMAIN" in row, row
    assert try_pick(port) is None
    assert ct.server_stats(sock, "main", "api")["dns_failures"] >= 2

    # The name comes back: so does the server.
    d.set_hosts("127.0.0.3 api.test\n", "api.test", ["127.0.0.3"])
    s.wait_log("main/api UP (dns: api.test", timeout=5.0 * st.SLOW)
    assert ct.pick(port) == "b"

    # The DNS server stops: held again, then down ("unreachable" or a timeout).
    d.stop()
    s.wait_log("main/api: dns: ", count=2, timeout=5.0 * st.SLOW)
    assert ct.pick(port) == "b"
    s.wait_log("main/api DOWN (dns: ", count=2, timeout=10.0 * st.SLOW)
    row = backend_row(sock)
    assert "down" in row and ("dns: unreachable" in row or "dns: timeout" in row), row


def test_unresolvable_at_start(sluice, dns, servers, port, sockdir, tmp_path):
    d = dns("")
    sock = str(sockdir / "admin.sock")
    path = tmp_path / "t.ini"
    text = config(port, sock, d.port, f"api api.test:{servers}")
    path.write_text(text)
    r = st.run_sluice(["-t", "-c", str(path)])
    line = ct.line_of(text, "server = api")
    assert r.returncode == 1, r
    assert (f"{path}:{line}: server: api: cannot resolve api.test:{servers}: dns: NXDOMAIN"
            in r.stderr), r.stderr

    # init_addr=none: not an error; the server starts down and comes up
    # when the name appears.
    text = config(port, sock, d.port, f"api api.test:{servers} init_addr=none")
    path.write_text(text)
    r = st.run_sluice(["-t", "-c", str(path)])
    assert r.returncode == 0, r
    assert "api.test" in r.stderr and "dns: NXDOMAIN (init_addr=none: starts down)" in r.stderr, r
    s = sluice(text)
    row = backend_row(sock)
    assert "down" in row and "dns: NXDOMAIN" in row and row.split()[0] == "-", row
    assert try_pick(port) is None
    d.set_hosts("127.0.0.2 api.test\n", "api.test", ["127.0.0.2"])
    s.wait_log("main/api UP (dns: api.test", timeout=5.0 * st.SLOW)
    assert ct.pick(port) == "a"

    # A stopped DNS server: -t says so, and with init_addr=none still passes.
    d.stop()
    r = st.run_sluice(["-t", "-c", str(path)])
    assert r.returncode == 0 and "api.test" in r.stderr, r
    text = config(port, sock, d.port, f"api api.test:{servers}")
    path.write_text(text)
    r = st.run_sluice(["-t", "-c", str(path)])
    assert r.returncode == 1 and "cannot resolve api.test" in r.stderr, r


def test_reload_keeps_the_resolved_state(sluice, dns, servers, port, sockdir):
    d = dns("127.0.0.2 api.test\n127.0.0.3 other.test\n")
    sock = str(sockdir / "admin.sock")
    s = sluice(config(port, sock, d.port, f"api api.test:{servers}"))
    d.set_hosts("127.0.0.3 api.test\n127.0.0.3 other.test\n", "api.test", ["127.0.0.3"])
    st.wait_for(lambda: try_pick(port) == "b", 5.0 * st.SLOW, "the new address")
    before = ct.server_stats(sock, "main", "api")
    assert before["dns_changes"] == 1, before

    # A reload with the same name: its answer and counters stay.
    s.cfg.write_text(config(port, sock, d.port, f"api api.test:{servers} weight=2"))
    ct.sighup_reload(s, sock, 2)
    after = ct.server_stats(sock, "main", "api")
    assert after["address"] == f"127.0.0.3:{servers}" and after["dns_changes"] == 1, after
    assert after["dns_resolutions"] >= before["dns_resolutions"], after
    assert ct.pick(port) == "b"

    # Another name for the same server: resolved by the reload.
    d.set_hosts("127.0.0.3 api.test\n127.0.0.2 other.test\n", "other.test", ["127.0.0.2"])
    s.cfg.write_text(config(port, sock, d.port, f"api other.test:{servers}"))
    ct.sighup_reload(s, sock, 3)
    assert ct.server_stats(sock, "main", "api")["address"] == f"127.0.0.2:{servers}"
    assert ct.pick(port) == "a"

    # A name that does not resolve fails the reload; the running one stays.
    s.cfg.write_text(config(port, sock, d.port, f"api nothere.test:{servers}"))
    s.signal(signal.SIGHUP)
    s.wait_log("cannot resolve nothere.test", timeout=5.0 * st.SLOW)
    assert ct.generation(sock) == 3
    assert ct.pick(port) == "a"


def test_metrics_count_resolutions(sluice, dns, servers, port, sockdir):
    d = dns("127.0.0.2 api.test\n")
    http = st.free_port()
    sock = str(sockdir / "admin.sock")
    g = {"resolvers": f"127.0.0.1:{d.port}"}
    sluice(ct.ctl_config(port, [f"api api.test:{servers}", f"lit 127.0.0.2:{servers}"], sock=sock,
                         http=http, glob=g))
    d.set_hosts("127.0.0.3 api.test\n", "api.test", ["127.0.0.3"])
    st.wait_for(lambda: ct.server_stats(sock, "main", "api")["dns_changes"] == 1, 5.0 * st.SLOW,
                "the change counted")
    _, _, body = ct.http_get(http, "/metrics")
    text = body.decode()
    assert 'sluice_server_dns_changes_total{pool="main",server="api"} 1' in text
    assert 'sluice_server_dns_resolutions_total{pool="main",server="lit"} 0' in text
    assert 'sluice_server_dns_failures_total{pool="main",server="api"} 0' in text


@pytest.fixture
def trio():
    """Three echoing named servers on one port: "a" on 127.0.0.2, "b" on
    127.0.0.3, "c" on 127.0.0.4."""
    for _ in range(20):
        made = []
        try:
            for ip, name in (("127.0.0.2", "a"), ("127.0.0.3", "b"), ("127.0.0.4", "c")):
                made.append(NamedServer(ip, made[0].port if made else 0, name, echo=True))
        except OSError:
            for m in made:
                m.close()
            continue
        break
    else:
        raise AssertionError("no port free on 127.0.0.2-4")
    yield made[0].port
    for m in made:
        m.close()


def servers_of(sock, pool="main"):
    """{name: server stats} of a pool's servers, from show stats json."""
    return {sv["name"]: sv for sv in ct.stats_json(sock)["servers"] if sv["pool"] == pool}


def picks(port, n):
    return {try_pick(port) for _ in range(n)}


def test_resolve_all_one_server_per_address(sluice, dns, trio, port, sockdir):
    d = dns("127.0.0.2 api.test\n127.0.0.3 api.test\n")
    sock = str(sockdir / "admin.sock")
    s = sluice(config(port, sock, d.port, f"api api.test:{trio} resolve=all"))
    sv = servers_of(sock)
    assert sorted(sv) == ["api#1", "api#2"], sv
    assert {sv[n]["address"] for n in sv} == {f"127.0.0.2:{trio}", f"127.0.0.3:{trio}"}, sv
    assert all(x["from"] == "api" and x["resolve"] == "all" and x["dns"] == "ok"
               for x in sv.values()), sv
    name_of = {x["address"].split(":")[0]: n for n, x in sv.items()}
    assert picks(port, 8) == {"a", "b"}
    row = backend_row(sock, "main/api#1")
    assert f"[dns api.test:{trio} resolve=all: ok]" in row, row
    # A session that stays open on "a", and the counters of "b" so far.
    held, got = ct.hold(port, "a")
    assert got == "a"
    b_sessions = servers_of(sock)[name_of["127.0.0.3"]]["sessions"]
    assert b_sessions >= 1
    gen = ct.generation(sock)

    # A third address: a third server, the others keep their names.
    d.set_hosts("127.0.0.2 api.test\n127.0.0.3 api.test\n127.0.0.4 api.test\n")
    st.wait_for(lambda: len(servers_of(sock)) == 3, 5.0 * st.SLOW, "a third server")
    s.wait_log(f"main/api#3: added (dns: api.test:{trio} is 127.0.0.4:{trio})")
    sv = servers_of(sock)
    assert sv["api#3"]["address"] == f"127.0.0.4:{trio}", sv
    assert {n: x["address"].split(":")[0] for n, x in sv.items() if n != "api#3"} == \
        {v: k for k, v in name_of.items()}, sv
    st.wait_for(lambda: "c" in picks(port, 6), 5.0 * st.SLOW, "sessions on the third server")
    info = ct.show_info(sock)
    assert int(info["generation"]) == gen + 1 and int(info["dns_updates"]) == 1, info
    assert int(info["reloads_ok"]) == 0, info

    # "a" leaves the answer: its server leaves the pool, its session goes on.
    d.set_hosts("127.0.0.3 api.test\n127.0.0.4 api.test\n")
    a_name = name_of["127.0.0.2"]
    st.wait_for(lambda: a_name not in servers_of(sock), 5.0 * st.SLOW, "the server of 'a' gone")
    s.wait_log(f"main/{a_name}: removed (dns: api.test:{trio} no longer has "
               f"127.0.0.2:{trio}); 1 sessions finish on it")
    assert picks(port, 8) <= {"b", "c"}
    held.sendall(b"still there\n")
    assert st.recv_line(held) == b"still there"
    sv = servers_of(sock)
    assert sv[name_of["127.0.0.3"]]["sessions"] > b_sessions, sv
    held.close()

    # "a" comes back: a number no generation holds (api#1 may still be
    # finishing its session, so it takes the lowest free one).
    d.set_hosts("127.0.0.2 api.test\n127.0.0.3 api.test\n127.0.0.4 api.test\n")
    st.wait_for(lambda: len(servers_of(sock)) == 3, 5.0 * st.SLOW, "a's server back")
    sv = servers_of(sock)
    assert {x["address"].split(":")[0] for x in sv.values()} == \
        {"127.0.0.2", "127.0.0.3", "127.0.0.4"}, sv
    assert ct.pick(port) in {"a", "b", "c"}


def test_resolve_all_nxdomain_empties_the_pool(sluice, dns, trio, port, sockdir):
    d = dns("127.0.0.2 api.test\n")
    sock = str(sockdir / "admin.sock")
    s = sluice(config(port, sock, d.port, f"api api.test:{trio} resolve=all",
                      pool={"resolve_hold": "2s"}))
    assert list(servers_of(sock)) == ["api#1"]
    d.set_hosts("", "api.test", [])
    s.wait_log("main/api: dns: NXDOMAIN for api.test", timeout=5.0 * st.SLOW)
    assert ct.pick(port) == "a"  # held
    s.wait_log("its servers leave the pool", timeout=8.0 * st.SLOW)
    st.wait_for(lambda: servers_of(sock) == {}, 5.0 * st.SLOW, "no server left")
    assert try_pick(port) is None
    # The name itself stays visible, with its last result.
    row = backend_row(sock, "main/api ")
    assert "down" in row and "no address" in row and "NXDOMAIN" in row, row
    d.set_hosts("127.0.0.3 api.test\n", "api.test", ["127.0.0.3"])
    st.wait_for(lambda: list(servers_of(sock)) == ["api#1"], 5.0 * st.SLOW,
                lambda: f"the name back: {servers_of(sock)}")
    assert ct.pick(port) == "b"


def test_resolve_all_at_load_and_reload(sluice, dns, trio, port, sockdir, tmp_path):
    d = dns("127.0.0.2 api.test\n127.0.0.3 api.test\n")
    sock = str(sockdir / "admin.sock")
    path = tmp_path / "t.ini"
    text = config(port, sock, d.port, f"api nothere.test:{trio} resolve=all")
    path.write_text(text)
    r = st.run_sluice(["-t", "-c", str(path)])
    assert r.returncode == 1 and "cannot resolve nothere.test" in r.stderr, r
    path.write_text(config(port, sock, d.port, f"api nothere.test:{trio} resolve=all init_addr=none"))
    assert st.run_sluice(["-t", "-c", str(path)]).returncode == 0
    r = st.run_sluice(["-T", "-c", str(path)])
    assert f"server = api nothere.test:{trio} weight=1 max_conns=0 resolve=all family=any " \
        "init_addr=none" in r.stdout, r.stdout

    s = sluice(config(port, sock, d.port, f"api api.test:{trio} resolve=all"))
    before = servers_of(sock)
    picks(port, 6)
    counts = {n: x["sessions"] for n, x in servers_of(sock).items()}
    # A reload of the same name keeps the servers, their names and counters.
    s.cfg.write_text(config(port, sock, d.port, f"api api.test:{trio} resolve=all weight=3"))
    ct.sighup_reload(s, sock, 2)
    after = servers_of(sock)
    assert {n: x["address"] for n, x in after.items()} == \
        {n: x["address"] for n, x in before.items()}, after
    assert all(after[n]["sessions"] == counts[n] and after[n]["weight"] == 3 for n in after), after


def test_resolve_srv(sluice, dns, trio, port, sockdir, tmp_path):
    d = dns("127.0.0.2 t1.test\n127.0.0.3 t2.test\n127.0.0.4 t3.test\n")
    srv = [f"--srv-host=_app._tcp.api.test,t1.test,{trio},10,5",
           f"--srv-host=_app._tcp.api.test,t2.test,{trio},10,1",
           f"--srv-host=_app._tcp.api.test,t3.test,{trio},20,1"]
    d.restart(srv)
    sock = str(sockdir / "admin.sock")
    s = sluice(config(port, sock, d.port, "api _app._tcp.api.test resolve=srv"))
    sv = servers_of(sock)
    assert len(sv) == 3, sv
    by_ip = {x["address"].split(":")[0]: x for x in sv.values()}
    assert by_ip["127.0.0.2"]["weight"] == 5 and not by_ip["127.0.0.2"]["backup"], by_ip
    assert by_ip["127.0.0.3"]["weight"] == 1 and not by_ip["127.0.0.3"]["backup"], by_ip
    assert by_ip["127.0.0.4"]["backup"], by_ip  # priority 20 > 10
    assert all(x["resolve"] == "srv" and x["from"] == "api" for x in sv.values()), sv
    assert picks(port, 12) == {"a", "b"}
    names = {ip: x["name"] for ip, x in by_ip.items()}

    # An operator's weight on a server that stays survives a DNS update.
    ct.ask(sock, f"set weight main/{names['127.0.0.3']} 4")

    # t1 leaves the SRV answer: its server goes, the others keep names.
    d.restart(srv[1:])
    st.wait_for(lambda: len(servers_of(sock)) == 2, 8.0 * st.SLOW, "t1's server gone")
    sv = servers_of(sock)
    assert {x["address"].split(":")[0]: n for n, x in sv.items()} == \
        {"127.0.0.3": names["127.0.0.3"], "127.0.0.4": names["127.0.0.4"]}, sv
    assert sv[names["127.0.0.3"]]["weight"] == 4, sv
    assert int(ct.show_info(sock)["dns_updates"]) == 1
    assert picks(port, 6) == {"b"}

    # resolve=srv takes no port and no weight.
    path = tmp_path / "t.ini"
    path.write_text(config(port, sock, d.port, "api _app._tcp.api.test:80 resolve=srv"))
    r = st.run_sluice(["-t", "-c", str(path)])
    assert r.returncode == 1 and "resolve=srv takes a name without a port" in r.stderr, r
    path.write_text(config(port, sock, d.port, "api _app._tcp.api.test resolve=srv weight=2"))
    r = st.run_sluice(["-t", "-c", str(path)])
    assert r.returncode == 1 and "each weight from its SRV record" in r.stderr, r
