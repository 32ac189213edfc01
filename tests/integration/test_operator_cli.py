"""What operators type: sluice -T (the effective config) and long options,
[global] pid_file, sluicectl -c FILE (the unit's reload and logrotate's
reopen find sluice through the config file), a forgiving config file."""

import os
import re

import ctltest as ct
from ctltest import sockdir  # noqa: F401  (fixture)
import sluicetest as st

T = 10.0 * st.SLOW


def test_dump_round_trips_through_check(tmp_path):
    port = st.free_port()
    text = ct.ctl_config(port, ["a 127.0.0.1:9 weight=2", "b [::1]:9 backup"],
                         sock=tmp_path / "admin.sock",
                         pool={"check": "send-expect", "check_send": r"PING\x20\x231;x\r\n",
                               "check_expect": "+PONG ; trailing comment"})
    cfg = tmp_path / "in.ini"
    cfg.write_text(text)
    r = st.run_sluice(["--dump", "--config", cfg])
    assert r.returncode == 0, r.stderr
    dumped = r.stdout
    # Defaults the file never set are filled in.
    for line in ("backlog = 4096", "retries = 2", "buffer_size = 16k", "proxy_timeout = 5s",
                 "check_interval = 2s", "pid_file = off"):
        assert f"\n{line}\n" in dumped, f"{line!r} missing from:\n{dumped}"
    assert "check_send = PING\\x20\\x231\\x3bx\\r\\n" in dumped, dumped
    assert "check_expect = +PONG\n" in dumped, dumped
    out = tmp_path / "dump.ini"
    out.write_text(dumped)
    r = st.run_sluice(["-t", "-c", out])
    assert r.returncode == 0 and "configuration OK" in r.stdout, r.stderr + dumped
    r2 = st.run_sluice(["-T", "-c", out])
    strip = lambda s: [ln for ln in s.splitlines() if not ln.startswith(";")]  # noqa: E731
    assert r2.returncode == 0 and strip(r2.stdout) == strip(dumped), r2.stdout


def test_dump_of_a_broken_file_prints_errors_only(tmp_path):
    cfg = tmp_path / "bad.ini"
    cfg.write_text("[global]\nworkers = lots\n")
    r = st.run_sluice(["-T", "-c", cfg])
    assert r.returncode == 1 and r.stdout == "", r.stdout
    assert f"{cfg}:2: workers: 'lots'" in r.stderr, r.stderr


def test_long_options(tmp_path):
    assert st.run_sluice(["--version"]).stdout.startswith("sluice ")
    h = st.run_sluice(["--help"])
    assert h.returncode == 0 and "--config" in h.stdout and "--dump" in h.stdout, h.stdout
    bad = st.run_sluice(["--colour"])
    assert bad.returncode == 2 and "unknown option --colour" in bad.stderr, bad.stderr
    missing = st.run_sluice(["--config"])
    assert missing.returncode == 2 and "--config needs a file name" in missing.stderr
    cfg = tmp_path / "c.ini"
    cfg.write_text(st.make_config(st.free_port(), ["a 127.0.0.1:9"]))
    r = st.run_sluice(["--test", "--config", cfg])
    assert r.returncode == 0 and "configuration OK" in r.stdout, r.stderr
    c = ct.run_ctl(None, "--version")
    assert c.returncode == 0 and c.stdout.startswith("sluicectl "), c.stdout
    c = ct.run_ctl(None, "--bogus", "help")
    assert c.returncode == 2, c.stdout + c.stderr


def test_forgiving_file_starts_and_serves(tmp_path):
    """An HAProxy-style file: indented keys, inline comments with ; and #."""
    backend = st.Server(st.named_handler("a"))
    port = st.free_port()
    text = (f"[global]\n    workers = 1   # one is enough\n    access_log = stderr ; log\n"
            + ("    allow_root = yes\n" if os.geteuid() == 0 else "")
            + f"[listener web]  # the only one\n    bind = 127.0.0.1:{port}\n    pool = web\n"
            f"[pool web]\n    server = a {backend.addr}   # the backend\n")
    s = st.Sluice(tmp_path, text)
    try:
        s.start()
        with st.connect(port) as c:
            assert st.recv_line(c) == b"a"
        s.stop()
    finally:
        s.kill()
        backend.close()


def test_unknown_key_gets_a_hint(tmp_path):
    cfg = tmp_path / "c.ini"
    cfg.write_text(st.make_config(st.free_port(), ["a 127.0.0.1:9"], pool={"conect_timeout": "1s"}))
    r = st.run_sluice(["-t", "-c", cfg])
    assert r.returncode == 1, r.stdout
    assert re.search(r":\d+: conect_timeout: unknown key in \[pool main\] "
                     r"\(did you mean 'connect_timeout'\?\)", r.stderr), r.stderr


def test_pid_file(tmp_path):
    backend = st.Server(st.named_handler("a"))
    port = st.free_port()
    pidf = tmp_path / "sluice.pid"
    s = st.Sluice(tmp_path, st.make_config(port, [f"a {backend.addr}"],
                                           glob={"pid_file": pidf}))
    other = None
    try:
        s.start()
        assert pidf.read_text() == f"{s.pid}\n"
        # A second instance on the same pid file refuses to start (it
        # would otherwise also join the SO_REUSEPORT group of the port).
        other = st.Sluice(tmp_path, st.make_config(st.free_port(), [f"a {backend.addr}"],
                                                   glob={"pid_file": pidf}), name="second")
        other.start(wait=False)
        assert other.wait_exit() == 1, other.tail()
        assert f"pid_file {pidf}" in other.log() and f"held by pid {s.pid}" in other.log(), \
            other.tail()
        assert pidf.read_text() == f"{s.pid}\n", "the refused start changed the pid file"
        s.stop()
        assert not pidf.exists(), "pid file left behind at exit"
    finally:
        s.kill()
        if other:
            other.kill()
        backend.close()


def test_pid_file_must_be_absolute(tmp_path):
    cfg = tmp_path / "c.ini"
    cfg.write_text(st.make_config(st.free_port(), ["a 127.0.0.1:9"], glob={"pid_file": "x.pid"}))
    r = st.run_sluice(["-t", "-c", cfg])
    assert r.returncode == 1 and re.search(r":\d+: pid_file: 'x.pid' must be off or an absolute",
                                           r.stderr), r.stderr


def test_sluicectl_finds_the_socket_in_the_config(tmp_path, sockdir):
    backend = st.Server(st.named_handler("a"))
    port = st.free_port()
    sock = sockdir / "c.sock"
    text = ct.ctl_config(port, [f"a {backend.addr}"], sock=sock)
    s = st.Sluice(tmp_path, text)
    try:
        s.start()
        r = ct.run_ctl(None, "-c", s.cfg, "show", "info")
        assert r.returncode == 0 and "generation" in r.stdout, r.stdout + r.stderr
        # reload through -c: ok, then a broken file fails with the errors.
        r = ct.run_ctl(None, "--config", s.cfg, "reload")
        assert r.returncode == 0 and "reload ok" in r.stdout, r.stdout + r.stderr
        ct.write_config(s.cfg, text + "[pool broken\n")
        r = ct.run_ctl(None, "-c", s.cfg, "reload")
        assert r.returncode == 1, r.stdout + r.stderr
        # A file without an admin socket says so.
        nosock = tmp_path / "nosock.ini"
        nosock.write_text(st.make_config(port, [f"a {backend.addr}"]))
        r = ct.run_ctl(None, "-c", nosock, "reload")
        assert r.returncode == 1 and "has no admin socket" in r.stderr, r.stderr
        r = ct.run_ctl(None, "-c", nosock, "-s", sock, "help")
        assert r.returncode == 2, r.stderr
        s.stop()
    finally:
        s.kill()
        backend.close()
