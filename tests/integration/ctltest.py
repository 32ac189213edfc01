"""Helpers for the control-plane tests (admin socket, /metrics, reload, health).

Builds on sluicetest.py (ports, backends, the Sluice process wrapper); this
module only adds what the control-plane tests need:

  * short admin-socket paths (a fixture: pytest's tmp_path can exceed the
    108-byte limit of a Unix socket path),
  * config text with admin_socket / admin_http,
  * an admin-protocol client (one-shot `ask`, persistent `AdminConn`),
    `sluicectl` runner, a tiny HTTP GET client,
  * a strict Prometheus text-format (0.0.4) parser,
  * a backend that can be stopped and restarted on the same port,
  * a pool of load-generating client threads that verify every byte.

Every wait is bounded and fails with a message saying what it waited for.
"""

import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import traceback
from pathlib import Path

import pytest

import sluicetest as st

T = 5.0 * st.SLOW  # default bound for one admin round trip


def sluicectl_bin():
    return st.sluice_bin().parent / "sluicectl"


@pytest.fixture
def sockdir():
    """A short private directory for admin sockets (removed at teardown)."""
    d = tempfile.mkdtemp(prefix="slc", dir="/tmp")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------
# config


def ctl_config(port, servers, *, sock=None, http=None, glob=None, extra_listeners=(),
               extra_pools=(), **kw):
    """st.make_config plus admin_socket/admin_http and extra sections.

    extra_listeners: [(name, port, pool)]; extra_pools: [(name, [server lines], {keys})]."""
    g = {}
    if sock is not None:
        g["admin_socket"] = str(sock)
    if http is not None:
        g["admin_http"] = f"127.0.0.1:{http}"
    g.update(glob or {})
    extra = ""
    for name, lport, pool in extra_listeners:
        extra += f"\n[listener {name}]\nbind = 127.0.0.1:{lport}\npool = {pool}\n"
    for name, servers2, keys in extra_pools:
        extra += f"\n[pool {name}]\n" + "".join(f"server = {s}\n" for s in servers2)
        extra += "".join(f"{k} = {v}\n" for k, v in (keys or {}).items())
    return st.make_config(port, servers, glob=g, extra=extra, **kw)


def write_config(path, text):
    """Replace the config file atomically (a reload never sees half a file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def line_of(text, needle):
    """1-based number of the first line of `text` containing `needle`."""
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in the config text")


# --------------------------------------------------------------------------
# admin protocol


def _unix(path, timeout):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
    except BaseException:
        s.close()
        raise
    return s


def read_to_eof(sock, timeout, limit=64 << 20):
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"admin connection still open after {timeout:.1f}s; got {bytes(buf[:300])!r}")
        sock.settimeout(left)
        try:
            d = sock.recv(1 << 16)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return bytes(buf)
        if not d:
            return bytes(buf)
        buf += d
        if len(buf) > limit:
            raise AssertionError(f"admin reply larger than {limit} bytes")


def ask_raw(path, data, timeout=T):
    """Send raw bytes followed by 'quit', return everything until EOF."""
    with _unix(path, timeout) as s:
        s.sendall(data + b"\nquit\n")
        return read_to_eof(s, timeout)


def ask(path, command, timeout=T):
    """One command on a fresh connection. Returns the reply without the
    protocol's closing empty line (the reply's own last newline is kept)."""
    data = ask_raw(path, command.encode(), timeout)
    assert data.endswith(b"\n\n"), f"reply to {command!r} does not end with an empty line: {data[-200:]!r}"
    return data[:-1].decode()


class AdminConn:
    """A persistent admin connection. Replies are delimited by the first
    empty line, so use it only for commands whose reply has no empty line
    of its own (show info, reload, set/enable/disable/drain, help, ...)."""

    def __init__(self, path, timeout=T):
        self.path = str(path)
        self.timeout = timeout
        self.sock = _unix(path, timeout)
        self.buf = bytearray()

    def send(self, data):
        self.sock.sendall(data)

    def reply(self, timeout=None):
        timeout = timeout or self.timeout
        deadline = time.monotonic() + timeout
        while True:
            i = self.buf.find(b"\n\n")
            if i >= 0:
                out = bytes(self.buf[:i + 1])
                del self.buf[:i + 2]
                return out.decode(errors="replace")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no complete admin reply within {timeout:.1f}s; have {bytes(self.buf[:300])!r}")
            self.sock.settimeout(left)
            try:
                d = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            if not d:
                raise AssertionError(f"admin connection closed; partial reply {bytes(self.buf[:300])!r}")
            self.buf += d

    def cmd(self, line, timeout=None):
        self.send(line.encode() + b"\n")
        return self.reply(timeout)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def parse_info(text):
    info = {}
    for line in text.splitlines():
        if not line:
            continue
        k, sep, v = line.partition(": ")
        assert sep, f"show info line without 'key: value': {line!r}\n{text}"
        info[k] = v
    return info


def show_info(path, timeout=T):
    return parse_info(ask(path, "show info", timeout))


def stats_json(path, timeout=T):
    text = ask(path, "show stats json", timeout)
    try:
        return json.loads(text)
    except ValueError as e:
        raise AssertionError(f"show stats json is not JSON ({e}): {text[:500]!r}")


def server_stats(path, pool, name):
    for sv in stats_json(path)["servers"]:
        if sv["pool"] == pool and sv["name"] == name:
            return sv
    raise AssertionError(f"server {pool}/{name} not in show stats json")


def generation(conn_or_path):
    if isinstance(conn_or_path, AdminConn):
        return int(parse_info(conn_or_path.cmd("show info"))["generation"])
    return int(show_info(conn_or_path)["generation"])


def sighup_reload(s, admin, expect_gen, timeout=10.0 * st.SLOW):
    """SIGHUP and wait (through the admin socket) until generation expect_gen."""
    s.signal(signal.SIGHUP)
    wait_for_gen(s, admin, expect_gen, timeout)


def wait_for_gen(s, admin, expect_gen, timeout=10.0 * st.SLOW):
    def ok():
        g = generation(admin)
        assert g <= expect_gen, f"generation went to {g}, expected {expect_gen}\n{s.tail()}"
        return g == expect_gen
    st.wait_for(ok, timeout, lambda: f"config generation {expect_gen}\n{s.tail()}")


def run_ctl(sock, *args, timeout=10.0 * st.SLOW):
    b = sluicectl_bin()
    assert b.is_file(), f"sluicectl not found at {b} (next to SLUICE_BIN)"
    pre = ["-s", str(sock)] if sock is not None else []
    return subprocess.run([str(b)] + pre + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


# --------------------------------------------------------------------------
# HTTP


def http_get(port, target, method="GET", timeout=T):
    """(status, headers{lower: value}, body bytes) of one HTTP/1.1 request."""
    s = st.connect(port, timeout=timeout)
    try:
        s.sendall(f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data, _how = st.recv_until_close(s, timeout)
    finally:
        s.close()
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, f"no end of HTTP headers in {data[:300]!r}"
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"^HTTP/1\.[01] (\d{3}) ", lines[0] + " ")
    assert m, f"bad HTTP status line {lines[0]!r}"
    headers = {}
    for h in lines[1:]:
        k, sep, v = h.partition(":")
        assert sep, f"bad HTTP header line {h!r}"
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers and method != "HEAD":
        assert int(headers["content-length"]) == len(body), (
            f"Content-Length {headers['content-length']} but {len(body)} body bytes")
    return int(m.group(1)), headers, body


# --------------------------------------------------------------------------
# Prometheus text exposition format 0.0.4, parsed strictly

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
PROM_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
FLOAT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def _prom_float(s, where):
    if s in ("NaN", "+Inf", "-Inf", "Inf"):
        return float(s.replace("Inf", "inf").replace("NaN", "nan"))
    assert FLOAT.match(s), f"{where}: value {s!r} is not a float"
    return float(s)


def _family_of(name, families):
    """The family a sample name belongs to (histogram/summary suffixes)."""
    if name in families:
        return name
    for suf in ("_bucket", "_sum", "_count"):
        if name.endswith(suf) and families.get(name[:-len(suf)], {}).get("type") in ("histogram", "summary"):
            return name[:-len(suf)]
    return name


def _parse_labels(s, where):
    """Parse '{a="x",b="y"}' (s starts after '{'); returns (labels, rest)."""
    labels = {}
    i = 0
    while True:
        if s[i:i + 1] == "}":
            return labels, s[i + 1:]
        m = LABEL_NAME.match(s, i)
        assert m, f"{where}: bad label name at {s[i:i + 20]!r}"
        lname = m.group(0)
        assert not lname.startswith("__"), f"{where}: reserved label name {lname!r}"
        i = m.end()
        assert s[i:i + 2] == '="', f"{where}: expected '=\"' after label {lname!r}"
        i += 2
        val = []
        while True:
            assert i < len(s), f"{where}: unterminated label value"
            c = s[i]
            if c == "\\":
                nxt = s[i + 1:i + 2]
                assert nxt in ("\\", '"', "n"), f"{where}: bad escape \\{nxt} in label value"
                val.append({"\\": "\\", '"': '"', "n": "\n"}[nxt])
                i += 2
            elif c == '"':
                i += 1
                break
            else:
                assert c != "\n", f"{where}: newline in label value"
                val.append(c)
                i += 1
        assert lname not in labels, f"{where}: label {lname!r} repeated"
        labels[lname] = "".join(val)
        if s[i:i + 1] == ",":
            i += 1
            continue
        assert s[i:i + 1] == "}", f"{where}: expected ',' or '}}' after label {lname!r}, got {s[i:i + 10]!r}"


def parse_prometheus(text):
    """Strict parser; returns {family: {'type', 'help', 'samples': [(name, labels, value)]}}.

    Checks: the body ends with a newline; comment lines are '# HELP name text'
    or '# TYPE name type' (other '#' lines are comments); at most one HELP and
    one TYPE per family, TYPE before the family's first sample; metric and
    label names and label syntax; values are Go-style floats; every sample's
    family has a TYPE; a family's samples are contiguous; no duplicate
    (name, labels); counter families end in _total."""
    assert text.endswith("\n"), "exposition does not end with a newline"
    families = {}
    order = []
    seen = set()
    closed = set()
    current = None
    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = f"line {n} {line[:120]!r}"
        assert not line.endswith("\r"), f"{where}: CR line ending"
        if line.strip() == "":
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 2 and parts[1] in ("HELP", "TYPE"):
                assert len(parts) >= 3, f"{where}: {parts[1]} without a metric name"
                name = parts[2]
                assert METRIC_NAME.fullmatch(name), f"{where}: bad metric name {name!r}"
                fam = families.setdefault(name, {"type": None, "help": None, "samples": []})
                if parts[1] == "HELP":
                    assert fam["help"] is None, f"{where}: second HELP for {name}"
                    fam["help"] = parts[3] if len(parts) > 3 else ""
                else:
                    assert len(parts) == 4, f"{where}: TYPE without a type"
                    assert fam["type"] is None, f"{where}: second TYPE for {name}"
                    assert not fam["samples"], f"{where}: TYPE after samples of {name}"
                    assert parts[3] in PROM_TYPES, f"{where}: unknown type {parts[3]!r}"
                    fam["type"] = parts[3]
                if name not in order:
                    order.append(name)
            continue
        m = METRIC_NAME.match(line)
        assert m, f"{where}: sample line does not start with a metric name"
        name = m.group(0)
        rest = line[m.end():]
        labels = {}
        if rest.startswith("{"):
            labels, rest = _parse_labels(rest[1:], where)
        assert rest.startswith(" "), f"{where}: expected a space before the value"
        fields = rest.split(" ")[1:]
        assert 1 <= len(fields) <= 2 and all(fields), f"{where}: expected 'value [timestamp]'"
        value = _prom_float(fields[0], where)
        if len(fields) == 2:
            assert re.fullmatch(r"-?\d+", fields[1]), f"{where}: bad timestamp {fields[1]!r}"
        fname = _family_of(name, families)
        fam = families.get(fname)
        assert fam is not None and fam["type"] is not None, f"{where}: sample of {fname} without a TYPE line"
        if current != fname:
            assert fname not in closed, f"{where}: samples of {fname} are not contiguous"
            if current is not None:
                closed.add(current)
            current = fname
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen, f"{where}: duplicate sample {name}{labels}"
        seen.add(key)
        fam["samples"].append((name, labels, value))
    for name, fam in families.items():
        if fam["type"] == "counter":
            assert name.endswith("_total"), f"counter family {name} does not end in _total"
            for sname, labels, v in fam["samples"]:
                assert not math.isnan(v) and v >= 0, f"counter {sname}{labels} = {v}"
    return families


def prom_samples(families):
    """{(name, labels tuple): value} for every sample."""
    out = {}
    for fam in families.values():
        for name, labels, v in fam["samples"]:
            out[(name, tuple(sorted(labels.items())))] = v
    return out


def scrape(port):
    status, headers, body = http_get(port, "/metrics")
    assert status == 200, f"/metrics answered {status}: {body[:200]!r}"
    return headers, parse_prometheus(body.decode("utf-8"))


# --------------------------------------------------------------------------
# a backend that can stop and restart on the same port


class PortServer:
    """Like st.Server, but on a fixed port below the ephemeral range, and
    stop()/start() can be repeated (a backend that dies and comes back).
    handler(conn, srv) as for st.Server."""

    def __init__(self, handler, name=None, port=None):
        self.handler = handler
        self.name = name
        self.port = port or st.free_port()
        self.host = st.LOCALHOST
        self.addr = f"{self.host}:{self.port}"
        self.accepted = 0
        self.errors = []
        self.state = {}
        self.events = []
        self.cond = threading.Condition()
        self._conns = set()
        self._stop = None
        self._thread = None
        self.lsock = None
        self.start()

    def note(self, what):
        with self.cond:
            self.events.append((what, time.monotonic()))
            self.cond.notify_all()

    def start(self):
        assert self._thread is None, "already running"
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        st.wait_for(lambda: _try_bind(ls, (self.host, self.port)), 5.0,
                    f"binding backend port {self.port} again")
        ls.listen(128)
        ls.settimeout(0.05)
        self.lsock = ls
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(ls, self._stop), daemon=True,
                                        name=f"psrv-{self.name or self.port}")
        self._thread.start()

    def _loop(self, ls, stop):
        while not stop.is_set():
            try:
                conn, _ = ls.accept()
            except socket.timeout:
                continue
            except OSError:
                if stop.is_set():
                    break
                time.sleep(0.02)
                continue
            conn.settimeout(30 * st.SLOW)
            with self.cond:
                self.accepted += 1
                self._conns.add(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn):
        try:
            self.handler(conn, self)
        except Exception as e:
            self.errors.append(repr(e))
        finally:
            try:
                conn.close()
            except OSError:
                pass
            with self.cond:
                self._conns.discard(conn)

    def stop(self):
        """Close the listener and every connection: connects get refused."""
        if self._thread is None:
            return
        self._stop.set()
        self.lsock.close()
        self._thread.join(2.0 * st.SLOW)
        self._thread = None
        with self.cond:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    close = stop


def _try_bind(sock, addr):
    try:
        sock.bind(addr)
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------
# client load


class Load:
    """n threads doing sink/source exchanges (random sizes, sha256-checked
    both ways) through `port` until stop(). Failures are kept with details."""

    def __init__(self, port, n, max_len=64 << 10, seed=None, timeout=20.0 * st.SLOW):
        self.port = port
        self.n = n
        self.max_len = max_len
        self.timeout = timeout
        self.seed = seed if seed is not None else random.randrange(1 << 30)
        self.ok = 0
        self.failures = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True, name=f"load-{i}")
                        for i in range(n)]

    def start(self):
        st.blob()  # make the shared random data before the clock starts
        for t in self.threads:
            t.start()
        return self

    def _run(self, i):
        rng = random.Random(self.seed * 1000 + i)
        while not self._stop.is_set():
            up = rng.randint(1, self.max_len)
            down = rng.randint(1, self.max_len)
            try:
                st.sinksource_client(self.port, up, down, rng, timeout=self.timeout)
            except BaseException as e:  # noqa: B902 - every failure counts
                with self.lock:
                    self.failures.append(f"thread {i} up={up} down={down}: {e!r}\n"
                                         + "".join(traceback.format_exception_only(type(e), e)))
                time.sleep(0.01)
                continue
            with self.lock:
                self.ok += 1

    def wait_ok(self, count, timeout):
        st.wait_for(lambda: self.ok >= count or self.failures, timeout,
                    lambda: f"{count} successful exchanges (have {self.ok})")

    def stop(self, timeout=30.0 * st.SLOW):
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self.threads if t.is_alive()]
        assert not alive, f"load threads still running after {timeout:.0f}s: {alive}"

    def report(self):
        return f"{self.ok} ok, {len(self.failures)} failed; first failures:\n" + "\n".join(self.failures[:5])


def pick(port, timeout=5.0 * st.SLOW):
    """One short session to a named backend: returns the name it sent."""
    c = st.connect(port, timeout=timeout)
    try:
        return st.recv_line(c, timeout=timeout).decode()
    finally:
        c.close()


def hold(port, want=None, tries=20):
    """Open a session and keep it: (socket, name). With want, open sessions
    (closing the others) until one lands on that backend."""
    for _ in range(tries):
        c = st.connect(port)
        try:
            name = st.recv_line(c).decode()
        except BaseException:
            c.close()
            raise
        if want is None or name == want:
            return c, name
        c.close()
    raise AssertionError(f"no session landed on {want!r} in {tries} tries")


def echo_chunks(sock, total, chunk=16 << 10, timeout=10.0 * st.SLOW):
    """Send `total` random bytes in chunks through an echo session, checking each."""
    sent = 0
    while sent < total:
        data = os.urandom(min(chunk, total - sent))
        sock.sendall(data)
        got = st.recv_exact(sock, len(data), timeout)
        assert got == data, f"echo mismatch after {sent} bytes"
        sent += len(data)
    return sent


@pytest.fixture
def port_server():
    """port_server(handler, name=None, port=None) -> started PortServer; stopped at teardown."""
    made = []

    def make(handler, name=None, port=None):
        srv = PortServer(handler, name=name, port=port)
        made.append(srv)
        return srv

    yield make
    for srv in made:
        srv.stop()


def log_lines(s, needle):
    return [l for l in s.log().splitlines() if needle in l]
