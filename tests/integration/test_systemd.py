"""systemd integration: sd_notify readiness over $NOTIFY_SOCKET (READY=1
once listening, RELOADING=1 ... READY=1 around a reload, STOPPING=1)."""

import signal
import socket

import sluicetest as st


def _notify_socket(tmp_path):
    path = tmp_path / "notify.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(10.0 * st.SLOW)
    return s, path


def _fields(msg):
    return dict(line.split("=", 1) for line in msg.decode().splitlines() if "=" in line)


def test_ready_reloading_stopping(sluice, named, port, tmp_path):
    a = named("a")
    ns, path = _notify_socket(tmp_path)
    try:
        s = sluice(st.make_config(port, [f"a {a.addr}"]), env={"NOTIFY_SOCKET": str(path)})
        ready = _fields(ns.recv(512))
        assert ready.get("READY") == "1" and ready.get("MAINPID") == str(s.pid), ready
        # READY=1 comes only once the listener accepts.
        with st.connect(port) as c:
            assert st.recv_line(c) == b"a"

        s.signal(signal.SIGHUP)
        reloading = _fields(ns.recv(512))
        assert reloading.get("RELOADING") == "1", reloading
        assert int(reloading["MONOTONIC_USEC"]) > 0
        again = _fields(ns.recv(512))
        assert again.get("READY") == "1" and again.get("STATUS") == "reloaded", again

        # A broken file: still READY=1 afterwards (the old config runs on).
        s.cfg.write_text("[global]\nworkers = many\n")
        s.signal(signal.SIGHUP)
        assert _fields(ns.recv(512)).get("RELOADING") == "1"
        failed = _fields(ns.recv(512))
        assert failed.get("READY") == "1" and "failed" in failed.get("STATUS", ""), failed

        s.signal(signal.SIGTERM)
        assert _fields(ns.recv(512)).get("STOPPING") == "1"
        s.wait_exit()
        assert s.rc == 0
    finally:
        ns.close()


def test_no_notify_socket_is_fine(sluice, named, port):
    a = named("a")
    s = sluice(st.make_config(port, [f"a {a.addr}"]), env={"NOTIFY_SOCKET": ""})
    with st.connect(port) as c:
        assert st.recv_line(c) == b"a"
    s.stop()
