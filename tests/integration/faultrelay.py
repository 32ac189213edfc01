"""Run tests/tools/faultrelay (a fault-injecting TCP relay) from a test.

    with FaultRelay("127.0.0.1", backend.addr, "--chop", "1-7") as relay:
        s = st.connect(relay.port)
        ...

The relay listens on an ephemeral port of listen_host (or on "HOST:PORT" if
a port is given) and connects every client to `upstream`, which may be
"host:port", a (host, port) tuple or anything with an .addr such as
sluicetest.Server.  Extra arguments are passed to the binary as they are
(--delay MS, --chop MIN-MAX, --stall-after BYTES --stall-ms MS, --only
up|down, --seed N, --max-seconds N; see `faultrelay --help`).

The binary is $FAULTRELAY_BIN, else tests/tools/faultrelay in the build
directory of $SLUICE_BIN (default <repo>/build/sluice), so the sanitizer
builds use their own relay.  Its stderr goes to a file (log_path, or an
anonymous temporary file): read it with .log() / .tail().  It is stopped by
its own PID only.  Standard library only.
"""

import os
import re
import selectors
import signal
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_SANITIZER = os.environ.get("SLUICE_SANITIZER", "").strip().lower()
# The same factor as sluicetest.SLOW (kept standalone, standard library
# only): 3 under a sanitizer, times SLUICE_TEST_SLOW for a loaded machine.
SLOW = ((3.0 if _SANITIZER not in ("", "none", "no", "0", "off", "false") else 1.0)
        * float(os.environ.get("SLUICE_TEST_SLOW", "").strip() or 1.0))

STATS_RE = re.compile(r"faultrelay: exit: (.*)$", re.M)


def faultrelay_bin():
    env = os.environ.get("FAULTRELAY_BIN")
    if env:
        return Path(env)
    sluice = Path(os.environ.get("SLUICE_BIN") or REPO / "build" / "sluice")
    return sluice.parent / "tests" / "tools" / "faultrelay"


def _listen_arg(listen_host):
    """'127.0.0.1' -> '127.0.0.1:0', '::1' -> '[::1]:0'; HOST:PORT kept."""
    h = str(listen_host)
    if h.startswith("["):
        return h if "]:" in h else h + ":0"
    if h.count(":") == 1:
        return h
    if ":" in h:
        return f"[{h}]:0"
    return h + ":0"


def _upstream_arg(upstream):
    if hasattr(upstream, "addr"):
        return str(upstream.addr)
    if isinstance(upstream, tuple):
        host, port = upstream
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(upstream)


class FaultRelay:
    def __init__(self, listen_host, upstream, *args, netns=None, binary=None, log_path=None,
                 timeout=5.0 * SLOW):
        self.binary = Path(binary) if binary is not None else faultrelay_bin()
        assert self.binary.is_file(), (
            f"faultrelay not found at {self.binary} (build it, or set FAULTRELAY_BIN or SLUICE_BIN)")
        self.cmd = [str(self.binary), "-l", _listen_arg(listen_host), "-c", _upstream_arg(upstream)]
        self.cmd += [str(a) for a in args]
        if netns is not None:
            self.cmd = ["ip", "netns", "exec", str(netns)] + self.cmd
        self.log_path = Path(log_path) if log_path is not None else None
        self.rc = None
        self._log_text = None  # stderr, kept once the process is gone
        if self.log_path is not None:
            self._err = open(self.log_path, "w+b")  # readable too: see _read_log
        else:
            self._err = tempfile.TemporaryFile()
        try:
            # `ip netns exec` execs the command, so the PID is the relay's.
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=self._err, close_fds=True)
        except BaseException:
            self._err.close()
            raise
        try:
            line = self._read_listening(timeout)
        except BaseException:
            self.kill()
            raise
        self.addr = line.split(" ", 1)[1]
        host, port = self.addr.rsplit(":", 1)
        self.host = host.strip("[]")
        self.port = int(port)

    def _read_listening(self, timeout):
        """The 'listening HOST:PORT' line, waited for at most `timeout` s."""
        deadline = time.monotonic() + timeout
        buf = b""
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"faultrelay printed no 'listening' line within {timeout:.1f}s "
                                         f"(stdout so far {buf!r})\n{self.tail()}")
                if not sel.select(left):
                    continue
                d = os.read(fd, 256)
                if not d:
                    rc = self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                    raise AssertionError(f"faultrelay exited with {rc} before listening "
                                         f"({' '.join(self.cmd)})\n{self.tail()}")
                buf += d
        line = buf.split(b"\n", 1)[0].decode(errors="replace")
        if not line.startswith("listening "):
            raise AssertionError(f"unexpected first line from faultrelay: {line!r}\n{self.tail()}")
        return line

    # process ---------------------------------------------------------------
    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=5.0 * SLOW, expect_rc=0):
        """SIGTERM, wait (bounded), else SIGKILL; returns the exit code.

        Checks it against expect_rc unless that is None.  Idempotent."""
        if self.rc is None:
            if self.alive():
                self.proc.send_signal(signal.SIGTERM)  # Popen: its own PID only
            try:
                self.rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"faultrelay did not exit within {timeout:.1f}s of SIGTERM "
                                     f"(killed)\n{self.tail()}")
            self._close_files()
        if expect_rc is not None:
            assert self.rc == expect_rc, f"faultrelay exited with {self.rc}, expected {expect_rc}\n{self.tail()}"
        return self.rc

    def kill(self):
        """SIGKILL (by PID) if still running; no exit code check."""
        if self.alive():
            self.proc.kill()
        try:
            self.rc = self.proc.wait(5 * SLOW)
        except subprocess.TimeoutExpired:
            return
        self._close_files()

    def _close_files(self):
        if self._log_text is None:
            self._log_text = self._read_log()
            self.proc.stdout.close()
            self._err.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        # While an exception is on its way, do not mask it with an rc check.
        if exc_type is None:
            self.stop()
        else:
            try:
                self.stop(expect_rc=None)
            except AssertionError:
                pass
        return False

    # stderr ----------------------------------------------------------------
    def _read_log(self):
        # pread: the child shares the file offset, so never move it.
        fd = self._err.fileno()
        out = bytearray()
        while True:
            d = os.pread(fd, 1 << 16, len(out))
            if not d:
                return out.decode(errors="replace")
            out += d

    def log(self):
        return self._log_text if self._log_text is not None else self._read_log()

    def tail(self, n=20):
        lines = self.log().splitlines()
        return f"--- last {min(n, len(lines))} lines of faultrelay's stderr ---\n" + "\n".join(lines[-n:])

    def stats(self):
        """The exit counts ({'connections': N, 'up_bytes': N, ...}); None if
        the relay has not exited cleanly yet."""
        m = STATS_RE.search(self.log())
        if not m:
            return None
        return {k: int(v) for k, v in (kv.split("=", 1) for kv in m.group(1).split())}
