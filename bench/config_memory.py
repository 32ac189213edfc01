#!/usr/bin/python3
"""Resident memory of sluice with a large config: N servers in one pool,
no health checks, W workers, measured once sluice has logged "ready:".

    bench/config_memory.py [--servers N] [--workers W] SLUICE_BINARY

Prints one line: servers, workers, VmRSS (KiB), and KiB per server above
an empty config's RSS. Used for the config-memory figure of
docs/benchmarks.md."""

import argparse
import os
import subprocess
import tempfile
import time


def config(servers, workers, port):
    lines = ["[global]", f"workers = {workers}", "log_level = info"]
    if os.geteuid() == 0:
        lines.append("allow_root = yes")
    lines += ["[listener l]", f"bind = 127.0.0.1:{port}", "pool = p", "[pool p]"]
    lines += [f"server = s{i} 127.0.0.{1 + i // 50000}:{10000 + i % 50000}"
              for i in range(max(servers, 1))]
    return "\n".join(lines) + "\n"


def rss_kib(binary, servers, workers, port):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "c.ini")
        with open(path, "w") as f:
            f.write(config(servers, workers, port))
        err = open(os.path.join(d, "err"), "w+")
        p = subprocess.Popen([binary, "-c", path], stderr=err, stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                err.seek(0)
                if "ready:" in err.read():
                    break
                if p.poll() is not None:
                    err.seek(0)
                    raise SystemExit(f"sluice exited: {err.read()}")
                time.sleep(0.05)
            else:
                raise SystemExit("sluice not ready within 60 s")
            with open(f"/proc/{p.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        finally:
            p.terminate()
            p.wait(30)
    raise SystemExit("no VmRSS")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--servers", type=int, default=10000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--port", type=int, default=18599)
    ap.add_argument("binary")
    a = ap.parse_args()
    base = rss_kib(a.binary, 1, a.workers, a.port)
    big = rss_kib(a.binary, a.servers, a.workers, a.port)
    print(f"servers={a.servers} workers={a.workers} rss_kib={big} "
          f"base_kib={base} per_server_kib={(big - base) / a.servers:.2f}")


if __name__ == "__main__":
    main()
