"""Command line: -t (config check), -V, -h, unknown options."""

import re
import socket

import pytest

import sluicetest as st


def good_lines(port):
    return [
        "[global]",
        "workers = 2",
        "log_level = info",
        "access_log = stderr",
        "shutdown_timeout = 5s",
        "allow_root = yes",  # the suite runs as root (see test_privilege)
        "",
        "[listener web]",
        f"bind = 127.0.0.1:{port}",
        "pool = web",
        "",
        "[pool web]",
        "balance = roundrobin",
        "server = app1 127.0.0.1:9001 weight=3",
        "server = app2 127.0.0.1:9002",
        "server = spare 127.0.0.1:9003 backup",
        "connect_timeout = 3s",
        "idle_timeout = 5m",
    ]


def write(tmp_path, name, lines):
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


def line_of(lines, needle, nth=1):
    hits = [i + 1 for i, line in enumerate(lines) if line.strip() == needle]
    assert len(hits) >= nth, f"{needle!r} not in config"
    return hits[nth - 1]


def error_lines(path, stderr):
    """{(line, key)} of the FILE:LINE: key: reason lines; every line naming the file must have that form."""
    pat = re.compile(rf"^{re.escape(str(path))}:(\d+): ([^:\s]+): \S.*$")
    found = set()
    for line in stderr.splitlines():
        if not line.startswith(str(path)):
            continue
        m = pat.match(line)
        assert m, f"stderr line not in FILE:LINE: key: reason form: {line!r}\nstderr:\n{stderr}"
        found.add((int(m.group(1)), m.group(2)))
    return found


def test_check_good_config_never_binds(tmp_path):
    port = st.free_port()
    path = write(tmp_path, "good.ini", good_lines(port))
    # Hold the listener's port: a -t that tried to bind would fail.
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind((st.LOCALHOST, port))
    holder.listen(1)
    try:
        r = st.run_sluice(["-t", "-c", path])
        assert r.returncode == 0, f"rc={r.returncode}\nstdout:{r.stdout}\nstderr:{r.stderr}"
        assert "configuration OK" in r.stdout
    finally:
        holder.close()
    r = st.run_sluice(["-t", "-c", path])
    assert r.returncode == 0 and "configuration OK" in r.stdout
    assert st.port_is_free(port), "sluice -t left the listener port bound"
    assert st.ss_listeners(port) == []


def _unknown_key(lines):
    lines.insert(line_of(lines, "log_level = info"), "frobnicate = 1")
    return [(line_of(lines, "frobnicate = 1"), "frobnicate")]


def _bad_duration(lines):
    i = line_of(lines, "idle_timeout = 5m")
    lines[i - 1] = "idle_timeout = 5 fortnights"
    return [(i, "idle_timeout")]


def _missing_pool(lines):
    i = line_of(lines, "pool = web")
    lines[i - 1] = "pool = nowhere"
    return [(i, "pool")]


def _pool_without_servers(lines):
    lines += ["", "[pool empty]", "balance = first"]
    lines[line_of(lines, "pool = web") - 1] = "pool = empty"
    return [(line_of(lines, "[pool empty]"), "server")]


def _duplicate_server(lines):
    lines.insert(line_of(lines, "server = app2 127.0.0.1:9002"), "server = app1 127.0.0.1:9004")
    return [(line_of(lines, "server = app1 127.0.0.1:9004"), "server")]


BROKEN = {
    "unknown_key": _unknown_key,
    "bad_duration": _bad_duration,
    "missing_pool": _missing_pool,
    "pool_without_servers": _pool_without_servers,
    "duplicate_server": _duplicate_server,
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_check_reports_error_with_line(tmp_path, case):
    port = st.free_port()
    lines = good_lines(port)
    expected = BROKEN[case](lines)
    path = write(tmp_path, f"{case}.ini", lines)
    r = st.run_sluice(["-t", "-c", path])
    assert r.returncode == 1, f"rc={r.returncode}\nstdout:{r.stdout}\nstderr:{r.stderr}"
    assert "configuration OK" not in r.stdout
    found = error_lines(path, r.stderr)
    assert set(expected) <= found, f"expected {expected}, got {sorted(found)}\nstderr:\n{r.stderr}"
    assert st.port_is_free(port)


def test_check_reports_every_error(tmp_path):
    """Several independent mistakes in one file: all are reported."""
    lines = good_lines(st.free_port())
    _unknown_key(lines)
    _duplicate_server(lines)
    _bad_duration(lines)
    lines += ["", "[listener other]", "bind = 127.0.0.1:1", "pool = nowhere",
              "", "[pool empty]", "balance = first"]
    expected = [(line_of(lines, "frobnicate = 1"), "frobnicate"),
                (line_of(lines, "server = app1 127.0.0.1:9004"), "server"),
                (line_of(lines, "idle_timeout = 5 fortnights"), "idle_timeout"),
                (line_of(lines, "pool = nowhere"), "pool"),
                (line_of(lines, "[pool empty]"), "server")]
    path = write(tmp_path, "many.ini", lines)
    r = st.run_sluice(["-t", "-c", path])
    assert r.returncode == 1, f"rc={r.returncode}\nstderr:{r.stderr}"
    found = error_lines(path, r.stderr)
    assert set(expected) <= found, f"expected {sorted(expected)}, got {sorted(found)}\nstderr:\n{r.stderr}"


def test_version():
    r = st.run_sluice(["-V"])
    assert r.returncode == 0, r
    assert re.fullmatch(r"sluice \S+\n?", r.stdout), f"-V printed {r.stdout!r}"


def test_help():
    r = st.run_sluice(["-h"])
    assert r.returncode == 0, r
    assert "-c" in r.stdout and "-t" in r.stdout, f"usage should mention -c and -t: {r.stdout!r}"


@pytest.mark.parametrize("opt", ["-Z", "--no-such-option"])
def test_unknown_option_exit_2(opt):
    r = st.run_sluice([opt])
    assert r.returncode == 2, f"rc={r.returncode}\nstdout:{r.stdout}\nstderr:{r.stderr}"
    assert "-c" in r.stderr, f"usage should go to stderr: {r.stderr!r}"
    assert "configuration OK" not in r.stdout
