#!/usr/bin/python3
"""Small /proc and socket helpers for scripts/bench (standard library only).

  proc.py cpu PID                 CPU seconds (user+system) of PID and all its
                                  descendants, threads included, plus what
                                  they reaped (cutime+cstime)
  proc.py cpusplit PID            "USER SYSTEM": the same CPU seconds split into
                                  user and kernel (utime+cutime, stime+cstime)
  proc.py mem PID                 "rss_kib=N pss_kib=N procs=N" summed over
                                  PID and its descendants
  proc.py tree PID                PID and its descendants, one per line
  proc.py machine                 busy CPU seconds of the whole machine since
                                  boot, every process and the kernel (user,
                                  nice, system, irq, softirq, steal from
                                  /proc/stat; idle and iowait excluded)
  proc.py sample PID SECS MAX     every SECS seconds, until SIGTERM or MAX
                                  seconds: "t rss_kib procs" lines on stdout
  proc.py freeports N             N distinct free TCP ports on 127.0.0.1
  proc.py waitport PORT SECS      wait until 127.0.0.1:PORT accepts (exit 1
                                  if it does not within SECS)
"""

import os
import signal
import socket
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def read_stat(pid):
    """Fields of /proc/PID/stat after the comm field, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # comm may hold spaces and parentheses: split after the last ')'.
    return data[data.rindex(")") + 2:].split()


def tree(root):
    """root and all its descendants (by scanning every process's ppid)."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = read_stat(name)
        if st is None:
            continue
        children.setdefault(int(st[1]), []).append(int(name))
    out, todo, seen = [], [root], set()
    while todo and len(out) < 100000:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        if read_stat(pid) is None:
            continue
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(root):
    ticks = 0
    for pid in tree(root):
        st = read_stat(pid)
        if st is None:
            continue
        # st[0] is field 3 (state): utime=14, stime=15, cutime=16, cstime=17
        ticks += sum(int(x) for x in st[11:15])
    return ticks / CLK_TCK


def machine_seconds():
    """Busy CPU seconds of all CPUs from /proc/stat's aggregate line."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    # cpu user nice system idle iowait irq softirq steal [guest guest_nice]:
    # guest time is already counted in user and nice.
    v = [int(x) for x in fields[1:9]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK_TCK


def cpu_split(root):
    user = system = 0
    for pid in tree(root):
        st = read_stat(pid)
        if st is None:
            continue
        user += int(st[11]) + int(st[13])
        system += int(st[12]) + int(st[14])
    return user / CLK_TCK, system / CLK_TCK


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_KIB
    except (OSError, IndexError, ValueError):
        return 0


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, IndexError, ValueError):
        pass
    return 0


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "cpu":
        print(f"{cpu_seconds(int(args[0])):.3f}")
    elif cmd == "mem":
        pids = tree(int(args[0]))
        print(f"rss_kib={sum(rss_kib(p) for p in pids)} "
              f"pss_kib={sum(pss_kib(p) for p in pids)} procs={len(pids)}")
    elif cmd == "cpusplit":
        u, k = cpu_split(int(args[0]))
        print(f"{u:.3f} {k:.3f}")
    elif cmd == "machine":
        print(f"{machine_seconds():.3f}")
    elif cmd == "tree":
        for p in tree(int(args[0])):
            print(p)
    elif cmd == "sample":
        root, every, limit = int(args[0]), float(args[1]), float(args[2])
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        t0 = time.monotonic()
        while not stop and time.monotonic() - t0 < limit:
            pids = tree(root)
            print(f"{time.monotonic() - t0:.3f} {sum(rss_kib(p) for p in pids)} {len(pids)}",
                  flush=True)
            if not pids:
                break
            time.sleep(every)
    elif cmd == "freeports":
        socks = []
        for _ in range(int(args[0])):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        print(" ".join(str(s.getsockname()[1]) for s in socks))
        for s in socks:
            s.close()
    elif cmd == "waitport":
        port, deadline = int(args[0]), time.monotonic() + float(args[1])
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return 0
            except OSError:
                time.sleep(0.05)
        return 1
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
