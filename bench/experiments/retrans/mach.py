import json,sys
for d in sys.argv[1:]:
    a=list(map(int,open(d+"/stat-before.txt").read().split()[1:])); b=list(map(int,open(d+"/stat-after.txt").read().split()[1:]))
    dl=[y-x for x,y in zip(a,b)]
    # user nice system idle iowait irq softirq steal
    busy_nonnice = dl[0]+dl[2]+dl[5]+dl[6]; nice=dl[1]
    j=json.load(open(d+"/iperf.json")); gb=j["end"]["sum_received"]["bytes"]/1e9
    print(f"{d}: {gb:.1f} GB, busy(excl nice) {busy_nonnice/100:.2f}s = {busy_nonnice/100/gb:.3f} s/GB, sys {dl[2]/100:.2f} softirq {dl[6]/100:.2f} nice(others) {nice/100:.2f}s idle {dl[3]/100:.2f}")
