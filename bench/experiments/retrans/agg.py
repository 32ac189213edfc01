import json,glob,statistics as st,os,sys
def one(d):
    j=json.load(open(d+"/iperf.json")); s=j["end"]["sum_sent"]; r=j["end"]["sum_received"]; gb=r["bytes"]/1e9
    meta=dict(l.strip().split("=") for l in open(d+"/meta"))
    a=list(map(int,open(d+"/stat-before.txt").read().split()[1:])); b=list(map(int,open(d+"/stat-after.txt").read().split()[1:]))
    dl=[y-x for x,y in zip(a,b)]
    return dict(g=r["bits_per_second"]/1e9, rt=s["retransmits"], pcpu=int(meta["proxy_ticks"])/100/gb, mcpu=(dl[0]+dl[2]+dl[5]+dl[6])/100/gb)
for pat in sys.argv[1:]:
    rs=[one(d) for d in sorted(glob.glob(pat))]
    print(pat, len(rs), " ".join(f"{k}: med {st.median([x[k] for x in rs]):.3g} [{min(x[k] for x in rs):.3g}-{max(x[k] for x in rs):.3g}]" for k in ("g","rt","pcpu","mcpu")))
