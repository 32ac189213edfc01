#!/usr/bin/python3
"""Bounded soak test for sluice: mixed traffic, faults and reloads for a given
time, then RSS, fds and sessions back to their baseline, every byte verified.

Run it through scripts/soak (which builds the ASan+UBSan binary and sets the
sanitizer options); directly:

    SLUICE_BIN=build-asan/sluice SLUICE_SANITIZER=asan /usr/bin/python3 tests/soak/soak.py --minutes 1

What runs, all on 127.0.0.1, for the whole duration (each piece bounded in
count and time):

  traffic   sink/source transfers of random sizes, sha256-verified both ways
            (sluicetest.sinksource_client); backpressure clients that stop
            reading for a while, then drain and verify; short echo sessions
            with unique payloads; idle sessions held for seconds and checked
            later; clients that reset (SO_LINGER 0) mid-transfer.
  faults    one backend (main/s2) killed and restarted on the same port while
            health checks run; admin commands (disable/drain/enable server,
            set weight, show stats/sessions/info/backends); reloads every few
            seconds alternating SIGHUP and the admin `reload`, cycling through
            four configs (weights, server s3 added/removed, workers 2<->1,
            balance and relay mode); every fifth reload a broken file that
            must be refused while traffic goes on.

The run has two phases with the same mix: a warm-up, after which everything
is quiesced and the baseline taken (RSS, open fds, threads), then the soak
proper, quiesced the same way and compared with the baseline. See
docs/soak.md for the pass criteria.

Exit status: 0 pass, 1 fail, 2 usage or setup error.
"""

import argparse
import calendar
import collections
import errno
import hashlib
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))

try:  # ctltest imports pytest for its fixtures only; nothing here needs it
    import pytest  # noqa: F401
except ImportError:
    _stub = types.ModuleType("pytest")
    _stub.fixture = lambda *a, **k: (a[0] if a and callable(a[0]) else (lambda f: f))
    sys.modules["pytest"] = _stub

import ctltest as ct  # noqa: E402
import sluicetest as st  # noqa: E402

MiB = 1 << 20
KiB = 1 << 10

# RSS tolerance at the end versus the baseline (see docs/soak.md): the larger
# of RSS_TOL_ABS_KIB and RSS_TOL_FRAC of the baseline. Under ASan freed memory
# sits in the quarantine and allocator caches before it is reused: RSS climbs
# for about a minute, then creeps by a few MiB over ten minutes and moves by
# a few MiB between samples, without a leak (a plain build stays within a few
# hundred KiB under the same load). A leak of one session or generation per
# connection or reload would grow far beyond this over the hundreds of
# thousands of sessions of a run.
RSS_TOL_ABS_KIB = (16 if st.SANITIZER else 2) * 1024
RSS_TOL_FRAC = 0.25

# Client concurrency (threads). Each has at most one connection in flight,
# except the idle holder (IDLE_HELD) and the reset client.
N_SINKSOURCE = 4
N_BACKPRESSURE = 1
N_ECHO = 2
IDLE_HELD = 12

RELOAD_EVERY = (2.0, 4.0)   # seconds between two reload attempts
BROKEN_EVERY = 5            # every Nth reload attempt uses a broken file
KILL_EVERY = (12.0, 20.0)   # seconds between two kills of main/s2
KILL_DOWN_FOR = (2.0, 4.0)  # seconds main/s2 stays dead
ADMIN_EVERY = (0.2, 0.8)    # seconds between admin commands
IDLE_HOLD = (1.0, 8.0)      # seconds an idle session is held
TRANSFER_TIMEOUT = 60.0     # per transfer

T_ADMIN = 15.0              # one admin round trip (ASan, loaded machine)

# Each worker keeps up to this many idle pipes for relay = splice
# (src/worker.c PIPE_CACHE, docs/operations.md "EMFILE"): with no session
# left, the pipes sluice holds are that cache, whose size depends on the
# peak splice concurrency since the worker started.
PIPE_CACHE = 64


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Abort(Exception):
    """SIGTERM (scripts/soak's timeout) or a fatal setup problem."""


# ---------------------------------------------------------------------------
# bookkeeping


class Failure:
    __slots__ = ("kind", "listener", "t0m", "t1m", "t0w", "t1w", "port", "exc", "cat",
                 "cls", "why", "entry", "at_connect")

    def __init__(self, kind, listener, t0m, t0w, port, exc):
        self.kind = kind
        self.listener = listener
        self.t0m, self.t0w = t0m, t0w
        self.t1m, self.t1w = time.monotonic(), time.time()
        self.port = port
        self.at_connect = getattr(_tls, "at_connect", False)  # connect() itself failed
        self.exc = exc
        self.cat = categorize(exc)
        self.cls = None      # after the run: "expected-kill", "expected-retire" or "unexpected"
        self.why = ""
        self.entry = None

    def describe(self):
        e = self.entry
        where = (f"session worker={e['worker']} backend={e['backend']} reason={e['reason']} "
                 f"up={e['up']} down={e['down']} duration_ms={e['duration_ms']}"
                 if e else "no matching access-log entry")
        return (f"{self.kind} via {self.listener} client port {self.port} "
                f"[{self.t0m - T0:.2f}s..{self.t1m - T0:.2f}s] {self.cat}: "
                f"{type(self.exc).__name__}: {str(self.exc)[:300]} ({where}) {self.why}")


def categorize(e):
    """corrupt (wrong bytes: always a failure), timeout, cut (the connection
    ended early: may be expected), refused, error."""
    msg = str(e)
    if isinstance(e, AssertionError):
        if any(k in msg for k in ("mismatch", "backend received", "after the payload",
                                  "unexpected data", "more than")):
            return "corrupt"
        if any(k in msg for k in ("timed out", "did not finish in time", "still open after")):
            return "timeout"
        return "cut"
    if isinstance(e, ConnectionRefusedError):
        return "refused"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(e, OSError) and e.errno in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN,
                                              errno.ECONNABORTED):
        return "cut"  # reset by the peer (ENOTCONN: shutdown() after an RST arrived)
    return "error"


class Book:
    """Counters shared by every thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ok = collections.Counter()          # kind -> completed and verified
        self.bytes = collections.Counter()       # kind -> bytes verified (both directions)
        self.failures = []                       # Failure
        self.opened = 0                          # client connections that connected to a listener
        self.problems = []                       # other failed checks (text)
        self.notes = []                          # things worth reporting that are not failures
        self.reloads = collections.Counter()
        self.admin = collections.Counter()
        self.faults = collections.Counter()
        self.kills = []                          # dicts: t0w, t1w, t0m, live
        self.shrinks = []                        # (t0w, t1w) of reloads that lowered workers
        self.broken_progress = []                # ok-ops completed in the second after a refused reload
        self.rss_timeline = []                   # (phase, KiB) every 10 s under load
        self.frozen = False                      # after an abort nothing more is recorded

    def done(self, kind, nbytes):
        with self.lock:
            if self.frozen:
                return
            self.ok[kind] += 1
            self.bytes[kind] += nbytes

    def total_ok(self):
        with self.lock:
            return sum(self.ok.values())

    def fail(self, f):
        with self.lock:
            if not self.frozen:
                self.failures.append(f)

    def problem(self, text):
        with self.lock:
            if self.frozen:
                return
            self.problems.append(text)
        log(f"PROBLEM: {text}")

    def note(self, text):
        with self.lock:
            self.notes.append(text)


BOOK = Book()
T0 = time.monotonic()

# Every client connection goes through sluicetest.connect (sinksource_client
# calls it too), replaced here by an equivalent that records the local port
# per thread as soon as the kernel picks it (before the handshake is
# known to have worked), so any failure can be matched with its access-log
# line, and counts the connections. The port matters even when connect()
# fails: sluice may accept a connection, and reset it (a killed backend),
# before a busy Python thread gets to read the connect's result, which is
# then ECONNRESET.
_tls = threading.local()


def _recording_connect(port, host=st.LOCALHOST, src=None, timeout=5.0):
    _tls.port = None
    _tls.at_connect = True
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    try:
        if src is not None:
            s.bind((src, 0))
        s.setblocking(False)
        err = s.connect_ex((host, port))
        _tls.port = s.getsockname()[1]
        if err not in (0, errno.EINPROGRESS):
            raise OSError(err, os.strerror(err))  # the matching subclass, e.g. ConnectionRefusedError
        if err:
            poller = select.poll()
            poller.register(s, select.POLLOUT)
            if not poller.poll(timeout * 1000):
                raise socket.timeout(f"connect to {host}:{port} timed out after {timeout}s")
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, os.strerror(err))
        s.settimeout(timeout)
    except BaseException:
        s.close()
        raise
    _tls.at_connect = False
    with BOOK.lock:
        BOOK.opened += 1
    return s


st.connect = _recording_connect


def op(kind, listener, fn):
    """Run one client operation; returns True if it completed and verified."""
    t0m, t0w = time.monotonic(), time.time()
    _tls.port = None
    _tls.at_connect = False
    try:
        nbytes = fn()
    except Exception as e:  # noqa: BLE001 - every failure is classified
        BOOK.fail(Failure(kind, listener, t0m, t0w, _tls.port, e))
        time.sleep(0.05)  # no tight loop if sluice is gone
        return False
    BOOK.done(kind, nbytes)
    return True


# ---------------------------------------------------------------------------
# backends


def sinksource_backend(conn, srv):
    """sluicetest.sinksource_handler, tolerating what the soak does to it:
    health checks (connect, close, nothing sent) and clients that reset."""
    try:
        st.sinksource_handler(conn, srv)
    except AssertionError as e:
        key = "check" if "after 0 of 24 bytes" in str(e) else "assert"
        _backend_note(srv, key, e)
    except OSError as e:
        _backend_note(srv, "oserror", e)


def _backend_note(srv, key, e):
    with srv.cond:
        c = srv.state.setdefault("ended", collections.Counter())
        c[key] += 1
        if key == "assert":
            srv.state.setdefault("asserts", []).append(repr(e)[:200])


class Backends:
    def __init__(self):
        # sink/source pool "main": s0 untouched, s1 steered by admin
        # commands, s2 killed and restarted, s3 added/removed by reloads.
        self.main = {n: ct.PortServer(sinksource_backend, name=n) for n in ("s0", "s1", "s2", "s3")}
        for srv in self.main.values():
            srv.state["deadline"] = 120
        # echo pool: e1 untouched, e2 disabled/enabled by admin commands
        self.echo = {n: st.Server(st.echo_handler, name=n, conn_timeout=60.0) for n in ("e1", "e2")}

    def close(self):
        for srv in self.main.values():
            srv.stop()
        for srv in self.echo.values():
            srv.close()


# ---------------------------------------------------------------------------
# configs


# The reload cycle: A -> B -> C -> D -> A ...  workers 2,2,1,1 (one shrink
# at C, one growth at A), s3 added at B and removed at D.
VARIANTS = {
    "A": dict(workers=2, s3=False, weights=(2, 1, 1), main_balance="roundrobin",
              echo_balance="leastconn", main_relay="copy", echo_relay="splice"),
    "B": dict(workers=2, s3=True, weights=(1, 2, 1, 2), main_balance="leastconn",
              echo_balance="random", main_relay="splice", echo_relay="copy"),
    "C": dict(workers=1, s3=True, weights=(1, 1, 2, 1), main_balance="random",
              echo_balance="roundrobin", main_relay="copy", echo_relay="splice"),
    "D": dict(workers=1, s3=False, weights=(3, 1, 1), main_balance="roundrobin",
              echo_balance="leastconn", main_relay="splice", echo_relay="copy"),
}
CYCLE = "ABCD"

BROKEN = [
    ("unknown key", "[pool main]", "wibble = 1"),
    ("bad balance", "[pool main]", "balance_placeholder"),
    ("missing pool", "[listener echo]", "pool_placeholder"),
    ("syntax error", "[pool echo]", "a line without an equals sign"),
]


class Env:
    def __init__(self, tmp, backends):
        self.tmp = Path(tmp)
        self.b = backends
        self.port_main = st.free_port()
        self.port_echo = st.free_port()
        self.sock = str(self.tmp / "admin.sock")
        self.access = self.tmp / "access.log"

    def config(self, name, broken=None):
        v = VARIANTS[name]
        main = [f"s0 {self.b.main['s0'].addr} weight={v['weights'][0]}",
                f"s1 {self.b.main['s1'].addr} weight={v['weights'][1]}",
                f"s2 {self.b.main['s2'].addr} weight={v['weights'][2]}"]
        if v["s3"]:
            main.append(f"s3 {self.b.main['s3'].addr} weight={v['weights'][3]}")
        # allow_root: sluice refuses to run as root without it (or `user =`);
        # the soak may run as root and needs no privilege drop
        g = [f"workers = {v['workers']}", "log_level = info", f"access_log = {self.access}",
             "shutdown_timeout = 5s", f"admin_socket = {self.sock}", "allow_root = yes"]
        sections = [
            ("[global]", g),
            ("[listener main]", [f"bind = 127.0.0.1:{self.port_main}", "pool = main",
                                 f"relay = {v['main_relay']}"]),
            ("[listener echo]", [f"bind = 127.0.0.1:{self.port_echo}", "pool = echo",
                                 f"relay = {v['echo_relay']}"]),
            ("[pool main]", [f"balance = {v['main_balance']}"] + [f"server = {s}" for s in main] +
             ["retries = 3", "connect_timeout = 2s", "idle_timeout = 2m", "check = tcp",
              "check_interval = 250ms", "check_timeout = 1s", "fall = 2", "rise = 2"]),
            ("[pool echo]", [f"balance = {v['echo_balance']}",
                             f"server = e1 {self.b.echo['e1'].addr}",
                             f"server = e2 {self.b.echo['e2'].addr}",
                             "retries = 2", "idle_timeout = 2m"]),
        ]
        lines = []
        for head, body in sections:
            body = list(body)
            if broken and broken[1] == head:
                bad = broken[2]
                if bad == "balance_placeholder":
                    body = [("balance = fastest" if l.startswith("balance") else l) for l in body]
                elif bad == "pool_placeholder":
                    body = [("pool = nope" if l.startswith("pool") else l) for l in body]
                else:
                    body.append(bad)
            lines += [head] + body + [""]
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# admin helpers


def ask(env, cmd, timeout=T_ADMIN):
    return ct.ask(env.sock, cmd, timeout)


def info(env):
    return ct.parse_info(ask(env, "show info"))


def backend_state(env, pool, name):
    for line in ask(env, "show backends").splitlines():
        f = line.split()
        if f and f[0] == f"{pool}/{name}":
            return f[2]
    return None


# ---------------------------------------------------------------------------
# traffic


def size(rng):
    r = rng.random()
    if r < 0.6:
        return rng.randint(1, 16 * KiB)
    if r < 0.9:
        return rng.randint(16 * KiB, 256 * KiB)
    return rng.randint(256 * KiB, 2 * MiB)


def sinksource_loop(env, stop, rng):
    while not stop.is_set():
        up, down = size(rng), size(rng)
        op("sinksource", "main",
           lambda: (st.sinksource_client(env.port_main, up, down, rng, timeout=TRANSFER_TIMEOUT),
                    up + down)[1])


def backpressure_once(env, rng):
    """Send a little, ask for a lot, stop reading for a while (sluice must
    stop reading the backend at max_buffer), then drain and verify."""
    data = st.blob()
    up_len = rng.randint(1, 256 * KiB)
    down_len = rng.randint(1 * MiB, 4 * MiB)
    up_off = rng.randint(0, st.BLOB_SIZE - up_len)
    down_off = rng.randint(0, st.BLOB_SIZE - down_len)
    up = memoryview(data)[up_off:up_off + up_len]
    s = st.connect(env.port_main, timeout=TRANSFER_TIMEOUT)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * KiB)
        s.sendall(st.HDR.pack(up_len, down_len, down_off))
        s.sendall(up)
        s.shutdown(socket.SHUT_WR)
        time.sleep(rng.uniform(0.5, 3.0))  # not reading: backpressure
        got, how = st.recv_until_close(s, TRANSFER_TIMEOUT, limit=down_len + st.TRAILER.size)
    finally:
        s.close()
    if how != "eof":
        raise ConnectionResetError(f"backpressure client: reset after {len(got)} bytes")
    if len(got) != down_len + st.TRAILER.size:
        raise AssertionError(f"backpressure client: received {len(got)} bytes, "
                             f"expected {down_len}+{st.TRAILER.size}")
    if hashlib.sha256(memoryview(got)[:down_len]).digest() != \
            hashlib.sha256(memoryview(data)[down_off:down_off + down_len]).digest():
        raise AssertionError(f"backpressure client: downstream sha256 mismatch ({down_len} bytes)")
    count, digest = st.TRAILER.unpack(got[down_len:])
    if count != up_len:
        raise AssertionError(f"backpressure client: backend received {count} bytes, client sent {up_len}")
    if digest != hashlib.sha256(up).digest():
        raise AssertionError(f"backpressure client: upstream sha256 mismatch ({up_len} bytes)")
    return up_len + down_len


def backpressure_loop(env, stop, rng):
    while not stop.is_set():
        op("backpressure", "main", lambda: backpressure_once(env, rng))


_seq = [0]
_seq_lock = threading.Lock()


def unique(rng, tag, lo, hi):
    with _seq_lock:
        _seq[0] += 1
        n = _seq[0]
    return f"{tag}-{n}-{rng.getrandbits(64):016x}:".encode() + rng.randbytes(rng.randint(lo, hi))


def echo_once(env, rng):
    payload = unique(rng, "echo", 0, 48 * KiB)
    s = st.connect(env.port_echo, timeout=TRANSFER_TIMEOUT)
    try:
        s.sendall(payload)
        got = st.recv_exact(s, len(payload), TRANSFER_TIMEOUT)
        if got != payload:
            raise AssertionError(f"echo mismatch: sent {len(payload)} bytes, got different ones")
        s.shutdown(socket.SHUT_WR)
        rest, how = st.recv_until_close(s, TRANSFER_TIMEOUT)
    finally:
        s.close()
    if rest:
        raise AssertionError(f"unexpected data after the echo: {rest[:60]!r}")
    if how != "eof":
        raise ConnectionResetError("echo: reset instead of EOF")
    return 2 * len(payload)


def echo_loop(env, stop, rng):
    while not stop.is_set():
        op("echo", "echo", lambda: echo_once(env, rng))
        time.sleep(rng.uniform(0.0, 0.02))


class Idle:
    __slots__ = ("sock", "port", "t0m", "t0w", "until", "nbytes")


def idle_loop(env, stop, rng):
    """Keep up to IDLE_HELD sessions open and silent through reloads and
    worker changes; each is checked when its hold ends (nothing arrived,
    it still echoes, it closes cleanly)."""
    held = []
    while True:
        stopping = stop.is_set()
        now = time.monotonic()
        for it in [i for i in held if stopping or now >= i.until]:
            held.remove(it)
            _tls.port = it.port
            _tls.at_connect = False
            try:
                n = idle_finish(it, rng)
            except Exception as e:  # noqa: BLE001
                BOOK.fail(Failure("idle", "echo", it.t0m, it.t0w, it.port, e))
            else:
                BOOK.done("idle", n)
        if stopping:
            return
        while len(held) < IDLE_HELD and not stop.is_set():
            it = Idle()
            it.t0m, it.t0w = time.monotonic(), time.time()
            _tls.port = None
            it.sock = None
            try:
                it.sock = st.connect(env.port_echo, timeout=TRANSFER_TIMEOUT)
                it.port = it.sock.getsockname()[1]
                hello = unique(rng, "idle", 0, 200)
                it.sock.sendall(hello)
                if st.recv_exact(it.sock, len(hello), TRANSFER_TIMEOUT) != hello:
                    raise AssertionError("idle echo mismatch on the first exchange")
                it.nbytes = 2 * len(hello)
            except Exception as e:  # noqa: BLE001
                BOOK.fail(Failure("idle", "echo", it.t0m, it.t0w, _tls.port, e))
                if it.sock is not None:
                    it.sock.close()
                time.sleep(0.1)
                continue
            it.until = time.monotonic() + rng.uniform(*IDLE_HOLD)
            held.append(it)
        time.sleep(0.1)


def idle_finish(it, rng):
    s = it.sock
    try:
        s.setblocking(False)
        try:
            d = s.recv(1)
        except BlockingIOError:
            d = None
        if d == b"":
            raise AssertionError("connection closed (EOF) while idle")
        if d is not None:
            raise AssertionError(f"unexpected data {d!r} on an idle session")
        s.setblocking(True)
        msg = unique(rng, "idle-later", 0, 4 * KiB)
        s.sendall(msg)
        if st.recv_exact(s, len(msg), TRANSFER_TIMEOUT) != msg:
            raise AssertionError("idle echo mismatch after the hold")
        s.shutdown(socket.SHUT_WR)
        rest, how = st.recv_until_close(s, TRANSFER_TIMEOUT)
        if rest:
            raise AssertionError(f"unexpected data after the idle exchange: {rest[:60]!r}")
        if how != "eof":
            raise ConnectionResetError("idle: reset instead of EOF")
    finally:
        s.close()
    return it.nbytes + 2 * len(msg)


def rst_once(env, rng):
    """Start a transfer, then abort it with an RST (SO_LINGER 0)."""
    if rng.random() < 0.7:
        s = st.connect(env.port_main, timeout=TRANSFER_TIMEOUT)
        first = st.HDR.pack(1 * MiB, 1 * MiB, rng.randint(0, st.BLOB_SIZE - MiB))
    else:
        s = st.connect(env.port_echo, timeout=TRANSFER_TIMEOUT)
        first = unique(rng, "rst", 0, 1024)
    try:
        s.sendall(first)
        s.sendall(rng.randbytes(rng.randint(0, 128 * KiB)))
        if rng.random() < 0.5:
            s.settimeout(TRANSFER_TIMEOUT)
            s.recv(rng.randint(1, 64 * KiB))  # something arrives: echo, or the source's data
    except BaseException:
        s.close()
        raise
    st.rst_close(s)
    return 0


def rst_loop(env, stop, rng):
    while not stop.is_set():
        op("rst", "main/echo", lambda: rst_once(env, rng))
        time.sleep(rng.uniform(0.05, 0.3))


# ---------------------------------------------------------------------------
# control plane


def admin_loop(env, stop, rng):
    def check(cmd, ok):
        try:
            reply = ask(env, cmd)
        except Exception as e:  # noqa: BLE001
            BOOK.problem(f"admin {cmd!r}: {e!r}")
            return
        BOOK.admin[cmd.split(" main/")[0].split(" echo/")[0]] += 1
        if reply.startswith("error:") or not ok(reply):
            BOOK.admin["bad replies"] += 1
            BOOK.problem(f"admin {cmd!r}: unexpected reply {reply[:300]!r}")

    cmds = [
        ("show stats", lambda r: "LISTENER" in r and "main/s0" in r),
        ("show stats json", lambda r: "main" in json.loads(r)["listeners"][0]["name"]),
        ("show sessions", lambda r: re.search(r"^\d+ sessions", r.splitlines()[-1]) is not None),
        ("show sessions 3", lambda r: re.search(r"^\d+ sessions", r.splitlines()[-1]) is not None),
        ("show info", lambda r: "generation:" in r),
        ("show backends", lambda r: "main/s1" in r),
        ("disable server main/s1", lambda r: r.startswith("disabled main/s1")),
        ("drain server main/s1", lambda r: r.startswith("draining main/s1")),
        ("enable server main/s1", lambda r: r.startswith("enabled main/s1")),
        ("set weight main/s1 W", lambda r: r.startswith("weight of main/s1:")),
        ("disable server echo/e2", lambda r: r.startswith("disabled echo/e2")),
        ("enable server echo/e2", lambda r: r.startswith("enabled echo/e2")),
    ]
    while not stop.wait(rng.uniform(*ADMIN_EVERY)):
        cmd, ok = rng.choice(cmds)
        if "W" in cmd:
            cmd = cmd.replace("W", str(rng.randint(0, 4)))
        check(cmd, ok)
    # leave the steered servers in service
    check("enable server main/s1", lambda r: r.startswith("enabled main/s1"))
    check("enable server echo/e2", lambda r: r.startswith("enabled echo/e2"))


class Reloader:
    """Reloads every few seconds, alternating SIGHUP and the admin `reload`,
    through the config cycle; every BROKEN_EVERY-th attempt a broken file."""

    def __init__(self, env, sluice, variant="A"):
        self.env = env
        self.s = sluice
        self.current = variant            # the config the running generation came from
        self.attempts = 0
        self.generation = int(info(env)["generation"])
        self.draining_since = None

    def next_variant(self):
        return CYCLE[(CYCLE.index(self.current) + 1) % len(CYCLE)]

    def _counts(self):
        i = info(self.env)
        return int(i["reloads_ok"]) + int(i["reloads_failed"]), i

    def reload(self, text, method):
        """Write text, reload; returns (ok, result line, shrank-interval)."""
        ct.write_config(self.s.cfg, text)
        t0w = time.time()
        if method == "admin":
            reply = ask(self.env, "reload", timeout=30.0)
            # the verdict, then the changes (a warning may come before it)
            ok = any(l.startswith("reload ok") for l in reply.splitlines())
            return ok, reply, (t0w, time.time())
        n0, _ = self._counts()
        self.s.signal(signal.SIGHUP)
        i = st.wait_for(lambda: (lambda c: c[1] if c[0] > n0 else None)(self._counts()),
                        30.0, "the SIGHUP reload to be counted in show info")
        res = i["last_reload_result"]
        return res.startswith("ok"), res, (t0w, time.time())

    def step(self, rng):
        self.attempts += 1
        method = "admin" if self.attempts % 2 else "sighup"
        if self.attempts % BROKEN_EVERY == 0:
            self.broken(rng, method)
            return
        target = self.next_variant()
        shrinking = VARIANTS[target]["workers"] < VARIANTS[self.current]["workers"]
        ok, res, span = self.reload(self.env.config(target), method)
        if ok:
            self.generation += 1
            want = f"generation {self.generation},"
            if want not in res:
                BOOK.problem(f"reload to {target} by {method}: expected {want} in {res.strip()!r}")
            BOOK.reloads[f"ok ({method})"] += 1
            BOOK.reloads[f"ok to {target}"] += 1
            if shrinking:
                BOOK.shrinks.append(span)
            self.current = target
            self.draining_since = None
        elif "still draining" in res:
            # Growing workers while the worker retired by the previous shrink
            # still has sessions: documented, retried at the next step.
            BOOK.reloads["refused: worker still draining (retried)"] += 1
            now = time.monotonic()
            self.draining_since = self.draining_since or now
            if now - self.draining_since > 60.0:
                BOOK.problem(f"a retired worker has been draining for over 60 s: {res.strip()!r}")
                self.draining_since = now
            ct.write_config(self.s.cfg, self.env.config(self.current))
        else:
            BOOK.reloads["failed unexpectedly"] += 1
            BOOK.problem(f"reload to {target} by {method} failed: {res.strip()[-400:]!r}\n{self.s.tail(10)}")
            ct.write_config(self.s.cfg, self.env.config(self.current))

    def broken(self, rng, method):
        kind = BROKEN[(self.attempts // BROKEN_EVERY) % len(BROKEN)]
        text = self.env.config(self.current, broken=kind)
        before_ok = BOOK.total_ok()
        ok, res, _ = self.reload(text, method)
        ct.write_config(self.s.cfg, self.env.config(self.current))  # the good file back at once
        gen = int(info(self.env)["generation"])
        if ok or gen != self.generation:
            BOOK.reloads["broken file ACCEPTED"] += 1
            BOOK.problem(f"broken config ({kind[0]}) was not refused by {method}: {res.strip()!r}, "
                         f"generation {gen} (expected {self.generation})")
            self.generation = gen
            return
        if method == "admin":
            lines = res.strip().splitlines()
            if not (lines and lines[-1].startswith("reload failed")
                    and any(l.startswith(f"{self.s.cfg}:") for l in lines)):
                BOOK.problem(f"refused reload ({kind[0]}): reply lacks 'FILE:LINE:' errors or "
                             f"the 'reload failed' line: {res!r}")
        BOOK.reloads[f"refused as intended ({method})"] += 1
        # traffic must go on right after a refused reload
        time.sleep(1.0)
        BOOK.broken_progress.append(BOOK.total_ok() - before_ok)


def reload_loop(reloader, stop, rng):
    while not stop.wait(rng.uniform(*RELOAD_EVERY)):
        try:
            reloader.step(rng)
        except Exception as e:  # noqa: BLE001
            BOOK.problem(f"reload step: {e!r}\n{traceback.format_exc(limit=3)}")


def fault_loop(env, backends, stop, rng, first_after):
    """Kill main/s2 (close its listener and every connection), check that
    health checks take it down, restart it on the same port, check it
    comes back up."""
    s2 = backends.main["s2"]
    wait = first_after
    while not stop.wait(wait):
        wait = rng.uniform(*KILL_EVERY)
        with s2.cond:
            live = len(s2._conns)  # sessions sluice has on it (health checks come and go)
        k = {"t0w": time.time(), "t0m": time.monotonic(), "live": live}
        # A sharp kill: shutdown() stops the listening socket at once and
        # resets what is queued on it (PortServer.stop() alone closes the fd
        # while its accept thread may still poll it for up to 50 ms).
        s2._stop.set()
        try:
            s2.lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        k["t_sharp"] = time.time()
        s2.stop()
        k["t1w"], k["t1m"] = time.time(), time.monotonic()
        BOOK.kills.append(k)
        BOOK.faults["backend kills"] += 1
        down_for = rng.uniform(*KILL_DOWN_FOR)
        try:
            st.wait_for(lambda: backend_state(env, "main", "s2") == "down", max(down_for, 5.0 * st.SLOW),
                        "main/s2 to be marked down", interval=0.1)
            BOOK.faults["marked down"] += 1
        except AssertionError as e:
            BOOK.problem(f"killed backend main/s2 not marked down: {e}")
        left = down_for - (time.monotonic() - k["t1m"])
        if left > 0:
            stop.wait(left)  # stays dead a while (cut short by the end of the phase)
        s2.start()
        BOOK.faults["restarts"] += 1
        try:
            st.wait_for(lambda: backend_state(env, "main", "s2") == "up", 10.0 * st.SLOW,
                        "main/s2 to come back up", interval=0.1)
            BOOK.faults["back up"] += 1
        except AssertionError as e:
            BOOK.problem(f"restarted backend main/s2 did not come back up: {e}")


# ---------------------------------------------------------------------------
# phases


class Mix:
    """Every load, fault and control thread of one phase."""

    def __init__(self, env, backends, sluice, reloader, rng, first_kill):
        self.stop_ev = threading.Event()
        self.threads = []
        seeds = [rng.getrandbits(64) for _ in range(16)]
        mk = iter(seeds)

        def add(name, fn, *args):
            r = random.Random(next(mk))
            self.threads.append(threading.Thread(target=self._guard, args=(name, fn) + args + (self.stop_ev, r),
                                                 name=name, daemon=True))
        for i in range(N_SINKSOURCE):
            add(f"sinksource-{i}", sinksource_loop, env)
        for i in range(N_BACKPRESSURE):
            add(f"backpressure-{i}", backpressure_loop, env)
        for i in range(N_ECHO):
            add(f"echo-{i}", echo_loop, env)
        add("idle", idle_loop, env)
        add("rst", rst_loop, env)
        add("admin", admin_loop, env)
        add("reload", reload_loop, reloader)
        r = random.Random(next(mk))
        self.threads.append(threading.Thread(
            target=self._guard, args=("fault", fault_loop, env, backends, self.stop_ev, r, first_kill),
            name="fault", daemon=True))

    @staticmethod
    def _guard(name, fn, *args):
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001
            BOOK.problem(f"thread {name} died: {e!r}\n{traceback.format_exc(limit=5)}")

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self, timeout):
        self.stop_ev.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in self.threads if t.is_alive()]
        if stuck:
            BOOK.problem(f"threads still running {timeout:.0f}s after stop: {stuck}")


def run_phase(name, seconds, env, backends, sluice, reloader, rng):
    first_kill = min(10.0, seconds / 3)
    mix = Mix(env, backends, sluice, reloader, rng, first_kill)
    log(f"{name}: {seconds:.0f} s of mixed traffic, faults and reloads")
    t_end = time.monotonic() + seconds
    mix.start()
    try:
        return _watch_phase(name, seconds, t_end, mix, sluice)
    except BaseException:
        # aborted (SIGTERM): what happens from now on is not the soak's result
        with BOOK.lock:
            BOOK.frozen = True
        mix.stop_ev.set()
        raise


def _watch_phase(name, seconds, t_end, mix, sluice):
    next_report = time.monotonic() + 30
    next_sample = time.monotonic() + 10
    rss_peak = 0
    while time.monotonic() < t_end:
        time.sleep(0.5)
        if not sluice.alive():
            BOOK.problem(f"sluice exited during the {name} (rc {sluice.proc.returncode})\n{sluice.tail()}")
            break
        try:
            rss = sluice.rss_kib()
        except (OSError, AssertionError):
            rss = 0
        rss_peak = max(rss_peak, rss)
        if time.monotonic() >= next_sample:
            next_sample += 10
            BOOK.rss_timeline.append((name, rss))
        if time.monotonic() >= next_report:
            next_report += 30
            with BOOK.lock:
                ok = dict(BOOK.ok)
                nf = len(BOOK.failures)
            log(f"{name}: {int(seconds - (t_end - time.monotonic()))} s, ok {ok}, failed/cut {nf}, "
                f"RSS {sluice.rss_kib() >> 10} MiB")
    log(f"{name}: stopping the load")
    mix.stop(timeout=TRANSFER_TIMEOUT + 30)
    return rss_peak


def quiesce(label, env, backends, sluice, reloader):
    """Back to config A with every server in service and no session left;
    returns the measurements (fds, threads, RSS, counters)."""
    if not sluice.alive():
        raise Abort(f"sluice is not running at the {label}\n{sluice.tail()}")
    s2 = backends.main["s2"]
    if s2._thread is None:
        s2.start()
    for cmd in ("enable server main/s1", "enable server echo/e2"):
        r = ask(env, cmd)
        if not r.startswith("enabled"):
            BOOK.problem(f"{label}: {cmd!r}: {r!r}")
    # the baseline config (A: 2 workers, no s3); a growth may be refused
    # while a retired worker still has sessions: retry (bounded)
    deadline = time.monotonic() + 60.0 * st.SLOW
    while True:
        ct.write_config(sluice.cfg, env.config("A"))
        r = ask(env, "reload", timeout=30.0)
        if any(l.startswith("reload ok") for l in r.splitlines()):
            reloader.generation += 1
            reloader.current = "A"
            BOOK.reloads["ok (admin)"] += 1
            break
        if "still draining" not in r or time.monotonic() > deadline:
            raise Abort(f"{label}: reload to the baseline config failed: {r!r}\n{sluice.tail()}")
        time.sleep(0.5)
    # no session left
    try:
        st.wait_for(lambda: info(env)["sessions_active"] == "0", 60.0 * st.SLOW,
                    lambda: f"show info sessions_active 0 (now {info(env)['sessions_active']})", interval=0.2)
    except AssertionError as e:
        BOOK.problem(f"{label}: {e}\n{ask(env, 'show sessions 20')}")
    try:
        st.wait_for(lambda: backend_state(env, "main", "s2") == "up", 10.0 * st.SLOW, "main/s2 up")
    except AssertionError as e:
        BOOK.problem(f"{label}: {e}")
    sessions = ask(env, "show sessions").strip().splitlines()[-1]
    if sessions != "0 sessions":
        BOOK.problem(f"{label}: show sessions ends with {sessions!r}, expected '0 sessions'")
    js = json.loads(ask(env, "show stats json"))
    gauges = {f"listener {x['name']}": x["active"] for x in js["listeners"]}
    gauges.update({f"server {x['pool']}/{x['name']}": x["active"] for x in js["servers"]})
    nonzero = {k: v for k, v in gauges.items() if v != 0}
    if nonzero:
        BOOK.problem(f"{label}: active-session gauges not back to 0: {nonzero}")
    # the retired worker (if any) has exited: thread count stable
    threads = _settle(lambda: len(os.listdir(f"/proc/{sluice.pid}/task")), 10.0)
    fds = _settle(lambda: _min_sample(sluice.nfds), 10.0)
    time.sleep(1.0)
    rss = sluice.rss_kib()
    fl = fd_list(sluice.pid)
    pipes = collections.Counter(t.split()[0] for t in fl.values() if t.startswith("pipe:"))
    i = info(env)
    m = {"fds": fds, "threads": threads, "rss_kib": rss, "info": i, "stats": js, "fd_list": fl,
         "pipe_fds": sum(pipes.values()), "odd_pipes": sorted(p for p, n in pipes.items() if n != 2),
         "workers": int(i["workers"])}
    log(f"{label}: fds {fds} ({m['pipe_fds']} of them cached splice pipes), threads {threads}, RSS {rss} KiB, "
        f"sessions_total {m['info']['sessions_total']}, generation {m['info']['generation']}")
    return m


def fd_list(pid):
    """{fd: what} for every open fd, sockets described by ss where possible."""
    sockets = {}
    for args in (["-tanepH"], ["-xanepH"]):
        try:
            out = subprocess.run(["ss"] + args, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        for line in out.splitlines():
            m = re.search(r"\bino:(\d+)", line)
            if m and f"pid={pid}," in line:
                sockets[m.group(1)] = " ".join(line.split()[:6])
    out = {}
    d = f"/proc/{pid}/fd"
    for fd in os.listdir(d):
        try:
            t = os.readlink(f"{d}/{fd}")
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", t)
        out[int(fd)] = f"{t} {sockets.get(m.group(1), '')}".strip() if m else t
    return out


def _fd_kind(t):
    if t.startswith("socket:"):
        f = t.split()
        return "socket " + (f[1] if len(f) > 1 else "?")
    return t.split(":")[0] if ":" in t else ("file" if t.startswith("/") else t)


def _min_sample(fn, n=20, every=0.05):
    """Minimum over n samples: health-check sockets live for a millisecond
    or so every 250 ms per server; the minimum is the steady count."""
    best = None
    for _ in range(n):
        v = fn()
        best = v if best is None else min(best, v)
        time.sleep(every)
    return best


def _settle(fn, timeout):
    """Sample until two consecutive values agree (bounded)."""
    deadline = time.monotonic() + timeout
    prev = fn()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        cur = fn()
        if cur == prev:
            return cur
        prev = cur
    return prev


# ---------------------------------------------------------------------------
# after the run: sluice's own log, then attribute every failure


def unexpected_log_lines(text, cfg_path):
    """[warn]/[error] lines of sluice's log that the soak did not cause on
    purpose: config errors of the broken files, the refused reloads, main/s2
    going DOWN and UP around its kills."""
    ok = [
        re.compile(r"\[error\] " + re.escape(str(cfg_path)) + r":\d+: "),
        re.compile(r"\[error\] reload failed: \d+ errors? in the config file; still running generation \d+$"),
        re.compile(r"\[error\] reload failed: worker \d+ is still draining after an earlier reload; "
                   r"still running generation \d+$"),
        re.compile(r"\[warn\] main/s2 (DOWN|UP) \("),
    ]
    bad = []
    for line in text.splitlines():
        if "[warn]" not in line and "[error]" not in line:
            continue
        if not any(r.search(line) for r in ok):
            bad.append(line)
    return bad


TS = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z")


def access_entries(path, sums=None):
    """client port -> [entry] with start/end as epoch seconds. sums (a dict)
    receives per listener and per server: sessions, up and down bytes."""
    by_port = collections.defaultdict(list)
    n = 0
    reasons = collections.Counter()
    if sums is None:
        sums = {}
    with open(path, errors="replace") as f:
        for line in f:
            m = st.ACCESS_RE.match(line.rstrip("\n"))
            if not m:
                continue
            e = m.groupdict()
            t = TS.match(e["ts"])
            end = calendar.timegm(tuple(int(x) for x in t.groups()[:6]) + (0, 0, 0)) + int(t.group(7)) / 1000
            e["end"] = end
            e["start"] = end - int(e["duration_ms"]) / 1000
            by_port[st.client_port(e)].append(e)
            reasons[e["reason"]] += 1
            n += 1
            up, down = int(e["up"]), int(e["down"])
            c = sums.setdefault(("listener", e["listener"]), collections.Counter())
            c["accepted"] += 1
            c["bytes_in"] += up
            c["bytes_out"] += down
            c["no_backend"] += e["reason"] == "no_backend"
            if e["reason"] not in ("connect_failed", "no_backend"):
                pool = "main" if e["listener"] == "main" else "echo"
                c = sums.setdefault(("server", f"{pool}/{e['backend']}"), collections.Counter())
                c["sessions"] += 1
                c["bytes_out"] += up      # to the server
                c["bytes_in"] += down     # from the server
    return by_port, n, reasons


def counter_mismatches(js, sums, reasons):
    """sluice's counters (show stats json at the end) against the access log.
    Every session writes one line with the same byte counts the counters
    add up, so they must agree exactly; main/s3 is left out (removed and
    re-added by reloads, its counters start again from zero each time)."""
    bad = []
    for x in js["listeners"]:
        want = sums.get(("listener", x["name"]), collections.Counter())
        for k in ("accepted", "no_backend", "bytes_in", "bytes_out"):
            if x[k] != want[k]:
                bad.append(f"listener {x['name']} {k}: stats {x[k]}, access log {want[k]}")
    for x in js["servers"]:
        key = f"{x['pool']}/{x['name']}"
        if key == "main/s3":
            continue
        want = sums.get(("server", key), collections.Counter())
        for k in ("sessions", "bytes_in", "bytes_out"):
            if x[k] != want[k]:
                bad.append(f"server {key} {k}: stats {x[k]}, access log {want[k]}")
    ends = js["process"]["end_reasons"]
    for r in set(ends) | set(reasons):
        if ends.get(r, 0) != reasons.get(r, 0):
            bad.append(f"end reason {r}: stats {ends.get(r, 0)}, access log {reasons.get(r, 0)}")
    return bad


def classify(failures, by_port, env, migrate_req):
    for f in failures:
        listener = None if f.listener == "main/echo" else f.listener
        cands = []
        if f.port is not None:
            for e in by_port.get(f.port, ()):
                if listener and e["listener"] != listener:
                    continue
                if e["end"] >= f.t0w - 1.0 and e["start"] <= f.t1w + 1.0:
                    cands.append(e)
        if cands:
            f.entry = min(cands, key=lambda e: abs(e["start"] - f.t0w))
        if f.cat != "cut":
            f.cls = "unexpected"
            f.why = "(WRONG BYTES)" if f.cat == "corrupt" else ""
            continue
        if cands:
            e = f.entry
            if e["listener"] == "main" and e["backend"] == "s2":
                for k in BOOK.kills:
                    # the session existed when the backend died, and ended after
                    if e["start"] <= k["t_sharp"] + 0.05 and e["end"] >= k["t0w"] - 0.05:
                        f.cls = "expected-kill"
                        f.why = "(cut by the kill of main/s2)"
                        k.setdefault("cut", 0)
                        k["cut"] += 1
                        break
            if f.cls is None:
                f.cls = "unexpected"
            continue
        # Never accepted by sluice. Documented: a connection queued on a
        # retiring worker's socket between its last accept and close is
        # reset unless net.ipv4.tcp_migrate_req = 1.
        if f.port is not None and not migrate_req and any(
                a - 0.5 <= f.t0w <= b + 3.0 for a, b in BOOK.shrinks):
            f.cls = "expected-retire"
            f.why = "(never accepted: reset on a retiring worker's listen queue, tcp_migrate_req=0)"
        else:
            f.cls = "unexpected"


# ---------------------------------------------------------------------------
# main


def fmt_bytes(n):
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n} B"


def main():
    ap = argparse.ArgumentParser(description="sluice soak test (see docs/soak.md)")
    ap.add_argument("--minutes", type=float, default=10.0, help="soak duration after the warm-up (default 10)")
    ap.add_argument("--warmup", type=float, default=None,
                    help="warm-up seconds before the baseline (default 60)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory even on success")
    args = ap.parse_args()
    if not args.minutes > 0:
        ap.error("--minutes must be > 0")
    seconds = args.minutes * 60.0
    # Under ASan, RSS climbs for about the first minute of load (allocator
    # caches, quarantine) and then stays flat: the baseline is taken after it.
    warmup = args.warmup if args.warmup is not None else 60.0
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    rng = random.Random(seed)

    def on_term(signum, _frame):
        # scripts/soak's timeout signals the whole process group: sluice got
        # it too and stopped listening, so what the clients saw in the last
        # moments is not the soak's result
        with BOOK.lock:
            BOOK.frozen = True
            keep = [f for f in BOOK.failures if f.t1m < time.monotonic() - 2.0]
            BOOK.notes.append(f"aborted by signal {signum}: {len(BOOK.failures) - len(keep)} client "
                              f"failures of the last 2 s (sluice got the signal too) ignored")
            BOOK.failures[:] = keep
        raise Abort(f"received signal {signum} (scripts/soak's timeout?)")
    signal.signal(signal.SIGTERM, on_term)

    binary = st.sluice_bin()
    if not binary.is_file():
        print(f"soak: sluice binary not found at {binary} (set SLUICE_BIN)", file=sys.stderr)
        return 2
    try:
        migrate_req = Path("/proc/sys/net/ipv4/tcp_migrate_req").read_text().strip() == "1"
    except OSError:
        migrate_req = False
    tmp = tempfile.mkdtemp(prefix="sluice-soak-", dir="/tmp")
    log(f"soak: {args.minutes:g} min (+{warmup:.0f} s warm-up), seed {seed}, binary {binary}, "
        f"sanitizer {st.SANITIZER or 'none'}, work dir {tmp}")
    log(f"net.ipv4.tcp_migrate_req = {int(migrate_req)}")
    if not st.SANITIZER:
        BOOK.note("SLUICE_SANITIZER is not set: not a sanitizer build? (scripts/soak uses build-asan)")
    st.blob()

    backends = Backends()
    env = Env(tmp, backends)
    sluice = st.Sluice(tmp, env.config("A"), name="sluice")
    t_start = time.monotonic()
    verdict_fail = []
    base = end = None
    rc = None
    reports = []
    rss_peak = 0
    t_soak = None
    try:
        sluice.start()
        log(f"sluice pid {sluice.pid}, listeners main 127.0.0.1:{env.port_main} (sink/source, health "
            f"checks, kills) and echo 127.0.0.1:{env.port_echo}, admin {env.sock}")
        reloader = Reloader(env, sluice)
        rss_peak = max(rss_peak, run_phase("warm-up", warmup, env, backends, sluice, reloader, rng))
        base = quiesce("baseline", env, backends, sluice, reloader)
        t_soak = time.monotonic()
        rss_peak = max(rss_peak, run_phase("soak", seconds, env, backends, sluice, reloader, rng))
        soak_secs = min(seconds, time.monotonic() - t_soak)
        end = quiesce("end", env, backends, sluice, reloader)
    except Abort as e:
        verdict_fail.append(f"aborted after {time.monotonic() - t_start:.0f} s: {e}")
        soak_secs = time.monotonic() - t_soak if t_soak else 0.0
    except Exception as e:  # noqa: BLE001
        verdict_fail.append(f"soak driver error: {e!r}\n{traceback.format_exc()}")
        soak_secs = time.monotonic() - t_soak if t_soak else 0.0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if sluice.proc is not None:
            if sluice.alive():
                try:
                    os.kill(sluice.pid, signal.SIGTERM)
                    rc = sluice.proc.wait(60)
                except subprocess.TimeoutExpired:
                    sluice.kill()
                    verdict_fail.append("sluice did not exit within 60 s of SIGTERM (killed)")
                    rc = sluice.proc.returncode
            else:
                rc = sluice.proc.returncode
            reports = sluice.sanitizer_reports()
        backends.close()

    # ---- evaluate
    by_port, n_access, reasons = ({}, 0, collections.Counter())
    sums = {}
    if env.access.exists():
        by_port, n_access, reasons = access_entries(env.access, sums)
    classify(BOOK.failures, by_port, env, migrate_req)
    bad_log = [] if BOOK.frozen else unexpected_log_lines(sluice.log(), sluice.cfg)

    kinds = ("sinksource", "backpressure", "echo", "idle", "rst")
    per_kind = {k: collections.Counter() for k in kinds}
    for f in BOOK.failures:
        per_kind.setdefault(f.kind, collections.Counter())[f.cls] += 1
    for k in kinds:
        per_kind[k]["ok"] = BOOK.ok[k]
    unexpected = [f for f in BOOK.failures if f.cls == "unexpected"]
    corrupt = [f for f in BOOK.failures if f.cat == "corrupt"]
    expected_retire = [f for f in BOOK.failures if f.cls == "expected-retire"]

    if rc != 0:
        verdict_fail.append(f"sluice exit status {rc} (expected 0)")
    if reports:
        verdict_fail.append(f"{len(reports)} sanitizer report lines in sluice's stderr, first: {reports[0]}")
    if corrupt:
        verdict_fail.append(f"{len(corrupt)} transfers completed with WRONG BYTES")
    if bad_log:
        verdict_fail.append(f"{len(bad_log)} unexpected [warn]/[error] lines in sluice's log, first: {bad_log[0]}")
        for line in bad_log[:10]:
            BOOK.note(f"sluice log: {line}")
    if unexpected:
        verdict_fail.append(f"{len(unexpected)} unexpected client failures")
    # expected cuts are bounded by the faults that caused them: per kill, at
    # most one per client thread that talks to the killed backend's pool
    bound = N_SINKSOURCE + N_BACKPRESSURE + 1
    for i, k in enumerate(BOOK.kills):
        if k.get("cut", 0) > bound:
            verdict_fail.append(f"kill {i + 1} cut {k['cut']} transfers, more than the {bound} "
                                f"client threads on that pool")
    # retire resets: at most a few per shrink
    if len(expected_retire) > 2 * max(1, len(BOOK.shrinks)):
        verdict_fail.append(f"{len(expected_retire)} connections reset on retiring workers in "
                            f"{len(BOOK.shrinks)} shrinks (bound 2 per shrink)")
    for p in BOOK.problems:
        verdict_fail.append(p.splitlines()[0][:300])
    if BOOK.broken_progress and min(BOOK.broken_progress) <= 0:
        verdict_fail.append("no client operation completed in the second after a refused reload")
    # the soak did what it claims
    for k in kinds:
        if BOOK.ok[k] == 0:
            verdict_fail.append(f"no {k} operation completed")
    for what in ("ok (admin)", "ok (sighup)", "refused as intended (admin)", "refused as intended (sighup)"):
        if BOOK.reloads[what] == 0 and not any("aborted" in v for v in verdict_fail):
            verdict_fail.append(f"no reload '{what}' happened (run too short?)")
    if BOOK.faults["backend kills"] == 0 and not any("aborted" in v for v in verdict_fail):
        verdict_fail.append("no backend was killed (run too short?)")

    rss_tol = None
    if base and end:
        if end["fds"] - end["pipe_fds"] != base["fds"] - base["pipe_fds"]:
            verdict_fail.append(f"open fds other than cached pipes: {base['fds'] - base['pipe_fds']} at the "
                                f"baseline, {end['fds'] - end['pipe_fds']} at the end")
            b = collections.Counter(_fd_kind(t) for t in base["fd_list"].values())
            e = collections.Counter(_fd_kind(t) for t in end["fd_list"].values())
            BOOK.note(f"fds by kind: baseline {dict(b)}, end {dict(e)}")
            for fd, t in sorted(end["fd_list"].items()):
                BOOK.note(f"end fd {fd}: {t}")
        for label, m in (("baseline", base), ("end", end)):
            if m["pipe_fds"] > 2 * PIPE_CACHE * m["workers"]:
                verdict_fail.append(f"{m['pipe_fds']} pipe fds with no session at the {label}: more than "
                                    f"{PIPE_CACHE} cached pipes per worker")
            if m["odd_pipes"]:
                verdict_fail.append(f"pipes with only one end open in sluice at the {label}: {m['odd_pipes']}")
        if end["threads"] != base["threads"]:
            verdict_fail.append(f"threads {base['threads']} at the baseline, {end['threads']} at the end")
        rss_tol = max(RSS_TOL_ABS_KIB, int(base["rss_kib"] * RSS_TOL_FRAC))
        if end["rss_kib"] - base["rss_kib"] > rss_tol:
            verdict_fail.append(f"RSS grew {end['rss_kib'] - base['rss_kib']} KiB "
                                f"({base['rss_kib']} -> {end['rss_kib']} KiB), tolerance {rss_tol} KiB")
        total = int(end["info"]["sessions_total"])
        # connected, then reset without sluice ever accepting (a retiring
        # worker's queue); and connects that failed although sluice had
        # accepted (reset before the client thread saw the handshake)
        never = len([f for f in BOOK.failures if not f.at_connect and f.entry is None])
        late = len([f for f in BOOK.failures if f.at_connect and f.entry is not None])
        if n_access != total:
            verdict_fail.append(f"access log has {n_access} lines, show info counts {total} sessions")
        if BOOK.opened - never + late != total:
            verdict_fail.append(f"clients connected {BOOK.opened} times ({never} never accepted, {late} "
                                f"accepted although connect() failed), sluice counted {total} sessions")
        cm = counter_mismatches(end["stats"], sums, reasons)
        if cm:
            verdict_fail.append(f"{len(cm)} counters disagree with the access log, first: {cm[0]}")
            for c in cm[:20]:
                BOOK.note(f"counter: {c}")
        else:
            BOOK.note("counters (listeners, servers but main/s3, end reasons) agree with the access log")

    # ---- summary
    tot_bytes = sum(BOOK.bytes.values())
    print()
    print("==== soak summary ====")
    print(f"duration: {soak_secs:.1f} s soak after a {warmup:.0f} s warm-up "
          f"({time.monotonic() - t_start:.1f} s in all); seed {seed}; binary {binary}")
    print(f"verified: {BOOK.ok['sinksource']} sink/source and {BOOK.ok['backpressure']} backpressure "
          f"transfers, {BOOK.ok['echo']} echo and {BOOK.ok['idle']} idle sessions; "
          f"{fmt_bytes(tot_bytes)} checked byte for byte "
          f"({', '.join(f'{k} {fmt_bytes(v)}' for k, v in BOOK.bytes.items() if v)})")
    print("connections by kind (ok / cut by a kill / reset on a retiring worker / FAILED):")
    for k in kinds:
        c = per_kind[k]
        print(f"  {k:13s} {c['ok']:7d} / {c['expected-kill']:3d} / {c['expected-retire']:3d} / "
              f"{c['unexpected']:3d}" + ("   (deliberate RSTs: ok = aborted as planned)" if k == "rst" else ""))
    print(f"client connections: {BOOK.opened}; sluice sessions: "
          f"{end['info']['sessions_total'] if end else '?'}; access-log lines {n_access}; "
          f"end reasons {dict(reasons)}")
    print("reloads: " + ", ".join(f"{k} {v}" for k, v in sorted(BOOK.reloads.items())))
    print(f"  worker shrinks 2->1 {len(BOOK.shrinks)}; broken files refused with traffic going on: "
          f"{len(BOOK.broken_progress)} (ops completed in the next second: min "
          f"{min(BOOK.broken_progress) if BOOK.broken_progress else '-'})")
    print("faults: " + ", ".join(f"{k} {v}" for k, v in BOOK.faults.items())
          + f"; connections open on s2 at each kill {[k['live'] for k in BOOK.kills]}"
          + f", cut transfers per kill {[k.get('cut', 0) for k in BOOK.kills]}")
    print("admin commands: " + ", ".join(f"{k} {v}" for k, v in sorted(BOOK.admin.items())))
    bends = {n: dict(srv.state.get("ended", {})) for n, srv in backends.main.items()}
    print(f"backend-side ends (health checks, resets): {bends}")
    if base and end:
        print(f"RSS: baseline {base['rss_kib']} KiB, end {end['rss_kib']} KiB "
              f"({end['rss_kib'] - base['rss_kib']:+d} KiB; tolerance +{rss_tol} KiB = "
              f"max({RSS_TOL_ABS_KIB >> 10} MiB, {int(RSS_TOL_FRAC * 100)}%)"
              f"{' under a sanitizer' if st.SANITIZER else ' without sanitizer'}); peak under load {rss_peak} KiB")
        tl = collections.OrderedDict()
        for ph, kib in BOOK.rss_timeline:
            tl.setdefault(ph, []).append(f"{kib / 1024:.1f}")
        print("RSS under load every 10 s (MiB): " + "; ".join(f"{ph} {' '.join(v)}" for ph, v in tl.items()))
        print(f"fds: baseline {base['fds']}, end {end['fds']}; without the splice pipe cache "
              f"{base['fds'] - base['pipe_fds']} and {end['fds'] - end['pipe_fds']} (must be equal); cached "
              f"pipes {base['pipe_fds'] // 2} and {end['pipe_fds'] // 2} (at most {PIPE_CACHE} per worker); "
              f"threads: baseline {base['threads']}, end {end['threads']}")
        print(f"sessions at the end: {end['info']['sessions_active']} active; generation "
              f"{end['info']['generation']}, reloads_ok {end['info']['reloads_ok']}, "
              f"reloads_failed {end['info']['reloads_failed']}")
    print(f"sluice exit status {rc}; sanitizer report lines {len(reports)}")
    for n in BOOK.notes:
        print(f"note: {n}")
    shown = sorted(BOOK.failures, key=lambda f: (f.cls != "unexpected", f.t0m))
    if shown:
        print(f"failures ({len(shown)}, up to 25 shown, unexpected first):")
        for f in shown[:25]:
            print(f"  [{f.cls}] {f.describe()}")
    if verdict_fail:
        print("FAILED checks:")
        for v in verdict_fail[:40]:
            print(f"  - {v}")
        for line in reports[:20]:
            print(f"  sanitizer: {line}")
        print(f"logs kept in {tmp} (sluice.stderr, access.log, sluice.ini)")
        print(f"soak verdict: FAIL ({len(verdict_fail)} failed checks)")
        return 1
    if args.keep:
        print(f"logs kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"soak verdict: PASS ({soak_secs / 60:.1f} min, {sum(BOOK.ok.values())} verified operations, "
          f"{fmt_bytes(tot_bytes)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
