"""Self-tests of tests/tools/faultrelay, without sluice.

The fault matrix tests trust the relay to be byte-exact and to inject exactly
the faults it is asked for; these tests check that on 127.0.0.1, with the
relay between a test client and a backend thread.
"""

import hashlib
import os
import queue
import random
import select
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

import sluicetest as st
from faultrelay import FaultRelay, faultrelay_bin

MIB = 1 << 20
# Per direction, through --chop 1-7 (about 1 MiB/s each way on a small VM).
CHOP_SIZE = (1 if st.SANITIZER else 4) * MIB
BULK_SIZE = (2 if st.SANITIZER else 8) * MIB


@pytest.fixture
def fault_relay(tmp_path):
    """fault_relay(upstream, *args) -> started FaultRelay on 127.0.0.1.

    Killed at teardown if still running; its stderr must be free of
    sanitizer reports."""
    made = []

    def start(upstream, *args):
        r = FaultRelay(st.LOCALHOST, upstream, *args,
                       log_path=tmp_path / f"faultrelay-{len(made)}.stderr")
        made.append(r)
        return r

    yield start
    reports = []
    for r in made:
        r.kill()
        reports += [line for line in r.log().splitlines()
                    if any(m in line for m in st.SANITIZER_MARKERS)]
    if reports:
        pytest.fail("sanitizer reports in faultrelay's stderr:\n" + "\n".join(reports[:40]),
                    pytrace=False)


class Handoff:
    """A backend that hands every accepted connection to the test as a
    plain socket, so a test holds both ends of the relayed connection."""

    def __init__(self):
        self.conns = queue.Queue()
        self.release = threading.Event()
        self.srv = st.Server(self._handler, name="handoff")
        self.addr = self.srv.addr

    def _handler(self, conn, srv):
        self.conns.put(conn)
        self.release.wait(120 * st.SLOW)

    def accept(self, timeout=5.0 * st.SLOW):
        try:
            return self.conns.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no connection reached the backend within {timeout:.1f}s") from None

    def close(self):
        self.release.set()
        self.srv.close()


@pytest.fixture
def handoff():
    h = Handoff()
    yield h
    h.close()


def pair(relay, handoff):
    """(client, backend side) of one new connection through the relay."""
    c = st.connect(relay.port)
    return c, handoff.accept()


def nfds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/PID/status")


# ----------------------------------------------------------------------------
# byte-exactness


def test_chop_is_byte_exact_both_ways(fault_relay, backend):
    srv = backend(st.sinksource_handler)
    r = fault_relay(srv, "--chop", "1-7")
    st.sinksource_client(r.port, CHOP_SIZE, CHOP_SIZE, random.Random(7), timeout=120 * st.SLOW)
    r.stop()
    s = r.stats()
    assert s["up_bytes"] == st.HDR.size + CHOP_SIZE
    assert s["down_bytes"] == CHOP_SIZE + st.TRAILER.size
    # One send() per piece of at most 7 bytes.
    assert s["up_sends"] * 7 >= s["up_bytes"] and s["down_sends"] * 7 >= s["down_bytes"], s
    assert s["resets"] == 0, s


def test_concurrent_connections_are_independent(fault_relay, backend):
    """Several transfers at once, each with its own sizes, through every fault."""
    srv = backend(st.sinksource_handler)
    r = fault_relay(srv, "--chop", "1-300", "--delay", "20", "--stall-after", "30000",
                    "--stall-ms", "50")
    rng = random.Random(11)
    jobs = [(rng.randint(0, 300_000), rng.randint(0, 300_000), random.Random(i)) for i in range(12)]
    errors = []

    def run(up, down, job_rng):
        try:
            st.sinksource_client(r.port, up, down, job_rng, timeout=60 * st.SLOW)
        except Exception as e:  # reported below with the sizes
            errors.append(f"up={up} down={down}: {e!r}")

    threads = [threading.Thread(target=run, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90 * st.SLOW)
    assert not any(t.is_alive() for t in threads), "a transfer did not finish"
    assert not errors, errors
    r.stop()
    s = r.stats()
    assert s["connections"] == len(jobs) and s["resets"] == 0, s
    assert s["up_bytes"] == sum(up + st.HDR.size for up, _, _ in jobs)
    assert s["down_bytes"] == sum(down + st.TRAILER.size for _, down, _ in jobs)


def test_hundreds_of_connections_at_once(fault_relay, backend):
    n = 300
    srv = backend(st.echo_handler)
    r = fault_relay(srv, "--chop", "1-3", "--delay", "10")
    socks = []
    try:
        for _ in range(n):
            socks.append(st.connect(r.port))
        for i, s in enumerate(socks):
            s.sendall(b"conn %d\n" % i)
        for i, s in enumerate(socks):
            line = b"conn %d\n" % i
            assert st.recv_exact(s, len(line), timeout=10 * st.SLOW) == line
        st.wait_for(lambda: srv.active == n, 5 * st.SLOW, lambda: f"{n} backend connections ({srv.active})")
    finally:
        for s in socks:
            s.close()
    st.wait_for(lambda: srv.active == 0, 10 * st.SLOW,
                lambda: f"backend connections to close ({srv.active} left)")
    r.stop()
    s = r.stats()
    assert s["connections"] == n and s["resets"] == 0, s


# ----------------------------------------------------------------------------
# faults


@pytest.mark.parametrize("only,hops", [(None, 2), ("up", 1), ("down", 1)])
def test_delay_holds_every_hop(fault_relay, backend, only, hops):
    srv = backend(st.echo_handler)
    r = fault_relay(srv, "--delay", "100", *(["--only", only] if only else []))
    c = st.connect(r.port)
    for _ in range(3):
        t0 = time.monotonic()
        st.roundtrip(c, b"ping\n")
        rtt = time.monotonic() - t0
        assert hops * 0.1 - 0.005 <= rtt < hops * 0.1 + 1.0 * st.SLOW, f"round trip {rtt:.3f}s"
    c.close()


def test_delay_is_pipelined(fault_relay, backend):
    """BULK_SIZE each way through --delay 100 takes a few delays, not one
    delay per chunk read (8 MiB in 256 KiB reads would be 3.2 s)."""
    srv = backend(st.sinksource_handler)
    r = fault_relay(srv, "--delay", "100")
    t0 = time.monotonic()
    st.sinksource_client(r.port, BULK_SIZE, BULK_SIZE, random.Random(3), timeout=60 * st.SLOW)
    took = time.monotonic() - t0
    # The trailer comes back only after the delayed EOF: two delays at least.
    assert 0.2 <= took < 2.0 * st.SLOW, f"{BULK_SIZE >> 20} MiB each way took {took:.2f}s"


@pytest.mark.parametrize("direction", ["up", "down"])
def test_stall_pauses_a_direction_once(fault_relay, handoff, direction):
    # The stall and the bounds around it scale together: a bound of 0.2 s
    # only tells "held" from "not held" while it is shorter than the stall.
    stall = 0.3 * st.SLOW
    r = fault_relay(handoff, "--stall-after", "1000", "--stall-ms", str(int(stall * 1000)),
                    "--only", direction)
    c, b = pair(r, handoff)
    src, dst = (c, b) if direction == "up" else (b, c)
    data = os.urandom(1500)
    src.sendall(data)
    first = st.recv_exact(dst, 1000)
    t_first = time.monotonic()

    # The other direction is not stalled meanwhile.
    dst.sendall(b"pong")
    assert st.recv_exact(src, 4) == b"pong"
    assert time.monotonic() - t_first < 0.2 * st.SLOW, "the other direction was held too"

    rest = st.recv_exact(dst, 500, timeout=5 * st.SLOW)
    gap = time.monotonic() - t_first
    assert first + rest == data
    assert stall - 0.05 <= gap < stall + 1.5 * st.SLOW, f"gap after 1000 bytes: {gap:.3f}s"

    # Only once: the next bytes pass without a pause.
    t0 = time.monotonic()
    src.sendall(data)
    assert st.recv_exact(dst, len(data)) == data
    assert time.monotonic() - t0 < 0.2 * st.SLOW, "stalled a second time"
    c.close()


# ----------------------------------------------------------------------------
# closing


@pytest.mark.parametrize("faults", [[], ["--delay", "50"], ["--chop", "1-3"]],
                         ids=["plain", "delay", "chop"])
@pytest.mark.parametrize("first", ["client", "server"])
def test_half_close_is_forwarded_after_the_data(fault_relay, handoff, faults, first):
    r = fault_relay(handoff, *faults)
    base = nfds(r.pid)
    c, b = pair(r, handoff)
    one, other = (c, b) if first == "client" else (b, c)

    payload = os.urandom(20_000)
    one.sendall(payload)
    one.shutdown(socket.SHUT_WR)
    data, how = st.recv_until_close(other, timeout=10 * st.SLOW)
    assert how == "eof" and data == payload, (how, len(data))

    # The other direction keeps flowing after the half-close.
    reply = os.urandom(20_000)
    other.sendall(reply)
    assert st.recv_exact(one, len(reply), timeout=10 * st.SLOW) == reply
    other.shutdown(socket.SHUT_WR)
    data, how = st.recv_until_close(one, timeout=5 * st.SLOW)
    assert (data, how) == (b"", "eof")

    # Both directions done: the relay closes both sockets by itself.
    st.wait_for(lambda: nfds(r.pid) == base, 5 * st.SLOW,
                lambda: f"the relay to close the connection ({nfds(r.pid)} fds, {base} before)")
    c.close()
    r.stop()
    s = r.stats()
    assert s["resets"] == 0 and s["up_bytes"] + s["down_bytes"] == 40_000, s


@pytest.mark.parametrize("who", ["client", "server"])
def test_reset_is_forwarded_as_a_reset(fault_relay, handoff, who):
    r = fault_relay(handoff)
    c, b = pair(r, handoff)
    c.sendall(b"x")
    assert st.recv_exact(b, 1) == b"x"
    one, other = (c, b) if who == "client" else (b, c)
    st.rst_close(one)
    how, secs = st.wait_closed(other, 5 * st.SLOW)
    assert how == "reset" and secs < 1.0 * st.SLOW, (how, secs)
    r.stop()
    assert r.stats()["resets"] == 1


def test_refused_upstream_resets_the_client(fault_relay, closed_port):
    r = fault_relay(closed_port())
    try:
        c = st.connect(r.port)
    except ConnectionResetError:
        # The reset can beat connect(): Python's timeout connect polls and
        # then reads SO_ERROR, which by then holds the reset.
        pass
    else:
        how, secs = st.wait_closed(c, 5 * st.SLOW)
        c.close()
        assert how == "reset" and secs < 1.0 * st.SLOW, (how, secs)
    r.stop()
    s = r.stats()
    assert s["connections"] == 1 and s["connect_failed"] == 1, s


# ----------------------------------------------------------------------------
# backpressure and process life


def test_memory_stays_bounded_while_the_reader_is_stuck(fault_relay, handoff):
    """With the backend not reading, the client's sends soon block (the relay
    stops reading at its queue cap); the data then drains byte-exactly."""
    r = fault_relay(handoff)
    c, b = pair(r, handoff)
    c.sendall(b"x")
    assert st.recv_exact(b, 1) == b"x"
    rss0 = rss_kib(r.pid)

    limit = 48 * MIB  # far above kernel buffers + the relay's 4 MiB queue
    piece = os.urandom(1 * MIB)
    sent_hash = hashlib.sha256()
    sent = 0
    c.setblocking(False)
    while True:
        assert sent < limit, f"the relay accepted {sent >> 20} MiB without reading the backend"
        try:
            n = c.send(memoryview(piece)[sent % len(piece):])
        except BlockingIOError:
            # Blocked: done once nothing more goes out for a while.
            # A window, not a bound: 0.5 s without room counts as blocked.
            _, writable, _ = select.select([], [c], [], 0.5)
            if not writable:
                break
            continue
        sent_hash.update(memoryview(piece)[sent % len(piece):sent % len(piece) + n])
        sent += n
    if not st.SANITIZER:  # ASan's quarantine and shadow make RSS meaningless
        grown = rss_kib(r.pid) - rss0
        assert grown < 16 * 1024, f"relay RSS grew by {grown} KiB with {sent >> 20} MiB in flight"

    c.setblocking(True)
    c.shutdown(socket.SHUT_WR)
    got, digest = st.hash_until_eof(b, timeout=10 * st.SLOW)
    assert got == sent and digest == sent_hash.digest(), (got, sent)
    c.close()


def test_sigterm_exits_promptly_with_data_in_flight(fault_relay, handoff):
    r = fault_relay(handoff, "--delay", "5000")
    c, b = pair(r, handoff)
    c.sendall(b"held for five seconds\n")
    t0 = time.monotonic()
    assert r.stop(timeout=5 * st.SLOW) == 0
    assert time.monotonic() - t0 < 1.0 * st.SLOW
    assert r.stats()["connections"] == 1
    c.close()


def test_max_seconds_ends_a_forgotten_relay(fault_relay, handoff):
    r = fault_relay(handoff, "--max-seconds", "1")
    assert r.proc.wait(5 * st.SLOW) == 0
    r.stop()
    assert "--max-seconds reached" in r.log()


@pytest.mark.parametrize("args", [
    [],
    ["-l", "127.0.0.1:0"],
    ["-l", "127.0.0.1:0", "-c", "127.0.0.1:0"],
    ["-l", "::1:0", "-c", "127.0.0.1:9"],
    ["-l", "127.0.0.1:0", "-c", "127.0.0.1:9", "--chop", "7-1"],
    ["-l", "127.0.0.1:0", "-c", "127.0.0.1:9", "--chop", "0-3"],
    ["-l", "127.0.0.1:0", "-c", "127.0.0.1:9", "--stall-after", "10"],
    ["-l", "127.0.0.1:0", "-c", "127.0.0.1:9", "--only", "sideways"],
    ["-l", "127.0.0.1:0", "-c", "127.0.0.1:9", "--delay", "-5"],
    ["-l", "127.0.0.1:0", "-c", "127.0.0.1:9", "--max-seconds", "0"],
])
def test_usage_errors_exit_2(args):
    p = subprocess.run([str(faultrelay_bin())] + args, capture_output=True, text=True, timeout=10 * st.SLOW,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 2 and "faultrelay:" in p.stderr and p.stdout == "", (p.returncode, p.stderr)


def test_binary_lookup_follows_sluice_bin(monkeypatch):
    monkeypatch.delenv("FAULTRELAY_BIN", raising=False)
    monkeypatch.setenv("SLUICE_BIN", "/somewhere/build-asan/sluice")
    assert faultrelay_bin() == Path("/somewhere/build-asan/tests/tools/faultrelay")
    monkeypatch.setenv("FAULTRELAY_BIN", "/elsewhere/faultrelay")
    assert faultrelay_bin() == Path("/elsewhere/faultrelay")
