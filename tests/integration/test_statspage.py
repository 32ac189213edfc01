"""admin_http GET /: the stats page. Without JavaScript (the server-rendered
tables) and in headless Chromium (the page refreshes itself from
/stats.json and draws a sparkline per server), with a screenshot left in
the build directory (stats-page.png) for a person to look at."""

import html
import re
import shutil
import subprocess

import pytest

import ctltest as ct
from ctltest import port_server, sockdir  # noqa: F401  (fixtures)
import sluicetest as st

T = 10.0 * st.SLOW


def start(sluice, sockdir, port, backs, pool=None):
    http = st.free_port()
    sock = sockdir / "admin.sock"
    port2 = st.free_port()
    s = sluice(ct.ctl_config(port, [f"{n} {b.addr}" for n, b in backs.items()], sock=sock,
                             http=http, pool=pool,
                             extra_listeners=[("second", port2, "other")],
                             extra_pools=[("other", [f"o1 {next(iter(backs.values())).addr}"],
                                           {})]))
    return s, sock, http


def rows(page, table):
    body = re.search(rf'<table id="{table}">.*?<tbody[^>]*>(.*?)</tbody>', page, re.S)
    assert body, f"no table {table}"
    out = []
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body.group(1), re.S):
        out.append([html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
                    for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)])
    return out


def test_page_without_javascript(sluice, named, port, sockdir):
    backs = {"a": named("a"), "b": named("b")}
    s, sock, http = start(sluice, sockdir, port, backs)
    for _ in range(3):
        ct.pick(port)
    status, headers, body = ct.http_get(http, "/")
    assert status == 200, body[:300]
    assert headers["content-type"] == "text/html; charset=utf-8", headers
    page = body.decode()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>"), page[:200]
    # Self-contained: no external scripts, styles, images or fonts.
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=|@import|url\(", page), "external asset"
    assert all(h.startswith("/") for h in re.findall(r'href="([^"]*)"', page)), "absolute link"
    info = ct.stats_json(sock)["info"]
    assert f"pid {info['pid']}," in page
    ls = {r[0]: r for r in rows(page, "listeners")}
    assert set(ls) == {"main", "second"}, ls
    assert ls["main"][2] == "main" and ls["main"][4] == "3", ls["main"]  # pool, accepted
    sv = {r[0]: r for r in rows(page, "servers")}
    assert set(sv) == {"main/a", "main/b", "other/o1"}, sv
    assert sv["main/a"][2] == "up" and sv["main/a"][1] == backs["a"].addr, sv["main/a"]
    assert int(sv["main/a"][6]) + int(sv["main/b"][6]) == 3, sv  # sessions
    assert re.search(r'<tr data-server="main/a" data-state="up"><td>main/a</td>', page)
    assert '<span class="st st-up">up</span>' in page
    assert [r[0] for r in rows(page, "pools")] == ["main", "other"]
    # The same page at /index.html; HEAD has no body.
    status2, _h, body2 = ct.http_get(http, "/index.html")
    assert status2 == 200 and b"<table id=\"servers\">" in body2
    status3, h3, body3 = ct.http_get(http, "/", method="HEAD")
    assert status3 == 200 and body3 == b"" and int(h3["content-length"]) > 1000
    status4, _h, body4 = ct.http_get(http, "/nothing")
    assert status4 == 404 and b"try /," in body4


def test_page_shows_a_server_down(sluice, named, port, sockdir, port_server):
    back = port_server(st.named_handler("x"), name="x")
    backs = {"a": named("a"), "x": back}
    s, sock, http = start(sluice, sockdir, port, backs,
                          pool={"check": "tcp", "check_interval": "200ms", "fall": "1",
                                "rise": "1"})
    back.stop()
    st.wait_for(lambda: ct.server_stats(sock, "main", "x")["state"] == "down", T,
                "main/x marked down by its health check")
    page = ct.http_get(http, "/")[2].decode()
    assert re.search(r'<tr data-server="main/x" data-state="down">', page)
    assert '<span class="st st-down">down</span>' in page
    sv = {r[0]: r for r in rows(page, "servers")}
    assert sv["main/x"][-1].startswith("refused"), sv["main/x"]


# --------------------------------------------------------------------------
# headless Chromium


def chromium():
    """The browser's path, or a skip saying why it cannot run here."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            break
    else:
        pytest.skip("chromium is not installed (scripts/test installs it)")
    return path


def browse(tmp_path, url, *extra, budget_ms=7000):
    args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium'}",
            f"--virtual-time-budget={budget_ms}", *extra, url]
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=60 * st.SLOW)
    except subprocess.TimeoutExpired:
        pytest.fail(f"chromium did not finish within {60 * st.SLOW:.0f}s")
    return r


def test_chromium_renders_the_live_page(sluice, named, port, sockdir, tmp_path, port_server):
    smoke = browse(tmp_path, "data:text/html,<p>ok</p>", "--dump-dom", budget_ms=100)
    if smoke.returncode != 0 or "<p>ok</p>" not in smoke.stdout:
        pytest.skip(f"chromium cannot run here (exit {smoke.returncode}): {smoke.stderr[-300:]}")
    back = port_server(st.named_handler("x"), name="x")
    backs = {"a": named("a"), "x": back}
    s, sock, http = start(sluice, sockdir, port, backs,
                          pool={"check": "tcp", "check_interval": "200ms", "fall": "1",
                                "rise": "1"})
    for _ in range(4):
        ct.pick(port)
    back.stop()
    st.wait_for(lambda: ct.server_stats(sock, "main", "x")["state"] == "down", T,
                "main/x marked down by its health check")
    url = f"http://127.0.0.1:{http}/"
    r = browse(tmp_path, url, "--dump-dom")
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    refreshes = re.search(r'id="status" data-refreshes="(\d+)"', dom)
    assert refreshes and int(refreshes.group(1)) >= 2, \
        f"the page did not refresh itself twice: {dom[:1500]}"
    assert "live: refreshed every 2 s" in dom, dom[:1500]
    servers = re.search(r'<table id="servers">.*?</table>', dom, re.S).group(0)
    assert '<tbody data-live="1">' in servers, "the servers table was not rebuilt by the script"
    assert re.search(r'<tr data-server="main/x" data-state="down">.*?'
                     r'<span class="st st-down">down</span>', servers, re.S), servers
    assert re.search(r'<tr data-server="main/a" data-state="up">', servers), servers
    sparks = re.findall(r'<svg class="spark"[^>]*><polyline points="([^"]*)"', servers)
    assert len(sparks) == 3, servers
    # A point per refresh after the first: at least two after three refreshes.
    assert all(len(p.split()) >= 2 for p in sparks), sparks
    # A picture for a person: build/stats-page.png (next to the binary).
    shot = st.sluice_bin().parent / "stats-page.png"
    r = browse(tmp_path, url, f"--screenshot={shot}", "--window-size=1280,600")
    assert r.returncode == 0 and shot.is_file() and shot.stat().st_size > 1000, r.stderr[-2000:]
