"""Helpers for the sluice integration tests.

Everything here talks to the real `sluice` binary over real sockets on
127.0.0.1.  Backends run as threads in the test process.  Every wait is
bounded by a deadline and fails with a message that says what it waited for
(and, for sluice, the tail of its stderr).

Environment:
  SLUICE_BIN        path of the binary (default <repo>/build/sluice)
  SLUICE_SANITIZER  "asan" or "tsan" when the binary is a sanitizer build: time
                    bounds are stretched (x3) and heavy data sizes are scaled
                    down ("none" or unset: a normal build).
  SLUICE_TEST_SLOW  a float multiplier for every time bound, for a loaded or
                    slow machine (default 1; multiplied into the sanitizer's 3).

SLOW is the one scale factor: every bound a test waits for (a deadline, a
socket timeout, the tolerance above an expected duration) is written as
`seconds * st.SLOW`, or goes through a helper here whose default already is.
What is not scaled: the configured timeouts sluice itself is given, the lower
end of an expected duration, and windows that measure something over a fixed
time (CPU use over 2 s, "nothing happens for 1 s"), each commented as such.
"""

import errno
import hashlib
import os
import random
import re
import resource
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SANITIZER = os.environ.get("SLUICE_SANITIZER", "").strip().lower()
if SANITIZER in ("none", "no", "0", "off", "false"):  # scripts/test passes "none"
    SANITIZER = ""


def _slow_env():
    raw = os.environ.get("SLUICE_TEST_SLOW", "").strip()
    if not raw:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        raise RuntimeError(f"SLUICE_TEST_SLOW={raw!r} is not a number") from None
    if not value > 0:
        raise RuntimeError(f"SLUICE_TEST_SLOW={raw!r} must be above 0")
    return value


# The one time multiplier for every bound in the integration tests (see the
# module docstring): 3 under a sanitizer, times SLUICE_TEST_SLOW.
SLOW = (3.0 if SANITIZER else 1.0) * _slow_env()

LOCALHOST = "127.0.0.1"


def sluice_bin():
    return Path(os.environ.get("SLUICE_BIN") or REPO / "build" / "sluice")


# --------------------------------------------------------------------------
# waiting


def _msg(what):
    return what() if callable(what) else what


def wait_for(cond, timeout, what, interval=0.02):
    """Poll cond() until it returns a truthy value (returned) or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {_msg(what)}")
        time.sleep(interval)


# --------------------------------------------------------------------------
# ports

_port_lock = threading.Lock()
_ports_handed_out = set()


def _ephemeral_range():
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def free_port():
    """A TCP port on 127.0.0.1 that nobody listens on right now.

    Picked below the ephemeral range so that the many client connections of
    other tests cannot grab it as a source port between now and sluice's bind.
    """
    lo, _ = _ephemeral_range()
    top = max(lo - 1, 12000)
    rng = random.Random()
    with _port_lock:
        for _ in range(500):
            port = rng.randint(10000, top)
            if port in _ports_handed_out:
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((LOCALHOST, port))
            except OSError:
                continue
            finally:
                s.close()
            _ports_handed_out.add(port)
            return port
    raise AssertionError("could not find a free TCP port in 500 tries")


def port_is_free(port, host=LOCALHOST):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def ss_listeners(port):
    """Listening TCP sockets on `port` as [(recv_q, send_q, local_addr)]."""
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True,
                         text=True, timeout=10 * SLOW, check=True).stdout
    rows = []
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 4 and f[0] == "LISTEN":
            rows.append((int(f[1]), int(f[2]), f[3]))
        elif len(f) >= 3 and f[0].isdigit():  # some ss versions omit State with -l
            rows.append((int(f[0]), int(f[1]), f[2]))
    return rows


# --------------------------------------------------------------------------
# client side


def connect(port, host=LOCALHOST, src=None, timeout=5.0 * SLOW):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        if src is not None:
            s.bind((src, 0))
        s.connect((host, port))
    except BaseException:
        s.close()
        raise
    return s


def recv_exact(sock, n, timeout=5.0 * SLOW):
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out after {timeout}s: got {len(buf)} of {n} bytes")
        sock.settimeout(left)
        try:
            d = sock.recv(n - len(buf))
        except socket.timeout:
            continue
        if not d:
            raise AssertionError(f"connection closed after {len(buf)} of {n} bytes: {bytes(buf[:80])!r}")
        buf += d
    return bytes(buf)


def recv_line(sock, timeout=5.0 * SLOW, limit=256):
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out after {timeout}s waiting for a line; got {bytes(buf)!r}")
        if len(buf) >= limit:
            raise AssertionError(f"no newline in the first {limit} bytes: {bytes(buf)!r}")
        sock.settimeout(left)
        try:
            d = sock.recv(1)
        except socket.timeout:
            continue
        if not d:
            raise AssertionError(f"connection closed while waiting for a line; got {bytes(buf)!r}")
        buf += d
    return bytes(buf[:-1])


def recv_until_close(sock, timeout=5.0 * SLOW, limit=64 << 20):
    """Read until EOF or reset. Returns (data, how) with how in {'eof','reset'}."""
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"connection still open after {timeout}s ({len(buf)} bytes read)")
        sock.settimeout(left)
        try:
            d = sock.recv(1 << 16)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return bytes(buf), "reset"
        if not d:
            return bytes(buf), "eof"
        buf += d
        if len(buf) > limit:
            raise AssertionError(f"more than {limit} bytes before close")


def hash_until_eof(sock, timeout=None, bufsize=1 << 20):
    """Read (blocking) to EOF without keeping the bytes: (count, sha256 digest).

    timeout bounds each read (None: the socket's own timeout)."""
    if timeout is not None:
        sock.settimeout(timeout)
    h, n = hashlib.sha256(), 0
    while True:
        d = sock.recv(bufsize)
        if not d:
            return n, h.digest()
        h.update(d)
        n += len(d)


def wait_closed(sock, timeout):
    """Wait until the peer closes (EOF or RST), discarding data.

    Returns (how, seconds)."""
    t0 = time.monotonic()
    _, how = recv_until_close(sock, timeout)
    return how, time.monotonic() - t0


def assert_open(sock, secs):
    """Assert that nothing arrives and the connection is not closed for `secs`."""
    sock.settimeout(secs)
    try:
        d = sock.recv(1)
    except socket.timeout:
        return
    except ConnectionResetError:
        raise AssertionError("connection was reset while it should have stayed open")
    if not d:
        raise AssertionError("connection was closed (EOF) while it should have stayed open")
    raise AssertionError(f"unexpected data {d!r} while waiting")


def roundtrip(sock, data=b"ping\n", timeout=5.0 * SLOW):
    sock.sendall(data)
    got = recv_exact(sock, len(data), timeout)
    assert got == data, f"echo mismatch: sent {data!r}, got {got!r}"


def rst_close(sock):
    """Close with an RST (SO_LINGER on, timeout 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def duplex(sock, chunks, on_data, deadline, shut_wr=True, bufsize=256 << 10):
    """Send the buffers in `chunks` while reading; half-close after sending.

    on_data(memoryview) is called for every piece received.  Returns when all
    is sent and EOF was read.  Raises AssertionError on deadline, or the
    socket error (e.g. ConnectionResetError)."""
    sock.setblocking(False)
    sel = selectors.DefaultSelector()
    pending = [memoryview(c).cast("B") for c in chunks if len(c)]
    buf = bytearray(bufsize)
    view = memoryview(buf)
    sending = True
    eof = False
    if not pending:
        if shut_wr:
            sock.shutdown(socket.SHUT_WR)
        sending = False
    try:
        sel.register(sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if sending else 0))
        while sending or not eof:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"duplex transfer did not finish in time (sending={sending}, eof={eof})")
            for _key, ev in sel.select(min(left, 1.0)):
                if ev & selectors.EVENT_READ and not eof:
                    try:
                        n = sock.recv_into(buf)
                    except (BlockingIOError, InterruptedError):
                        n = -1
                    if n == 0:
                        eof = True
                    elif n > 0:
                        on_data(view[:n])
                if ev & selectors.EVENT_WRITE and sending:
                    while pending:
                        try:
                            n = sock.send(pending[0][:1 << 20])
                        except (BlockingIOError, InterruptedError):
                            break
                        pending[0] = pending[0][n:]
                        if not len(pending[0]):
                            pending.pop(0)
                    if not pending:
                        sending = False
                        if shut_wr:
                            sock.shutdown(socket.SHUT_WR)
                if eof or not sending:
                    events = (0 if eof else selectors.EVENT_READ) | (selectors.EVENT_WRITE if sending else 0)
                    if events:
                        sel.modify(sock, events)
    finally:
        sel.close()


# --------------------------------------------------------------------------
# backends


class Server:
    """A TCP server on 127.0.0.1 (or ::1) running handler(conn, server) in a
    thread per connection.  Exceptions from handlers are kept in .errors."""

    def __init__(self, handler, name=None, host=LOCALHOST, backlog=1024, conn_timeout=60.0 * SLOW):
        self.handler = handler
        self.name = name
        self.host = host
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.lsock = socket.socket(fam, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, 0))
        self.lsock.listen(backlog)
        self.port = self.lsock.getsockname()[1]
        self.conn_timeout = conn_timeout
        self.accepted = 0
        self.active = 0
        self.errors = []
        self.state = {}  # free for handlers
        self.events = []  # (what, monotonic time) appended by handlers
        self.cond = threading.Condition()
        self._conns = set()
        self._threads = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True,
                                        name=f"srv-{name or self.port}")
        self._thread.start()

    @property
    def addr(self):
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def note(self, what):
        with self.cond:
            self.events.append((what, time.monotonic()))
            self.cond.notify_all()

    def _accept_loop(self):
        self.lsock.settimeout(0.1)
        while not self._stopping.is_set():
            try:
                conn, _peer = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError as e:
                if self._stopping.is_set():
                    break
                self.errors.append(f"accept: {e!r}")
                time.sleep(0.05)
                continue
            conn.settimeout(self.conn_timeout)
            with self.cond:
                self.accepted += 1
                self.active += 1
                self._conns.add(conn)
            t = threading.Thread(target=self._run, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _run(self, conn):
        try:
            self.handler(conn, self)
        except Exception as e:  # recorded, tests decide whether it matters
            if not self._stopping.is_set():
                self.errors.append(repr(e))
        finally:
            try:
                conn.close()
            except OSError:
                pass
            with self.cond:
                self.active -= 1
                self._conns.discard(conn)
                self.cond.notify_all()

    def close(self):
        self._stopping.set()
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.cond:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(2.0 * SLOW)
        deadline = time.monotonic() + 5.0 * SLOW
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))


# handlers -------------------------------------------------------------------


def echo_handler(conn, srv):
    while True:
        d = conn.recv(1 << 16)
        if not d:
            break
        conn.sendall(d)
    conn.shutdown(socket.SHUT_WR)


def named_handler(name):
    line = name.encode() + b"\n"

    def handler(conn, srv):
        conn.sendall(line)
        echo_handler(conn, srv)
    return handler


def watch_handler(conn, srv):
    """Echo, and note how the client side ended: 'eof' or 'reset'."""
    try:
        while True:
            d = conn.recv(1 << 16)
            if not d:
                srv.note("eof")
                return
            conn.sendall(d)
    except (ConnectionResetError, BrokenPipeError):
        srv.note("reset")


# sink/source with sha256.  Client sends struct HDR (up_len, down_len,
# down_off) then up_len bytes and half-closes.  The backend sends
# BLOB[down_off:down_off+down_len] while reading, then after EOF a trailer:
# the byte count it received (8 bytes) and their sha256 (32 bytes).
HDR = struct.Struct("!QQQ")
TRAILER = struct.Struct("!Q32s")

_blob = None
_blob_lock = threading.Lock()
BLOB_SIZE = (8 << 20) + (1 << 20)


def blob():
    """Random bytes shared by clients and backends (9 MiB)."""
    global _blob
    with _blob_lock:
        if _blob is None:
            _blob = os.urandom(BLOB_SIZE)
        return _blob


def sinksource_handler(conn, srv):
    hdr = recv_exact(conn, HDR.size, timeout=30 * SLOW)
    up_len, down_len, down_off = HDR.unpack(hdr)
    data = blob()
    h = hashlib.sha256()
    count = 0

    def got(mv):
        nonlocal count
        count += len(mv)
        h.update(mv)

    deadline = time.monotonic() + srv.state.get("deadline", 300 * SLOW)
    duplex(conn, [memoryview(data)[down_off:down_off + down_len]], got, deadline, shut_wr=False)
    conn.setblocking(True)
    conn.sendall(TRAILER.pack(count, h.digest()))
    conn.shutdown(socket.SHUT_WR)
    srv.note(("done", up_len, count))


def sinksource_client(port, up_len, down_len, rng, timeout=60.0 * SLOW, host=LOCALHOST):
    """Run one sink/source exchange through sluice and check both ways.

    Returns the local port of the client socket."""
    data = blob()
    up_off = rng.randint(0, BLOB_SIZE - up_len)
    down_off = rng.randint(0, BLOB_SIZE - down_len)
    up = memoryview(data)[up_off:up_off + up_len]
    s = connect(port, host=host, timeout=timeout)
    try:
        local = s.getsockname()[1]
        h = hashlib.sha256()
        got = 0
        tail = bytearray()

        def on_data(mv):
            nonlocal got
            if got < down_len:
                take = min(len(mv), down_len - got)
                h.update(mv[:take])
                got += take
                mv = mv[take:]
            tail.extend(mv)
            if len(tail) > TRAILER.size:
                raise AssertionError(f"client {local}: {len(tail)} bytes after the payload, more than the trailer")

        duplex(s, [HDR.pack(up_len, down_len, down_off), up], on_data,
               time.monotonic() + timeout)
    finally:
        s.close()
    assert got == down_len and len(tail) == TRAILER.size, (
        f"client {local}: received {got}+{len(tail)} bytes, expected {down_len}+{TRAILER.size}")
    assert h.digest() == hashlib.sha256(memoryview(data)[down_off:down_off + down_len]).digest(), (
        f"client {local}: downstream sha256 mismatch ({down_len} bytes)")
    count, digest = TRAILER.unpack(tail)
    assert count == up_len, f"client {local}: backend received {count} bytes, client sent {up_len}"
    assert digest == hashlib.sha256(up).digest(), f"client {local}: upstream sha256 mismatch ({up_len} bytes)"
    return local


class ClosedPort:
    """A port that refuses connections: bound (so nobody else takes it) but
    not listening, so a SYN gets an RST."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((LOCALHOST, 0))
        self.port = self.sock.getsockname()[1]
        self.addr = f"{LOCALHOST}:{self.port}"

    def close(self):
        self.sock.close()


_blackhole_verified = False


class BlackHole:
    """A port whose TCP handshake never completes.

    listen(0) lets the kernel queue one connection; we fill the accept queue
    with our own connections and never accept, so further SYNs are dropped and
    connecting clients stay in SYN-SENT until they give up."""

    def __init__(self):
        global _blackhole_verified
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind((LOCALHOST, 0))
        self.lsock.listen(0)
        self.port = self.lsock.getsockname()[1]
        self.addr = f"{LOCALHOST}:{self.port}"
        self.fillers = []
        for _ in range(3):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex((LOCALHOST, self.port))
            self.fillers.append(s)
        # The queue is full once the kernel shows a full Recv-Q on the listener.
        wait_for(lambda: any(r[0] >= 1 for r in ss_listeners(self.port)), 2.0 * SLOW,
                 f"black hole accept queue on port {self.port} to fill")
        if not _blackhole_verified:
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probe.settimeout(0.4)  # a window: the connect must not complete in it
            try:
                probe.connect((LOCALHOST, self.port))
                raise AssertionError(
                    "black hole trick does not work on this kernel: a connect to a listener with a "
                    "full accept queue completed (syncookies?); a network namespace with a drop rule "
                    "would be needed instead")
            except socket.timeout:
                pass
            finally:
                probe.close()
            _blackhole_verified = True

    def close(self):
        for s in self.fillers:
            s.close()
        self.lsock.close()


# --------------------------------------------------------------------------
# relay = uring


_uring_why = {}


def uring_unavailable():
    """None when relay = uring can run here, else why not (for a skip): the
    binary was built without liburing, the kernel is older than 6.0, or
    io_uring is disabled (sysctl kernel.io_uring_disabled)."""
    if "why" in _uring_why:
        return _uring_why["why"]
    why = None
    cfg = make_config(1, ["a 127.0.0.1:1"], relay="uring")
    r = subprocess.run([str(sluice_bin()), "-t", "-c", "/dev/stdin"], input=cfg, text=True,
                       capture_output=True, timeout=30)
    if r.returncode != 0:
        why = "sluice built without io_uring: " + (r.stderr.strip().splitlines() or ["?"])[-1]
    else:
        major, minor = (int(x) for x in re.match(r"(\d+)\.(\d+)", os.uname().release).groups())
        if (major, minor) < (6, 0):
            why = f"kernel {os.uname().release} is older than 6.0 (multishot receive)"
        else:
            try:
                disabled = int(Path("/proc/sys/kernel/io_uring_disabled").read_text())
            except (OSError, ValueError):
                disabled = 0
            if disabled:
                why = f"io_uring disabled (sysctl kernel.io_uring_disabled = {disabled})"
    _uring_why["why"] = why
    return why


# --------------------------------------------------------------------------
# config


def make_config(port, servers, *, balance="roundrobin", workers=1, glob=None,
                pool=None, listener=None, extra="", relay=None):
    """Config text: one listener 'main' on 127.0.0.1:port -> pool 'main'.

    servers: list of 'NAME ADDR [options]' strings.  glob/pool/listener: dicts
    of extra keys (they override the defaults chosen here for tests)."""
    g = {"workers": workers, "log_level": "info", "access_log": "stderr",
         "shutdown_timeout": "2s"}
    if os.geteuid() == 0:
        g["allow_root"] = "yes"  # the tests run as root; test_privilege covers user/group
    g.update(glob or {})
    lines = ["[global]"] + [f"{k} = {v}" for k, v in g.items()]
    lines += ["", "[listener main]", f"bind = 127.0.0.1:{port}", "pool = main"]
    if relay:
        lines.append(f"relay = {relay}")
    lines += [f"{k} = {v}" for k, v in (listener or {}).items()]
    lines += ["", "[pool main]", f"balance = {balance}"]
    lines += [f"server = {s}" for s in servers]
    lines += [f"{k} = {v}" for k, v in (pool or {}).items()]
    return "\n".join(lines) + "\n" + extra


# --------------------------------------------------------------------------
# the sluice process

ACCESS_RE = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) worker=(?P<worker>\d+) "
    r"listener=(?P<listener>\S+) client=(?P<client>\S+) backend=(?P<backend>\S+) "
    r"addr=(?P<addr>\S+) up=(?P<up>\d+) down=(?P<down>\d+) "
    r"duration_ms=(?P<duration_ms>\d+) reason=(?P<reason>\S+)"
    # Fields added later go at the end of the line; the ones this module
    # knows are optional (lines of older builds lack them), unknown ones
    # are skipped.
    r"(?: sni=(?P<sni>\S+))?(?: queued_ms=(?P<queued_ms>\d+))?(?: (?!id=)[a-z_]+=\S*)*"
    r"(?: id=(?P<id>\d+))?(?: [a-z_]+=\S*)*$")

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "WARNING: ThreadSanitizer",
                     "runtime error:", "ERROR: ThreadSanitizer")


def client_port(entry):
    return int(entry["client"].rsplit(":", 1)[1])


def client_host(entry):
    return entry["client"].rsplit(":", 1)[0].strip("[]")


class Sluice:
    def __init__(self, tmp_path, config_text=None, name="sluice", args=None, nofile=None,
                 env=None, netns=None):
        self.tmp_path = Path(tmp_path)
        self.name = name
        self.cfg = self.tmp_path / f"{name}.ini"
        if config_text is not None:
            self.cfg.write_text(config_text)
        self.args = args
        self.nofile = nofile
        self.env = env  # extra environment variables for the process
        self.netns = netns  # run inside this network namespace (ip netns exec)
        self.log_path = self.tmp_path / f"{name}.stderr"
        self.out_path = self.tmp_path / f"{name}.stdout"
        self.proc = None
        self.rc = None

    # process ---------------------------------------------------------------
    def start(self, wait=True, timeout=10.0 * SLOW):
        binary = sluice_bin()
        assert binary.is_file(), f"sluice binary not found at {binary} (build it or set SLUICE_BIN)"
        cmd = [str(binary)] + (list(self.args) if self.args is not None else ["-c", str(self.cfg)])
        if self.nofile is not None:
            # prlimit(1) instead of preexec_fn: the test process has threads.
            cmd = [shutil.which("prlimit") or "/usr/bin/prlimit",
                   f"--nofile={self.nofile}:{self.nofile}", "--"] + cmd
        if self.netns is not None:
            # ip execs the command: self.proc.pid is sluice's own pid.
            cmd = ["/usr/sbin/ip", "netns", "exec", self.netns] + cmd
        with open(self.out_path, "wb") as out, open(self.log_path, "wb") as err:
            env = dict(os.environ, **self.env) if self.env else None
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         close_fds=True, env=env)
        if wait:
            self.wait_ready(timeout)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout=10.0 * SLOW):
        def ready():
            if "ready:" in self.log():
                return True
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"sluice exited with {self.proc.returncode} before logging 'ready:'\n{self.tail()}")
            return False
        wait_for(ready, timeout, lambda: f"sluice to log 'ready:'\n{self.tail()}")

    def signal(self, sig):
        assert self.alive(), f"sluice is not running (rc={self.proc.returncode})\n{self.tail()}"
        os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout=10.0 * SLOW):
        try:
            self.rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"sluice did not exit within {timeout:.1f}s (killed)\n{self.tail()}")
        return self.rc

    def stop(self, timeout=10.0 * SLOW, expect_rc=0):
        """SIGTERM, wait (bounded, then SIGKILL), check the exit code."""
        if self.alive():
            os.kill(self.proc.pid, signal.SIGTERM)
        rc = self.wait_exit(timeout)
        if expect_rc is not None:
            assert rc == expect_rc, f"sluice exited with {rc}, expected {expect_rc}\n{self.tail()}"
        return rc

    def kill(self):
        if self.alive():
            self.proc.kill()
            try:
                self.proc.wait(5 * SLOW)
            except subprocess.TimeoutExpired:
                pass

    def rss_kib(self):
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS in /proc/PID/status")

    def nfds(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    # logs ------------------------------------------------------------------
    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stdout(self):
        try:
            return self.out_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, n=30):
        lines = self.log().splitlines()
        return f"--- last {min(n, len(lines))} lines of {self.log_path} ---\n" + "\n".join(lines[-n:])

    def wait_log(self, needle, timeout=5.0 * SLOW, count=1):
        wait_for(lambda: self.log().count(needle) >= count, timeout,
                 lambda: f"{needle!r} x{count} in the sluice log\n{self.tail()}")

    def sanitizer_reports(self):
        return [l for l in self.log().splitlines() if any(m in l for m in SANITIZER_MARKERS)]

    def access(self, **match):
        """Access log entries (dicts) whose fields equal the given values."""
        out = []
        for line in self.log().splitlines():
            m = ACCESS_RE.match(line)
            if not m:
                continue
            e = m.groupdict()
            if all(str(e[k]) == str(v) for k, v in match.items()):
                out.append(e)
        return out

    def wait_access(self, count=1, timeout=5.0 * SLOW, **match):
        """Wait until at least `count` access entries match; return them."""
        def enough():
            got = self.access(**match)
            return got if len(got) >= count else None
        return wait_for(enough, timeout,
                        lambda: f"{count} access log line(s) matching {match} "
                                f"(have {len(self.access(**match))})\n{self.tail()}")

    def access_for(self, local_port, timeout=5.0 * SLOW):
        """The access entry of the session whose client used local_port."""
        def find():
            for e in self.access():
                if client_port(e) == local_port:
                    return e
            return None
        return wait_for(find, timeout,
                        lambda: f"access log line for client port {local_port}\n{self.tail()}")


def run_sluice(args, timeout=20.0 * SLOW):
    """Run the binary to completion (for -t/-V/-h); returns CompletedProcess."""
    binary = sluice_bin()
    assert binary.is_file(), f"sluice binary not found at {binary} (build it or set SLUICE_BIN)"
    return subprocess.run([str(binary)] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def set_nofile(pid, soft):
    """Lower the soft RLIMIT_NOFILE of a running process."""
    _old_soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))


def get_nofile(pid):
    return resource.prlimit(pid, resource.RLIMIT_NOFILE)[0]


def lowest_free_fd(pid):
    """The descriptor number a process would get next from open()/accept().

    With RLIMIT_NOFILE lowered to it, the next accept() fails with EMFILE."""
    used = {int(n) for n in os.listdir(f"/proc/{pid}/fd")}
    fd = 0
    while fd in used:
        fd += 1
    return fd


def thread_cpu_seconds(pid, tid=None):
    """User + system CPU time of one thread (default the main thread, whose
    TID is the PID), from /proc/PID/task/TID/stat."""
    stat = Path(f"/proc/{pid}/task/{tid or pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of stat(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def is_conn_error(e):
    return isinstance(e, OSError) and e.errno in (errno.ECONNRESET, errno.EPIPE, errno.ECONNREFUSED)
