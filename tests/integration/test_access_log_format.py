"""access_log_format: kv (the default, today's line with new fields at the
end), json (one object per line, every field, typed) and templates
(%{field}, %% for %); a bad template is a located error on -t and on a
reload, which keeps the running format (docs/operations.md, Access log)."""

import json
import re
import signal
import socket

import ctltest as ct
import sluicetest as st
from ctltest import sockdir  # noqa: F401  (fixture)

FIELDS = {
    "time": str, "worker": int, "listener": str, "client": str, "backend": str, "addr": str,
    "up": int, "down": int, "duration_ms": int, "reason": str, "sni": type(None),
    "queued_ms": int, "pool": str, "server": str, "connect_ms": int, "start": str,
    "term_side": str, "term_phase": str, "id": int,
}
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def log_lines(path):
    try:
        return [l for l in path.read_text().splitlines() if l]
    except FileNotFoundError:
        return []


def wait_lines(path, n, what="access log lines"):
    return st.wait_for(lambda: (lambda ls: ls if len(ls) >= n else None)(log_lines(path)),
                       5 * st.SLOW, f"{n} {what} in {path}")


def one_session(port, data=b"hello"):
    with st.connect(port) as c:
        st.roundtrip(c, data)
        c.shutdown(socket.SHUT_WR)
        st.recv_until_close(c)


def test_kv_default_keeps_todays_fields_first(sluice, backend, port, tmp_path):
    b = backend(st.echo_handler)
    log = tmp_path / "access.log"
    s = sluice(st.make_config(port, [f"b {b.addr}"], glob={"access_log": str(log)}))
    one_session(port)
    line = wait_lines(log, 1)[0]
    m = re.match(r"^\S+ worker=0 listener=main client=127\.0\.0\.1:\d+ backend=b "
                 rf"addr={re.escape(b.addr)} up=5 down=5 duration_ms=\d+ reason=client_close "
                 r"sni=- queued_ms=0 pool=main server=main/b connect_ms=\d+ start=\S+ "
                 r"term_side=client term_phase=\w+ id=\d+$", line)
    assert m, line
    assert st.ACCESS_RE.match(line), line
    s.stop()


def test_json_every_field_typed(sluice, backend, port, tmp_path):
    b = backend(st.echo_handler)
    log = tmp_path / "access.log"
    dead = st.free_port()
    cfg = st.make_config(port, [f"b {b.addr}"], glob={"access_log": str(log),
                                                      "access_log_format": "json"},
                         extra=f"\n[listener dead]\nbind = 127.0.0.1:{st.free_port()}\npool = dead\n"
                               f"\n[pool dead]\nserver = gone 127.0.0.1:{dead}\nretries = 0\n")
    s = sluice(cfg)
    one_session(port, b"x" * 1000)
    rec = json.loads(wait_lines(log, 1)[0])
    assert list(rec) == list(FIELDS), f"fields or their order changed: {list(rec)}"
    for k, t in FIELDS.items():
        assert type(rec[k]) is t, f"{k}: {rec[k]!r} is not {t.__name__}"
    assert rec["up"] == 1000 and rec["down"] == 1000, rec
    assert rec["listener"] == "main" and rec["server"] == "main/b" and rec["addr"] == b.addr, rec
    assert rec["reason"] == "client_close" and rec["term_side"] == "client", rec
    assert TS_RE.match(rec["time"]) and TS_RE.match(rec["start"]) and rec["start"] <= rec["time"]
    assert 0 <= rec["connect_ms"] <= rec["duration_ms"], rec

    # a server that refuses: no connect time (null), ended by the server while connecting
    dport = int(re.search(r"\[listener dead\]\nbind = 127\.0\.0\.1:(\d+)", cfg).group(1))
    with st.connect(dport) as c:
        st.recv_until_close(c)
    rec = json.loads(wait_lines(log, 2)[1])
    assert rec["reason"] == "connect_failed", rec
    assert rec["connect_ms"] is None and rec["up"] == 0, rec
    assert (rec["term_side"], rec["term_phase"]) == ("server", "connect"), rec
    assert rec["server"] == "dead/gone" and rec["backend"] == "gone", rec
    s.stop()


def test_template(sluice, backend, port, tmp_path):
    b = backend(st.echo_handler)
    log = tmp_path / "access.log"
    tmpl = '"[%{listener}] %{client} -> %{server} %{up}/%{down} %{reason} 100%% %{term_side}"'
    s = sluice(st.make_config(port, [f"b {b.addr}"], glob={"access_log": str(log),
                                                          "access_log_format": tmpl}))
    one_session(port, b"abc")
    line = wait_lines(log, 1)[0]
    assert re.match(r"^\[main\] 127\.0\.0\.1:\d+ -> main/b 3/3 client_close 100% client$", line), line
    dump = st.run_sluice(["-T", "-c", str(s.cfg)])
    assert f"access_log_format = {tmpl}\n" in dump.stdout, dump.stdout
    s.stop()


def test_bad_template_is_a_located_error(tmp_path):
    port = st.free_port()
    for value, why in (("%{client} %{bogus}", "unknown field 'bogus'"),
                       ("%{client", "without a closing"),
                       ("50% off", "must start %{field} or be doubled"),
                       ("yaml", "is not kv, json or a template")):
        text = st.make_config(port, ["b 127.0.0.1:9"], glob={"access_log_format": value})
        path = tmp_path / "bad.ini"
        path.write_text(text)
        r = st.run_sluice(["-t", "-c", str(path)])
        line = ct.line_of(text, "access_log_format")
        assert r.returncode != 0, r.stdout
        assert f"{path}:{line}: access_log_format: " in r.stderr and why in r.stderr, r.stderr


def test_reload_changes_format_and_a_bad_one_keeps_the_old(sluice, backend, port, tmp_path, sockdir):
    b = backend(st.echo_handler)
    sock = str(sockdir / "admin.sock")
    log = tmp_path / "access.log"
    cfg = lambda fmt: ct.ctl_config(port, [f"b {b.addr}"], sock=sock,  # noqa: E731
                                    glob={"access_log": str(log), "access_log_format": fmt})
    s = sluice(cfg("kv"))
    one_session(port)
    assert st.ACCESS_RE.match(wait_lines(log, 1)[0])

    ct.write_config(s.cfg, cfg("json"))
    s.signal(signal.SIGHUP)
    ct.wait_for_gen(s, sock, 2)
    one_session(port)
    assert json.loads(wait_lines(log, 2)[1])["reason"] == "client_close"

    bad = cfg("%{reason} %{nope}")
    ct.write_config(s.cfg, bad)
    reply = ct.ask(sock, "reload")
    assert f"{s.cfg}:{ct.line_of(bad, 'access_log_format')}: access_log_format: " in reply, reply
    assert "reload failed" in reply, reply
    one_session(port)
    assert json.loads(wait_lines(log, 3)[2])["reason"] == "client_close", "the json format was lost"

    ct.write_config(s.cfg, cfg("%{reason}:%{up}"))
    assert "reload ok" in ct.ask(sock, "reload")
    one_session(port, b"1234")
    assert wait_lines(log, 4)[3] == "client_close:4"
    s.stop()


def test_termination_flags(sluice, backend, port, tmp_path):
    """term_side/term_phase for a proxy decision in mid-relay (idle
    timeout) and a client that aborts (RST)."""
    b = backend(st.echo_handler)
    log = tmp_path / "access.log"
    s = sluice(st.make_config(port, [f"b {b.addr}"], glob={"access_log": str(log),
                                                          "access_log_format": "json"},
                              pool={"idle_timeout": f"{int(300 * st.SLOW)}ms"}))
    with st.connect(port) as c:
        st.roundtrip(c, b"x")
        st.recv_until_close(c, timeout=10 * st.SLOW)
    rec = json.loads(wait_lines(log, 1)[0])
    assert rec["reason"] == "idle_timeout", rec
    assert (rec["term_side"], rec["term_phase"]) == ("proxy", "relay"), rec

    c = st.connect(port)
    st.roundtrip(c, b"y")
    st.rst_close(c)
    rec = json.loads(wait_lines(log, 2)[1])
    assert rec["reason"] == "reset", rec
    assert (rec["term_side"], rec["term_phase"]) == ("client", "relay"), rec
    s.stop()
