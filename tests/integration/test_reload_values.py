"""A reload that changes a listener's `relay` or `max_conns`: new sessions
use the new value, live ones keep what they had (docs/config.md: "A reload
that changes `relay` applies to new sessions"; listener `max_conns` "works
like the global one")."""

import os
import signal

import ctltest as ct
import sluicetest as st
from ctltest import sockdir  # noqa: F401  (fixture)


def pipes(pid):
    """Pipe descriptors sluice holds (splice's per-worker pipe cache keeps a
    pipe open after a direction has used it; copy never makes one)."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("pipe:")
        except OSError:
            pass
    return n


def reload_to(s, sock, text, gen):
    ct.write_config(s.cfg, text)
    s.signal(signal.SIGHUP)
    ct.wait_for_gen(s, sock, gen)


def test_reload_changes_relay_for_new_sessions_only(sluice, backend, port, sockdir):
    b = backend(st.echo_handler)
    sock = str(sockdir / "admin.sock")

    def cfg(relay):
        return ct.ctl_config(port, [f"b {b.addr}"], sock=sock, listener={"relay": relay})
    s = sluice(cfg("copy"))
    old = st.connect(port)
    ct.echo_chunks(old, 1 << 20)
    base = pipes(s.pid)
    reload_to(s, sock, cfg("splice"), 2)
    ct.echo_chunks(old, 1 << 20)  # the live session still copies: no pipe
    assert pipes(s.pid) == base, f"a copy session made pipes after the reload ({pipes(s.pid)} vs {base})"
    new = st.connect(port)
    ct.echo_chunks(new, 1 << 20)
    assert pipes(s.pid) > base, "a session started after the reload to splice used no pipe"
    old.close()
    new.close()
    s.stop()


def test_reload_lowers_listener_max_conns_live_sessions_stay(sluice, backend, port, sockdir):
    b = backend(st.echo_handler)
    sock = str(sockdir / "admin.sock")

    def cfg(n):
        return ct.ctl_config(port, [f"b {b.addr}"], sock=sock, listener={"max_conns": n})
    s = sluice(cfg(2))
    live = [st.connect(port) for _ in range(2)]
    for c in live:
        st.roundtrip(c)
    reload_to(s, sock, cfg(1), 2)
    for c in live:  # over the new limit, still served
        st.roundtrip(c, b"kept\n")
    waiting = st.connect(port)
    waiting.sendall(b"queued\n")
    st.assert_open(waiting, 0.5)  # a window: 2 live > 1, not accepted
    live.pop().close()
    st.assert_open(waiting, 0.5)  # a window: 1 live = the new limit, still waiting
    assert b.accepted == 2, b.accepted
    live.pop().close()
    assert st.recv_exact(waiting, 7) == b"queued\n"
    waiting.close()
    s.stop()


def test_reload_raises_listener_max_conns(sluice, backend, port, sockdir):
    b = backend(st.echo_handler)
    sock = str(sockdir / "admin.sock")

    def cfg(n):
        return ct.ctl_config(port, [f"b {b.addr}"], sock=sock, listener={"max_conns": n})
    s = sluice(cfg(1))
    live = st.connect(port)
    st.roundtrip(live)
    waiting = st.connect(port)
    waiting.sendall(b"queued\n")
    st.assert_open(waiting, 0.5)  # a window: at the limit of 1
    reload_to(s, sock, cfg(3), 2)
    assert st.recv_exact(waiting, 7) == b"queued\n", "the raised limit should let the waiting client in"
    third = st.connect(port)
    st.roundtrip(third)
    for c in (live, waiting, third):
        c.close()
    s.stop()
