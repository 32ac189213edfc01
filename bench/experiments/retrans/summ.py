import json, sys, os
d = sys.argv[1]
def ns(p):
    o = {}
    for l in open(p):
        x = l.split()
        if len(x) >= 2 and x[1].isdigit(): o[x[0]] = int(x[1])
    return o
a, b = ns(d + "/nstat-before.txt"), ns(d + "/nstat-after.txt")
dl = {k: b[k] - a.get(k, 0) for k in b if b[k] - a.get(k, 0)}
j = json.load(open(d + "/iperf.json"))
s = j["end"]["sum_sent"]; r = j["end"]["sum_received"]
gb = r["bytes"] / 1e9
meta = dict(l.strip().split("=") for l in open(d + "/meta"))
cpu_s = int(meta["proxy_ticks"]) / os.sysconf("SC_CLK_TCK")
keys = ["TcpRetransSegs", "TcpExtTCPRcvCollapsed", "TcpExtPruneCalled", "TcpExtRcvPruned", "TcpExtOfoPruned",
        "TcpExtTCPBacklogDrop", "TcpExtTCPOFOQueue", "TcpExtTCPOFODrop", "TcpExtTCPLostRetransmit",
        "TcpExtTCPFastRetrans", "TcpExtTCPSlowStartRetrans", "TcpExtTCPTimeouts", "TcpExtTCPLossProbes",
        "TcpExtTCPSpuriousRTOs", "TcpExtTCPDSACKRecv", "TcpExtTCPMemoryPressures", "TcpExtTCPRcvQDrop",
        "TcpExtTCPZeroWindowDrop", "TcpExtDelayedACKs", "TcpExtTCPSACKReorder", "TcpExtTCPDSACKOldSent",
        "TcpExtTCPDSACKRecvSegs", "TcpExtTCPRcvCoalesce", "TcpExtTCPWantZeroWindowAdv", "TcpExtTCPToZeroWindowAdv",
        "TcpExtTCPFromZeroWindowAdv", "TcpExtTCPLossProbeRecovery", "TcpExtTCPSackRecovery", "TcpExtTCPRenoRecovery",
        "TcpExtTCPSACKReneging", "TcpExtTCPLossUndo", "TcpExtTCPFullUndo", "TcpExtTCPPartialUndo", "TcpExtTCPDSACKUndo",
        "TcpExtTCPSpuriousRtxHostQueues", "TcpExtTCPLostRetransmit", "TcpExtTCPRetransFail", "TcpExtTCPAutoCorking",
        "TcpExtListenDrops", "TcpExtTCPSackMerged", "TcpExtTCPSackShifted", "IpExtInNoECTPkts", "TcpInSegs", "TcpOutSegs"]
print(f"{os.path.basename(d)}: {r['bits_per_second']/1e9:.2f} Gbit/s retrans={s.get('retransmits')} "
      f"({s.get('retransmits',0)/gb:.1f}/GB) proxy_cpu={cpu_s:.2f}s ({cpu_s/gb:.3f} s/GB)")
print("   " + " ".join(f"{k.replace('TcpExt','')}={dl[k]}" for k in keys if k in dl))
others = {k: v for k, v in dl.items() if k not in keys and ("Drop" in k or "Prune" in k or "Spurious" in k or "Retrans" in k or "Loss" in k or "Dup" in k)}
if others: print("   other: " + " ".join(f"{k}={v}" for k, v in others.items()))
def sn(p):
    rows = []
    for l in open(p):
        x = [int(v, 16) for v in l.split()]
        rows.append(x)
    return rows
try:
    A, B = sn(d + "/softnet-before.txt"), sn(d + "/softnet-after.txt")
    print("   softnet per cpu (processed, dropped, time_squeeze): " + "; ".join(
        f"cpu{i}: {b[0]-a[0]} {b[1]-a[1]} {b[2]-a[2]}" for i, (a, b) in enumerate(zip(A, B))))
except FileNotFoundError:
    pass
print(f"   sched: run_delay_ms={meta.get('run_delay_ms')} nonvol={meta.get('nonvol')} vol={meta.get('vol')}")
