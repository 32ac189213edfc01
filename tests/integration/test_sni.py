"""route = sni end to end (docs/config.md "SNI routing"): real TLS clients
(openssl s_client, curl) through sluice to `openssl s_server` backends with
their own certificates, exact and wildcard rules, the default and
`no_route`, malformed, cut and slow ClientHellos (`tls_hello`), the bytes
forwarded unchanged, and PROXY headers on both sides."""

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

import ctltest as ct
import sluicetest as st
from ctltest import sockdir  # noqa: F401  (fixture)

T = 5.0 * st.SLOW  # bound for one exchange
CORPUS = Path(__file__).resolve().parents[1] / "fuzz" / "corpus" / "tls_hello"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None or shutil.which("curl") is None,
                                reason="needs openssl and curl (scripts/test installs them)")


def hello(name):
    """A ClientHello captured by tests/fuzz/capture_tls_hello.py."""
    return (CORPUS / name).read_bytes()


# --------------------------------------------------------------------------
# TLS backends: openssl s_server, one certificate each


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """{name: (cert, key)} for api.example.com, www.example.com and
    default.example.net, self-signed EC P-256."""
    d = tmp_path_factory.mktemp("certs")
    out = {}
    for cn in ("api.example.com", "www.example.com", "default.example.net"):
        cert, key = d / f"{cn}.crt", d / f"{cn}.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-subj", f"/CN={cn}",
                        "-days", "2", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True, timeout=30)
        out[cn] = (cert, key)
    return out


class TlsServer:
    """openssl s_server -WWW on 127.0.0.1: serves name.txt (its name) from
    its own directory with its own certificate."""

    def __init__(self, name, cert, key, tmp):
        self.name = name
        self.dir = tmp / f"www-{name}"
        self.dir.mkdir()
        (self.dir / "name.txt").write_text(name + "\n")
        self.port = st.free_port()
        self.log = open(tmp / f"s_server-{name}.log", "wb")
        self.proc = subprocess.Popen(
            ["openssl", "s_server", "-accept", f"127.0.0.1:{self.port}", "-cert", str(cert),
             "-key", str(key), "-WWW", "-quiet"],
            cwd=self.dir, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        st.wait_for(lambda: not st.port_is_free(self.port), T, f"s_server {name} listening")

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def close(self):
        self.proc.kill()
        self.proc.wait(5)
        self.log.close()


@pytest.fixture
def tls_server(certs, tmp_path):
    made = []

    def make(name, cn):
        srv = TlsServer(name, *certs[cn], tmp_path)
        made.append(srv)
        return srv

    yield make
    for srv in made:
        srv.close()


def sni_config(port, rules, pools, *, default=None, listener=None, glob=None):
    """A route = sni listener 'tls' on port. rules: [(host, pool)]; pools:
    {name: [server lines]} or {name: ([server lines], {keys})}."""
    g = {"workers": 1, "log_level": "info", "access_log": "stderr", "shutdown_timeout": "2s"}
    if os.geteuid() == 0:
        g["allow_root"] = "yes"
    g.update(glob or {})
    lines = ["[global]"] + [f"{k} = {v}" for k, v in g.items()]
    lines += ["", "[listener tls]", f"bind = 127.0.0.1:{port}", "route = sni"]
    lines += [f"sni = {h} {p}" for h, p in rules]
    if default:
        lines.append(f"sni_default = {default}")
    lines += [f"{k} = {v}" for k, v in (listener or {}).items()]
    for name, servers in pools.items():
        keys = {}
        if isinstance(servers, tuple):
            servers, keys = servers
        lines += ["", f"[pool {name}]"] + [f"server = {s}" for s in servers]
        lines += [f"{k} = {v}" for k, v in keys.items()]
    return "\n".join(lines) + "\n"


def s_client(port, servername=None, timeout=T):
    """openssl s_client through sluice: (returncode, output). servername
    None: -noservername."""
    args = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}"]
    args += ["-noservername"] if servername is None else ["-servername", servername]
    r = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    return r.returncode, r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")


def subject_cn(out):
    m = re.search(r"^subject=.*CN ?= ?([^\s,/]+)", out, re.M)
    return m.group(1) if m else None


def curl_name(port, host):
    """curl https://HOST:PORT/name.txt with HOST resolved to 127.0.0.1."""
    r = subprocess.run(["curl", "-sSk", "--max-time", str(int(T) + 1), "--resolve",
                        f"{host}:{port}:127.0.0.1", f"https://{host}:{port}/name.txt"],
                       capture_output=True, timeout=T + 5)
    assert r.returncode == 0, f"curl {host}: exit {r.returncode}: {r.stderr.decode()}"
    return r.stdout.decode().strip()


# --------------------------------------------------------------------------
# routing with real clients


def test_routes_by_server_name(sluice, tls_server, port):
    """Exact rules, a one-label wildcard, case-insensitivity, and the
    default for no name, for a name nothing matches, for the wildcard's own
    domain and for two labels in front of it. The TLS handshake completes
    end to end with the chosen server's certificate, and the access log
    names the server name."""
    api = tls_server("api", "api.example.com")
    web = tls_server("web", "www.example.com")
    dflt = tls_server("dflt", "default.example.net")
    s = sluice(sni_config(port, [("*.example.com", "web"), ("api.example.com", "api")],
                          {"api": [f"api1 {api.addr}"], "web": [f"web1 {web.addr}"],
                           "dflt": [f"dflt1 {dflt.addr}"]}, default="dflt"))
    cases = [
        ("api.example.com", "api.example.com", "api1"),  # exact beats the wildcard before it
        ("API.Example.COM", "api.example.com", "api1"),
        ("www.example.com", "www.example.com", "web1"),
        ("x.example.com", "www.example.com", "web1"),
        ("example.com", "default.example.net", "dflt1"),
        ("a.b.example.com", "default.example.net", "dflt1"),
        ("other.org", "default.example.net", "dflt1"),
        (None, "default.example.net", "dflt1"),
    ]
    for name, cn, backend in cases:
        rc, out = s_client(port, name)
        assert rc == 0 and "Verify return code" in out, f"{name}: s_client exit {rc}\n{out[-800:]}"
        assert subject_cn(out) == cn, f"{name}: got the certificate of {subject_cn(out)}\n{out[-800:]}"
        want = (name or "-").lower()
        e = s.wait_access(sni=want, backend=backend)[0]
        assert e["reason"] in ("client_close", "backend_close") and int(e["up"]) > 0, e
    # curl: an HTTP request over the routed TLS connection reaches the right server.
    assert curl_name(port, "api.example.com") == "api"
    assert curl_name(port, "img.example.com") == "web"
    assert curl_name(port, "example.com") == "dflt"
    s.stop()


def test_no_route_without_default(sluice, tls_server, port, sockdir):
    """No sni_default: a hello without a name, or with one no rule matches,
    is closed at once with end reason no_route, counted, and no server is
    connected."""
    api = tls_server("api", "api.example.com")
    sock = str(sockdir / "admin.sock")
    s = sluice(sni_config(port, [("api.example.com", "api")], {"api": [f"api1 {api.addr}"]},
                          glob={"admin_socket": sock}))
    rc, out = s_client(port, None)
    assert rc != 0 and subject_cn(out) is None, out[-500:]
    rc, out = s_client(port, "www.example.com")
    assert rc != 0 and subject_cn(out) is None, out[-500:]
    for want in ("-", "www.example.com"):
        e = s.wait_access(sni=want)[0]
        assert (e["reason"], e["backend"], e["addr"], e["up"], e["down"]) == \
            ("no_route", "-", "-", "0", "0"), e
    rc, out = s_client(port, "api.example.com")
    assert rc == 0 and subject_cn(out) == "api.example.com", out[-500:]
    doc = ct.stats_json(sock)
    assert doc["process"]["end_reasons"]["no_route"] == 2, doc["process"]["end_reasons"]
    assert doc["process"]["end_reasons"]["tls_hello"] == 0
    assert [l["pool"] for l in doc["listeners"]] == [None], doc["listeners"]
    api1 = ct.server_stats(sock, "api", "api1")
    assert api1["connect_attempts"] == 1, api1
    s.stop()


# --------------------------------------------------------------------------
# bytes forwarded, hellos in pieces


def capture_handler(conn, srv):
    """Keep everything until EOF in srv.state['got'] (one entry per
    connection); answer b'ok'."""
    buf = bytearray()
    while True:
        d = conn.recv(1 << 16)
        if not d:
            break
        buf += d
    with srv.cond:
        srv.state.setdefault("got", []).append(bytes(buf))
        srv.cond.notify_all()
    conn.sendall(b"ok")


def got(srv, n=1):
    st.wait_for(lambda: len(srv.state.get("got", [])) >= n, T, f"{n} capture(s) at {srv.name}")
    return srv.state["got"]


@pytest.mark.parametrize("name,sni", [
    ("openssl-api.example.com", "api.example.com"),
    ("gnutls-api.example.com", "api.example.com"),
    ("curl-x.example.com", "x.example.com"),
    ("openssl-tls12-www.example.org", "www.example.org"),
    ("openssl-api.example.com-records-of-7", "api.example.com"),
    ("gnutls-api.example.com-records-of-100", "api.example.com"),
])
def test_hello_forwarded_unchanged(sluice, backend, port, relay, name, sni):
    """A captured hello (one record, or cut into records of 7 and 100
    bytes), sent in small TCP segments, followed by more bytes and a FIN:
    the chosen server gets exactly those bytes, in order, with either relay
    mode (splice must not skip the hello waiting in the buffer)."""
    a = backend(capture_handler, name="a")
    b = backend(capture_handler, name="b")
    s = sluice(sni_config(port, [(sni, "a")], {"a": [f"a1 {a.addr}"], "b": [f"b1 {b.addr}"]},
                          default="b", listener={"relay": relay}))
    data = hello(name)
    tail = b"\x17\x03\x03\x00\x05hello" * 3
    c = st.connect(port, timeout=T)
    try:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(data), 50):
            c.sendall(data[i:i + 50])
            time.sleep(0.005)  # separate segments (pacing, not a wait for a condition)
        c.sendall(tail)
        c.shutdown(socket.SHUT_WR)
        reply, _ = st.recv_until_close(c, T)
    finally:
        c.close()
    assert reply == b"ok"
    assert got(a) == [data + tail]
    assert b.accepted == 0
    e = s.wait_access(sni=sni)[0]
    assert (e["backend"], e["up"], e["reason"]) == ("a1", str(len(data + tail)), "client_close"), e
    s.stop()


def reframe(data, k):
    """The handshake bytes of data's records, re-cut into records of k bytes."""
    payload, pos = b"", 0
    while pos + 5 <= len(data):
        n = int.from_bytes(data[pos + 3:pos + 5], "big")
        payload += data[pos + 5:pos + 5 + n]
        pos += 5 + n
    return b"".join(b"\x16\x03\x01" + len(payload[i:i + k]).to_bytes(2, "big") + payload[i:i + k]
                    for i in range(0, len(payload), k))


def test_hello_across_buffer_blocks(sluice, backend, port):
    """buffer_size = 1k and a hello of 1,896 bytes (1-byte records) after a
    PROXY header: the hello spans three buffer blocks, is parsed as one and
    forwarded byte for byte."""
    a = backend(capture_handler, name="a")
    s = sluice(sni_config(port, [("api.example.com", "a")], {"a": [f"a1 {a.addr}"]},
                          listener={"accept_proxy": "on"}, glob={"buffer_size": "1k"}))
    data = reframe(hello("openssl-api.example.com"), 1)
    assert len(data) > 1800
    c = st.connect(port, timeout=T)
    try:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.sendall(b"PROXY TCP4 203.0.113.5 198.51.100.1 40005 443\r\n" + data[:700])
        time.sleep(0.05)  # separate segments (pacing)
        c.sendall(data[700:1500])
        time.sleep(0.05)
        c.sendall(data[1500:])
        c.shutdown(socket.SHUT_WR)
        assert st.recv_until_close(c, T)[0] == b"ok"
    finally:
        c.close()
    assert got(a) == [data]
    assert s.wait_access(client="203.0.113.5:40005")[0]["sni"] == "api.example.com"
    s.stop()


@pytest.mark.threaded
def test_concurrent_hellos_two_workers(sluice, backend, port):
    """workers = 2, 40 clients at once with three different names: each
    reaches its pool with its own hello (run under TSan by scripts/test)."""
    import threading
    pools = {n: backend(capture_handler, name=n) for n in ("a", "b", "c")}
    s = sluice(sni_config(port, [("api.example.com", "a"), ("*.example.com", "b")],
                          {n: [f"{n}1 {srv.addr}"] for n, srv in pools.items()}, default="c",
                          glob={"workers": 2}))
    kinds = [("openssl-api.example.com", "a"), ("curl-x.example.com", "b"),
             ("openssl-tls12-www.example.org", "c"), ("openssl-noservername", "c")]
    errors = []

    def client(i):
        name, _ = kinds[i % len(kinds)]
        try:
            c = st.connect(port, timeout=T)
            try:
                c.sendall(hello(name) + f"#{i}".encode())
                c.shutdown(socket.SHUT_WR)
                if st.recv_until_close(c, T)[0] != b"ok":
                    errors.append(f"{i}: no ok")
            finally:
                c.close()
        except OSError as e:
            errors.append(f"{i}: {e!r}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(2 * T)
    assert not errors, errors
    for n, srv in pools.items():
        want = sorted(hello(name) + f"#{i}".encode() for i in range(40)
                      for name, pool in [kinds[i % len(kinds)]] if pool == n)
        assert sorted(got(srv, len(want))) == want, n
    s.stop()


def test_slow_hello_within_sni_timeout(sluice, backend, port):
    """A hello trickled a few bytes at a time over ~1.5 s (sni_timeout 10s)
    is routed, and nothing reached a server before it was complete."""
    a = backend(capture_handler, name="a")
    s = sluice(sni_config(port, [("api.example.com", "a")], {"a": [f"a1 {a.addr}"]},
                          listener={"sni_timeout": "10s"}))
    data = hello("openssl-api.example.com")
    c = st.connect(port, timeout=T)
    try:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        step = 11
        for i in range(0, len(data), step):
            c.sendall(data[i:i + step])
            if i + step < len(data):
                time.sleep(0.05)  # the trickle's pace
                assert a.accepted == 0, f"a server was connected after {i + step} bytes"
        c.shutdown(socket.SHUT_WR)
        assert st.recv_until_close(c, T)[0] == b"ok"
    finally:
        c.close()
    assert got(a) == [data]
    s.stop()


def test_bad_hellos(sluice, backend, port, sockdir):
    """Plain HTTP, a hello cut short by the client's FIN, a silent client
    and a hello still trickling when sni_timeout (1s) runs out: each ends
    tls_hello with an info line saying why, and no server is connected."""
    a = backend(capture_handler, name="a")
    sock = str(sockdir / "admin.sock")
    s = sluice(sni_config(port, [("api.example.com", "a")], {"a": [f"a1 {a.addr}"]},
                          default="a", listener={"sni_timeout": "1s"},
                          glob={"admin_socket": sock}))
    data = hello("openssl-api.example.com")
    ports = {}

    http = st.connect(port, timeout=T)
    ports["plain HTTP"] = (http.getsockname()[1], "not a TLS handshake record")
    http.sendall(b"GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
    assert st.recv_until_close(http, T)[0] == b""
    http.close()

    cut = st.connect(port, timeout=T)
    ports["cut"] = (cut.getsockname()[1], "connection closed in the middle of the ClientHello")
    cut.sendall(data[:len(data) // 2])
    cut.shutdown(socket.SHUT_WR)
    assert st.recv_until_close(cut, T)[0] == b""
    cut.close()

    t0 = time.monotonic()
    silent = st.connect(port, timeout=T)
    slow = st.connect(port, timeout=T)
    try:
        ports["silent"] = (silent.getsockname()[1], "no ClientHello within sni_timeout")
        ports["slow"] = (slow.getsockname()[1], "incomplete ClientHello when sni_timeout expired")
        slow.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # 8 bytes every 0.1 s: the whole hello would take 4 s. The timer
        # runs from accept, not from the last byte.
        closed_at = None
        for i in range(0, len(data), 8):
            try:
                slow.sendall(data[i:i + 8])
            except (BrokenPipeError, ConnectionResetError):
                closed_at = time.monotonic() - t0
                break
            time.sleep(0.1)  # the trickle's pace
            if time.monotonic() - t0 > 3.0 * st.SLOW:
                break
        for name, c in (("silent", silent), ("slow", slow)):
            how, _ = st.wait_closed(c, 3.0 * st.SLOW)
            secs = time.monotonic() - t0
            if name == "silent":
                assert 0.9 <= secs <= 1.0 + 0.8 * st.SLOW, f"silent closed ({how}) after {secs:.2f}s"
    finally:
        silent.close()
        slow.close()
    assert closed_at is None or closed_at >= 0.9, closed_at
    for case, (p, why) in ports.items():
        e = s.access_for(p)
        assert (e["reason"], e["backend"], e["sni"], e["up"]) == ("tls_hello", "-", "-", "0"), \
            (case, e)
        s.wait_log(f"bad TLS ClientHello from 127.0.0.1:{p}: {why}")
    assert a.accepted == 0
    assert ct.stats_json(sock)["process"]["end_reasons"]["tls_hello"] == 4
    s.stop()


# --------------------------------------------------------------------------
# PROXY protocol on both sides


def test_accept_proxy_then_hello(sluice, backend, port):
    """accept_proxy + route = sni: the PROXY header first, then the
    ClientHello, in one segment (the hello is the header's payload) or
    apart. The server gets the hello without the header; the access log
    shows the header's client and the server name."""
    a = backend(capture_handler, name="a")
    b = backend(capture_handler, name="b")
    s = sluice(sni_config(port, [("api.example.com", "a")],
                          {"a": [f"a1 {a.addr}"], "b": [f"b1 {b.addr}"]}, default="b",
                          listener={"accept_proxy": "on"}))
    data = hello("curl-api.example.com")
    hdr = b"PROXY TCP4 203.0.113.9 198.51.100.1 40009 443\r\n"
    for n, (first, rest) in enumerate([(hdr + data, b""), (hdr, data),
                                       (hdr + data[:100], data[100:])]):
        c = st.connect(port, timeout=T)
        try:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c.sendall(first)
            if rest:
                time.sleep(0.05)  # a separate segment (pacing)
                c.sendall(rest)
            c.shutdown(socket.SHUT_WR)
            assert st.recv_until_close(c, T)[0] == b"ok"
        finally:
            c.close()
        assert got(a, n + 1)[n] == data
    assert b.accepted == 0
    es = s.wait_access(3, client="203.0.113.9:40009", sni="api.example.com")
    assert all(e["backend"] == "a1" for e in es), es
    # A header followed by plain text is still a bad hello.
    c = st.connect(port, timeout=T)
    local = c.getsockname()[1]
    c.sendall(hdr + b"GET / HTTP/1.0\r\n\r\n")
    assert st.recv_until_close(c, T)[0] == b""
    c.close()
    e = s.wait_access(client="203.0.113.9:40009", reason="tls_hello")[0]
    assert e["sni"] == "-", e
    assert local > 0
    s.stop()


def test_send_proxy_before_hello(sluice, backend, port):
    """send_proxy = v1 on the chosen pool: the server gets the PROXY header
    for the real client, then the ClientHello, byte for byte."""
    a = backend(capture_handler, name="a")
    s = sluice(sni_config(port, [("*.example.com", "a")],
                          {"a": ([f"a1 {a.addr}"], {"send_proxy": "v1"})}))
    data = hello("curl-x.example.com")
    c = st.connect(port, timeout=T)
    cport = c.getsockname()[1]
    try:
        c.sendall(data)
        c.shutdown(socket.SHUT_WR)
        assert st.recv_until_close(c, T)[0] == b"ok"
    finally:
        c.close()
    want = f"PROXY TCP4 127.0.0.1 127.0.0.1 {cport} {port}\r\n".encode() + data
    assert got(a) == [want]
    assert s.access_for(cport)["sni"] == "x.example.com"
    s.stop()


def test_config_errors_name_the_line(tmp_path, port):
    """sluice -t: a rule naming a missing pool and a pool key on a route =
    sni listener are errors with FILE:LINE."""
    cfg = tmp_path / "bad.ini"
    cfg.write_text("[listener tls]\n"          # 1
                   f"bind = 127.0.0.1:{port}\n"  # 2
                   "route = sni\n"             # 3
                   "pool = a\n"                # 4
                   "sni = api.example.com nope\n"  # 5
                   "[pool a]\nserver = a1 127.0.0.1:9\n")
    r = st.run_sluice(["-t", "-c", cfg])
    assert r.returncode == 1
    assert f"{cfg}:4: pool: listener 'tls' has route = sni" in r.stderr, r.stderr
    assert f"{cfg}:5: sni: no [pool nope] section" in r.stderr, r.stderr
