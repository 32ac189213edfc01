#!/bin/bash
# run.sh OUTDIR TARGET...   TARGET: sluice=BIN | haproxy | nginx | direct
# Starts the nginx HTTP backend like scripts/bench, then per target: the
# proxy from bench/*.in (defaults config, 2 workers), warm-up wrk -t1 -c10
# 1s, measured wrk -t2 -c50 -d${SECS:-5}s --latency Connection: close.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=${SLUICE_ROOT:-$(cd "$here/../../.." && pwd)}
out=$1; shift
mkdir -p "$out"
cd "$root"
py=/usr/bin/python3
secs=${SECS:-5}
nofile=$(ulimit -Hn); ulimit -n "$nofile"
tmp=$(mktemp -d /tmp/sluice-p99-run.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; sleep 0.3; for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT
. "$here/common.sh"
start_backend || exit 1
n=0
for t in "$@"; do
    n=$((n+1))
    kind=${t%%=*}; bin=${t#*=}
    d=$tmp/t$n; mkdir -p $d
    port=$($py bench/proc.py freeports 1)
    subst=(PORT=$port BACKEND_PORT=$bport WORKERS=2 NOFILE=$nofile RUNDIR=$d
      SLUICE_BUFFERS="; defaults" HAPROXY_BUFFERS="# defaults" NGINX_BUFFERS="# defaults"
      HAPROXY_MAXCONN=$(( (nofile - 100) / 2 )) NGINX_MODULES=/usr/lib/nginx/modules RELAY=copy
      HAPROXY_SPLICE_REQ="#" HAPROXY_SPLICE_RESP="#" HAPROXY_MAXPIPES="#"
      SLUICE_ROUTE="route = pool" SLUICE_POOL="pool = p" HAPROXY_ROUTE="default_backend p"
      NGINX_MAP="#" NGINX_PREREAD="#" NGINX_UPSTREAM="127.0.0.1:$bport"
      SLUICE_LIMITS=";" SLUICE_GLOBAL_LIMITS=";" HAPROXY_LIMITS="#" NGINX_LIMIT_ZONE="#" NGINX_LIMITS="#")
    nsock=1
    case $kind in
      sluice) render bench/sluice.ini.in $d/sluice.ini "${subst[@]}" ADMIN="admin_socket = $d/a.sock" ACCESS_LOG=off ACCESS_LOG_FORMAT=kv
              "$bin" -c $d/sluice.ini >$d/log 2>&1 & pid=$!; nsock=2; case $bin in */sh/*) nsock=1;; esac ;;
      haproxy) render bench/haproxy.cfg.in $d/h.cfg "${subst[@]}"; haproxy -db -f $d/h.cfg >$d/log 2>&1 & pid=$! ;;
      nginx) render bench/nginx.conf.in $d/n.conf "${subst[@]}"; nginx -p $d/ -e $d/error.log -c $d/n.conf >$d/log 2>&1 & pid=$!; nsock=2 ;;
      direct) port=$bport; pid= ;;
    esac
    [ -n "$pid" ] && pids+=($pid)
    wl $port $nsock || { cat $d/log; continue; }
    wrk -t1 -c10 -d1s -H 'Connection: close' http://127.0.0.1:$port/ >/dev/null 2>&1
    c0=$( [ -n "$pid" ] && $py bench/proc.py cpu $pid || echo 0)
    # per-thread CPU ticks before
    [ -n "$pid" ] && for tt in /proc/$pid/task/*; do echo "$(basename $tt) $(awk '{print $14+$15}' $tt/stat)"; done >$d/thr0
    wrk -t2 -c50 -d${secs}s --latency -H 'Connection: close' http://127.0.0.1:$port/ >$d/wrk.txt 2>&1
    c1=$( [ -n "$pid" ] && $py bench/proc.py cpu $pid || echo 0)
    [ -n "$pid" ] && for tt in /proc/$pid/task/*; do echo "$(basename $tt) $(awk '{print $14+$15}' $tt/stat)"; done >$d/thr1
    [ -n "$pid" ] && for p in $(pgrep -P $pid); do echo "child $p $(awk '{print $14+$15}' /proc/$p/stat)"; done >>$d/thr1
    if [ $kind = sluice ]; then
        echo 'show latency' | socat - UNIX-CONNECT:$d/a.sock >$d/lat.txt 2>&1
    fi
    rps=$(awk '/Requests\/sec/{print $2}' $d/wrk.txt)
    p50=$(awk '/^ +50%/{print $2}' $d/wrk.txt); p90=$(awk '/^ +90%/{print $2}' $d/wrk.txt); p99=$(awk '/^ +99%/{print $2}' $d/wrk.txt)
    errs=$(grep -E 'Socket errors|Non-2xx' $d/wrk.txt | tr '\n' ' ')
    thr=$(join $d/thr0 $d/thr1 2>/dev/null | awk '{d=$3-$2; if (d>0) printf "%d ", d}')
    label=$t; [ $kind = sluice ] && label="sluice:$(basename $(dirname $bin))"
    echo "$(date -u +%FT%TZ) $label rps=$rps p50=$p50 p90=$p90 p99=$p99 cpu0=$c0 cpu1=$c1 thr=[$thr] $errs" | tee -a $out/summary.txt
    [ $kind = sluice ] && sed "s/^/    /" $d/lat.txt | grep -v "^ *$" | tee -a $out/summary.txt
    cp $d/wrk.txt $out/wrk-$n-$kind.txt
    [ -n "$pid" ] && { kill $pid; for i in $(seq 50); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done; }
done
