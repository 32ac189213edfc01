"""Reloads that change the worker count lose nothing: a connection-per-
request storm while `workers` goes 4 -> 1 -> 4 again and again, with
net.ipv4.tcp_migrate_req=0 (the kernel does not move what is queued on a
closed SO_REUSEPORT socket). sluice steers new connections away from the
retiring workers' sockets before they drain and close them (reuseport.c),
so no client is reset, refused or left unanswered.

Everything runs in a network namespace made for the test, so the sysctl
is set there and the host is not touched. SLUICE_FAULT_RETIRE_CLOSE_DELAY_US
widens the instant between a retiring socket's last accept and its close
(20 ms instead of microseconds) so that, without the steering, the storm
hits it on every reload: the second test shows that it does (the first
would fail), the first that with the steering nothing is lost."""

import contextlib
import os
import socket
import subprocess
import threading
import time

import pytest

import ctltest as ct
import netns as nn
import sluicetest as st
from ctltest import sockdir  # noqa: F401  (fixture)

pytestmark = pytest.mark.threaded

CLIENTS = 6  # spread over the binds: IPv4, IPv6, unix
WINDOW_US = 20000  # SLUICE_FAULT_RETIRE_CLOSE_DELAY_US


@pytest.fixture
def ns():
    """A network namespace with only lo, tcp_migrate_req=0 (deleted after)."""
    if os.geteuid() != 0:
        pytest.skip("needs root for a network namespace")
    name = f"slw{os.getpid() % 100000}"
    nn._ip("netns", "add", name)
    try:
        nn._ip("-n", name, "link", "set", "lo", "up")
        subprocess.run(["/usr/sbin/ip", "netns", "exec", name, "/bin/sh", "-c",
                        "echo 0 > /proc/sys/net/ipv4/tcp_migrate_req"], check=True, timeout=20 * st.SLOW)
        yield name
    finally:
        nn._ip("netns", "del", name, check=False)


class Storm:
    """CLIENTS threads inside ns, each: connect, send a line, read the echo,
    close, again, until stop(). Every failure is counted by kind. Thread i
    connects to targets[i % len(targets)] ((family, address) pairs)."""

    def __init__(self, ns, targets):
        self.ns = ns
        self.targets = targets
        self.ok = 0
        self.failures = {}  # kind -> count
        self.examples = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True, name=f"storm-{i}")
                        for i in range(CLIENTS)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def _fail(self, kind, what):
        with self.lock:
            self.failures[kind] = self.failures.get(kind, 0) + 1
            if len(self.examples) < 5:
                self.examples.append(what)

    def _run(self, i):
        with nn.inside(self.ns):
            n = 0
            while not self._stop.is_set():
                n += 1
                msg = f"{i} {n}\n".encode()
                family, addr = self.targets[i % len(self.targets)]
                c = socket.socket(family, socket.SOCK_STREAM)
                c.settimeout(5.0 * st.SLOW)
                try:
                    c.connect(addr)
                    c.sendall(msg)
                    got = b""
                    while len(got) < len(msg):
                        b = c.recv(len(msg) - len(got))
                        if not b:
                            break
                        got += b
                    if got != msg:
                        self._fail("unanswered", f"thread {i} request {n}: got {got!r}")
                    else:
                        with self.lock:
                            self.ok += 1
                except ConnectionResetError as e:
                    self._fail("reset", f"thread {i} request {n}: {e!r}")
                except ConnectionRefusedError as e:
                    self._fail("refused", f"thread {i} request {n}: {e!r}")
                except OSError as e:
                    self._fail("failed", f"thread {i} request {n}: {e!r}")
                finally:
                    c.close()

    def wait_more(self, more, timeout):
        start = self.ok
        st.wait_for(lambda: self.ok >= start + more, timeout,
                    lambda: f"{more} more requests answered (have {self.ok - start}; {self.report()})")

    def stop(self):
        self._stop.set()
        for t in self.threads:
            t.join(20.0 * st.SLOW)
        assert not any(t.is_alive() for t in self.threads), "storm threads still running"

    def report(self):
        return f"{self.ok} answered, failures {self.failures}; first: {self.examples}"


def _cycles(s, sock, cfg, cycles, storm, until=None):
    """cycles times (or until until() holds): reload to 1 worker, wait until
    workers 1-3 exited, reload to 4, let each generation serve some
    requests."""
    for i in range(1, cycles + 1):
        if until is not None and until():
            return
        ct.write_config(s.cfg, cfg(1))
        r = ct.ask(sock, "reload")
        assert r.startswith("reload ok") and "1 workers" in r, r
        for w in (1, 2, 3):
            s.wait_log(f"worker {w}: exited", timeout=15.0 * st.SLOW, count=i)
        storm.wait_more(50, 10.0 * st.SLOW)
        ct.write_config(s.cfg, cfg(4))
        r = ct.ask(sock, "reload")
        assert r.startswith("reload ok") and "4 workers" in r, r
        storm.wait_more(50, 10.0 * st.SLOW)


@contextlib.contextmanager
def _storm_through_sluice(sluice, backend, ns, sockdir, env):
    with nn.inside(ns):
        be = backend(st.echo_handler, name="echo")
    sock = str(sockdir / "admin.sock")
    port = st.free_port()  # free in the namespace too: it has no sockets

    path = str(sockdir / "app.sock")
    # Three binds: a SO_REUSEPORT group per TCP address (IPv4 and IPv6),
    # and a unix: socket the workers share (no group: not steered, and a
    # retiring worker only closes its dup()).
    binds = f"bind = 127.0.0.1:{port}\nbind = [::1]:{port}\nbind = unix:{path}\n"

    def cfg(workers):
        text = ct.ctl_config(port, [f"e {be.addr}"], sock=sock, workers=workers,
                             glob={"access_log": "off"})
        return text.replace(f"bind = 127.0.0.1:{port}\n", binds, 1)
    s = sluice(cfg(4), netns=ns, env=env)
    fault = "SLUICE_FAULT_RETIRE_CLOSE_DELAY_US"
    if f"{fault}=" not in s.log():
        pytest.skip(f"{fault} needs a build with assertions (meson -Dassertions=true)")
    targets = [(socket.AF_INET, ("127.0.0.1", port)), (socket.AF_INET6, ("::1", port))]
    # Not under TSan: a retiring worker's epoll set keeps the registration
    # of its closed dup() of the unix: socket (the file stays open) until
    # it exits; a client connecting meanwhile makes libev there call
    # epoll_ctl(DEL) on that fd number, which another worker may have
    # reused: harmless (ENOENT, libev rebuilds its epoll set), but TSan
    # reports it (with the binary before the steering too).
    if st.SANITIZER != "tsan":
        targets.append((socket.AF_UNIX, path))
    storm = Storm(ns, targets).start()
    try:
        storm.wait_more(50, 10.0 * st.SLOW)
        yield s, sock, cfg, storm
    finally:
        storm.stop()


def test_worker_count_reloads_under_a_storm_lose_nothing(sluice, backend, ns, sockdir):
    """20 reloads 4 -> 1 -> 4 (6 under a sanitizer) under a connection-per-
    request storm: zero resets, zero refused, zero failed, all answered."""
    cycles = 6 if st.SANITIZER else 20
    env = {"SLUICE_FAULT_RETIRE_CLOSE_DELAY_US": str(WINDOW_US)}
    t0 = time.monotonic()
    with _storm_through_sluice(sluice, backend, ns, sockdir, env) as (s, sock, cfg, storm):
        _cycles(s, sock, cfg, cycles, storm)
    assert not storm.failures, f"connections lost while workers changed: {storm.report()}"
    port = storm.targets[0][1][1]
    for addr in (f"127.0.0.1:{port}", f"[::1]:{port}"):
        for line in (f"{addr}: new connections go to 1 of its 4 listening sockets while workers retire",
                     f"{addr}: no worker retiring: new connections spread over its 1 listening sockets again"):
            n = s.log().count(line)
            assert n == cycles, f"{line!r} {n} times in the log, not once per cycle ({cycles})"
    info = ct.show_info(sock)
    assert info["workers"] == "4" and int(info["generation"]) == 1 + 2 * cycles, info
    print(f"{cycles} cycles in {time.monotonic() - t0:.1f}s: {storm.report()}")
    s.stop()


def test_without_steering_the_storm_is_reset(sluice, backend, ns, sockdir):
    """The same with the steering off (SLUICE_FAULT_NO_STEERING): clients
    are reset (within at most 10 cycles; usually every one resets some),
    so the test above can fail."""
    env = {"SLUICE_FAULT_RETIRE_CLOSE_DELAY_US": str(WINDOW_US), "SLUICE_FAULT_NO_STEERING": "1"}
    with _storm_through_sluice(sluice, backend, ns, sockdir, env) as (s, sock, cfg, storm):
        _cycles(s, sock, cfg, 10, storm, until=lambda: storm.failures.get("reset", 0) > 0)
    assert storm.failures.get("reset", 0) > 0, (
        f"no client was reset without the steering: {storm.report()}")
    print(storm.report())
    s.stop()
