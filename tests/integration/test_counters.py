"""Per-worker counters of servers and listeners are allocated for the
workers a config has, in chunks (not for all 256 possible workers): 10,000
servers fit in a few MiB, and raising `workers` by reload past a chunk
boundary keeps every session counted."""

import pytest

import ctltest as ct
import sluicetest as st
from ctltest import sockdir  # noqa: F401  (fixture)


def test_reload_past_a_chunk_of_workers_counts_every_session(sluice, named, port, sockdir):
    a = named("a")
    sock = sockdir / "admin.sock"
    text = ct.ctl_config(port, [f"a {a.addr}"], sock=sock, workers=2)
    s = sluice(text)
    with st.connect(port) as c:
        assert st.recv_line(c) == b"a"
    ct.write_config(s.cfg, text.replace("workers = 2", "workers = 11"))
    reply = ct.ask(sock, "reload")
    assert "reload ok" in reply, reply
    st.wait_for(lambda: len(st.ss_listeners(port)) == 11, 10 * st.SLOW, "11 listening sockets")
    n = 1
    # SO_REUSEPORT spreads connections by hash: go on until workers 8..10
    # (the second chunk) have had sessions, within a bound.
    for _ in range(400):
        with st.connect(port) as c:
            assert st.recv_line(c) == b"a"
        n += 1
        if n % 20 == 0 and any(int(e["worker"]) >= 8 for e in s.access()):
            break
    st.wait_for(lambda: len(s.access()) == n, 10 * st.SLOW, f"{n} access-log lines")
    assert any(int(e["worker"]) >= 8 for e in s.access()), "no session on workers 8..10"
    srv = ct.server_stats(sock, "main", "a")
    lst = next(x for x in ct.stats_json(sock)["listeners"] if x["name"] == "main")
    assert srv["sessions"] == n and lst["accepted"] == n, (n, srv, lst)
    s.stop()


@pytest.mark.skipif(st.SANITIZER != "", reason="sanitizer builds have their own memory overhead")
def test_ten_thousand_servers_fit_in_little_memory(sluice, port):
    servers = [f"s{i} 127.0.0.{1 + i // 50000}:{10000 + i % 50000}" for i in range(10000)]
    s = sluice(st.make_config(port, servers, workers=2))
    rss = s.rss_kib()
    # 16 KiB of counters per server for 256 possible workers came to 160 MB;
    # chunks for the 2 configured workers leave a few MiB.
    assert rss < 48 * 1024, f"RSS {rss} KiB with 10,000 servers"
    s.stop()
