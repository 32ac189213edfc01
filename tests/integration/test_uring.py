"""relay = uring: the mode is really in use where it can be, says once and
copies where the kernel refuses it, and survives a burst larger than the
worker's ring of buffers. (The integrity, half-close, backpressure, idle
and PROXY/SNI tests run in this mode through the `relay` fixture; the
fault matrix's resets and stalls through test_faults.py::test_uring.)"""

import hashlib
import os
import signal
import socket
import subprocess
import threading

import pytest

import ctltest as ct
import sluicetest as st
from ctltest import sockdir  # noqa: F401  (fixture)


@pytest.fixture(autouse=True)
def _uring_here():
    why = st.uring_unavailable()
    if why:
        pytest.skip(f"relay = uring: {why}")


def uring_fds(pid):
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[io_uring]"
        except OSError:
            pass
    return n


def test_each_worker_opens_a_ring_and_relays_through_it(sluice, backend, port):
    b = backend(st.echo_handler)
    s = sluice(st.make_config(port, [f"b {b.addr}"], relay="uring", workers=2))
    s.wait_log("relay = uring: io_uring ready", count=2)
    assert uring_fds(s.pid) == 2, f"{uring_fds(s.pid)} io_uring descriptors, expected 2"
    c = st.connect(port)
    local = c.getsockname()[1]
    for n in (1, 1000, 70000):
        st.roundtrip(c, os.urandom(n))
    c.close()
    e = s.access_for(local)
    assert e["reason"] == "client_close" and e["up"] == e["down"] == str(71001), e
    s.stop()


def test_dump_shows_the_mode(tmp_path, port):
    cfg = tmp_path / "u.ini"
    cfg.write_text(st.make_config(port, ["b 127.0.0.1:1"], relay="uring"))
    r = subprocess.run([str(st.sluice_bin()), "-T", "-c", str(cfg)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "relay = uring" in r.stdout


def test_kernel_refusal_copies_and_says_so_once(sluice, backend, port):
    b = backend(st.echo_handler)
    s = sluice(st.make_config(port, [f"b {b.addr}"], relay="uring", workers=2),
               env={"SLUICE_FAULT_URING_REFUSE": "1"})
    c = st.connect(port)
    st.roundtrip(c, b"x" * 5000)
    c.close()
    s.wait_log("io_uring is not available")
    log = s.log()
    assert log.count("io_uring is not available") == 1, s.tail()
    assert "those listeners copy instead" in log and "io_uring ready" not in log, s.tail()
    assert uring_fds(s.pid) == 0
    s.stop()


def test_burst_beyond_the_ring_is_byte_exact(sluice, backend, port):
    """1 MiB blocks make a ring of 16 buffers: 24 clients sending and
    receiving at once run it dry (ENOBUFS), and every byte still arrives,
    in order, both ways."""
    b = backend(st.echo_handler)
    s = sluice(st.make_config(port, [f"b {b.addr}"], relay="uring",
                              glob={"buffer_size": "1m", "max_buffer": "4m",
                                    "log_level": "debug"}))
    s.wait_log("io_uring ready (16 buffers")
    size = (1 << 20) if st.SANITIZER else (4 << 20)
    errors = []

    def client(i):
        try:
            data = os.urandom(size)
            c = st.connect(port, timeout=60 * st.SLOW)
            got = hashlib.sha256()
            n = 0

            def reader():
                nonlocal n
                while n < size:
                    d = c.recv(1 << 16)
                    if not d:
                        break
                    got.update(d)
                    n += len(d)

            t = threading.Thread(target=reader, daemon=True)
            t.start()
            c.sendall(data)
            t.join(60 * st.SLOW)
            c.shutdown(socket.SHUT_WR)
            assert n == size and got.digest() == hashlib.sha256(data).digest(), f"client {i}: {n}"
            c.close()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120 * st.SLOW)
    assert not any(t.is_alive() for t in threads), "clients still running"
    assert not errors, errors[:3]
    assert "every ring buffer in use" in s.log(), "the ring never ran dry: the test proves nothing"
    s.wait_access(24, timeout=10 * st.SLOW)
    s.stop()


def test_reload_to_uring_opens_the_rings_for_new_sessions(sluice, backend, port, sockdir):
    b = backend(st.echo_handler)
    sock = str(sockdir / "admin.sock")

    def cfg(relay):
        return ct.ctl_config(port, [f"b {b.addr}"], sock=sock, workers=2,
                             listener={"relay": relay})
    s = sluice(cfg("copy"))
    old = st.connect(port)
    st.roundtrip(old, b"before")
    assert uring_fds(s.pid) == 0
    ct.write_config(s.cfg, cfg("uring"))
    s.signal(signal.SIGHUP)
    ct.wait_for_gen(s, sock, 2)
    s.wait_log("relay = uring: io_uring ready", count=2)
    assert uring_fds(s.pid) == 2
    st.roundtrip(old, b"the old session still copies")
    new = st.connect(port)
    st.roundtrip(new, os.urandom(100000))
    old.close()
    new.close()
    s.stop()
