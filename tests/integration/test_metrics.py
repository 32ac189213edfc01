"""admin_http: GET /metrics (Prometheus text format 0.0.4) and /stats.json."""

import json
import re

import pytest

import ctltest as ct
import sluicetest as st
from ctltest import sockdir  # noqa: F401  (fixture)


def start_with_http(sluice, named, port, sockdir, servers=("a", "b"), second=True, workers=1):
    backs = {n: named(n) for n in servers}
    http = st.free_port()
    sock = str(sockdir / "admin.sock")
    port2 = st.free_port()

    def cfg(names=servers, weights=None, with_second=second, workers=1):
        weights = weights or {}
        lines = [f"{n} {backs[n].addr} weight={weights.get(n, 1)}" for n in names]
        return ct.ctl_config(port, lines, sock=sock, http=http, workers=workers,
                             extra_listeners=[("second", port2, "other")] if with_second else (),
                             extra_pools=[("other", [f"o1 {backs[servers[0]].addr}"], {})])
    s = sluice(cfg(workers=workers))
    return s, sock, http, port2, cfg


# --------------------------------------------------------------------------
# the parser itself must reject what it should (so a pass means something)


@pytest.mark.parametrize("bad", [
    "x_total 1\n",                                       # no TYPE
    "# TYPE x counter\nx 1\n",                           # counter not ending in _total
    "# TYPE x_total counter\nx_total one\n",             # bad value
    "# TYPE x gauge\nx{a=1} 1\n",                        # unquoted label
    "# TYPE x gauge\nx{1a=\"1\"} 1\n",                   # bad label name
    "# TYPE x gauge\nx{a=\"\\q\"} 1\n",                  # bad escape
    "# TYPE x gauge\nx 1\n# TYPE x gauge\n",             # two TYPEs
    "# TYPE x gauge\n# TYPE y gauge\nx 1\ny 1\nx{a=\"b\"} 2\n",  # not contiguous
    "# TYPE x gauge\nx 1\nx 2\n",                        # duplicate sample
    "# TYPE x gauge\nx 1",                               # no final newline
    "# TYPE x wibble\nx 1\n",                            # unknown type
    "# TYPE 9x gauge\n",                                 # bad metric name
    "# TYPE x gauge\nx  1\n",                            # two spaces
])
def test_parser_rejects(bad):
    with pytest.raises(AssertionError):
        ct.parse_prometheus(bad)


def test_parser_accepts():
    fams = ct.parse_prometheus('# HELP x_total Some "help" \\n.\n# TYPE x_total counter\n'
                               'x_total{a="q\\"uo\\\\te",b="\\n"} 1.5e3 1700000000000\n'
                               '# a comment\n# TYPE g gauge\ng -Inf\ng{x="1"} NaN\n')
    assert fams["x_total"]["samples"][0] == ("x_total", {"a": 'q"uo\\te', "b": "\n"}, 1500.0)


# --------------------------------------------------------------------------


def test_metrics_format_and_label_sets(sluice, named, port, sockdir):
    s, sock, http, port2, _cfg = start_with_http(sluice, named, port, sockdir)
    for _ in range(3):
        ct.pick(port)
    ct.pick(port2)
    s.wait_access(4)
    headers, fams = ct.scrape(http)
    ctype = headers.get("content-type", "")
    assert ctype.startswith("text/plain") and "version=0.0.4" in ctype, f"Content-Type {ctype!r}"
    untyped = [n for n, f in fams.items() if f["type"] is None]
    assert not untyped, f"HELP without TYPE: {untyped}"
    nohelp = [n for n, f in fams.items() if f["help"] is None]
    assert not nohelp, f"families without HELP: {nohelp}"
    assert all(n.startswith("sluice_") for n in fams), [n for n in fams if not n.startswith("sluice_")]

    listener_fams = [n for n in fams if n.startswith("sluice_listener_")]
    server_fams = [n for n in fams if n.startswith("sluice_server_")]
    assert listener_fams and server_fams, sorted(fams)

    def label_sets(n):  # a histogram's `le` makes more samples, not more series
        return sorted({tuple(sorted((k, x) for k, x in l.items() if k != "le"))
                       for _, l, _ in fams[n]["samples"]})
    for n in listener_fams:
        sets = label_sets(n)
        assert sets == [(("listener", "main"),), (("listener", "second"),)], f"{n}: label sets {sets}"
    want = sorted([(("pool", "main"), ("server", "a")), (("pool", "main"), ("server", "b")),
                   (("pool", "other"), ("server", "o1"))])
    for n in server_fams:
        sets = label_sets(n)
        assert sets == want, f"{n}: label sets {sets}"

    v = ct.prom_samples(fams)
    assert v[("sluice_sessions_total", ())] == 4, v.get(("sluice_sessions_total", ()))
    assert v[("sluice_listener_accepted_total", (("listener", "main"),))] == 3
    assert v[("sluice_listener_accepted_total", (("listener", "second"),))] == 1
    servers = {("a",): 0, ("b",): 0}
    for (name, labels), val in v.items():
        if name == "sluice_server_sessions_total" and dict(labels)["pool"] == "main":
            servers[(dict(labels)["server"],)] = val
    assert sum(servers.values()) == 3, servers
    assert v[("sluice_server_up", (("pool", "main"), ("server", "a")))] == 1
    # the numbers agree with show stats json
    doc = ct.stats_json(sock)
    assert doc["info"]["sessions_total"] == 4
    s.stop()


@pytest.mark.threaded
def test_counters_monotonic_across_reloads(sluice, named, port, sockdir):
    s, sock, http, port2, cfg = start_with_http(sluice, named, port, sockdir, servers=("a", "b", "c"), workers=2)

    def counters():
        _h, fams = ct.scrape(http)
        return {k: val for k, val in ct.prom_samples(fams).items()
                if fams[ct._family_of(k[0], fams)]["type"] == "counter"}

    def traffic(n):
        done = len(s.access())
        for _ in range(n):
            ct.pick(port)
        s.wait_access(done + n)

    traffic(6)
    prev = counters()
    steps = [dict(names=("a", "b", "c"), weights={"a": 3}, workers=2),
             dict(names=("a", "b"), with_second=False, workers=1),   # c and 'second' removed
             dict(names=("a", "b", "c"), workers=3),                 # c back (new counters)
             dict(names=("a", "b", "c"), weights={"b": 5}, workers=2)]
    gen = 1
    for i, step in enumerate(steps):
        if i == 2:  # growing again needs the retired worker 1 gone
            s.wait_log("worker 1: exited", timeout=10.0 * st.SLOW)
        ct.write_config(s.cfg, cfg(**step))
        r = ct.ask(sock, "reload")
        assert r.startswith("reload ok"), r
        gen += 1
        cur = counters()
        went_down = {k: (prev[k], cur[k]) for k in prev if k in cur and cur[k] < prev[k]}
        assert not went_down, f"reload {i + 1} ({step}): counters went down: {went_down}"
        traffic(5)
        after = counters()
        went_down = {k: (cur[k], after[k]) for k in cur if k in after and after[k] < cur[k]}
        assert not went_down, f"after reload {i + 1}: counters went down: {went_down}"
        assert after[("sluice_sessions_total", ())] == cur[("sluice_sessions_total", ())] + 5
        prev = after
    total = prev[("sluice_sessions_total", ())]
    assert total == 6 + 5 * len(steps), total
    assert prev[("sluice_reloads_total", (("result", "ok"),))] == len(steps)
    _h, fams = ct.scrape(http)
    v = ct.prom_samples(fams)
    assert v[("sluice_config_generation", ())] == gen
    assert v[("sluice_workers", ())] == 2
    assert v[("sluice_server_weight", (("pool", "main"), ("server", "b")))] == 5
    s.stop()


def test_stats_json_and_404(sluice, named, port, sockdir):
    s, sock, http, _port2, _cfg = start_with_http(sluice, named, port, sockdir)
    ct.pick(port)
    s.wait_access(1)
    status, headers, body = ct.http_get(http, "/stats.json")
    assert status == 200, status
    assert headers.get("content-type", "").startswith("application/json"), headers
    doc = json.loads(body)
    assert doc["info"]["pid"] == s.pid and doc["info"]["sessions_total"] == 1, doc["info"]
    assert {l["name"] for l in doc["listeners"]} == {"main", "second"}
    assert {(sv["pool"], sv["name"]) for sv in doc["servers"]} == {("main", "a"), ("main", "b"), ("other", "o1")}
    # "/" is the stats page (test_statspage.py).
    for target in ("/index", "/metric", "/metrics/x", "/stats", "/admin", "/../etc/passwd"):
        status, _h, _b = ct.http_get(http, target)
        assert status == 404, f"GET {target} -> {status}, expected 404"
    status, _h, _b = ct.http_get(http, "/metrics?x=1")
    assert status == 200, status
    # docs/operations.md: "any other method: 405 Method Not Allowed"
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        status, _h, _b = ct.http_get(http, "/metrics", method=method)
        assert status == 405, f"{method} /metrics -> {status}, the docs promise 405"
    # garbage gets an error and a close
    g = st.connect(http)
    g.sendall(b"garbage\r\n\r\n")
    data, _how = st.recv_until_close(g, 5.0 * st.SLOW)
    g.close()
    assert data.startswith(b"HTTP/1.1 4"), data[:100]
    # a silent client and one that sent a NUL byte do not block the endpoint
    silent = st.connect(http)
    nul = st.connect(http)
    try:
        nul.sendall(b"GET /\x00metrics HTTP/1.1\r\n\r\n")
        for _ in range(3):
            assert ct.http_get(http, "/metrics", timeout=2.0 * st.SLOW)[0] == 200
        # docs/operations.md: "a NUL byte in the request: 400 Bad Request"
        data, how = st.recv_until_close(nul, 5.0 * st.SLOW)
        assert data.startswith(b"HTTP/1.1 400 "), f"NUL in the request got {data[:100]!r} ({how})"
    finally:
        silent.close()
        nul.close()
    s.stop()


def test_reload_with_unbindable_admin_http_keeps_the_old_one(sluice, named, port, sockdir):
    """A reload that moves admin_http to an address in use must not leave
    sluice without its metrics endpoint (at start-up it would exit 1)."""
    s, sock, http, _port2, _cfg = start_with_http(sluice, named, port, sockdir)
    taken = st.Server(st.echo_handler)
    try:
        text = s.cfg.read_text().replace(f"admin_http = 127.0.0.1:{http}",
                                         f"admin_http = 127.0.0.1:{taken.port}")
        assert f"127.0.0.1:{taken.port}" in text
        ct.write_config(s.cfg, text)
        r = ct.ask(sock, "reload")
        try:
            status = ct.http_get(http, "/metrics", timeout=2.0 * st.SLOW)[0]
        except (OSError, AssertionError) as e:
            status = repr(e)
        assert status == 200, (f"after a reload to an admin_http address in use, the old endpoint "
                               f"answers {status}; reload replied {r.strip()!r}\n{s.tail(4)}")
        assert "reload failed" in r, r
    finally:
        taken.close()
    s.stop()


def documented_families():
    """{name: type} of the table under "### Prometheus metrics" in
    docs/operations.md: rows `| `sluice_...` | TYPE | ...`."""
    text = (st.REPO / "docs" / "operations.md").read_text()
    start = text.index("### Prometheus metrics")
    end = text.find("\n#", start + 1)
    section = text[start:end if end > 0 else len(text)]
    fams = {}
    for m in re.finditer(r"^\| `(sluice_[a-z0-9_]+)` \| (counter|gauge|histogram) \|", section, re.M):
        fams[m.group(1)] = m.group(2)
    assert len(fams) >= 20, f"only {len(fams)} metric rows parsed from docs/operations.md: {sorted(fams)}"
    return fams


def test_metric_families_are_the_documented_ones(sluice, named, port, sockdir):
    """Every family of the docs' Prometheus table is served, with the
    documented type, and /metrics serves no family the table leaves out."""
    s, _sock, http, port2, _cfg = start_with_http(sluice, named, port, sockdir)
    ct.pick(port)
    s.wait_access(1)
    _h, fams = ct.scrape(http)
    served = {n: f["type"] for n, f in fams.items()}
    doc = documented_families()
    missing = sorted(set(doc) - set(served))
    undocumented = sorted(set(served) - set(doc))
    assert not missing, f"documented in docs/operations.md but not in /metrics: {missing}"
    assert not undocumented, f"in /metrics but not in docs/operations.md's table: {undocumented}"
    wrong = {n: (doc[n], served[n]) for n in doc if served[n] != doc[n]}
    assert not wrong, f"type (documented, served) differs: {wrong}"
    s.stop()
