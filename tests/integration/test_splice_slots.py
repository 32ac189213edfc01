"""relay = splice with small segments: the kernel fills a pipe by page
slots, so 1500-byte segments use up every slot long before the pipe holds
its size in bytes. With the destination blocked, the worker must then stop
polling the source rather than spin on splice() returning EAGAIN."""

import os
import socket
import time

import pytest

import netns as nn
import sluicetest as st

CLK_TCK = os.sysconf("SC_CLK_TCK")


@pytest.fixture
def net():
    why = nn.available()
    if why:
        pytest.fail(f"this test needs network namespaces: {why}", pytrace=False)
    topo = nn.Topology("s").up()  # veth links: MTU 1500
    yield topo
    topo.down()


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def sink_handler(conn, srv):
    while conn.recv(1 << 16):
        pass


def scattered_flood(sink_addr):
    """Send 1000-byte writes, each followed by one to a second connection.
    A thread's TCP writes share one page fragment, so the stream's bytes
    end up in pieces that are not adjacent in memory: the receiver's pipe
    then needs a slot per piece, as with a NIC that gives each packet its
    own buffer (loopback and veth otherwise hand over contiguous pages,
    which splice packs into few slots)."""
    def handler(conn, srv):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        other = socket.create_connection(sink_addr, timeout=30 * st.SLOW)
        other.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        chunk = b"z" * 1000
        try:
            with other:
                while not srv._stopping.is_set():
                    conn.sendall(chunk)
                    other.sendall(chunk)
                    srv.state["sent"] = srv.state.get("sent", 0) + len(chunk)
        except OSError:
            pass
    return handler


def test_blocked_destination_does_not_spin_the_worker(net, tmp_path):
    with nn.inside(net.backend):
        sink = st.Server(sink_handler, name="sink", host=nn.BACKEND_IP)
        backend = st.Server(scattered_flood((nn.BACKEND_IP, sink.port)), name="flood",
                            host=nn.BACKEND_IP)
    port = st.free_port()
    text = st.make_config(port, [f"flood {backend.addr}"], relay="splice",
                          pool={"idle_timeout": "60s"})
    text = text.replace(f"bind = 127.0.0.1:{port}", f"bind = {nn.PROXY_IP}:{port}")
    s = st.Sluice(tmp_path, text, netns=net.proxy)
    try:
        s.start()
        with nn.inside(net.client):
            c = socket.socket()
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
            c.settimeout(5 * st.SLOW)
            c.connect((nn.PROXY_IP, port))
        with c:
            assert c.recv(1000), "no data came through"
            # The client stops reading: its window closes, sluice's pipe
            # fills with small segments, the backend's sends block.
            def stalled():
                a = backend.state.get("sent", 0)
                time.sleep(0.3)  # a window: no progress in it means stalled
                return a > 0 and backend.state.get("sent", 0) == a
            st.wait_for(stalled, 10 * st.SLOW, "the stream to stall on the blocked client",
                        interval=0.0)
            t0, c0 = time.monotonic(), cpu_seconds(s.pid)
            time.sleep(2.0)  # measuring CPU use over a fixed window
            share = (cpu_seconds(s.pid) - c0) / (time.monotonic() - t0)
            assert share < 0.2, f"sluice used {share:.0%} of a CPU while the client read nothing"
            # And the session still works: reading again resumes the flow.
            got = 0
            deadline = time.monotonic() + 10 * st.SLOW
            while got < (8 << 20) and time.monotonic() < deadline:
                got += len(c.recv(1 << 20))
            assert got >= (8 << 20), f"only {got} bytes after reading resumed"
        s.stop()
    finally:
        s.kill()
        backend.close()
        sink.close()
