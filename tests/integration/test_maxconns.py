"""Listener max_conns: the kernel queues the excess, sluice does not accept-and-close."""

import sluicetest as st


def test_listener_max_conns_queues_then_serves(sluice, backend, port):
    b = backend(st.echo_handler)
    s = sluice(st.make_config(port, [f"b {b.addr}"], listener={"max_conns": 5}))
    held = [st.connect(port) for _ in range(5)]
    for i, c in enumerate(held):
        st.roundtrip(c, f"held {i}\n".encode())

    sixth = st.connect(port)  # the kernel completes the handshake
    sixth.sendall(b"sixth\n")
    st.assert_open(sixth, 1.0)  # a window: not served, not closed in it
    rows = st.ss_listeners(port)
    assert rows and rows[0][0] == 1, f"the 6th connection should wait in the accept queue: ss shows {rows}"
    assert b.accepted == 5, f"backend saw {b.accepted} connections, expected 5"
    assert not s.access(), f"no session should have ended yet\n{s.tail()}"

    held.pop(0).close()
    got = st.recv_exact(sixth, len(b"sixth\n"), timeout=2.0 * st.SLOW)
    assert got == b"sixth\n"
    st.roundtrip(sixth, b"more\n")
    assert st.ss_listeners(port)[0][0] == 0
    for c in held + [sixth]:
        c.close()
    s.wait_access(6)
    s.stop()
