"""access_log = syslog:...: one RFC 5424 datagram per session to a Unix
datagram socket or UDP, PRI = facility * 8 + 6 (informational), APP-NAME
syslog_tag; a full or absent syslog socket never slows sessions down: lines
are dropped and counted (access_log_dropped), and a Unix socket that comes
back is reconnected (docs/operations.md, Syslog)."""

import grp
import json
import os
import pwd
import re
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

import pytest

import ctltest as ct
import sluicetest as st
from ctltest import sockdir  # noqa: F401  (fixture)

# <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG
RFC5424 = re.compile(r"^<(?P<pri>\d{1,3})>1 (?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) "
                     r"(?P<host>[!-~]{1,255}) (?P<app>[!-~]{1,48}) (?P<pid>\d+) access - "
                     r"(?P<msg>[^\n]*)$")


def unix_receiver(path, rcvbuf=None):
    r = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if rcvbuf:
        r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    r.bind(str(path))
    return r


def recv_messages(r, n, timeout=5 * st.SLOW):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        left = deadline - time.monotonic()
        assert left > 0, f"got {len(out)} of {n} syslog messages: {out}"
        r.settimeout(left)
        out.append(r.recv(65536).decode())
    return out


def one_session(port, data=b"hi"):
    with st.connect(port) as c:
        st.roundtrip(c, data)
        c.shutdown(socket.SHUT_WR)
        st.recv_until_close(c)


def dropped(sock):
    return int(ct.show_info(sock)["access_log_dropped"])


def test_unix_socket_rfc5424(sluice, backend, port, sockdir):
    b = backend(st.echo_handler)
    path = sockdir / "log.sock"
    r = unix_receiver(path)
    sock = str(sockdir / "admin.sock")
    with r:
        s = sluice(ct.ctl_config(port, [f"b {b.addr}"], sock=sock,
                                 glob={"access_log": f"syslog:unix:{path}",
                                       "syslog_facility": "local3", "syslog_tag": "edge-7"}))
        for i in range(3):
            one_session(port, b"x" * (i + 1))
        msgs = recv_messages(r, 3)
        for i, msg in enumerate(msgs):
            m = RFC5424.match(msg)
            assert m, msg
            assert int(m["pri"]) == 19 * 8 + 6, msg  # local3.info
            assert m["app"] == "edge-7" and int(m["pid"]) == s.pid, msg
            assert m["host"] == socket.gethostname(), msg
            a = st.ACCESS_RE.match(m["msg"])
            assert a and a["up"] == str(i + 1) and a["reason"] == "client_close", msg
        # one message per session: nothing more arrives
        r.settimeout(0.2)
        try:
            extra = r.recv(65536)
        except socket.timeout:
            extra = None
        assert extra is None, extra
        assert dropped(sock) == 0

        # a reload changes facility and tag, and the format
        ct.write_config(s.cfg, ct.ctl_config(port, [f"b {b.addr}"], sock=sock,
                                             glob={"access_log": f"syslog:{path}",
                                                   "syslog_facility": "daemon",
                                                   "access_log_format": "json"}))
        s.signal(signal.SIGHUP)
        ct.wait_for_gen(s, sock, 2)
        one_session(port)
        m = RFC5424.match(recv_messages(r, 1)[0])
        assert m and int(m["pri"]) == 3 * 8 + 6 and m["app"] == "sluice", m
        assert json.loads(m["msg"])["up"] == 2
        s.stop()


def test_udp(sluice, backend, port):
    b = backend(st.echo_handler)
    r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    r.bind(("127.0.0.1", 0))
    with r:
        s = sluice(st.make_config(port, [f"b {b.addr}"], glob={
            "access_log": f"syslog:127.0.0.1:{r.getsockname()[1]}", "access_log_format": "json"}))
        one_session(port, b"udp!")
        m = RFC5424.match(recv_messages(r, 1)[0])
        assert m and int(m["pri"]) == 16 * 8 + 6 and m["app"] == "sluice", m
        rec = json.loads(m["msg"])
        assert rec["up"] == 4 and rec["reason"] == "client_close", rec
        s.stop()


def run_sessions(port, n, budget):
    """n sessions back to back; all must finish within budget seconds."""
    t0 = time.monotonic()
    for _ in range(n):
        one_session(port)
        assert time.monotonic() - t0 < budget, "sessions slowed down behind the syslog socket"
    return time.monotonic() - t0


def test_full_socket_drops_and_counts(sluice, backend, port, sockdir):
    b = backend(st.echo_handler)
    path = sockdir / "log.sock"
    sock = str(sockdir / "admin.sock")
    r = unix_receiver(path, rcvbuf=1024)  # never read: full after a line or two
    with r:
        s = sluice(ct.ctl_config(port, [f"b {b.addr}"], sock=sock, workers=2,
                                 glob={"access_log": f"syslog:{path}"}))
        n = 200
        run_sessions(port, n, 20 * st.SLOW)
        st.wait_for(lambda: dropped(sock) + 0 >= 1, 5 * st.SLOW, "dropped lines counted")
        # every line either sits in the socket or was dropped and counted
        queued = 0
        r.setblocking(False)
        try:
            while True:
                r.recv(65536)
                queued += 1
        except BlockingIOError:
            pass
        d = dropped(sock)
        assert queued + d == n, (queued, d)
        assert d > n // 2, (queued, d)
        sj = ct.stats_json(sock)
        assert sj["info"]["access_log_dropped"] == d, sj["info"]
        s.stop()


def test_absent_socket_then_back(sluice, backend, port, sockdir):
    b = backend(st.echo_handler)
    path = sockdir / "log.sock"
    sock = str(sockdir / "admin.sock")
    s = sluice(ct.ctl_config(port, [f"b {b.addr}"], sock=sock, workers=2,
                             glob={"access_log": f"syslog:{path}"}))
    s.wait_log(f"access_log syslog:{path}: ")
    run_sessions(port, 50, 20 * st.SLOW)
    st.wait_for(lambda: dropped(sock) == 50, 5 * st.SLOW, "50 dropped lines")
    # syslogd comes (back): a line at least a second after the last try
    # reconnects (no signal needed)
    with unix_receiver(path) as r:
        def arrived():
            one_session(port)
            r.settimeout(0.05)
            try:
                return r.recv(65536).decode()
            except socket.timeout:
                return None
        msg = st.wait_for(arrived, 5 * st.SLOW, "a line after the syslog socket came back")
        assert RFC5424.match(msg), msg
        # and it goes away again (syslogd restarted): dropped, then back after SIGUSR1
        r.close()
        os.unlink(path)
        before = dropped(sock)
        one_session(port)
        st.wait_for(lambda: dropped(sock) > before, 5 * st.SLOW, "a dropped line")
    with unix_receiver(path) as r:
        s.signal(signal.SIGUSR1)
        s.wait_log("SIGUSR1: access log reopened")
        one_session(port, b"after")
        m = RFC5424.match(recv_messages(r, 1)[0])
        assert m and "up=5 " in m["msg"], m
    s.stop()


def test_bad_syslog_keys_are_located_errors(tmp_path):
    port = st.free_port()
    for key, value, why in (("access_log", "syslog:localhost:514", "not an IP address"),
                            ("access_log", "syslog:127.0.0.1:0", "port must be"),
                            ("access_log", "syslog:relative/path", "expected syslog:"),
                            ("syslog_facility", "local9", "is not a facility"),
                            ("syslog_tag", "two words", "printable ASCII")):
        text = st.make_config(port, ["b 127.0.0.1:9"], glob={key: value})
        path = tmp_path / "bad.ini"
        path.write_text(text)
        r = st.run_sluice(["-t", "-c", str(path)])
        assert r.returncode != 0, r.stdout
        assert f"{path}:{ct.line_of(text, key + ' =')}: {key}: " in r.stderr and why in r.stderr, r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users")
def test_connected_before_the_privilege_drop(backend, port):
    """A syslog socket only root may write: connected as root before the
    drop, it works; a reconnect as the unprivileged user (SIGUSR1) cannot
    connect, and lines are dropped and counted until the socket is
    writable for it (then the once-a-second retry reconnects)."""
    nobody = pwd.getpwnam("nobody")
    d = Path(tempfile.mkdtemp(prefix="slsys", dir="/tmp"))
    d.chmod(0o755)
    path = d / "log.sock"
    b = backend(st.echo_handler)
    r = unix_receiver(path)
    path.chmod(0o600)
    sock = str(d / "admin.sock")
    text = ct.ctl_config(port, [f"b {b.addr}"], sock=sock,
                         glob={"access_log": f"syslog:{path}", "user": "nobody",
                               "group": grp.getgrgid(nobody.pw_gid).gr_name})
    s = st.Sluice(d, text.replace("allow_root = yes\n", ""))
    s.cfg.chmod(0o644)
    try:
        s.start()
        assert int(proc_status_uid(s.pid)) == nobody.pw_uid
        one_session(port)
        assert RFC5424.match(recv_messages(r, 1)[0])
        s.signal(signal.SIGUSR1)
        s.wait_log("Permission denied")
        before = dropped(sock)
        one_session(port)
        st.wait_for(lambda: dropped(sock) > before, 5 * st.SLOW, "a dropped line")
        path.chmod(0o666)

        def arrived():
            one_session(port)
            r.settimeout(0.05)
            try:
                return r.recv(65536).decode()
            except socket.timeout:
                return None
        assert RFC5424.match(st.wait_for(arrived, 5 * st.SLOW, "a line once the socket is writable"))
        s.stop()
    finally:
        s.kill()
        r.close()
        reports = s.sanitizer_reports()
        shutil.rmtree(d, ignore_errors=True)
        assert not reports, "\n".join(reports[:40])


def proc_status_uid(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return line.split()[2]  # effective uid
    return None
