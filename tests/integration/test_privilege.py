"""[global] user / group / allow_root: as root, drop to the configured user
(or the default one: sluice, else nobody) after binding, keep only
CAP_NET_BIND_SERVICE; root only with allow_root = yes."""

import grp
import os
import pwd
import re
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

import ctltest as ct
import sluicetest as st

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users")

NOBODY = pwd.getpwnam("nobody")
NOGROUP = grp.getgrgid(NOBODY.pw_gid)
CAP_NET_BIND_SERVICE = 10
T = 5.0 * st.SLOW


@pytest.fixture
def world_dir():
    """A directory the unprivileged user can traverse: after the drop,
    sluice re-reads its config and reopens its log from here."""
    d = Path(tempfile.mkdtemp(prefix="slpriv", dir="/tmp"))
    d.chmod(0o755)
    made = []
    yield d, made
    for s in made:
        s.kill()
    reports = [line for s in made for line in s.sanitizer_reports()]
    shutil.rmtree(d, ignore_errors=True)
    assert not reports, "sanitizer reports in sluice's stderr:\n" + "\n".join(reports[:40])


def start(world, text, wait=True):
    d, made = world
    s = st.Sluice(d, text)
    s.cfg.chmod(0o644)
    made.append(s)
    return s.start(wait=wait)


def proc_status(pid):
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.split()
    return out


def drop_config(port, backend, sockpath, extra_glob=None):
    glob = {"user": "nobody", "group": NOGROUP.gr_name, "admin_socket": sockpath}
    glob.update(extra_glob or {})
    text = st.make_config(port, [f"a {backend.addr}"], glob=glob)
    # make_config allows root for every other test; this one must not.
    return text.replace("allow_root = yes\n", "")


def free_low_port():
    """A free port below 1024 on 127.0.0.1 (only root or the capability may bind it)."""
    for p in range(980, 800, -1):
        if st.port_is_free(p):
            return p
    pytest.skip("no free port in 801..980")


def default_user():
    """Who a root start without `user` becomes: sluice if it exists, else nobody."""
    for name in ("sluice", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    pytest.skip("neither a sluice nor a nobody user exists")


def test_root_without_user_drops_to_the_default_user(world_dir, port, named):
    a = named("a")
    want = default_user()
    text = st.make_config(port, [f"a {a.addr}"]).replace("allow_root = yes\n", "")
    s = start(world_dir, text)
    status = proc_status(s.pid)
    assert status["Uid"] == [str(want.pw_uid)] * 4, status["Uid"]
    assert f"running as user {want.pw_name}" in s.log() and "no user in [global]" in s.log(), \
        s.tail()
    with st.connect(port) as c:
        assert st.recv_line(c) == b"a"
    s.stop()


def test_check_mode_as_root(tmp_path):
    """-t (the unit's ExecStartPre) passes where the start drops to the default
    user, and fails, with the line, on user = root."""
    text = st.make_config(st.free_port(), ["a 127.0.0.1:9"])
    cfg = tmp_path / "c.ini"
    cfg.write_text(text.replace("allow_root = yes\n", ""))
    cfg.chmod(0o644)
    r = st.run_sluice(["-t", "-c", cfg])
    assert r.returncode == 0 and "configuration OK" in r.stdout, r.stdout + r.stderr
    cfg.write_text(text.replace("allow_root = yes\n", "user = nobody\n"))
    r = st.run_sluice(["-t", "-c", cfg])
    assert r.returncode == 0 and "configuration OK" in r.stdout, r.stderr
    # As the start does, -t warns when the user cannot read the file.
    cfg.chmod(0o600)
    r = st.run_sluice(["-t", "-c", cfg])
    assert r.returncode == 0 and "not readable by user nobody" in r.stderr, r.stdout + r.stderr


def test_allow_root_runs_as_root(world_dir, port, named):
    a = named("a")
    s = start(world_dir, st.make_config(port, [f"a {a.addr}"], glob={"allow_root": "yes"}))
    assert proc_status(s.pid)["Uid"] == ["0"] * 4
    with st.connect(port) as c:
        assert st.recv_line(c) == b"a"
    s.stop()


def test_drops_to_user_and_keeps_only_bind_capability(world_dir, port, named):
    d, _ = world_dir
    a = named("a")
    sock = d / "run" / "admin.sock"  # run/ does not exist: sluice makes it
    log = d / "logs" / "access.log"
    log.parent.mkdir()
    # A log dir the user may write, so the reopen below can create the file
    # itself (with a root-owned dir, logrotate's `create` makes it instead).
    os.chown(log.parent, NOBODY.pw_uid, NOBODY.pw_gid)
    s = start(world_dir, drop_config(port, a, sock, {"access_log": log}))
    assert "running as user nobody" in s.log(), s.tail()

    status = proc_status(s.pid)
    assert status["Uid"] == [str(NOBODY.pw_uid)] * 4, status["Uid"]
    assert status["Gid"] == [str(NOGROUP.gr_gid)] * 4, status["Gid"]
    assert "0" not in status.get("Groups", []), f"root group kept: {status.get('Groups')}"
    bind_only = 1 << CAP_NET_BIND_SERVICE
    assert int(status["CapEff"][0], 16) == bind_only, status["CapEff"]
    assert int(status["CapPrm"][0], 16) == bind_only, status["CapPrm"]
    assert int(status["CapInh"][0], 16) == 0, status["CapInh"]

    # The socket and the log belong to the user, so it can use them; the
    # directory made for the socket stays root's (group: the user's), so the
    # user cannot swap names in it under the next start as root.
    for path in (sock, log):
        assert path.stat().st_uid == NOBODY.pw_uid, f"{path} owned by uid {path.stat().st_uid}"
    d_st = sock.parent.stat()
    assert (d_st.st_uid, d_st.st_gid, d_st.st_mode & 0o777) == (0, NOGROUP.gr_gid, 0o750), d_st
    assert oct(sock.stat().st_mode & 0o777) == "0o600"

    # It proxies, answers on the admin socket, and writes its log.
    with st.connect(port) as c:
        assert st.recv_line(c) == b"a"
        st.roundtrip(c)  # raises unless the echo comes back
    st.wait_for(lambda: log.exists() and "reason=client_close" in log.read_text(), 5 * st.SLOW,
                "the access log line of the first session")
    assert "uptime" in ct.ask(sock, "show info")

    # logrotate: move the file away, SIGUSR1; sluice (now nobody) creates a new one.
    log.rename(log.with_name("access.log.1"))
    s.signal(signal.SIGUSR1)
    st.wait_for(log.exists, 5 * st.SLOW, "a new access log after SIGUSR1")
    with st.connect(port) as c:
        st.recv_line(c)
    st.wait_for(lambda: "reason=client_close" in log.read_text(), 5 * st.SLOW,
                "a session logged to the reopened file")

    s.stop()
    # The user cannot remove it from root's directory; the next start
    # replaces a stale socket (systemd's RuntimeDirectory= removes it).
    s2 = start(world_dir, drop_config(port, a, sock, {"access_log": log}))
    assert "uptime" in ct.ask(sock, "show info")
    s2.stop()


def test_access_log_symlink_is_refused_not_followed(world_dir, port, named):
    """Whoever can write the log directory must not redirect the log (opened
    and chowned as root) to another file: CVE-2016-1247 in nginx's package."""
    d, _ = world_dir
    a = named("a")
    target = d / "precious"
    target.write_text("root's file\n")
    link = d / "access.log"
    link.symlink_to(target)
    s = start(world_dir, drop_config(port, a, d / "admin.sock", {"access_log": link}), wait=False)
    assert s.wait_exit() == 1, s.tail()
    assert f"access_log {link}" in s.log(), s.tail()
    assert target.read_text() == "root's file\n"
    assert target.stat().st_uid == 0, "the symlink's target was chowned"


def test_reload_after_drop_binds_a_low_port(world_dir, port, named):
    """Reload re-reads the file and binds a port below 1024 as nobody:
    CAP_NET_BIND_SERVICE is the one capability kept."""
    d, _ = world_dir
    a = named("a")
    sock = d / "admin.sock"
    s = start(world_dir, drop_config(port, a, sock))
    low = free_low_port()
    text = drop_config(port, a, sock) + f"\n[listener low]\nbind = 127.0.0.1:{low}\npool = main\n"
    ct.write_config(s.cfg, text)
    s.cfg.chmod(0o644)
    reply = ct.ask(sock, "reload")
    assert "reload ok" in reply, reply
    with st.connect(low) as c:
        assert st.recv_line(c) == b"a"

    # A new user in the file is reported, not applied (no way back to root).
    ct.write_config(s.cfg, text.replace("user = nobody", "user = daemon"))
    s.cfg.chmod(0o644)
    reply = ct.ask(sock, "reload")
    assert "user/group changes take effect at the next restart" in reply, reply
    assert "reload ok" in reply, reply
    assert proc_status(s.pid)["Uid"] == [str(NOBODY.pw_uid)] * 4
    s.stop()


def test_raising_workers_after_the_drop(world_dir, port, named):
    """Sockets a reload opens after the drop are the user's; the ones from
    the start are too (fsuid), so new workers join the SO_REUSEPORT group."""
    d, _ = world_dir
    a = named("a")
    sock = d / "admin.sock"
    s = start(world_dir, drop_config(port, a, sock, {"workers": 1}))
    ct.write_config(s.cfg, drop_config(port, a, sock, {"workers": 2}))
    s.cfg.chmod(0o644)
    reply = ct.ask(sock, "reload")
    assert "reload ok" in reply and "2 workers" in reply, reply
    st.wait_for(lambda: len(st.ss_listeners(port)) == 2, T, "two listening sockets")
    for _ in range(4):
        with st.connect(port) as c:
            assert st.recv_line(c) == b"a"
    s.stop()


def test_user_root_is_a_located_error(world_dir, port, named):
    a = named("a")
    text = st.make_config(port, [f"a {a.addr}"], glob={"user": "root"})
    s = start(world_dir, text.replace("allow_root = yes\n", ""), wait=False)
    assert s.wait_exit() == 1, s.tail()
    assert re.search(r"\.ini:\d+: user: 'root' is root", s.log()), s.tail()
    r = st.run_sluice(["-t", "-c", s.cfg])
    assert r.returncode == 1 and re.search(r"\.ini:\d+: user: 'root' is root", r.stderr), r.stderr
    # allow_root = yes makes it a choice, not a mistake.
    s.cfg.write_text(text)
    r = st.run_sluice(["-t", "-c", s.cfg])
    assert r.returncode == 0, r.stderr


def test_access_log_fifo_without_reader_fails_fast(world_dir, port, named):
    d, _ = world_dir
    a = named("a")
    fifo = d / "access.log"
    os.mkfifo(fifo)
    s = start(world_dir, drop_config(port, a, d / "admin.sock", {"access_log": fifo}), wait=False)
    assert s.wait_exit() == 1, s.tail()  # ENXIO at once, not a hang in open()
    assert f"access_log {fifo}" in s.log(), s.tail()


def test_unreadable_config_fails_reload_and_keeps_running(world_dir, port, named):
    d, made = world_dir
    a = named("a")
    sock = d / "admin.sock"
    s = st.Sluice(d, drop_config(port, a, sock))
    s.cfg.chmod(0o600)  # root's file: nobody cannot read it after the drop
    made.append(s)
    s.start()
    assert "is not readable by user nobody" in s.log(), s.tail()  # told at start
    reply = ct.ask(sock, "reload")
    assert "reload failed" in reply and "cannot open" in reply, reply
    with st.connect(port) as c:
        assert st.recv_line(c) == b"a"
    s.stop()


@pytest.mark.parametrize("glob,key,why", [
    ({"user": "no-such-user-x"}, "user", "no such user"),
    ({"user": "nobody", "group": "no-such-group-x"}, "group", "no such group"),
    ({"group": "nogroup"}, "group", "needs user"),
    ({"allow_root": "perhaps"}, "allow_root", "is not yes or no"),
])
def test_bad_identity_is_a_config_error(tmp_path, glob, key, why):
    text = st.make_config(st.free_port(), ["a 127.0.0.1:9"], glob=glob)
    cfg = tmp_path / "bad.ini"
    cfg.write_text(text)
    r = st.run_sluice(["-t", "-c", cfg])
    assert r.returncode == 1, r.stdout + r.stderr
    line = ct.line_of(text, f"{key} = {glob[key]}") if key in glob else None
    if key == "group" and "user" not in glob:
        line = ct.line_of(text, "group = ")
    assert f"{cfg}:{line}: {key}: " in r.stderr and why in r.stderr, r.stderr


def test_numeric_user_and_group(tmp_path):
    text = st.make_config(st.free_port(), ["a 127.0.0.1:9"],
                          glob={"user": str(NOBODY.pw_uid), "group": str(NOGROUP.gr_gid)})
    cfg = tmp_path / "num.ini"
    cfg.write_text(text)
    r = st.run_sluice(["-t", "-c", cfg])
    assert r.returncode == 0 and "configuration OK" in r.stdout, r.stderr


def test_connect_error_path_unaffected_after_drop(world_dir, port, closed_port, named):
    """Backends are reached as nobody too: a refused one still fails over."""
    d, _ = world_dir
    a = named("a")
    dead = closed_port()
    text = st.make_config(port, [f"dead 127.0.0.1:{dead.port}", f"a {a.addr}"],
                          glob={"user": "nobody", "group": NOGROUP.gr_name},
                          pool={"retries": 1}).replace("allow_root = yes\n", "")
    s = start(world_dir, text)
    for _ in range(4):
        with st.connect(port) as c:
            assert st.recv_line(c) == b"a"
    s.stop()


def test_pid_file_after_the_drop(world_dir, port, named):
    """Written as root before the drop; at exit the dropped user cannot
    unlink it from a root-owned directory, so it is emptied instead."""
    d, _ = world_dir
    a = named("a")
    pidf = d / "sluice.pid"
    s = start(world_dir, drop_config(port, a, d / "admin.sock", {"pid_file": pidf}))
    assert proc_status(s.pid)["Uid"] == [str(NOBODY.pw_uid)] * 4
    assert pidf.read_text() == f"{s.pid}\n"
    s.stop()
    assert not pidf.exists() or pidf.read_text() == "", "a stale pid was left behind"
