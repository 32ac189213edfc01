"""bind = unix:PATH: one socket per path made by the main thread, a dup() of
it in every worker; bind_mode / bind_owner; stale, live and foreign files
at the path; reload keeps, removes and adds socket files; stop removes
them; privilege drop; what a Unix client looks like (access log, show
sessions, PROXY headers, balance = source)."""

import grp
import hashlib
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

import ctltest as ct
import sluicetest as st

T = 5.0 * st.SLOW
ROOT = os.geteuid() == 0


@pytest.fixture
def udir():
    """A short directory for the socket files (sun_path is 108 bytes),
    traversable by an unprivileged user."""
    d = Path(tempfile.mkdtemp(prefix="slu", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def uconnect(path, timeout=T):
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(timeout)
    c.connect(str(path))
    return c


def config(port, servers, path, *, listener=None, **kw):
    lst = {"bind": f"unix:{path}"}
    lst.update(listener or {})
    return ct.ctl_config(port, servers, listener=lst, **kw)


def start(tmp_path, text):
    return st.Sluice(tmp_path, text).start()


def echo_through(path, data):
    """Send data over a new Unix connection, half-close, read the echo."""
    with uconnect(path) as c:
        t = threading.Thread(target=lambda: (c.sendall(data), c.shutdown(socket.SHUT_WR)))
        t.start()
        got, how = st.recv_until_close(c)
        t.join(T)
    assert how == "eof", how
    return got


def test_clients_reach_the_backend_intact(tmp_path, udir, port, backend):
    srv = backend(st.echo_handler)
    path = udir / "app.sock"
    s = start(tmp_path, config(port, [f"a {srv.addr}"], path, sock=udir / "admin.sock"))
    rnd = os.urandom(3 << 20)
    got = echo_through(path, rnd)
    assert hashlib.sha256(got).digest() == hashlib.sha256(rnd).digest() and len(got) == len(rnd)
    # The TCP bind of the same listener still works next to it.
    with st.connect(port) as c:
        st.roundtrip(c)
    e = s.wait_access(count=1, client="unix:-")[0]
    assert e["listener"] == "main" and int(e["up"]) == len(rnd) and e["reason"] == "client_close"
    # show sessions names a live Unix client the same way.
    with uconnect(path) as c:
        st.roundtrip(c)
        out = ct.ask(udir / "admin.sock", "show sessions")
        assert " unix:- " in out, out
    s.stop()
    assert not s.sanitizer_reports()


@pytest.mark.threaded
def test_every_worker_accepts(tmp_path, udir, port, named):
    a = named("a")
    path = udir / "app.sock"
    s = start(tmp_path, config(port, [f"a {a.addr}"], path, workers=2))
    # One socket for the path, shared: both workers' dup()s race on accept.
    seen = set()
    for i in range(400):
        with uconnect(path) as c:
            assert st.recv_line(c) == b"a"
        if i % 20 == 19:
            seen = {e["worker"] for e in s.wait_access(count=i + 1, client="unix:-")}
            if seen == {"0", "1"}:
                break
    assert seen == {"0", "1"}, f"sessions landed only on workers {seen}\n{s.tail()}"
    s.stop()


@pytest.mark.skipif(not ROOT, reason="needs root to give the file to another user")
def test_mode_and_owner(tmp_path, udir, port, named):
    a = named("a")
    nobody = pwd.getpwnam("nobody")
    group = grp.getgrgid(nobody.pw_gid)
    p1, p2 = udir / "sub" / "one.sock", udir / "two.sock"
    text = config(port, [f"a {a.addr}"], p1,
                  listener={"bind_mode": "0640", "bind_owner": f"nobody:{group.gr_name}"})
    text += f"\n[listener other]\nbind = unix:{p2}\npool = main\n"
    s = start(tmp_path, text)
    st1, st2 = os.lstat(p1), os.lstat(p2)
    assert stat.S_ISSOCK(st1.st_mode) and stat.S_IMODE(st1.st_mode) == 0o640
    assert (st1.st_uid, st1.st_gid) == (nobody.pw_uid, group.gr_gid)
    # The directory it made: root's, mode 0750, the socket's group.
    sd = os.lstat(p1.parent)
    assert (sd.st_uid, sd.st_gid, stat.S_IMODE(sd.st_mode)) == (0, group.gr_gid, 0o750)
    # Defaults: 0660, and (allow_root: no drop) root as created.
    assert stat.S_IMODE(st2.st_mode) == 0o660 and st2.st_uid == 0
    # -T prints both keys.
    r = st.run_sluice(["-T", "-c", s.cfg])
    assert "bind_mode = 0640" in r.stdout and f"bind_owner = nobody:{group.gr_name}" in r.stdout
    s.stop()


def test_stale_socket_is_replaced_live_one_refuses(tmp_path, udir, port, named):
    a = named("a")
    path = udir / "app.sock"
    # A socket file nobody listens on any more (a process that died).
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    s = start(tmp_path, config(port, [f"a {a.addr}"], path))
    with uconnect(path) as c:
        assert st.recv_line(c) == b"a"
    s.stop()
    assert not path.exists()
    # Something live at the path: the start is refused, the file untouched.
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(str(path))
    live.listen(8)
    try:
        ino = os.lstat(path).st_ino
        s2 = st.Sluice(tmp_path, config(port, [f"a {a.addr}"], path), name="s2").start(wait=False)
        assert s2.wait_exit() == 1
        assert f"listener main: unix:{path} is in use by another process" in s2.log(), s2.tail()
        assert os.lstat(path).st_ino == ino
    finally:
        live.close()


@pytest.mark.parametrize("kind", ["file", "symlink", "dir"])
def test_non_socket_at_the_path_is_an_error(tmp_path, udir, port, named, kind):
    a = named("a")
    path = udir / "app.sock"
    target = udir / "target"
    target.write_text("keep me\n")
    if kind == "file":
        path.write_text("x\n")
    elif kind == "symlink":
        path.symlink_to(target)
    else:
        path.mkdir()
    s = st.Sluice(tmp_path, config(port, [f"a {a.addr}"], path)).start(wait=False)
    assert s.wait_exit() == 1
    assert f"unix:{path} exists and is not a socket" in s.log(), s.tail()
    assert target.read_text() == "keep me\n" and (path.is_symlink() or path.exists())


def test_reload_keeps_the_socket_and_its_queue(tmp_path, udir, port, named):
    """The path stays: same inode, and a client that connected but was not
    accepted yet (max_conns = 1 is taken) is served after the reload."""
    a = named("a")
    path, admin = udir / "app.sock", udir / "admin.sock"

    def cfg(mode):
        return config(port, [f"a {a.addr}"], path, sock=admin,
                      listener={"max_conns": 1, "bind_mode": mode})

    s = start(tmp_path, cfg("0660"))
    ino = os.lstat(path).st_ino
    first = uconnect(path)
    assert st.recv_line(first) == b"a"
    queued = uconnect(path)  # in the kernel's queue: the listener is full
    ct.write_config(s.cfg, cfg("0600"))
    ct.sighup_reload(s, admin, 2)
    after = os.lstat(path)
    assert after.st_ino == ino and stat.S_IMODE(after.st_mode) == 0o600
    first.close()
    assert st.recv_line(queued) == b"a", s.tail()
    st.roundtrip(queued)
    queued.close()
    s.stop()
    assert not path.exists()


def test_reload_removes_and_adds_socket_files(tmp_path, udir, port, named):
    a = named("a")
    old, new, admin = udir / "old.sock", udir / "new.sock", udir / "admin.sock"
    s = start(tmp_path, config(port, [f"a {a.addr}"], old, sock=admin, workers=2))
    with uconnect(old) as c:
        assert st.recv_line(c) == b"a"
    ct.write_config(s.cfg, config(port, [f"a {a.addr}"], new, sock=admin, workers=2))
    ct.sighup_reload(s, admin, 2)
    assert not os.path.lexists(old), s.tail()
    with pytest.raises((FileNotFoundError, ConnectionRefusedError)):
        uconnect(old)
    with uconnect(new) as c:
        assert st.recv_line(c) == b"a"
    # A reload that fails (a regular file at a new path) changes nothing.
    bad = udir / "bad.sock"
    bad.write_text("x")
    text = config(port, [f"a {a.addr}"], new, sock=admin, workers=2)
    ct.write_config(s.cfg, text + f"\n[listener two]\nbind = unix:{bad}\npool = main\n")
    r = ct.ask(admin, "reload")
    assert r.startswith("reload failed") and "exists and is not a socket" in r, r
    assert bad.read_text() == "x" and stat.S_ISSOCK(os.lstat(new).st_mode)
    with uconnect(new) as c:
        assert st.recv_line(c) == b"a"
    # Fewer workers: the retiring one closes its dup(), the socket stays.
    ct.write_config(s.cfg, config(port, [f"a {a.addr}"], new, sock=admin, workers=1))
    assert ct.ask(admin, "reload").startswith("reload ok")
    s.wait_log("worker 1: exited")
    for _ in range(5):
        with uconnect(new) as c:
            assert st.recv_line(c) == b"a"
    s.stop()
    assert not os.path.lexists(new)
    assert not s.sanitizer_reports()


def test_accept_proxy_and_send_proxy(tmp_path, udir, port, backend, named):
    """accept_proxy on a Unix listener takes the header's client; without
    one the servers get PROXY UNKNOWN (v1) / an address-less v2 header."""
    first = []

    def record(conn, srv):
        first.append(conn.recv(256))
        conn.sendall(b"ok\n")
        st.echo_handler(conn, srv)

    rec = backend(record)
    p1, p2 = udir / "pp.sock", udir / "plain.sock"
    text = config(port, [f"r {rec.addr} send_proxy=v1"], p1, listener={"accept_proxy": "on"})
    text += (f"\n[listener plain]\nbind = unix:{p2}\npool = v2\n"
             f"\n[pool v2]\nserver = r {rec.addr}\nsend_proxy = v2\n")
    s = start(tmp_path, text)
    with uconnect(p1) as c:
        c.sendall(b"PROXY TCP4 192.0.2.7 192.0.2.1 4567 80\r\nhi\n")
        assert st.recv_line(c) == b"ok"
    st.wait_for(lambda: first, T, "the backend's first bytes")
    assert first[0].startswith(b"PROXY TCP4 192.0.2.7 192.0.2.1 4567 80\r\n"), first
    s.wait_access(client="192.0.2.7:4567")
    with uconnect(p2) as c:
        c.sendall(b"hi\n")
        assert st.recv_line(c) == b"ok"
    st.wait_for(lambda: len(first) == 2, T, "the second backend connection")
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    assert first[1].startswith(sig + b"\x21\x00\x00\x00"), first[1]
    s.stop()


def test_source_balance_spreads_unix_clients(tmp_path, udir, port, named):
    a, b = named("a"), named("b")
    path = udir / "app.sock"
    s = start(tmp_path, config(port, [f"a {a.addr}", f"b {b.addr}"], path, balance="source"))
    got = []
    for _ in range(4):
        with uconnect(path) as c:
            got.append(st.recv_line(c))
    assert got == [b"a", b"b", b"a", b"b"], got
    s.stop()


def test_config_errors(tmp_path, udir):
    path = udir / "app.sock"
    text = config(1, ["a 127.0.0.1:9"], path,
                  listener={"bind_owner": "no-such-user-here", "bind_mode": "0999"})
    cfg = tmp_path / "c.ini"
    cfg.write_text(text)
    r = st.run_sluice(["-t", "-c", cfg])
    assert r.returncode == 1
    ln_owner = ct.line_of(text, "bind_owner")
    ln_mode = ct.line_of(text, "bind_mode")
    assert f"{cfg}:{ln_owner}: bind_owner: 'no-such-user-here': no such user" in r.stderr, r.stderr
    assert f"{cfg}:{ln_mode}: bind_mode: '0999' is not an octal mode like 0660" in r.stderr
    cfg.write_text(config(1, ["a 127.0.0.1:9"], "relative.sock"))
    r = st.run_sluice(["-t", "-c", cfg])
    assert r.returncode == 1 and "unix socket path must be absolute" in r.stderr, r.stderr


@pytest.mark.skipif(not ROOT, reason="needs root to switch users")
def test_privilege_drop_leaves_a_socket_the_owner_can_use(tmp_path, udir, port, named):
    """Started as root with user = nobody: the socket is made as root before
    the drop, given to nobody (the default owner), and nobody can connect;
    after the drop, stopping cannot remove it from a root-owned directory,
    and the next start replaces the stale file."""
    a = named("a")
    nobody = pwd.getpwnam("nobody")
    path = udir / "app.sock"
    tmp_path.chmod(0o755)
    text = config(port, [f"a {a.addr}"], path, glob={"user": "nobody"},
                  listener={"bind_mode": "0600"}).replace("allow_root = yes\n", "")
    s = st.Sluice(tmp_path, text)
    s.cfg.chmod(0o644)
    s.start()
    sst = os.lstat(path)
    assert (sst.st_uid, sst.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert stat.S_IMODE(sst.st_mode) == 0o600
    probe = ("import socket,sys; c=socket.socket(socket.AF_UNIX); c.settimeout(5); "
             "c.connect(sys.argv[1]); f=c.makefile('rb'); sys.stdout.write(f.readline().decode())")
    r = subprocess.run(["setpriv", "--reuid=nobody", f"--regid={nobody.pw_gid}", "--clear-groups",
                        sys.executable, "-c", probe, str(path)],
                       capture_output=True, text=True, timeout=30 * st.SLOW)
    assert r.stdout == "a\n", r.stderr
    # Root itself is not the owner any more, but may connect (mode is no
    # obstacle to root); some other user may not.
    s.stop()
    s2 = st.Sluice(tmp_path, text, name="s2")
    s2.cfg.chmod(0o644)
    s2.start()
    with uconnect(path) as c:
        assert st.recv_line(c) == b"a"
    s2.stop()
