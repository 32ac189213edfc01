"""Network namespaces for the fault-matrix tests (test_faults.py).

A Topology is three namespaces made for one test and deleted after it:

    client ns            proxy ns                      backend ns
    c0 10.213.1.1 ---- p0 10.213.1.2   p1 10.213.2.1 ---- b0 10.213.2.2

sluice runs in the proxy namespace (`ip netns exec`), backends in the
backend namespace, clients in the client namespace, so nftables rules and
link changes inside them touch nothing outside the test. Sockets of the
test process are made inside a namespace with `inside(ns)`: setns(2) on the
calling thread only, undone at the end of the block; a socket stays in the
namespace it was created in.
"""

import contextlib
import ctypes
import os
import subprocess
import threading

import sluicetest as st

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

CLIENT_IP = "10.213.1.1"
PROXY_IP = "10.213.1.2"       # sluice's listeners
PROXY_BACK_IP = "10.213.2.1"  # sluice's side towards the backends
BACKEND_IP = "10.213.2.2"


def available():
    """None when namespaces, veth and nft work here, else why not."""
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    for tool in ("/usr/sbin/ip", "/usr/sbin/nft"):
        if not os.access(tool, os.X_OK):
            return f"{tool} is missing (scripts/test installs them: scripts/setup iproute2 nftables)"
    return None


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"setns: {os.strerror(e)}")


@contextlib.contextmanager
def inside(ns):
    """Run the block (this thread only) in network namespace ns."""
    with open("/proc/thread-self/ns/net") as orig, open(f"/run/netns/{ns}") as target:
        _setns(target.fileno())
        try:
            yield
        finally:
            _setns(orig.fileno())


def _ip(*args, check=True, input=None):
    r = subprocess.run(["/usr/sbin/ip", *args], capture_output=True, text=True, timeout=20 * st.SLOW,
                       input=input)
    if check and r.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


@contextlib.contextmanager
def loopback_ns(tag, addrs=()):
    """A network namespace with only lo, up, holding addrs ("ADDR/BITS",
    IPv4 or IPv6, no duplicate detection); removed afterwards. Yields its
    name (tag plus this thread's id, so parallel runs do not collide)."""
    ns = f"{tag}{threading.get_native_id() % 100000}"
    _ip("netns", "add", ns)
    try:
        _ip("-n", ns, "link", "set", "lo", "up")
        for a in addrs:
            _ip("-n", ns, "-6" if ":" in a else "-4", "addr", "add", a, "dev", "lo", "nodad")
        yield ns
    finally:
        _ip("netns", "del", ns, check=False)


class Topology:
    def __init__(self, tag):
        tag = f"{tag}{os.getpid() % 100000}"
        self.client = f"slc{tag}"
        self.proxy = f"slp{tag}"
        self.backend = f"slb{tag}"
        self.made = []

    def up(self):
        for ns in (self.client, self.proxy, self.backend):
            _ip("netns", "add", ns)
            self.made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("link", "add", "c0", "netns", self.client, "type", "veth", "peer", "name", "p0",
            "netns", self.proxy)
        _ip("link", "add", "p1", "netns", self.proxy, "type", "veth", "peer", "name", "b0",
            "netns", self.backend)
        for ns, dev, addr in ((self.client, "c0", CLIENT_IP), (self.proxy, "p0", PROXY_IP),
                              (self.proxy, "p1", PROXY_BACK_IP),
                              (self.backend, "b0", BACKEND_IP)):
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
        return self

    def down(self):
        for ns in reversed(self.made):
            _ip("netns", "del", ns, check=False)
        self.made = []

    def exec_prefix(self, ns):
        """Command prefix that runs a program inside ns."""
        return ["/usr/sbin/ip", "netns", "exec", ns]

    def run(self, ns, *cmd, input=None):
        r = subprocess.run(self.exec_prefix(ns) + list(cmd), capture_output=True, text=True,
                           timeout=20 * st.SLOW, input=input)
        if r.returncode != 0:
            raise AssertionError(f"in {ns}: {' '.join(cmd)} failed ({r.returncode}): "
                                 f"{r.stderr.strip()}")
        return r.stdout

    def nft(self, ns, script):
        """Apply an nft script (nft -f -) inside ns."""
        return self.run(ns, "/usr/sbin/nft", "-f", "-", input=script)

    def link(self, ns, dev, state):
        _ip("-n", ns, "link", "set", dev, state)
