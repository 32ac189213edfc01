#!/bin/bash
# prof.sh OUT BIN...: per BIN, sluice under strace -c -f, wrk -t2 -c50 -d3s cps; syscalls per request.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=${SLUICE_ROOT:-$(cd "$here/../../.." && pwd)}; out=$1; shift; mkdir -p $out; cd $root
py=/usr/bin/python3; nofile=$(ulimit -Hn); ulimit -n $nofile
tmp=$(mktemp -d /tmp/sluice-p99-prof.XXXXXX); pids=()
trap 'for p in "${pids[@]}"; do kill $p 2>/dev/null; done' EXIT
. "$here/common.sh"
start_backend || exit 1
n=0
for bin in "$@"; do
  n=$((n+1)); d=$tmp/t$n; mkdir -p $d; port=$($py bench/proc.py freeports 1)
  render bench/sluice.ini.in $d/sluice.ini PORT=$port BACKEND_PORT=$bport WORKERS=2 SLUICE_BUFFERS=";" RELAY=copy \
     SLUICE_ROUTE="route = pool" SLUICE_POOL="pool = p" SLUICE_LIMITS=";" SLUICE_GLOBAL_LIMITS=";" ADMIN=";" ACCESS_LOG=off ACCESS_LOG_FORMAT=kv
  strace -f -c -o $d/strace.txt "$bin" -c $d/sluice.ini >$d/log 2>&1 & spid=$!
  wl $port 2 || { cat $d/log; exit 1; }
  sp=$(pgrep -P $spid | head -1)
  wrk -t2 -c50 -d3s -H 'Connection: close' http://127.0.0.1:$port/ >$d/wrk.txt 2>&1
  kill $sp; wait $spid
  req=$(awk '/requests in/{print $1}' $d/wrk.txt)
  echo "$(date -u +%FT%TZ) $bin requests=$req" | tee -a $out/summary.txt
  awk -v r=$req 'NR>2 && $4 ~ /^[0-9]+$/ && $NF != "total" {printf "    %-14s %6.2f/req\n", $NF, $4/r}' $d/strace.txt | sort -k2 -nr | tee -a $out/summary.txt
  awk -v r=$req 'NR>2 && $4 ~ /^[0-9]+$/ && $NF != "total" {n += $4} END {printf "    TOTAL %6.2f/req\n", n/r}' $d/strace.txt | tee -a $out/summary.txt
done
