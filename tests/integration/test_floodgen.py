"""Self-tests of tests/tools/floodgen, the flood benchmark's load generator.

scripts/bench --workloads flood trusts floodgen's JSON figures (attempted,
connected, answered, requests/s, percentiles); these runs check them
briefly against its own echo role, directly and through sluice, and check
that it reports a refused connection as refused. No timing thresholds: the
machine may be loaded; only counts and consistency are checked.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

import sluicetest as st

REPO = Path(__file__).resolve().parents[2]


def floodgen_bin():
    env = os.environ.get("FLOODGEN_BIN")
    if env:
        return Path(env)
    return st.sluice_bin().parent / "tests" / "tools" / "floodgen"


def run(args, timeout=30.0 * st.SLOW):
    p = subprocess.run([str(floodgen_bin())] + [str(a) for a in args], capture_output=True,
                       text=True, timeout=timeout)
    return p


def one_json(p):
    assert p.returncode == 0, (p.returncode, p.stderr)
    assert not any(m in p.stderr for m in st.SANITIZER_MARKERS), p.stderr
    lines = [line for line in p.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, p.stdout
    return json.loads(lines[0])


class Echo:
    """floodgen echo on an ephemeral port of 127.0.0.1 (stopped by PID)."""

    def __init__(self, tmp_path):
        self.out = open(tmp_path / "echo.stdout", "w+")
        self.err = tmp_path / "echo.stderr"
        with open(self.err, "w") as err:
            self.proc = subprocess.Popen([str(floodgen_bin()), "echo", "-l", "127.0.0.1:0",
                                          "--max-seconds", str(int(120 * st.SLOW))],
                                         stdout=self.out, stderr=err)
        self.port = None

        def started():
            self.out.seek(0)
            line = self.out.readline()
            if line.endswith("\n"):
                self.port = json.loads(line)["port"]
                return True
            assert self.proc.poll() is None, self.err.read_text()
            return False
        st.wait_for(started, 10 * st.SLOW, "floodgen echo to print its port")

    def stop(self):
        """SIGTERM; returns its final JSON line."""
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(10 * st.SLOW)
        self.out.seek(0)
        lines = [json.loads(x) for x in self.out.read().splitlines() if x.strip()]
        self.out.close()
        assert self.proc.returncode == 0, self.err.read_text()
        st_err = self.err.read_text()
        assert not any(m in st_err for m in st.SANITIZER_MARKERS), st_err
        return lines[-1]


@pytest.fixture
def echo(tmp_path):
    e = Echo(tmp_path)
    yield e
    if e.proc.poll() is None:
        e.proc.kill()
        e.proc.wait()


def check_clients(r, count, size=64):
    assert r["role"] == "clients" and r["count"] == count and r["size"] == size
    assert r["connects"] == count, r  # one keep-alive connection each, none lost
    assert r["conn_errors"] == 0 and r["mismatches"] == 0 and r["signal"] == 0, r
    assert r["requests"] > 0 and r["min_source_requests"] > 0, r
    assert r["requests_total"] >= r["requests"]
    assert r["rps"] == pytest.approx(r["requests"] / r["seconds"], rel=0.01)
    assert 0 < r["p50_us"] <= r["p90_us"] <= r["p99_us"] <= r["p999_us"]
    assert r["p999_us"] <= r["max_us"] * 1.02  # a bucket's middle may pass the max a little


def check_flood(r, request):
    assert r["role"] == "flood" and r["signal"] == 0, r
    assert r["attempted"] > 0, r
    ends = (r["refused"] + r["reset"] + r["closed"] + r["timeouts"] + r["socket_errors"]
            + r["other_errors"])
    if request:
        assert r["answered"] + ends == r["attempted"], r
    else:
        assert r["answered"] == 0
        assert r["connected"] + r["refused"] + r["timeouts"] + r["other_errors"] \
            + r["socket_errors"] + r["reset"] == r["attempted"], r
    assert r["attempt_rate"] == pytest.approx(r["attempted"] / r["send_seconds"], rel=0.01)


def test_direct_clients_and_flood(echo):
    """Both roles at once against the echo backend, nothing in between:
    every flood connection with a request is answered, every client's
    echo matches."""
    clients = subprocess.Popen([str(floodgen_bin()), "clients", "-c", f"127.0.0.1:{echo.port}",
                                "--source", "127.0.1.1", "--count", "10", "--seconds", "1",
                                "--warmup", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    f = one_json(run(["flood", "-c", f"127.0.0.1:{echo.port}", "--source", "127.0.0.2",
                      "--rate", "2000", "--seconds", "1", "--request", "16"]))
    out, err = clients.communicate(timeout=30 * st.SLOW)
    assert clients.returncode == 0, err
    c = json.loads(out)
    check_clients(c, 10)
    check_flood(f, 16)
    assert f["source"] == "127.0.0.2" and f["source_count"] == 1, f
    # Nothing refuses here: every attempt is connected and answered.
    assert f["connected"] == f["attempted"] == f["answered"], f
    assert f["attempted"] >= 100, f  # 2,000/s for 1 s, whatever the load
    e = echo.stop()
    assert e["accepted"] == f["connected"] + c["connects"], (e, f, c)
    # The bytes it echoed: every answer, plus at most one request per client
    # in flight when the clients stopped.
    base = 16 * f["answered"] + 64 * c["requests_total"]
    assert base <= e["bytes"] <= base + 64 * 10, (e, f, c)


def test_through_sluice(tmp_path, echo):
    """Through sluice: the clients' sources are distinct addresses as
    sluice sees them, and flood connections are counted by sluice too."""
    port = st.free_port()
    proxy = st.Sluice(tmp_path, st.make_config(port, [f"e 127.0.0.1:{echo.port}"],
                                               glob={"access_log": "off"}))
    proxy.start()
    try:
        c = one_json(run(["clients", "-c", f"127.0.0.1:{port}", "--source", "127.0.1.1",
                          "--count", "5", "--seconds", "0.5"]))
        check_clients(c, 5)
        f = one_json(run(["flood", "-c", f"127.0.0.1:{port}", "--source", "127.0.0.2",
                          "--rate", "500", "--seconds", "0.5", "--request", "8"]))
        check_flood(f, 8)
        assert f["answered"] > 0, f
    finally:
        proxy.stop()
    e = echo.stop()
    # Every connection floodgen got answered went through sluice to the echo.
    assert e["accepted"] >= c["connects"] + f["answered"], (e, c, f)


def test_refused_is_counted():
    """A port nobody listens on: every attempt is refused, none connected."""
    port = st.free_port()
    r = one_json(run(["flood", "-c", f"127.0.0.1:{port}", "--source", "127.0.0.2",
                      "--rate", "200", "--seconds", "0.3"]))
    check_flood(r, 0)
    assert r["refused"] == r["attempted"] and r["connected"] == 0, r


def test_clients_to_nothing_report_errors():
    port = st.free_port()
    r = one_json(run(["clients", "-c", f"127.0.0.1:{port}", "--source", "127.0.1.1",
                      "--count", "3", "--seconds", "0.3"]))
    assert r["connects"] == 0 and r["conn_errors"] >= 3 and r["requests"] == 0, r


@pytest.mark.parametrize("args", [
    [],
    ["nosuchrole"],
    ["flood", "-c", "127.0.0.1:1", "--seconds", "1"],            # no --source
    ["flood", "-c", "127.0.0.1", "--source", "127.0.0.2", "--seconds", "1"],  # no port
    ["clients", "-c", "127.0.0.1:1", "--source", "::1", "--seconds", "1"],    # families differ
    ["flood", "-c", "127.0.0.1:1", "--source", "127.0.0.2", "--seconds", "0"],
    ["echo"],
])
def test_usage_errors(args):
    p = run(args)
    assert p.returncode == 2 and "floodgen:" in p.stderr and p.stdout == "", (p.returncode,
                                                                              p.stderr)


def test_echo_stops_cleanly_with_connections_open(echo):
    """SIGTERM while clients are connected: the final JSON line, exit 0,
    and (in the sanitizer builds) no leak report for the open ones."""
    socks = [st.connect(echo.port) for _ in range(3)]
    try:
        for i, s in enumerate(socks):
            st.roundtrip(s, b"ping %d\n" % i)
        e = echo.stop()
    finally:
        for s in socks:
            s.close()
    assert e["accepted"] == 3 and e["bytes"] == sum(len(b"ping %d\n" % i) for i in range(3)), e


def test_flood_source_count_spreads_addresses(tmp_path, echo):
    """--source-count K: the flood's connections come from K addresses in
    turn, as sluice's access log sees them."""
    port = st.free_port()
    proxy = st.Sluice(tmp_path, st.make_config(port, [f"e 127.0.0.1:{echo.port}"]))
    proxy.start()
    try:
        f = one_json(run(["flood", "-c", f"127.0.0.1:{port}", "--source", "127.2.0.1",
                          "--source-count", "4", "--rate", "200", "--seconds", "0.2",
                          "--request", "8"]))
        check_flood(f, 8)
        assert f["source_count"] == 4 and f["attempted"] >= 8, f
        entries = proxy.wait_access(f["attempted"])
    finally:
        proxy.stop()
    hosts = {st.client_host(e) for e in entries}
    assert hosts == {f"127.2.0.{i}" for i in range(1, 5)}, hosts
