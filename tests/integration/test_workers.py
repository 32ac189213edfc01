"""workers=2: two SO_REUSEPORT sockets, and both workers accept."""

import pytest

import sluicetest as st

BATCH = 64


@pytest.mark.threaded
def test_two_workers_both_accept(sluice, backend, port):
    b = backend(st.echo_handler)
    s = sluice(st.make_config(port, [f"b {b.addr}"], workers=2))
    rows = st.ss_listeners(port)
    assert len(rows) == 2, f"expected 2 listening sockets on :{port}, ss shows {rows}"

    workers = set()
    total = 0
    for _round in range(3):
        # Many concurrent connections from different source ports: the
        # kernel's reuseport hash spreads them over the two sockets.
        socks = [st.connect(port) for _ in range(BATCH)]
        for i, c in enumerate(socks):
            st.roundtrip(c, f"conn {i}\n".encode())
        for c in socks:
            c.close()
        total += BATCH
        workers = {e["worker"] for e in s.wait_access(total)}
        if workers == {"0", "1"}:
            break
    assert workers == {"0", "1"}, f"after {total} connections only worker(s) {workers} logged sessions"
    assert all(e["reason"] == "client_close" for e in s.access()), s.tail()
    s.stop()
