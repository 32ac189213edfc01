#!/usr/bin/python3
"""Parse, aggregate and report a scripts/bench run (standard library only).

  report.py --raw DIR --out DIR [--docs FILE --img DIR --data DIR] [--strict]
  report.py --from bench/data/FILE.json [--check]

Reads DIR/raw/env and one directory per run (meta + raw tool outputs), and
writes OUT/results.json (every repetition, the env, versions, settings,
summary per configuration, the rendered tables), OUT/results.md (tables)
and OUT/*.png (gnuplot). With --docs it also writes docs/benchmarks.md,
copies the charts to --img and writes the run's data file to --data
(bench/data/<stamp>-<commit>-<workloads>.json); it refuses unless the run
was at HEAD, on a clean tree, with a binary built from it. Exits 1 if a run
failed or an output did not parse; --strict also requires every chart.

--from re-renders the tables of a data file (or a results.json) on stdout;
with --check it exits 1 unless they equal the tables stored in the file.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys

PEERS = ("haproxy", "nginx")
# sluice's relay modes measured in the bulk, rr and cps tables, one row
# each (a row appears only when the run has data for it). A new mode:
# add its target here and in scripts/bench (sluice_relay and the workload
# lists); its verdicts against the peers go in targets_table.
SLUICE_VARIANTS = ("sluice", "sluice-uring")
ALL = ("direct",) + SLUICE_VARIANTS + PEERS
PROXIES = ("sluice", "haproxy", "nginx")
# cps-tls: every proxy as plain TCP passthrough and as PROXY-sni, routing on
# the TLS ClientHello's server name (sluice route = sni, HAProxy req.ssl_sni,
# nginx ssl_preread).
TLS_TARGETS = ("direct", "sluice", "sluice-sni", "haproxy", "haproxy-sni", "nginx", "nginx-sni")


# ------------------------------------------------------------------ parsing

def read_kv(path):
    out = {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if "=" in line:
                k, v = line.split("=", 1)
                out[k] = v
    return out


def parse_mem(s):
    """'rss_kib=1 pss_kib=2 procs=3' -> dict of ints."""
    return {k: int(v) for k, v in (x.split("=") for x in s.split())}


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def to_ms(s):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", s)
    if not m:
        raise ValueError(f"bad latency {s!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def parse_wrk(path):
    with open(path, errors="replace") as f:
        text = f.read()
    r = {}
    m = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m),", text, re.M)
    if not m:
        raise ValueError(f"{path}: no 'N requests in T' line")
    r["requests"] = int(m.group(1))
    r["duration_s"] = to_ms(m.group(2) + m.group(3)) / 1e3
    m = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    if not m:
        raise ValueError(f"{path}: no Requests/sec line")
    r["rps"] = float(m.group(1))
    for pct in ("50", "99"):
        m = re.search(rf"^\s*{pct}%\s+(\S+)", text, re.M)
        if m:
            r[f"p{pct}_ms"] = to_ms(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errs = [int(x) for x in m.groups()] if m else [0, 0, 0, 0]
    r["socket_errors"] = sum(errs)
    r["socket_errors_detail"] = dict(zip(("connect", "read", "write", "timeout"), errs))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    r["non2xx"] = int(m.group(1)) if m else 0
    return r


def parse_iperf(path):
    with open(path) as f:
        data = json.load(f)
    if data.get("error"):
        raise ValueError(f"{path}: iperf3 error: {data['error']}")
    recv = data["end"]["sum_received"]
    return {"gbit_s": recv["bits_per_second"] / 1e9, "bytes": recv["bytes"],
            "duration_s": recv["seconds"]}


def parse_samples(path):
    rows = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3:
                rows.append((float(parts[0]), int(parts[1]), int(parts[2])))
    if not rows:
        raise ValueError(f"{path}: no samples")
    return rows


def read_json_line(path):
    """The last JSON line of a floodgen output file."""
    with open(path) as f:
        lines = [line for line in f.read().splitlines() if line.strip().startswith("{")]
    if not lines:
        raise ValueError(f"{path}: no JSON line")
    return json.loads(lines[-1])


# sluice's end reasons for a source over its limits (issue 13).
SOURCE_REASONS = ("source_conn_limit", "source_rate_limit")


def sluice_counters(path):
    """From `show stats json`: sessions that reached a server, accepted,
    and refusals by per-source limits; None if the file is missing."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        text = f.read()
    start = text.find("{")
    if start < 0:
        raise ValueError(f"{path}: no JSON object")
    data, _ = json.JSONDecoder().raw_decode(text[start:])
    reasons = data.get("process", {}).get("end_reasons", {})
    return {"server_sessions": sum(x.get("sessions", 0) for x in data.get("servers", [])),
            "accepted": data.get("process", {}).get("accepted", 0),
            "source_refusals": sum(reasons.get(r, 0) for r in SOURCE_REASONS),
            "has_source_reasons": any(r in reasons for r in SOURCE_REASONS)}


def parse_flood(d, meta, run):
    """The flood workload: phase A (well-behaved sources alone), phase B
    (the same while one source floods), one proxy process, A then B."""
    m = run["metrics"]
    a = read_json_line(os.path.join(d, "a-clients.json"))
    b = read_json_line(os.path.join(d, "b-clients.json"))
    fl = read_json_line(os.path.join(d, "b-flood.json"))
    for r in (a, b):
        if r.get("role") != "clients" or r.get("requests", 0) <= 0:
            raise ValueError(f"{d}: well-behaved clients made no requests: {r}")
    if fl.get("role") != "flood" or fl.get("attempted", 0) <= 0:
        raise ValueError(f"{d}: the flood made no attempts: {fl}")
    protected = meta.get("protected") == "1"
    run["raw"].update(a=a, b=b, flood=fl, protected=protected)
    m["protected"] = 1 if protected else 0
    m["a_rps"], m["b_rps"] = a["rps"], b["rps"]
    m["rps_ratio"] = b["rps"] / a["rps"]
    for ph, r in (("a", a), ("b", b)):
        m[f"{ph}_p50_ms"] = r["p50_us"] / 1e3
        m[f"{ph}_p99_ms"] = r["p99_us"] / 1e3
        m[f"{ph}_conn_errors"] = r["conn_errors"]
    m["p99_ratio"] = b["p99_us"] / a["p99_us"] if a["p99_us"] else None
    send = fl["send_seconds"] or 1
    m["flood_attempt_rate"] = fl["attempt_rate"]
    m["flood_attempted"] = fl["attempted"]
    # Admitted end to end: the flood connections whose request the echo
    # backend answered through the proxy (the same measure for every proxy).
    m["flood_admitted"] = fl["answered"]
    m["flood_admitted_rate"] = fl["answered"] / send
    m["flood_turned_away"] = fl["refused"] + fl["reset"] + fl["closed"]
    m["flood_timeouts"] = fl["timeouts"]
    if protected:
        rate_limit, conn_limit = int(meta["rate_limit"]), int(meta["conn_limit"])
        run["raw"]["limits"] = {"conn": conn_limit, "rate_per_s": rate_limit}
        if run["target"] != "nginx":  # nginx's stream module limits connections only
            # A token bucket of rate_limit/s admits at most a full bucket
            # plus what refills over the flood's sending time.
            allowed = rate_limit * (send + 1)
            m["flood_allowed"] = allowed
            m["flood_admitted_vs_allowed"] = fl["answered"] / allowed
    mem = {k: parse_mem(meta[k]) for k in ("mem_start", "mem_mid", "mem_end") if k in meta}
    run["raw"]["mem"] = mem
    if "mem_mid" in mem and "mem_end" in mem:
        m["rss_before_flood_mib"] = mem["mem_mid"]["rss_kib"] / 1024
        m["rss_after_flood_mib"] = mem["mem_end"]["rss_kib"] / 1024
        m["rss_flood_growth_kib"] = mem["mem_end"]["rss_kib"] - mem["mem_mid"]["rss_kib"]
    cpu_a = cpu_b = None
    if "cpu_mid" in meta:
        cpu_a = float(meta["cpu_mid"]) - float(meta["cpu_before"])
        cpu_b = float(meta["cpu_after"]) - float(meta["cpu_mid"])
        run["raw"]["cpu_s"] = {"a": cpu_a, "b": cpu_b}
    # Phase C: the flood spread over more addresses than the source table
    # holds (runs of scripts/bench from before phase C have none).
    if os.path.exists(os.path.join(d, "c-clients.json")):
        c = read_json_line(os.path.join(d, "c-clients.json"))
        fc = read_json_line(os.path.join(d, "c-flood.json"))
        if c.get("role") != "clients" or c.get("requests", 0) <= 0:
            raise ValueError(f"{d}: well-behaved clients made no requests in phase C: {c}")
        run["raw"].update(c=c, spread_flood=fc)
        m["c_rps"] = c["rps"]
        m["c_rps_ratio"] = c["rps"] / a["rps"]
        m["c_p99_ms"] = c["p99_us"] / 1e3
        m["c_p99_ratio"] = c["p99_us"] / a["p99_us"] if a["p99_us"] else None
        m["spread_attempt_rate"] = fc["attempt_rate"]
        m["spread_admitted_rate"] = fc["answered"] / (fc["send_seconds"] or 1)
        m["spread_sources"] = min(fc["attempted"], fc.get("source_count", 1))
        if "mem_spread" in meta and "mem_end" in meta:
            mc = parse_mem(meta["mem_spread"])
            mem["mem_spread"] = mc
            m["rss_after_spread_mib"] = mc["rss_kib"] / 1024
            growth = mc["rss_kib"] - mem["mem_mid"]["rss_kib"]
            m["rss_spread_growth_kib"] = growth
            if meta.get("table_size"):
                # What the whole flood (B and C) added, per entry of the
                # configured source table.
                m["rss_growth_bytes_per_entry"] = growth * 1024 / int(meta["table_size"])
    if run["target"] == "sluice":
        ca = sluice_counters(os.path.join(d, "stats-a.json"))
        cb = sluice_counters(os.path.join(d, "stats-b.json"))
        if ca and cb:
            run["raw"]["sluice_counters"] = {"after_a": ca, "after_b": cb}
            # Sessions that reached the backend in phase B, less the
            # well-behaved sources' own connections.
            m["sluice_flood_sessions"] = (cb["server_sessions"] - ca["server_sessions"]
                                          - b["connects"])
            m["sluice_accepted_b"] = cb["accepted"] - ca["accepted"]
            if cb["has_source_reasons"]:
                m["sluice_source_refusals"] = cb["source_refusals"] - ca["source_refusals"]
        src = os.path.join(d, "show-sources.txt")
        if os.path.exists(src):
            with open(src, errors="replace") as f:
                run["raw"]["show_sources"] = f.read()[:4000]


CRASH_RE = re.compile(r"Segmentation fault|exited on signal|core dumped|exited with code 1[3-9][0-9]")


def count_crashes(d):
    n = 0
    for sub in os.listdir(d):
        p = os.path.join(d, sub)
        if not os.path.isdir(p):
            continue
        for name in ("proxy.log", "error.log"):
            f = os.path.join(p, name)
            if os.path.exists(f):
                with open(f, errors="replace") as fh:
                    n += sum(1 for line in fh if CRASH_RE.search(line)
                             and "code 143" not in line)  # 143: our SIGTERM at the end
    return n


# Kernel TCP counters kept per run (nstat -asz before and after, deltas):
# retransmits, and what the receive path drops, prunes and collapses.
NSTAT_KEYS = ("TcpRetransSegs", "TcpOutSegs", "TcpExtTCPRcvCollapsed", "TcpExtPruneCalled",
              "TcpExtRcvPruned", "TcpExtOfoPruned", "TcpExtTCPBacklogDrop", "TcpExtTCPOFOQueue",
              "TcpExtTCPOFODrop", "TcpExtTCPLostRetransmit", "TcpExtTCPFastRetrans",
              "TcpExtTCPSlowStartRetrans", "TcpExtTCPTimeouts", "TcpExtTCPLossProbes",
              "TcpExtTCPSpuriousRTOs", "TcpExtTCPDSACKRecv", "TcpExtTCPMemoryPressures",
              "TcpExtTCPRcvQDrop", "TcpExtTCPZeroWindowDrop", "TcpExtListenDrops",
              "TcpExtListenOverflows", "TcpExtTCPAbortOnMemory", "TcpExtTCPWqueueTooBig")


def read_nstat(path):
    """`nstat -asz` output -> {counter: value}; {} if the file is missing."""
    out = {}
    if not os.path.exists(path):
        return out
    with open(path, errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                out[parts[0]] = int(parts[1])
    return out


def nstat_delta(d):
    """Deltas of NSTAT_KEYS over the measured run, None without nstat."""
    before = read_nstat(os.path.join(d, "nstat-before.txt"))
    after = read_nstat(os.path.join(d, "nstat-after.txt"))
    if not before or not after:
        return None
    return {k: after[k] - before.get(k, 0) for k in NSTAT_KEYS if k in after}


def parse_strace(path):
    """strace -c summary -> {syscall: calls} (errors counted as calls)."""
    calls = {}
    with open(path, errors="replace") as f:
        for line in f:
            parts = line.split()
            # % time, seconds, usecs/call, calls, [errors], syscall
            if len(parts) >= 5 and parts[-1] != "total" and re.fullmatch(r"[\d.]+", parts[0]):
                try:
                    calls[parts[-1]] = int(parts[3])
                except ValueError:
                    continue
    if not calls:
        raise ValueError(f"{path}: no syscall counts")
    return calls


def kernel_share(meta):
    """The share of the proxy's CPU spent in the kernel over the measured
    run (stime over utime + stime, from /proc/PID/stat), None if unknown."""
    b, a = meta.get("cpu_split_before"), meta.get("cpu_split_after")
    if not b or not a:
        return None
    (ub, kb), (ua, ka) = ([float(x) for x in v.split()] for v in (b, a))
    total = (ua - ub) + (ka - kb)
    return (ka - kb) / total if total > 0 else None


def cpu_used(meta, prefix=""):
    b, a = meta.get(prefix + "cpu_before"), meta.get(prefix + "cpu_after")
    if b is None or a is None:
        return None
    return float(a) - float(b)


def parse_run(d, env):
    meta = read_kv(os.path.join(d, "meta"))
    case, target = meta["case"], meta["target"]
    run = {"id": meta["id"], "rep": int(meta["rep"]), "case": case, "target": target,
           "config": meta.get("config", "unspecified"), "status": meta.get("status", "unknown"), "workers": meta.get("workers"),
           "start": meta.get("start"), "elapsed_s": float(meta.get("elapsed_s", 0) or 0),
           "metrics": {}, "raw": {}}
    if run["status"] != "ok":
        log = os.path.join(d, "case.log")
        run["error"] = open(log, errors="replace").read()[-2000:] if os.path.exists(log) else ""
        return run
    m = run["metrics"]
    if case.startswith("bulk-") or case.startswith("splice-"):
        r = parse_iperf(os.path.join(d, "iperf.json"))
        run["raw"].update(r, streams=int(meta["streams"]))
        m["gbit_s"] = r["gbit_s"]
        cpu = cpu_used(meta)
        gb = r["bytes"] / 1e9
        if cpu is not None:
            run["raw"]["cpu_s"] = cpu
            m["cpu_s_per_gb"] = cpu / gb if gb else None
        mcpu = cpu_used(meta, "machine_")
        if mcpu is not None:
            run["raw"]["machine_cpu_s"] = mcpu
            m["machine_cpu_s_per_gb"] = mcpu / gb if gb else None
        if kernel_share(meta) is not None:
            m["kernel_share"] = kernel_share(meta)
        ns = nstat_delta(d)
        if ns is not None:
            run["raw"]["nstat"] = ns
            if "TcpRetransSegs" in ns and gb:
                m["retrans_per_gb"] = ns["TcpRetransSegs"] / gb
    elif case in ("rr", "cps", "cps-tls", "scaling-rr", "scaling-cps"):
        r = parse_wrk(os.path.join(d, "wrk.txt"))
        run["raw"].update(r)
        m["rps"] = r["rps"]
        m["p50_ms"] = r.get("p50_ms")
        m["p99_ms"] = r.get("p99_ms")
        m["socket_errors"] = r["socket_errors"]
        cpu = cpu_used(meta)
        if cpu is not None:
            run["raw"]["cpu_s"] = cpu
            m["cpu_us"] = cpu * 1e6 / r["requests"] if r["requests"] else None
        mcpu = cpu_used(meta, "machine_")
        if mcpu is not None:
            run["raw"]["machine_cpu_s"] = mcpu
            m["machine_cpu_us"] = mcpu * 1e6 / r["requests"] if r["requests"] else None
        if kernel_share(meta) is not None:
            m["kernel_share"] = kernel_share(meta)
        ns = nstat_delta(d)
        if ns is not None:
            run["raw"]["nstat"] = ns
        if "mem_after" in meta:
            run["raw"]["mem_after"] = parse_mem(meta["mem_after"])
    elif case.startswith("idle-"):
        before, held = parse_mem(meta["mem_before"]), parse_mem(meta["mem_held"])
        n = int(meta["conns"])
        with open(os.path.join(d, "client.txt")) as f:
            client = f.read()
        if not re.search(r"^ok n=%d " % n, client, re.M):
            raise ValueError(f"{d}: idle client did not verify {n} connections")
        dm = re.search(r"^held dropped=(\d+)", client, re.M)
        run["raw"].update(before=before, held=held, conns=n, client=client.strip(),
                          dropped=int(dm.group(1)) if dm else None)
        m["kib_per_conn"] = (held["rss_kib"] - before["rss_kib"]) / n
        m["pss_kib_per_conn"] = (held["pss_kib"] - before["pss_kib"]) / n
        m["rss_held_mib"] = held["rss_kib"] / 1024
        m["procs"] = held["procs"]
    elif case.startswith("reload-"):
        runs = int(env.get("storm_runs", 0))
        for phase in ("base", "storm"):
            wrks = [parse_wrk(os.path.join(d, f"{phase}-wrk-{i}.txt")) for i in range(1, runs + 1)]
            samples = parse_samples(os.path.join(d, f"{phase}-samples.txt"))
            reqs = sum(w["requests"] for w in wrks)
            dur = sum(w["duration_s"] for w in wrks)
            m[f"{phase}_rps"] = reqs / dur if dur else None
            m[f"{phase}_worst_rps"] = min(w["rps"] for w in wrks)
            m[f"{phase}_socket_errors"] = sum(w["socket_errors"] for w in wrks)
            m[f"{phase}_non2xx"] = sum(w["non2xx"] for w in wrks)
            m[f"{phase}_peak_rss_mib"] = max(s[1] for s in samples) / 1024
            m[f"{phase}_procs_min"] = min(s[2] for s in samples)
            m[f"{phase}_procs_max"] = max(s[2] for s in samples)
            run["raw"][phase] = {"windows_rps": [w["rps"] for w in wrks], "requests": reqs,
                                 "duration_s": dur, "samples": len(samples),
                                 "cpu_s": cpu_used(meta, phase + "_")}
        if m["base_rps"]:
            m["storm_ratio"] = m["storm_rps"] / m["base_rps"]
        run["raw"]["signal"] = meta.get("signal")
        run["raw"]["signals_sent"] = int(meta.get("signals_sent", 0))
        if meta.get("reloads_ok"):  # sluice: from its admin socket
            m["reloads_ok"] = int(meta["reloads_ok"])
            m["reloads_failed"] = int(meta["reloads_failed"])
        m["crashes"] = count_crashes(d)
    elif case == "flood":
        parse_flood(d, meta, run)
    elif case.startswith("profile-"):
        r = parse_wrk(os.path.join(d, "wrk.txt"))
        calls = parse_strace(os.path.join(d, "strace.txt"))
        run["raw"].update(requests=r["requests"], rps_traced=r["rps"], syscalls=calls,
                          tool=meta.get("profile_tool", "strace"))
        if r["requests"]:
            m["syscalls_per_req"] = sum(calls.values()) / r["requests"]
            for name, n in calls.items():
                m[f"sc_{name}"] = n / r["requests"]
    else:
        raise ValueError(f"{d}: unknown case {case}")
    return run


# -------------------------------------------------------------- aggregation

# Same-repetition ratios: (case, target, over, metric) -> metric "METRIC_vs_pass"
# of target, the ratio of target's figure to over's in the same repetition
# (the same round), so that the median and range are of the ratio itself.
PAIRS = [("cps-tls", f"{p}-sni", p, m) for p in PROXIES for m in ("rps", "cpu_us")]


def summarize(runs):
    """{case: {target: {metric: {median, half_range, min, max, n, values}}}}"""
    acc = {}
    by_rep = {}
    for r in runs:
        if r["status"] != "ok":
            continue
        by_rep[(r["case"], r["target"], r["rep"])] = r["metrics"]
        for k, v in r["metrics"].items():
            if v is None:
                continue
            acc.setdefault(r["case"], {}).setdefault(r["target"], {}).setdefault(k, []).append(v)
    for case, target, over, metric in PAIRS:
        for (c, t, rep), m in sorted(by_rep.items(), key=lambda kv: kv[0][2]):
            if (c, t) != (case, target):
                continue
            o = by_rep.get((case, over, rep), {})
            if m.get(metric) is not None and o.get(metric):
                acc.setdefault(case, {}).setdefault(target, {}).setdefault(
                    metric + "_vs_pass", []).append(m[metric] / o[metric])
    out = {}
    for case, ts in acc.items():
        for t, ms in ts.items():
            for k, vals in ms.items():
                out.setdefault(case, {}).setdefault(t, {})[k] = {
                    "median": statistics.median(vals), "half_range": (max(vals) - min(vals)) / 2,
                    "min": min(vals), "max": max(vals), "n": len(vals), "values": vals}
    return out


def get(summary, case, target, metric, field="median"):
    return summary.get(case, {}).get(target, {}).get(metric, {}).get(field)


def best_peer(summary, case, metric, better, target=None):
    # The zero-copy workload compares sluice's splice relay with HAProxy's;
    # in cps-tls, routing by SNI is compared with the peers' SNI routing.
    peers = ("haproxy-splice",) if case.startswith("splice-") else PEERS
    if case == "cps-tls" and target and target.endswith("-sni"):
        peers = tuple(p + "-sni" for p in PEERS)
    vals = [get(summary, case, p, metric) for p in peers]
    vals = [v for v in vals if v is not None]
    if not vals or better not in ("high", "low"):
        return None
    return max(vals) if better == "high" else min(vals)


# --------------------------------------------------------------- formatting

# Figures that are counts: printed as integers.
COUNTS = {"protected", "spread_sources", "rss_spread_growth_kib", "flood_attempted",
          "flood_admitted", "flood_turned_away", "flood_timeouts",
          "flood_allowed", "sluice_flood_sessions", "sluice_source_refusals",
          "sluice_accepted_b", "a_conn_errors", "b_conn_errors", "rss_flood_growth_kib",
          "socket_errors", "base_socket_errors", "storm_socket_errors", "base_non2xx",
          "storm_non2xx", "crashes", "procs", "reloads_ok", "reloads_failed"}


def fmt(v, count=False):
    if v is None:
        return "—"
    if count:
        return f"{v:,.0f}"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1 or a == 0:
        return f"{v:.2f}"
    return f"{v:.3f}"


def cell(summary, case, target, metric, better):
    s = summary.get(case, {}).get(target, {}).get(metric)
    if not s:
        return "—"
    count = metric in COUNTS
    txt = fmt(s["median"], count)
    if s["n"] > 1:
        txt += f" ±{fmt(s['half_range'], count and s['half_range'].is_integer())}"
    best = best_peer(summary, case, metric, better, target)
    if best:
        txt += f" ({s['median'] / best:.2f}×)"
    return txt


# Columns of each workload's table: (header, case, metric, better).
TABLES = [
    ("bulk", "Bulk transfer (iperf3, 1 and 8 streams)", ALL, [
        ("Gbit/s, 1 stream", "bulk-1", "gbit_s", "high"),
        ("CPU-s/GB, 1 stream", "bulk-1", "cpu_s_per_gb", "low"),
        ("Gbit/s, 8 streams", "bulk-8", "gbit_s", "high"),
        ("CPU-s/GB, 8 streams", "bulk-8", "cpu_s_per_gb", "low"),
    ]),
    ("bulk-machine", "Bulk transfer: whole-machine CPU and TCP retransmits", ALL, [
        ("machine CPU-s/GB, 1 stream", "bulk-1", "machine_cpu_s_per_gb", "low"),
        ("retransmits/GB, 1 stream", "bulk-1", "retrans_per_gb", "low"),
        ("machine CPU-s/GB, 8 streams", "bulk-8", "machine_cpu_s_per_gb", "low"),
        ("retransmits/GB, 8 streams", "bulk-8", "retrans_per_gb", "low"),
    ]),
    ("splice", "Zero-copy bulk: sluice relay = splice vs HAProxy with splice forced (iperf3)",
     ("direct", "sluice-splice", "haproxy-splice"), [
        ("Gbit/s, 1 stream", "splice-1", "gbit_s", "high"),
        ("CPU-s/GB, 1 stream", "splice-1", "cpu_s_per_gb", "low"),
        ("Gbit/s, 8 streams", "splice-8", "gbit_s", "high"),
        ("CPU-s/GB, 8 streams", "splice-8", "cpu_s_per_gb", "low"),
    ]),
    ("splice-machine", "Zero-copy bulk: whole-machine CPU and TCP retransmits",
     ("direct", "sluice-splice", "haproxy-splice"), [
        ("machine CPU-s/GB, 1 stream", "splice-1", "machine_cpu_s_per_gb", "low"),
        ("retransmits/GB, 1 stream", "splice-1", "retrans_per_gb", "low"),
        ("machine CPU-s/GB, 8 streams", "splice-8", "machine_cpu_s_per_gb", "low"),
        ("retransmits/GB, 8 streams", "splice-8", "retrans_per_gb", "low"),
    ]),
    ("rr", "Request/response, keep-alive (wrk -t2 -c50, 64-byte body)", ALL, [
        ("req/s", "rr", "rps", "high"),
        ("p50 ms", "rr", "p50_ms", "low"),
        ("p99 ms", "rr", "p99_ms", "low"),
        ("CPU µs/req", "rr", "cpu_us", "low"),
        ("machine CPU µs/req", "rr", "machine_cpu_us", "low"),
    ]),
    ("cps", "New connection per request (wrk -t2 -c50, Connection: close)", ALL, [
        ("conn/s", "cps", "rps", "high"),
        ("p50 ms", "cps", "p50_ms", "low"),
        ("p99 ms", "cps", "p99_ms", "low"),
        ("CPU µs/conn", "cps", "cpu_us", "low"),
        ("machine CPU µs/conn", "cps", "machine_cpu_us", "low"),
    ]),
    ("cpu-split", "Where each proxy's own CPU goes: share in the kernel (system time ÷ "
     "user + system, /proc/PID/stat, over the measured runs)",
     ("sluice", "sluice-splice", "haproxy", "haproxy-splice", "nginx"), [
        ("bulk, 1 stream", "bulk-1", "kernel_share", None),
        ("bulk, 8 streams", "bulk-8", "kernel_share", None),
        ("splice, 8 streams", "splice-8", "kernel_share", None),
        ("rr", "rr", "kernel_share", None),
        ("cps", "cps", "kernel_share", None),
    ]),
    ("cps-tls", "TLS, new connection per request, full handshake each (wrk -t2 -c50, "
     "https, Connection: close), passed through or routed by SNI", TLS_TARGETS, [
        ("conn/s", "cps-tls", "rps", "high"),
        ("p50 ms", "cps-tls", "p50_ms", "low"),
        ("p99 ms", "cps-tls", "p99_ms", "low"),
        ("CPU µs/conn", "cps-tls", "cpu_us", "low"),
        ("machine CPU µs/conn", "cps-tls", "machine_cpu_us", "low"),
    ]),
]


SNI_LABELS = {"sluice": "sluice: route = sni ÷ route = pool",
              "haproxy": "haproxy: req.ssl_sni ÷ tcp passthrough",
              "nginx": "nginx: ssl_preread + map ÷ passthrough"}


def sni_cost_lines(summary):
    """The cost of routing by SNI: each proxy against itself, same repetition."""
    lines = ["| proxy | conn/s | CPU µs/conn |", "|---|---:|---:|"]
    have = False
    for p in PROXIES:
        cells = []
        for metric in ("rps_vs_pass", "cpu_us_vs_pass"):
            s = summary.get("cps-tls", {}).get(f"{p}-sni", {}).get(metric)
            if s:
                have = True
                cells.append(f"{s['median']:.3f}×" + (f" ±{s['half_range']:.3f}" if s["n"] > 1 else ""))
            else:
                cells.append("—")
        lines.append(f"| {SNI_LABELS[p]} | " + " | ".join(cells) + " |")
    return lines if have else []


def idle_table(summary, ns):
    cols = []
    for n in ns:
        cols.append((f"KiB/conn, {n:,} conns (RSS)", f"idle-{n}", "kib_per_conn", "low"))
        cols.append((f"KiB/conn, {n:,} (PSS)", f"idle-{n}", "pss_kib_per_conn", "low"))
    if ns:
        cols.append((f"RSS MiB with {ns[-1]:,}", f"idle-{ns[-1]}", "rss_held_mib", "low"))
    return ("idle", "Idle connections held (echo backend, each verified with a unique ping)",
            PROXIES, cols)


def reload_table(kind):
    c = f"reload-{kind}"
    what = "keep-alive" if kind == "rr" else "Connection: close"
    return (c, f"Reload storm, {kind} ({what}): 1-s wrk runs back to back, without and with reloads",
            PROXIES, [
                ("req/s without", c, "base_rps", "high"),
                ("req/s storm", c, "storm_rps", "high"),
                ("storm ÷ without", c, "storm_ratio", "high"),
                ("worst 1 s without", c, "base_worst_rps", "high"),
                ("worst 1 s storm", c, "storm_worst_rps", "high"),
                ("socket errors storm", c, "storm_socket_errors", "low"),
                ("peak RSS MiB without", c, "base_peak_rss_mib", "low"),
                ("peak RSS MiB storm", c, "storm_peak_rss_mib", "low"),
            ])


def md_table(summary, spec):
    _, title, targets, cols = spec
    lines = ["| target | " + " | ".join(h for h, *_ in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    rows = 0
    for t in targets:
        if not any(summary.get(c, {}).get(t, {}).get(m) for _, c, m, _ in cols):
            continue
        rows += 1
        lines.append(f"| {t} | " + " | ".join(cell(summary, c, t, m, b) for _, c, m, b in cols) + " |")
    return lines if rows else []


def procs_range(summary, case, target, phase):
    lo = get(summary, case, target, f"{phase}_procs_min", "min")
    hi = get(summary, case, target, f"{phase}_procs_max", "max")
    return "—" if lo is None else (f"{lo}" if lo == hi else f"{lo}–{hi}")


# The scaling table's columns: (case, metric, header). CPU per request
# (rr) and per connection (cps), sluice's own and the whole machine's,
# are what can show scaling on a small machine: with the CPUs shared by
# wrk, the backend and the proxy, the rates measure the machine, but a
# per-request cost that stays flat from 1 to 2 workers says the workers
# add no work to each other (docs/architecture.md, Scaling).
SCALING_COLS = (("scaling-rr", "rps", "rr req/s"),
                ("scaling-rr", "cpu_us", "rr sluice CPU µs/req"),
                ("scaling-rr", "machine_cpu_us", "rr machine CPU µs/req"),
                ("scaling-cps", "rps", "cps conn/s"),
                ("scaling-cps", "cpu_us", "cps sluice CPU µs/conn"),
                ("scaling-cps", "machine_cpu_us", "cps machine CPU µs/conn"))


def scaling_lines(summary):
    lines = ["| workers | " + " | ".join(h for _, _, h in SCALING_COLS) + " |",
             "|---|" + "---:|" * len(SCALING_COLS)]
    have = False
    for t in ("sluice-w1", "sluice-w2"):
        cells = []
        for case, metric, _ in SCALING_COLS:
            s = summary.get(case, {}).get(t, {}).get(metric)
            if s:
                have = True
                cells.append(fmt(s["median"]) + (f" ±{fmt(s['half_range'])}" if s["n"] > 1 else ""))
            else:
                cells.append("—")
        lines.append(f"| {t[-1]} | " + " | ".join(cells) + " |")
    ratios = []
    for case, metric, _ in SCALING_COLS:
        a, b = get(summary, case, "sluice-w1", metric), get(summary, case, "sluice-w2", metric)
        ratios.append(f"{b / a:.2f}×" if a and b else "—")
    lines.append("| 2 ÷ 1 | " + " | ".join(ratios) + " |")
    return lines if have else []


def flood_lines(summary, env):
    """The flood workload's tables (nothing without flood runs)."""
    fs = summary.get("flood", {})
    if not fs:
        return []
    prot = env.get("flood_protect") == "1"
    cl, sz = env.get("flood_clients", "?"), env.get("flood_size", "?")
    lines = [f"### Flood: one source floods, {cl} well-behaved sources", ""]
    if prot:
        lines += [f"**Protected run:** every proxy limits each source address to "
                  f"{env.get('flood_conn_limit')} live connections and "
                  f"{env.get('flood_rate_limit')} new connections per second (sluice "
                  "`max_conns_per_source`, `rate_per_source`; HAProxy a stick table on `src` "
                  "with `sc0_conn_cur` and `sc0_conn_rate`; nginx `limit_conn` on "
                  "`$binary_remote_addr`, which has no per-source rate limit in the stream "
                  "module).", ""]
    else:
        lines += ["**Unprotected run:** this sluice build has no per-source limits yet "
                  "(its `sluice -t` refused `max_conns_per_source`), so no proxy limits "
                  "sources: the flood reaches the backend through every proxy, and this "
                  "measures how a flood of new connections from one address hurts the "
                  "others' traffic without protection.", ""]
    lines += [f"Well-behaved sources ({cl} addresses, one keep-alive connection each, "
              f"{sz}-byte request echoed, closed loop): A alone, B while one other address "
              f"tries {int(env.get('flood_rate', 0)):,} new connections per second.", "",
              "| target | req/s A | req/s B | B ÷ A | p50 ms A | p50 ms B | p99 ms A | p99 ms B "
              "| p99 B ÷ A | conn errors B |", "|---|" + "---:|" * 9]
    cols = ["a_rps", "b_rps", "rps_ratio", "a_p50_ms", "b_p50_ms", "a_p99_ms", "b_p99_ms",
            "p99_ratio", "b_conn_errors"]
    for t in PROXIES:
        if t in fs:
            lines.append(f"| {t} | " + " | ".join(cell(summary, "flood", t, c, None)
                                                for c in cols) + " |")
    lines += ["", "The flooding source (phase B): attempted and admitted connections "
              "(admitted = answered by the echo backend through the proxy), what the limit "
              "allows (a full bucket plus the refill over the flood's run), and the proxy's "
              "RSS before and after the flood.", "",
              "| target | attempted conn/s | admitted | admitted conn/s | allowed | "
              "admitted ÷ allowed | turned away | RSS MiB before | RSS MiB after |",
              "|---|" + "---:|" * 8]
    cols = ["flood_attempt_rate", "flood_admitted", "flood_admitted_rate", "flood_allowed",
            "flood_admitted_vs_allowed", "flood_turned_away", "rss_before_flood_mib",
            "rss_after_flood_mib"]
    for t in PROXIES:
        if t in fs:
            lines.append(f"| {t} | " + " | ".join(cell(summary, "flood", t, c, None)
                                                for c in cols) + " |")
    lines.append("")
    if any(fs.get(t, {}).get("c_rps") for t in PROXIES):
        n = env.get("flood_spread_count", "?")
        n = f"{int(n):,}" if n.isdigit() else n
        tbl = env.get("flood_table", "?")
        lines += [f"Phase C: the same flood rate spread over {n} addresses in turn (twice "
                  f"the source table's {int(tbl) if tbl.isdigit() else tbl:,} entries, so "
                  "the table must evict), the well-behaved sources as in A; RSS growth from "
                  "before the flood (after A) to after C, and that growth per table entry.",
                  "", "| target | req/s C | C ÷ A | p99 ms C | p99 C ÷ A | attempted conn/s | "
                  "admitted conn/s | addresses used | RSS MiB after C | RSS growth KiB | "
                  "bytes per entry |", "|---|" + "---:|" * 10]
        cols = ["c_rps", "c_rps_ratio", "c_p99_ms", "c_p99_ratio", "spread_attempt_rate",
                "spread_admitted_rate", "spread_sources", "rss_after_spread_mib",
                "rss_spread_growth_kib", "rss_growth_bytes_per_entry"]
        for t in PROXIES:
            if t in fs:
                lines.append(f"| {t} | " + " | ".join(cell(summary, "flood", t, c, None)
                                                    for c in cols) + " |")
        lines.append("")
    sl = fs.get("sluice", {})
    if sl.get("sluice_flood_sessions"):
        txt = (f"sluice's own counters (`show stats json`, phase B): "
               f"{fmt(sl['sluice_flood_sessions']['median'], True)} flood sessions reached "
               f"the backend")
        if sl.get("sluice_source_refusals"):
            txt += (f", {fmt(sl['sluice_source_refusals']['median'], True)} connections "
                    "ended `source_conn_limit` or `source_rate_limit`")
        lines += [txt + " (medians over repetitions).", ""]
    return lines


def verdict(mine, theirs, better, factor=1.0):
    """The verdict on a target "mine ≥ factor × theirs" (better="high") or
    "mine ≤ factor × theirs" (better="low"), from the repetitions of both
    (lists of values; theirs may be one number: an absolute target).

    met: even sluice's worst repetition beats the target set by the other's
    best one; missed: even sluice's best repetition misses the target set
    by the other's worst one; otherwise the ranges overlap: level (within
    noise). With one repetition each this is a plain comparison."""
    if not mine or theirs is None or (isinstance(theirs, list) and not theirs):
        return "no data"
    if not isinstance(theirs, list):
        theirs = [theirs]
    if better == "high":
        if min(mine) >= factor * max(theirs):
            return "met"
        if max(mine) < factor * min(theirs):
            return "missed"
    else:
        if max(mine) <= factor * min(theirs):
            return "met"
        if min(mine) > factor * max(theirs):
            return "missed"
    return "level (within noise)"


def ratio(mine, theirs):
    """The one ratio every figure uses: median over median."""
    a, b = statistics.median(mine), statistics.median(theirs)
    return a / b if b else None


def best_peer_name(summary, case, metric, better, target=None):
    """The peer whose median is best for this figure (best_peer's choice)."""
    peers = ("haproxy-splice",) if case.startswith("splice-") else PEERS
    if case == "cps-tls" and target and target.endswith("-sni"):
        peers = tuple(p + "-sni" for p in PEERS)
    have = [(get(summary, case, p, metric), p) for p in peers]
    have = [(v, p) for v, p in have if v is not None]
    if not have or better not in ("high", "low"):
        return None
    return (max if better == "high" else min)(have)[1]


def values(summary, case, target, metric):
    return summary.get(case, {}).get(target, {}).get(metric, {}).get("values") or []


def targets_table(summary, idle_n):
    """Rows: (figure, target, measured, verdict). Every verdict from
    verdict() on the repetitions; every ratio median over median."""
    rows = []

    def judged(label, tgt, mine, theirs, better, factor, unit=""):
        if not mine or not theirs:
            rows.append((label, tgt, "no data", "no data"))
            return
        rng = lambda v: (f"{fmt(min(v))}–{fmt(max(v))}" if len(v) > 1 else fmt(v[0]))
        rows.append((label, tgt, f"{fmt(statistics.median(mine))} vs "
                     f"{fmt(statistics.median(theirs))}{unit} = {ratio(mine, theirs):.2f}× "
                     f"(reps {rng(mine)} vs {rng(theirs)})",
                     verdict(mine, theirs, better, factor)))

    def vs_peer(label, case, metric, better, op, factor, unit=""):
        if case not in summary:
            return
        peer = best_peer_name(summary, case, metric, better)
        tgt = f"{op} {factor:g}× best peer" + (f" ({peer})" if peer else "")
        judged(label, tgt, values(summary, case, "sluice", metric),
               values(summary, case, peer, metric) if peer else [], better, factor, unit)

    for n in (1, 8):
        st = "stream" if n == 1 else "streams"
        vs_peer(f"bulk {n} {st}: Gbit/s", f"bulk-{n}", "gbit_s", "high", "≥", 1.15)
        vs_peer(f"bulk {n} {st}: CPU-s/GB", f"bulk-{n}", "cpu_s_per_gb", "low", "≤", 0.8)
    for n in (1, 8):
        st = "stream" if n == 1 else "streams"
        c = f"splice-{n}"
        mine = values(summary, c, "sluice-splice", "gbit_s")
        for label, other, factor in (("HAProxy splice", "haproxy-splice", 1.1),
                                     ("direct", "direct", 0.7)):
            theirs = values(summary, c, other, "gbit_s")
            if not mine or not theirs:
                continue
            judged(f"splice {n} {st}: Gbit/s vs {label}", f"≥ {factor:g}× {label}",
                   mine, theirs, "high", factor)
    vs_peer("rr: req/s", "rr", "rps", "high", "≥", 1.15)
    vs_peer("rr: p99", "rr", "p99_ms", "low", "≤", 1.0, " ms")
    vs_peer("rr: CPU µs/req", "rr", "cpu_us", "low", "≤", 0.8)
    vs_peer("cps: conn/s", "cps", "rps", "high", "≥", 1.2)
    vs_peer("cps: CPU µs/conn", "cps", "cpu_us", "low", "≤", 0.8)
    v = values(summary, f"idle-{idle_n}", "sluice", "kib_per_conn")
    if v or summary.get(f"idle-{idle_n}"):
        rows.append((f"idle {idle_n:,} conns: RSS/conn", "≤ 1 KiB",
                     "no data" if not v else f"{statistics.median(v):.2f} KiB (worst rep "
                     f"{max(v):.2f})", verdict(v, 1.0, "low")))
    for kind in ("rr", "cps"):
        c = f"reload-{kind}"
        if not summary.get(c, {}).get("sluice"):
            continue
        err = values(summary, c, "sluice", "storm_socket_errors")
        rows.append((f"reload {kind}: socket errors in storm", "0",
                     "no data" if not err else f"{max(err):.0f} (worst rep)",
                     verdict(err, 0, "low")))
        hi = [get(summary, c, "sluice", f"{p}_procs_max", "max") for p in ("base", "storm")]
        lo = [get(summary, c, "sluice", f"{p}_procs_min", "min") for p in ("base", "storm")]
        if None in hi + lo:
            rows.append((f"reload {kind}: processes", "1 throughout", "no data", "no data"))
        else:
            rng = f"{min(lo)}–{max(hi)}" if min(lo) != max(hi) else f"{min(lo)}"
            rows.append((f"reload {kind}: processes", "1 throughout", rng,
                         "met" if min(lo) == max(hi) == 1 else "missed"))
        for label, a, b, op, factor, better in (
                ("req/s storm vs without", "storm_rps", "base_rps", "≥", 0.98, "high"),
                ("worst 1 s storm vs without", "storm_worst_rps", "base_worst_rps", "≥", 1.0, "high"),
                ("peak RSS storm vs without", "storm_peak_rss_mib", "base_peak_rss_mib", "≤", 1.05,
                 "low")):
            judged(f"reload {kind}: {label}", f"{op} {factor:g}×", values(summary, c, "sluice", a),
                   values(summary, c, "sluice", b), better, factor)
    if summary.get("flood", {}).get("sluice"):
        # The targets are for sluice protecting itself: an unprotected run
        # (no per-source limits in the build) is measured, not judged.
        prot = get(summary, "flood", "sluice", "protected", "min") == 1
        for label, metric, op, factor, better in (
                ("flood: well-behaved req/s, flood ÷ alone", "rps_ratio", "≥", 0.9, "high"),
                ("flood: well-behaved p99, flood ÷ alone", "p99_ratio", "≤", 1.1, "low")):
            v = values(summary, "flood", "sluice", metric)
            rows.append((label, f"{op} {factor:g}×",
                         "no data" if not v else f"{statistics.median(v):.2f}×",
                         "no data" if not v else "not judged: unprotected run" if not prot
                         else verdict(v, factor, better)))
        v = values(summary, "flood", "sluice", "flood_admitted_vs_allowed")
        rows.append(("flood: admitted ÷ allowed by the per-source limit", "≤ 1×",
                     "not protected (no per-source limits in this build)" if not v
                     else f"{max(v):.2f}× (worst rep)",
                     "no data" if not v else verdict(v, 1.0, "low")))
    if summary.get("scaling-cps"):
        judged("scaling cps: workers=2 vs 1", "≥ 1.6×",
               values(summary, "scaling-cps", "sluice-w2", "rps"),
               values(summary, "scaling-cps", "sluice-w1", "rps"), "high", 1.6)
    return rows


# ------------------------------------------------------------------- charts

# One colour per target / series in every chart.
COLORS = {"direct": "#9e9e9e", "sluice": "#2e7d32", "haproxy": "#1565c0", "nginx": "#ef6c00",
          "without reloads": "#90a4ae", "reload storm": "#c62828",
          "1 worker": "#a5d6a7", "2 workers": "#2e7d32"}


def histogram(out, name, title, ylabel, cats, series, values):
    """values[(series, cat)] = (median, half_range); one gnuplot histogram."""
    dat = os.path.join(out, f"{name}.dat")
    with open(dat, "w") as f:
        f.write("# category " + " ".join(f"{s} {s}_hr" for s in series) + "\n")
        for c in cats:
            row = [f'"{c}"']
            for s in series:
                v = values.get((s, c))
                row += [f"{v[0]:.6g}", f"{v[1]:.6g}"] if v else ["NaN", "NaN"]
            f.write(" ".join(row) + "\n")
    plots = []
    for i, s in enumerate(series):
        col = 2 + 2 * i
        plots.append(f"'{dat}' using {col}:{col + 1}" + (":xtic(1)" if i == 0 else "")
                     + f" title '{s}' lc rgb '{COLORS.get(s, '#888888')}'")
    return (f"set title '{title}'\nset ylabel '{ylabel}'\n"
            f"plot " + ", ".join(plots) + "\n")


def charts(out, summary, ns, env, sfx=""):
    """Write the .gp script and run gnuplot; returns the PNG names made."""
    gp = ["set style data histograms", "set style histogram errorbars gap 1 lw 1",
          "set style fill solid 0.85 border -1", "set boxwidth 0.9", "set grid ytics",
          "set yrange [0:*]", "set key outside bottom center horizontal maxrows 1", "set datafile missing 'NaN'"]
    made = []

    def vals(case_of, metric, targets, cats):
        d = {}
        for t in targets:
            for c in cats:
                s = summary.get(case_of(t, c), {}).get(t, {}).get(metric)
                if s:
                    d[(t, c)] = (s["median"], s["half_range"])
        return d

    def page(name, panels):
        if not any(p[5] for p in panels):
            return
        name += sfx
        width = 250 + 450 * len(panels) if len(panels) > 1 else 800
        gp.append(f"set terminal pngcairo size {width},420 font 'sans,10'")
        gp.append(f"set output '{os.path.join(out, name + '.png')}'")
        gp.append(f"set multiplot layout 1,{len(panels)}")
        for i, (title, ylabel, cats, series, _, values) in enumerate(panels):
            gp.append(histogram(out, f"{name}-{i}", title, ylabel, cats, series, values))
        gp.append("unset multiplot")
        made.append(name + ".png")

    streams = ["1 stream", "8 streams"]
    bcase = lambda t, c: f"bulk-{c.split()[0]}"
    page("bulk", [
        ("Bulk throughput", "Gbit/s", streams, list(ALL), None,
         vals(bcase, "gbit_s", ALL, streams)),
        ("Proxy CPU per GB", "CPU-seconds per GB", streams, list(PROXIES), None,
         vals(bcase, "cpu_s_per_gb", PROXIES, streams)),
    ])
    for case, unit in (("rr", "req/s"), ("cps", "conn/s")):
        one = ["keep-alive" if case == "rr" else "Connection: close"]
        c = lambda t, _c, case=case: case
        page(case, [
            (f"{case}: throughput", unit, one, list(ALL), None, vals(c, "rps", ALL, one)),
            (f"{case}: p99 latency", "ms", one, list(ALL), None, vals(c, "p99_ms", ALL, one)),
            (f"{case}: proxy CPU per {'request' if case == 'rr' else 'connection'}", "µs",
             one, list(PROXIES), None, vals(c, "cpu_us", PROXIES, one)),
        ])
    tcats = ["TCP passthrough", "routed by SNI"]

    def tls_vals(metric, targets):
        d = {}
        for t in targets:
            for cat, name in zip(tcats, (t, f"{t}-sni")):
                s = summary.get("cps-tls", {}).get(name, {}).get(metric)
                if s:
                    d[(t, cat)] = (s["median"], s["half_range"])
        return d
    page("cps-tls", [
        ("cps-tls: throughput (full TLS handshake per connection)", "conn/s", tcats, list(ALL),
         None, tls_vals("rps", ALL)),
        ("cps-tls: proxy CPU per connection", "µs", tcats, list(PROXIES), None,
         tls_vals("cpu_us", PROXIES)),
    ])
    icats = [f"{n} conns" for n in ns]
    page("idle", [
        ("Idle: proxy RSS per held connection", "KiB per connection", icats, list(PROXIES),
         None, vals(lambda t, c: f"idle-{c.split()[0]}", "kib_per_conn", PROXIES, icats)),
    ])
    rpanels = []
    for kind in ("rr", "cps"):
        d = {}
        for t in PROXIES:
            for phase, label in (("base", "without reloads"), ("storm", "reload storm")):
                s = summary.get(f"reload-{kind}", {}).get(t, {}).get(f"{phase}_rps")
                if s:
                    d[(label, t)] = (s["median"], s["half_range"])
        rpanels.append((f"Reload storm: {kind}", "req/s", list(PROXIES),
                        ["without reloads", "reload storm"], None, d))
    d = {}
    for t in PROXIES:
        for phase, label in (("base", "without reloads"), ("storm", "reload storm")):
            s = summary.get("reload-rr", {}).get(t, {}).get(f"{phase}_peak_rss_mib")
            if s:
                d[(label, t)] = (s["median"], s["half_range"])
    rpanels.append(("Reload storm: peak RSS (rr)", "MiB, all processes", list(PROXIES),
                    ["without reloads", "reload storm"], None, d))
    page("reload", rpanels)
    d = {}
    for kind in ("rr", "cps"):
        for t, label in (("sluice-w1", "1 worker"), ("sluice-w2", "2 workers")):
            s = summary.get(f"scaling-{kind}", {}).get(t, {}).get("rps")
            if s:
                d[(label, kind)] = (s["median"], s["half_range"])
    page("scaling", [("sluice scaling with workers", "req/s (rr) or conn/s (cps)", ["rr", "cps"],
                      ["1 worker", "2 workers"], None, d)])
    script = os.path.join(out, f"charts{sfx}.gp")
    with open(script, "w") as f:
        f.write("\n".join(gp) + "\n")
    if made:
        subprocess.run(["gnuplot", script], check=True, cwd=out)
    return made


# ------------------------------------------------------------------- report

def run_header(env):
    """Which run, at which commit, and how to read the cells."""
    mode = env.get("mode", "?")
    commit = env.get("commit") or env.get("sluice_commit", "?")
    state = []
    if env.get("tree_dirty") == "1" or env.get("sluice_commit", "").endswith("+dirty"):
        state.append("**tree not clean: uncommitted changes**")
    elif env.get("tree_dirty") == "0":
        state.append("tree clean")
    if env.get("build_current") == "1":
        state.append("binary built from it")
    elif env.get("build_current") == "0":
        state.append("**binary not up to date with the tree**")
    cfgs = env.get("configs", "").split()
    return [f"Run {env.get('stamp', '?')} at commit `{commit}`"
            + (f" ({', '.join(state)})" if state else "")
            + f": mode `{mode}`, {env.get('reps')} interleaved repetition(s), "
            f"{env.get('secs')} s per measured run, {env.get('workers')} workers/threads per "
            "proxy" + (f", configurations: {', '.join(f'`{c}`' for c in cfgs)}" if cfgs else "")
            + ". Cells: median ±half-range over the repetitions, and in parentheses the "
            "ratio to the best peer, median over median (the better of HAProxy and nginx "
            "for that figure; higher is better for throughput, lower for latency, CPU, "
            "memory and retransmits). Verdicts: **met** when sluice's worst repetition "
            "beats the target set by the peer's best one, **missed** when sluice's best "
            "repetition misses the target set by the peer's worst one, otherwise "
            "**level (within noise)**.", ""]


def markdown(summary, env, runs, ns, img_prefix, made, sfx="", head=""):
    """One configuration's tables. head prefixes every heading but the
    first configuration's (so that its anchors stay stable)."""
    lines = []
    idle_n = ns[-1] if ns else 8000
    lines += [f"### {head}Targets vs measured (sluice)", "",
              "| workload: figure | target | measured | verdict |", "|---|---|---|---|"]
    for r in targets_table(summary, idle_n):
        lines.append("| " + " | ".join(r) + " |")
    lines.append("")
    specs = list(TABLES) + [idle_table(summary, ns), reload_table("rr"), reload_table("cps")]
    for spec in specs:
        t = md_table(summary, spec)
        if not t:
            continue
        lines += [f"### {head}{spec[1]}", ""] + t + [""]
        if spec[0].startswith("reload-"):
            case = spec[0]
            lines += ["Processes (min–max while sampled every 100 ms): " + ", ".join(
                f"{p} {procs_range(summary, case, p, 'base')} without, "
                f"{procs_range(summary, case, p, 'storm')} in the storm" for p in PROXIES
                if summary.get(case, {}).get(p)) + ".", ""]
            ok = summary.get(case, {}).get("sluice", {}).get("reloads_ok")
            if ok:
                bad = get(summary, case, "sluice", "reloads_failed", "max")
                done = (f"{ok['min']:.0f}" if ok["min"] == ok["max"]
                        else f"{ok['min']:.0f}–{ok['max']:.0f}")
                lines += [f"sluice's admin socket after the storm: {done} reloads done, "
                          f"{bad:.0f} failed (worst repetition), for "
                          f"{env.get('storm_signals')} signals sent.", ""]
            crashes = {p: get(summary, case, p, "crashes", "max") for p in PROXIES}
            if any(crashes.values()):
                lines += ["Worker crashes seen in the proxies' own logs during the storm "
                          "(worst repetition): " + ", ".join(
                              f"{p} {int(v)}" for p, v in crashes.items() if v) + ".", ""]
        if spec[0] == "bulk" and f"bulk{sfx}.png" in made:
            lines += [f"![bulk]({img_prefix}bulk{sfx}.png)", ""]
        if spec[0] == "cps-tls":
            lines += ["In parentheses: the passthrough rows (and direct) against the better "
                      "of haproxy and nginx, the -sni rows against the better of haproxy-sni "
                      "and nginx-sni.", ""]
            cost = sni_cost_lines(summary)
            if cost:
                lines += ["Cost of routing by SNI: each proxy routing by the server name "
                          "÷ the same proxy passing through, computed per repetition "
                          "(the same round), median ±half-range over repetitions "
                          "(conn/s below 1× and CPU above 1× are the cost).", ""] + cost + [""]
        if spec[0] in ("rr", "cps", "cps-tls", "idle") and f"{spec[0]}{sfx}.png" in made:
            lines += [f"![{spec[0]}]({img_prefix}{spec[0]}{sfx}.png)", ""]
        if spec[0] == "reload-cps" and f"reload{sfx}.png" in made:
            lines += [f"![reload]({img_prefix}reload{sfx}.png)", ""]
    lines += [x.replace("### ", f"### {head}", 1) if x.startswith("### ") else x
              for x in flood_lines(summary, env)]
    s = scaling_lines(summary)
    if s:
        lines += [f"### {head}Scaling: sluice with 1 and 2 workers (rr and cps as above)",
                  ""] + s + [""]
        if f"scaling{sfx}.png" in made:
            lines += [f"![scaling]({img_prefix}scaling{sfx}.png)", ""]
    failed = [r["id"] for r in runs if r["status"] != "ok" or r.get("parse_error")]
    if failed:
        lines += [f"Runs that failed or did not parse ({len(failed)}): " + ", ".join(failed), ""]
    return lines


def machine_lines(env):
    keys = [("CPUs (nproc)", "nproc"), ("CPU model", "cpu_model"), ("memory", "mem_total"),
            ("kernel", "kernel"), ("OS", "os"),
            ("load average (1, 5, 15 min) before / after the runs", "loadavg_start"), ("sluice", "sluice"),
            ("sluice commit", "sluice_commit"), ("HAProxy", "haproxy"), ("nginx", "nginx"),
            ("wrk", "wrk"), ("iperf3", "iperf3"), ("gnuplot", "gnuplot"), ("compiler", "cc"),
            ("libev", "libev")]
    env = dict(env, loadavg_start=f"{env.get('loadavg_start', '?')} / {env.get('loadavg_end', '?')}")
    return [f"| {label} | {env.get(k, '?')} |" for label, k in keys]


DOC_HEAD = """# Benchmarks

sluice against no proxy (direct), HAProxy (TCP mode) and nginx (stream module),
all on 127.0.0.1 on one machine. Written by `scripts/bench`; do not edit by
hand (rerun the script). Every figure is a median over interleaved
repetitions, with its half-range, and its ratio to the best peer.

**Read these numbers for what they are:** the load generator, the backend and
the proxy share the same {nproc} CPUs, so a proxy that uses less CPU leaves
more for wrk and the backend, and absolute figures are far below what any of
these proxies does on real hardware. The comparisons between proxies are the
point, not the absolute numbers.
"""

DOC_METHOD = """## How it is measured

* **Targets.** `direct` (the client talks to the backend itself), `sluice`
  (build-release: `--buildtype=release -Dassertions=false -Db_ndebug=true`),
  HAProxy (`mode tcp`) and nginx (`stream` module). Each proxy gets the same
  number of workers/threads ({workers}), logging off, 5-minute idle timeouts,
  3-second connect timeouts; configs are generated from the templates in
  `bench/` (`sluice.ini.in`, `haproxy.cfg.in`, `nginx.conf.in`). Every proxy is started
  by the script as a foreground process (`sluice -c`, `haproxy -db -f` or
  `haproxy -W -db -f` for the reload workload, `nginx -c ... ` with
  `daemon off`) and stopped by PID.
* **Configurations.** Buffers are where the proxies' defaults differ most,
  so each run measures two configurations: `defaults`, no buffer or pipe
  setting in any config (what users get), and `matched`, the same
  per-direction buffer for every proxy and the same pipe size for the
  splice variants. What each proxy's config held (the lines
  `scripts/bench` put in it; the defaults as the programs report them):

@SETTINGS@
* **Commit.** The run records `git rev-parse HEAD`, whether the tree was
  clean and whether `build-release/sluice` was up to date with it (ninja
  has nothing to rebuild); this page is written only when all three hold
  (files the run writes aside), and its header names the commit. The raw
  per-repetition results are committed in `bench/data/`, and
  `bench/report.py --from bench/data/FILE.json` re-renders the tables.
* **Verdicts and ratios.** A ratio is the median of sluice's repetitions
  over the median of the other's. A target is **met** only when sluice's
  worst repetition reaches it against the other's best repetition,
  **missed** when sluice's best repetition misses it against the other's
  worst, and **level (within noise)** when the ranges overlap.
* **Repetitions.** Every proxy runs once per round, the order rotated each
  round, each run on a freshly started process after a short warm-up
  ({warm} s). Reported: median and ±half-range ((max − min) / 2).
* **CPU.** utime + stime of all the proxy's processes and threads (plus what
  they reaped) from `/proc/PID/stat`, read before and after the measured run.
  Beside it, **machine CPU**: the whole machine's busy time from `/proc/stat`
  (user, nice, system, irq, softirq, steal of every process, the load
  generator and the backend included) over the same interval. A proxy that
  relays in the kernel moves work out of its own process (into softirq and
  other processes' syscalls): machine CPU shows what the proxy's own CPU
  cannot; `direct` gives the floor without a proxy. The proxy's own CPU is
  also split into user and system time (utime and stime): the share in the
  kernel is in its own table.
* **Profile** (`--profile`, not in the default run: tracing slows the
  proxy down). After the timed runs, each proxy once more under rr and cps
  ({secs} s after the warm-up), with `strace -c -f` attached to every
  process and thread of the proxy; each syscall's count is divided by the
  requests wrk completed in that run.
* **TCP counters.** `nstat -asz` before and after each measured run:
  retransmits per GB (`TcpRetransSegs`) in the bulk tables; the deltas of
  the receive path's collapse, prune, drop and memory-pressure counters
  (`TcpExtTCPRcvCollapsed`, `TcpExtPruneCalled`, `TcpExtTCPBacklogDrop`,
  ...) are in the raw data. The counters are machine-wide: anything else
  using TCP during the run is counted too.
* **bulk.** `iperf3 -c` through the proxy to an `iperf3 -s` backend, 1 and 8
  parallel streams ({secs} s); the control connection goes through the proxy
  too. Gbit/s received, proxy CPU-seconds per GB received.
* **splice.** The bulk workload again with the zero-copy relays: sluice
  with `relay = splice` against HAProxy with `option splice-request` and
  `option splice-response` (splicing forced both ways, `maxpipes
  2000`: pipes to spare for 8 streams), and direct. nginx's stream module has no splice mode.
* **rr.** `wrk -t2 -c50 -d{secs}s --latency` through the proxy to an nginx
  HTTP backend answering with a 64-byte body (keep-alive). req/s, p50, p99,
  proxy CPU µs per request.
* **cps.** The same with `-H 'Connection: close'`: a new connection (client
  side and backend side) per request. conn/s, p99, CPU µs per connection.
* **cps-tls.** What routing by SNI costs on connection rate. The nginx
  backend also serves HTTPS, same 64-byte body, with a self-signed P-256
  certificate the script makes for the run; TLS 1.2 and 1.3 allowed (1.3 is
  negotiated), and session tickets and the session cache off
  (`ssl_session_tickets off; ssl_session_cache off;`): wrk would otherwise
  resume its previous session, so with them off every connection is a full
  handshake. `wrk -t2 -c50 -d{secs}s --latency -H 'Connection: close'
  https://localhost:PORT/` (OpenSSL sends the SNI `localhost`, which is
  127.0.0.1 here). Each proxy runs twice: as plain TCP passthrough (sluice
  `route = pool`, HAProxy `mode tcp` with `default_backend`, nginx
  `proxy_pass` to the address) and routing by the ClientHello's server
  name, with one rule for `localhost` and no default, so any other name is
  closed: sluice `route = sni` with `sni = localhost p` (`sluice-sni`);
  HAProxy `tcp-request inspect-delay 5s`,
  `tcp-request content accept if {{ req.ssl_hello_type 1 }}` and
  `use_backend p if {{ req.ssl_sni -i localhost }}` (`haproxy-sni`); nginx
  `ssl_preread on` (`preread_timeout 5s`) with
  `map $ssl_preread_server_name` giving the address to `proxy_pass`
  (`nginx-sni`). Plus direct. Before its warm-up each `-sni` target is
  checked with `openssl s_client`: SNI `localhost` gets an answer,
  `other.invalid` does not. No proxy terminates TLS: only wrk and the
  backend do handshakes and encryption, the same work whatever target sits
  between them, and that work dominates the machine's CPU (conn/s is far
  below cps's, and the proxies' differences weigh less). What SNI routing
  adds in the proxy is reading and parsing the ClientHello, and the backend
  connect can only start once it is in (with passthrough it starts at
  accept). conn/s, p50, p99, proxy CPU µs per connection; in parentheses,
  passthrough rows (and direct) against the better of HAProxy's and nginx's
  passthrough, `-sni` rows against the better of `haproxy-sni` and
  `nginx-sni`. The cost table divides each proxy's SNI-routed figure by its
  own passthrough figure from the same round, median
  ±half-range over repetitions; for sluice, route = sni ÷ route = pool is
  the price of the option: conn/s below 1× and CPU µs/conn above 1× are
  what it costs.
* **idle.** A separate client process (`bench/idle.py`) opens N connections
  through the proxy to an echo backend (another process), checks each with a
  unique line, and holds them. RSS per connection = (summed RSS of the
  proxy's processes with N held − before) / N; PSS shown too (RSS counts
  pages shared between nginx's master and workers once per process).
* **reload.** rr and cps as 1-second wrk runs back to back ({storm_runs} runs),
  first without reloads, then while the proxy is reloaded {storm_signals} times in
  {storm_secs} s (sluice: SIGHUP, in-process; HAProxy: SIGUSR2 to the `-W` master;
  nginx: SIGHUP to the master). Each 1-s run is one window; "worst 1 s" is
  the slowest window. Socket errors are wrk's; RSS and process count are
  sampled every 100 ms over all the proxy's processes.
* **scaling.** sluice rr and cps with `workers = 1` and `workers = 2`: rates,
  and CPU per request (rr) and per connection (cps), sluice's own and the
  whole machine's, computed as in the rr and cps tables. On a machine
  whose CPUs the load generator and the backend share, the rates cannot
  show scaling; a per-request cost that stays flat (2 ÷ 1 near 1×) shows
  that the workers add no work to each other.
* **flood.** `tests/tools/floodgen` (C, epoll) against its own echo
  backend through the proxy. Phase A: {flood_clients} well-behaved sources, each
  bound to its own address (127.0.1.1 upwards), each with one keep-alive
  connection sending {flood_size} bytes and awaiting their echo in a closed
  loop ({secs} s after {warm} s of warm-up); req/s and latency percentiles from
  a log-linear histogram (under 1.6 % error). Phase B, on the same proxy
  process right after: the same, while one more address (127.0.0.2) starts
  {flood_rate} connections per second (non-blocking connects, each sends
  {flood_request} bytes and waits for the echo, then closes with RST so the
  client keeps no TIME_WAIT; at most 4,096 in flight, 1 s timeout). A flood
  connection is *admitted* when its echo comes back. When this sluice build
  accepts per-source limits (probed with `sluice -t`), every proxy limits
  each source to {flood_conn_limit} connections and {flood_rate_limit} new connections per
  second: sluice `max_conns_per_source`, `rate_per_source` and
  `source_table_size = {flood_table}`; HAProxy a stick table on `src` storing
  `conn_cur,conn_rate(1s)` with `tcp-request connection reject` above
  either; nginx `limit_conn_zone $binary_remote_addr` (a 1 MiB zone,
  about as many addresses) with `limit_conn` (its stream module has no
  per-source rate limit). Otherwise no proxy
  limits sources, and the script says which case ran. Phase C, right
  after B: the same flood rate spread over {flood_spread_count} addresses in turn
  (twice the source table), so a per-source table must evict; the proxy's
  RSS growth from before B to after C, also per table entry. RSS of the
  proxy after each phase; sluice's `show stats json` after each phase.
  The generator shares the machine's CPUs with the proxy and the backend,
  so part of what B costs the well-behaved sources is the flood's CPU, not
  the proxy.

Deliberate differences from the shared settings:

* HAProxy's global `maxconn` is {haproxy_maxconn}, not 100000: HAProxy refuses to
  start when it cannot get 2 × maxconn file descriptors, and the hard limit
  here is {nofile}. The frontend's `maxconn` is 100000 as for the others.
* In the reload workload only, sluice also has an `admin_socket`, asked
  after the storm (`show info`) how many reloads were applied and how many
  failed; HAProxy's and nginx's own logs are scanned for workers that crashed.
* nginx listens with `reuseport` (one socket per worker, as sluice does) and
  `backlog=4096`; nginx warns that `worker_connections 100000` exceeds its
  `worker_rlimit_nofile {nofile}`, which is expected.

## Reproduce

```
scripts/bench            # full run ({full_reps} reps, both configurations, ~35 minutes), rewrites this page
scripts/bench --quick    # 1 rep, short runs; results dir only (add --docs to rewrite this page)
scripts/bench --smoke    # a few seconds per workload; checks only that everything runs and parses
scripts/bench --profile --workloads rr,cps   # adds the Profile section (strace -c -f)
bench/report.py --from bench/data/FILE.json  # re-render the tables of a committed run
```

Options: `--reps N`, `--workers N`, `--workloads bulk,splice,rr,cps,cps-tls,idle,reload,scaling,flood`,
`--config defaults|matched|both` (default both), `--profile`,
`--flood-protect auto|on|off`,
`--keep` (keep the temp dir with every generated config and log). Writing
this page needs a clean tree at the commit the binary was built from.
Every repetition, the versions and the settings are in
`bench/results/<timestamp>/results.json`; raw tool outputs in `raw/` beside
it; a run that writes this page also writes its data file to `bench/data/`.
"""


CONFIG_ORDER = ("defaults", "matched")
CONFIG_TITLES = {"defaults": "every proxy at its default buffer settings (what users get)",
                 "matched": "the same per-direction buffer for every proxy",
                 "unspecified": "a run from before configurations were recorded"}


def configs_of(runs, env):
    """The configurations of a run, in report order."""
    have = {r.get("config", "unspecified") for r in runs}
    listed = [c for c in env.get("configs", "").split() if c in have]
    rest = sorted(have - set(listed), key=lambda c: (c not in CONFIG_ORDER, c))
    return listed + rest


def profile_lines(runs):
    """The Profile section: syscalls per request from `--profile` runs
    (strace -c -f over a wrk run; the counts divided by wrk's requests)."""
    prof = [r for r in runs if r.get("case", "").startswith("profile-") and r["status"] == "ok"]
    if not prof:
        return []
    lines = ["## Profile: syscalls per request", "",
             "Written from `scripts/bench --profile`: each proxy under the rr and cps "
             "workloads with `strace -c -f` attached to all its processes and threads for "
             "the measured run, each syscall's count divided by the requests wrk completed "
             "(errors included; syscalls under 0.01 per request left out). strace slows the "
             "proxy down, so these runs give counts, not speed.", "",
             "| workload | proxy | configuration | syscalls per request | by syscall, per request |",
             "|---|---|---|---:|---|"]
    for r in sorted(prof, key=lambda r: (r["case"], PROXIES.index(r["target"])
                                         if r["target"] in PROXIES else 9, r["rep"])):
        n = r["raw"].get("requests") or 0
        calls = r["raw"].get("syscalls", {})
        parts = sorted(((c / n, name) for name, c in calls.items() if n and c / n >= 0.01),
                       key=lambda x: (-x[0], x[1]))
        lines.append(f"| {r['case'][len('profile-'):]} | {r['target']} | {r.get('config', '?')} "
                     f"| {fmt(r['metrics'].get('syscalls_per_req'))} | "
                     + ", ".join(f"`{name}` {v:.2f}" for v, name in parts) + " |")
    return lines + [""]


def settings_lines(env):
    """What each proxy got in each configuration: the lines the script put
    in its config files (from the run's env), and the defaults as the
    programs report them where they do."""
    if not any(k.startswith("cfg_") for k in env):
        return []
    code = lambda v: "; ".join(f"`{x.strip()}`" for x in v.split("\\n") if x.strip())
    dflt = {"sluice": f"unset; `sluice -T` gives {code(env.get('default_sluice', '?'))}",
            "haproxy": f"unset; `haproxy -vv` gives `{env.get('default_haproxy', '?')}`; "
                       "pipes of the kernel's default size",
            "nginx": "unset; nginx's documented default `proxy_buffer_size` is `16k`"}
    lines = ["| proxy | `defaults` | `matched` |", "|---|---|---|"]
    for p in PROXIES:
        m = env.get(f"cfg_matched_{p}")
        lines.append(f"| {p} | {dflt[p]} | {code(m) if m else '—'} |")
    mw = env.get("matched_workloads", "").split()
    return lines + ["", "Workloads run in `matched` too: " + (", ".join(mw) if mw else "—")
                    + "; the others in `defaults` only (idle with 256 KiB buffers would "
                    "measure nginx allocating them; reload, scaling and flood compare sluice "
                    "with itself or per-source limits, not buffers).", ""]


def render(runs, env, img_prefix="", made=(), chart_names=None):
    """Every table of a run as markdown lines: the header, each
    configuration's tables, the profile. The same function renders
    results.md, docs/benchmarks.md and `--from`, so a committed data file
    re-renders the tables it was written with."""
    ns = [int(x) for x in env.get("idle_ns", "").split()]
    lines = run_header(env)
    for i, c in enumerate(configs_of(runs, env)):
        summary = summarize([r for r in runs if r.get("config", "unspecified") == c])
        sfx = "" if i == 0 else f"-{c}"
        lines += [f"## Configuration `{c}`: {CONFIG_TITLES.get(c, c)}", ""]
        lines += markdown(summary, env, [r for r in runs if r.get("config", "unspecified") == c
                                         and not r.get("case", "").startswith("profile-")],
                          ns, img_prefix, made, sfx, "" if i == 0 else f"{c}: ")
    lines += profile_lines(runs)
    return lines


def load_data(path):
    """A committed data file (or results.json): (runs, env)."""
    with open(path) as f:
        data = json.load(f)
    env = data.get("env")
    if env is None:  # files from before the env was kept whole
        env = {}
        for k in ("settings", "machine", "versions"):
            env.update({x: str(v) for x, v in (data.get(k) or {}).items() if v is not None})
    return data, data["runs"], env


def docs_refusal(env, root):
    """Why --docs must not write docs/benchmarks.md for this run, or None:
    the run's commit must be HEAD, its tree clean, its binary built from it."""
    if env.get("tree_dirty") != "0":
        return "the run's tree was not clean (or the run did not record it)"
    if env.get("build_current") != "1":
        return "the run's binary was not built from its tree"
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        return f"git rev-parse HEAD failed: {e}"
    if head != env.get("commit"):
        return f"HEAD is {head}, the run was at {env.get('commit')}"
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw")
    ap.add_argument("--out")
    ap.add_argument("--docs")
    ap.add_argument("--img")
    ap.add_argument("--data", help="with --docs: directory for the committed data file")
    ap.add_argument("--strict", action="store_true")
    ap.add_argument("--from", dest="from_file",
                    help="re-render the tables of a committed data file (bench/data/*.json)")
    ap.add_argument("--check", action="store_true",
                    help="with --from: exit 1 unless the tables equal the file's own")
    a = ap.parse_args()
    if a.from_file:
        data, runs, env = load_data(a.from_file)
        text = "\n".join(render(runs, env)) + "\n"
        if a.check:
            if data.get("tables_md") is None:
                print(f"report: {a.from_file} has no tables_md to check against", file=sys.stderr)
                return 1
            if data["tables_md"] != text:
                import difflib
                sys.stdout.writelines(difflib.unified_diff(
                    data["tables_md"].splitlines(True), text.splitlines(True),
                    "committed", "re-rendered"))
                return 1
            print(f"report: {a.from_file}: the re-rendered tables are identical")
            return 0
        sys.stdout.write(text)
        return 0
    if not a.raw or not a.out:
        ap.error("--raw and --out are required (or --from FILE)")
    a.out, a.raw = os.path.abspath(a.out), os.path.abspath(a.raw)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = read_kv(os.path.join(a.raw, "env"))
    if a.docs:
        why = docs_refusal(env, root)
        if why:
            print(f"report: refusing to write {a.docs}: {why}", file=sys.stderr)
            return 2
    ns = [int(x) for x in env.get("idle_ns", "").split()]
    runs, problems = [], []
    for name in sorted(os.listdir(a.raw)):
        d = os.path.join(a.raw, name)
        if not os.path.isfile(os.path.join(d, "meta")):
            continue
        try:
            run = parse_run(d, env)
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
            meta = read_kv(os.path.join(d, "meta"))
            run = {"id": meta.get("id", name), "rep": int(meta.get("rep", 0)),
                   "case": meta.get("case"), "target": meta.get("target"),
                   "config": meta.get("config", "unspecified"),
                   "status": "parse_error", "metrics": {}, "parse_error": f"{type(e).__name__}: {e}"}
        if run["status"] != "ok":
            problems.append(f"{run['id']}: {run.get('parse_error') or run['status']}")
        runs.append(run)
    if not runs:
        problems.append("no runs found")
    configs = configs_of(runs, env)
    summaries = {c: summarize([r for r in runs if r.get("config", "unspecified") == c])
                 for c in configs}

    made = []
    try:
        for i, c in enumerate(configs):
            made += charts(a.out, summaries[c], ns, env, "" if i == 0 else f"-{c}")
    except (OSError, subprocess.CalledProcessError) as e:
        problems.append(f"charts: {e}")
    if a.strict:
        ran = {r.get("case") for r in runs}
        for w in env.get("workloads", "").split(","):
            # only a workload that ran (idle, say, does not in `matched`)
            if not (w in ran or any(c and c.startswith(w + "-") and w not in ("cps",)
                                    for c in ran)):
                continue
            if w in ("bulk", "rr", "cps", "cps-tls", "idle", "reload", "scaling") and not any(
                    m == f"{w}.png" or re.fullmatch(re.escape(w) + r"-[a-z]+\.png", m)
                    for m in made):
                problems.append(f"chart {w}.png not made")

    tables = "\n".join(render(runs, env)) + "\n"
    body = render(runs, env, "", made)
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write("# sluice benchmark results\n\n")
        f.write("\n".join(body) + "\n## Machine and versions\n\n| | |\n|---|---|\n")
        f.write("\n".join(machine_lines(env)) + "\n")
    result = {"settings": {k: env[k] for k in (
        "mode", "reps", "workers", "workloads", "configs", "secs", "warm", "idle_ns", "storm_runs",
        "storm_signals", "storm_secs", "wrk_threads", "wrk_conns", "nofile",
        "haproxy_maxconn", "stamp", "flood_clients", "flood_size", "flood_rate", "flood_request",
        "flood_conn_limit", "flood_rate_limit", "flood_table", "flood_spread_count",
        "flood_protect", "profile") if k in env},
        "machine": {k: env.get(k) for k in ("nproc", "cpu_model", "mem_total", "kernel", "os",
                                            "loadavg_start", "loadavg_end", "duration_s")},
        "versions": {k: env.get(k) for k in ("sluice", "sluice_commit", "commit", "tree_dirty",
                                             "build_current", "sluice_sha256", "haproxy",
                                             "nginx", "wrk", "iperf3", "gnuplot", "cc", "libev")},
        "env": env,
        "runs": runs, "summary": summaries, "charts": made, "problems": problems,
        "targets": {c: [dict(zip(("figure", "target", "measured", "verdict"), r))
                        for r in targets_table(summaries[c], ns[-1] if ns else 8000)]
                    for c in configs},
        "tables_md": tables}
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)

    if a.docs:
        data_rel = None
        if a.data:
            # The committed copy: what every figure of the page is computed
            # from (runs with their metrics and parsed raw outputs, the env,
            # the rendered tables), without the summary it can recompute.
            os.makedirs(a.data, exist_ok=True)
            name = (f"{env.get('stamp', 'run')}-{env.get('commit', 'unknown')[:7]}-"
                    f"{env.get('workloads', '').replace(',', '-')}.json")
            keep = {k: v for k, v in result.items() if k not in ("summary", "charts")}
            with open(os.path.join(a.data, name), "w") as f:
                json.dump(keep, f, indent=0, separators=(",", ":"))
                f.write("\n")
            data_rel = os.path.relpath(os.path.join(a.data, name), os.path.dirname(a.docs))
        img = a.img or os.path.join(os.path.dirname(a.docs), "img")
        os.makedirs(img, exist_ok=True)
        for p in made:
            shutil.copy(os.path.join(a.out, p), os.path.join(img, p))
        rel = os.path.relpath(img, os.path.dirname(a.docs)) + "/"
        fmtargs = {k: "?" for k in ("flood_clients", "flood_size", "flood_rate", "flood_request",
                                    "flood_conn_limit", "flood_rate_limit", "flood_table",
                                    "flood_spread_count")}
        fmtargs.update(env, full_reps=3)
        for k in ("flood_rate", "flood_spread_count"):
            if fmtargs[k].isdigit():
                fmtargs[k] = f"{int(fmtargs[k]):,}"
        doc = [DOC_HEAD.format(nproc=env.get("nproc", "?")), "## Results", ""]
        if env.get("mode") != "full":
            doc += [f"> Written by a `--{env.get('mode')}` run ({env.get('reps')} repetition(s), "
                    f"{env.get('secs')} s runs): indicative only. A full run (`scripts/bench`) "
                    "replaces this page.", ""]
        if data_rel:
            doc += [f"Raw per-repetition results: [{data_rel.replace('../', '')}]({data_rel}); "
                    f"`bench/report.py --from {data_rel.replace('../', '')}` re-renders every "
                    "table below from it.", ""]
        doc += render(runs, env, rel, made)
        # Then the hand-written parts: measurements a full run does not
        # repeat (A/B of two commits, one-off scripts), each naming its own
        # commits and raw data; and what was tried and what limits the
        # targets that are missed (analysis.md), whose figures come from
        # the tables and the Profile section above.
        here = os.path.dirname(os.path.abspath(__file__))
        for part in ("other-runs.md", "analysis.md"):
            path = os.path.join(here, part)
            if os.path.exists(path):
                with open(path) as f:
                    doc += [f.read().rstrip(), ""]
        doc += ["## Machine", "", "| | |", "|---|---|"] + machine_lines(env) + [""]
        doc.append(DOC_METHOD.format(**fmtargs).replace("@SETTINGS@",
                                                         "\n".join(settings_lines(env))))
        with open(a.docs, "w") as f:
            f.write("\n".join(doc))

    if env.get("mode") == "smoke":
        print(f"report: {len(runs)} runs, {sum(r['status'] == 'ok' for r in runs)} ok and "
              f"parsed, {len(made)} charts")
    else:
        print("\n".join(body))
    for p in problems:
        print(f"report: problem: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
