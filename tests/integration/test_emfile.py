"""Running out of file descriptors: sluice survives and recovers."""

import sluicetest as st

NOFILE = 64


def try_session(port, timeout=1.0 * st.SLOW):
    """A new session that echoes within `timeout`, or None."""
    c = st.connect(port, timeout=timeout)
    try:
        st.roundtrip(c, b"hi\n", timeout)
        return c
    except (AssertionError, OSError):
        c.close()
        return None


def test_emfile_survives_and_recovers(sluice, backend, port):
    b = backend(st.echo_handler)
    s = sluice(st.make_config(port, [f"b {b.addr}"]), nofile=NOFILE)
    assert st.get_nofile(s.pid) == NOFILE

    # Fill sluice's descriptor table with served sessions.  When exactly one
    # fd is left an accept would succeed and the backend socket() fail, so
    # lower the soft limit by one: the next accept() itself gets EMFILE.
    sessions, extra = [], []
    try:
        for _ in range(NOFILE):
            free = st.get_nofile(s.pid) - s.nfds()
            if free == 1:
                st.set_nofile(s.pid, st.get_nofile(s.pid) - 1)
                free = 0
            if free <= 0:
                break
            c = try_session(port)
            if c is None:  # sluice needs more than 2 fds per session: we are there
                break
            sessions.append(c)
        assert len(sessions) >= 10, f"only {len(sessions)} sessions with RLIMIT_NOFILE={NOFILE}"

        # More clients than fds allow: the kernel completes their handshakes,
        # sluice cannot accept them.
        extra = [st.connect(port) for _ in range(10)]
        s.wait_log("too many open files", timeout=3 * st.SLOW)
        assert s.alive(), f"sluice died on EMFILE\n{s.tail()}"
        # Existing sessions keep working meanwhile.
        for c in (sessions[0], sessions[-1]):
            st.roundtrip(c, b"still here\n")
    finally:
        for c in sessions + extra:
            c.close()

    # After the clients are gone, new connections are served again.
    c = st.wait_for(lambda: try_session(port), 5 * st.SLOW,
                    lambda: f"a new session to be served after the clients closed\n{s.tail()}",
                    interval=0.1)
    st.roundtrip(c, b"again\n")
    c.close()
    assert s.alive()
    s.stop()
