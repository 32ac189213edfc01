"""Real third-party peers for the integration tests: HAProxy.

HAProxy is run as a plain foreground process (`haproxy -f CFG -db`) on
ports from st.free_port(), with its config written to the test's tmp_path
and its stdout/stderr captured in a file there.  It is stopped by its own
PID (SIGTERM, then SIGKILL after a bounded wait); nothing is ever stopped by
name.  Every wait has a deadline and fails with HAProxy's output attached.

    path = peers.find_haproxy()                # None if not installed
    path, why = peers.haproxy_or_install()     # tries `scripts/setup haproxy` once
    hp = peers.HAProxy(tmp_path, cfg_text, ports=[p], binary=path).start()
    ...
    hp.stop()

HAProxy's config should come from haproxy_config(), which adds the global
and defaults sections (timeouts, no daemon, no log targets).
"""

import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import sluicetest as st

HAPROXY_PATHS = ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy", "/usr/bin/haproxy")
SETUP_TIMEOUT = 900.0  # apt-get update + install, bounded


def find_haproxy():
    """Path of an haproxy binary, or None.  /usr/sbin is often not in PATH."""
    found = shutil.which("haproxy")
    if found:
        return found
    for p in HAPROXY_PATHS:
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


_install_lock = threading.Lock()
_install_result = None  # (path or None, message) once tried


def haproxy_or_install():
    """(path, message): the haproxy binary, installing it once per test run
    with `scripts/setup haproxy` (which keeps the service from starting) if
    it is missing.  path is None if that did not work; message says why."""
    global _install_result
    with _install_lock:
        if _install_result is not None:
            return _install_result
        path = find_haproxy()
        if path:
            _install_result = (path, f"found {path}")
            return _install_result
        setup = st.REPO / "scripts" / "setup"
        try:
            r = subprocess.run([str(setup), "haproxy"], capture_output=True, text=True,
                               timeout=SETUP_TIMEOUT, stdin=subprocess.DEVNULL)
            out = (r.stdout + r.stderr).strip().splitlines()
            msg = f"`scripts/setup haproxy` exited with {r.returncode}: " + " | ".join(out[-5:])
        except (OSError, subprocess.TimeoutExpired) as e:
            msg = f"`scripts/setup haproxy` failed: {e!r}"
        path = find_haproxy()
        _install_result = (path, f"installed {path}" if path else msg)
        return _install_result


def haproxy_version(binary):
    r = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10 * st.SLOW,
                       stdin=subprocess.DEVNULL)
    return (r.stdout.splitlines() or ["?"])[0]


def haproxy_config(body, timeout_client="30s", timeout_server="30s"):
    """A complete config: global/defaults suitable for a test, then body
    (frontend/backend sections).  No logging, no stats, no daemon."""
    return (
        "global\n"
        "    maxconn 512\n"
        "\n"
        "defaults\n"
        "    timeout connect 5s\n"
        f"    timeout client {timeout_client}\n"
        f"    timeout server {timeout_server}\n"
        "\n" + body.strip("\n") + "\n")


class HAProxy:
    """One HAProxy process in the foreground (-db), stopped by PID."""

    def __init__(self, tmp_path, config_text, ports, name="haproxy", binary=None):
        self.tmp_path = Path(tmp_path)
        self.name = name
        self.binary = binary or find_haproxy()
        assert self.binary, "haproxy not found"
        self.cfg = self.tmp_path / f"{name}.cfg"
        self.cfg.write_text(config_text)
        self.ports = list(ports)  # what it binds: ready when all listen
        self.log_path = self.tmp_path / f"{name}.out"
        self.proc = None

    def check(self, timeout=20.0 * st.SLOW):
        """haproxy -c: fail with its output if the config is rejected."""
        r = subprocess.run([self.binary, "-c", "-f", str(self.cfg)], capture_output=True,
                           text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, (
            f"haproxy -c rejected {self.cfg} (rc={r.returncode}):\n{r.stdout}{r.stderr}\n"
            f"--- config ---\n{self.cfg.read_text()}")

    def start(self, timeout=10.0 * st.SLOW):
        self.check()
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen([self.binary, "-f", str(self.cfg), "-db"],
                                         stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, close_fds=True)
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.kill()
            raise
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout):
        """Until every port in self.ports has a listening socket.

        Checked with `ss` rather than by connecting: a probe connection to a
        TCP-mode frontend would itself be proxied (and logged) downstream."""
        def ready():
            if not self.alive():
                raise AssertionError(
                    f"haproxy exited with {self.proc.returncode} before listening\n{self.tail()}")
            return all(st.ss_listeners(p) for p in self.ports)
        st.wait_for(ready, timeout,
                    lambda: f"haproxy to listen on {self.ports}\n{self.tail()}", interval=0.05)

    def stop(self, timeout=5.0 * st.SLOW):
        """SIGTERM by PID, bounded wait, then SIGKILL."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"haproxy did not exit {timeout:.1f}s after SIGTERM (killed)\n"
                                 f"{self.tail()}")

    def kill(self):
        if self.alive():
            self.proc.kill()
            try:
                self.proc.wait(5 * st.SLOW)
            except subprocess.TimeoutExpired:
                pass

    def output(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, n=30):
        lines = self.output().splitlines()
        return (f"--- last {min(n, len(lines))} lines of haproxy output {self.log_path} ---\n"
                + "\n".join(lines[-n:]) + f"\n--- config {self.cfg} ---\n" + self.cfg.read_text())

