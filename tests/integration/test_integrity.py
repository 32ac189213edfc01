"""Byte-exact relaying both ways under concurrency."""

import os
import random
import threading
import time

import pytest

import sluicetest as st

CLIENTS = 200
MAX_SIZE = (1 << 20) if st.SANITIZER else (8 << 20)
# Sizes that sit on interesting edges: empty, one byte, around the relay
# block size (16k default), around max_buffer (256k), and the maximum.
EDGES = [0, 1, 16383, 16384, 16385, 262144, 262145, MAX_SIZE]


def pick_sizes(rng):
    """(up, down) per client: some edge sizes, the rest uniform in 0..MAX_SIZE."""
    sizes = []
    for i in range(CLIENTS):
        if i < len(EDGES):
            sizes.append((EDGES[i], EDGES[-1 - i]))
        else:
            sizes.append((rng.randint(0, MAX_SIZE), rng.randint(0, MAX_SIZE)))
    return sizes


# heavy (gigabytes in a normal build), but under TSan too: the sanitizer
# builds move at most 1 MiB each way per client, about 200 MiB per relay
# mode, which takes about a second under TSan on 2 cores.
@pytest.mark.heavy
@pytest.mark.tsan_heavy
@pytest.mark.threaded
def test_200_concurrent_clients_sha256_both_ways(sluice, backend, port, relay):
    seed = int(os.environ.get("SLUICE_TEST_SEED", str(time.time_ns() % 1_000_000)))
    rng = random.Random(seed)
    st.blob()  # generate before the clock starts
    b1 = backend(st.sinksource_handler, name="s1")
    b2 = backend(st.sinksource_handler, name="s2")
    s = sluice(st.make_config(port, [f"s1 {b1.addr}", f"s2 {b2.addr}"], relay=relay, workers=2))

    sizes = pick_sizes(rng)
    results = [None] * CLIENTS
    start = threading.Barrier(CLIENTS, timeout=30 * st.SLOW)
    timeout = 90.0 * st.SLOW

    def client(i):
        try:
            start.wait()
            results[i] = st.sinksource_client(port, *sizes[i], random.Random(seed * 1000 + i),
                                              timeout=timeout)
        except BaseException as e:  # noqa: BLE001 - reported below
            results[i] = e

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, t0 + timeout + 10 - time.monotonic()))
    elapsed = time.monotonic() - t0
    hung = [i for i, t in enumerate(threads) if t.is_alive()]
    assert not hung, f"seed {seed}: {len(hung)} clients still running after {elapsed:.0f}s"
    failed = [(i, sizes[i], r) for i, r in enumerate(results) if not isinstance(r, int)]
    assert not failed, (f"seed {seed}: {len(failed)} of {CLIENTS} clients failed, first: "
                        f"{failed[:3]}\n{s.tail()}")
    assert not b1.errors and not b2.errors, (b1.errors + b2.errors)[:5]

    # The access log accounts every byte: up = header + upload, down = payload + trailer.
    entries = {st.client_port(e): e for e in s.wait_access(CLIENTS, timeout=10 * st.SLOW)}
    for i, local in enumerate(results):
        e = entries.get(local)
        assert e is not None, f"no access log line for client port {local}"
        up, down = sizes[i]
        assert (int(e["up"]), int(e["down"])) == (st.HDR.size + up, down + st.TRAILER.size), e
        assert e["reason"] in ("client_close", "backend_close"), e
    assert {e["backend"] for e in entries.values()} == {"s1", "s2"}
    total = sum(u + d for u, d in sizes)
    print(f"seed {seed}: {total / (1 << 20):.0f} MiB in {elapsed:.1f}s")
    s.stop()
