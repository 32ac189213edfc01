#!/bin/bash
# Issue 15 measurement harness (retrans helper, 2026-12-01); writes DIR/{iperf.json,nstat-*.txt,softnet-*.txt,stat-*.txt,meta}
# SLUICE_BIN: the sluice binary (default build-release/sluice of this checkout); SLUICE_EXTRA: extra [global] lines
# run.sh OUTDIR TARGET STREAMS [SECS]: TARGET = direct | sluice-copy | sluice-splice |
# haproxy | haproxy-256k | nginx ; extra sluice [global] lines via $SLUICE_EXTRA
set -u
here=$(cd "$(dirname "$0")" && pwd)
out=$1 target=$2 streams=$3 secs=${4:-10}
bin=${SLUICE_BIN:-$(cd "$(dirname "$0")/../../.." && pwd)/build-release/sluice}
mkdir -p "$out"; cd "$out"
# Optional pinning: CLIENT_CPU, PROXY_CPU, SERVER_CPU (taskset -c lists).
pin() { [ -n "$1" ] && echo taskset -c "$1"; }
read -ra client_pin <<<"$(pin "${CLIENT_CPU:-}")"
read -ra proxy_pin <<<"$(pin "${PROXY_CPU:-}")"
read -ra server_pin <<<"$(pin "${SERVER_CPU:-}")"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT
fp() { /usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wl() { for i in $(seq 100); do ss -ltn "sport = :$1" | grep -q LISTEN && return 0; sleep 0.1; done; echo "no listen $1"; exit 1; }
ip=$(fp); "${server_pin[@]}" iperf3 -s -p $ip >iperf-server.log 2>&1 & pids+=($!); wl $ip
port=$ip
case $target in
 sluice-*)
  port=$(fp); relay=${target#sluice-}
  cat >sluice.ini <<C
[global]
workers = 1
access_log = off
log_level = warn
allow_root = yes
max_conns = 100000
${SLUICE_EXTRA:-}
[listener b]
bind = 127.0.0.1:$port
route = pool
pool = p
max_conns = 100000
backlog = 4096
relay = $relay
[pool p]
server = s1 127.0.0.1:$ip
idle_timeout = 5m
C
  "${proxy_pin[@]}" $bin -c sluice.ini >proxy.log 2>&1 & pids+=($!); ppid=$!; wl $port ;;
 haproxy*)
  port=$(fp); buf=""; [ "$target" = haproxy-256k ] && buf="tune.bufsize 262144"
  cat >haproxy.cfg <<C
global
    nbthread 1
    maxconn 4000
    $buf
defaults
    mode tcp
    maxconn 4000
    timeout connect 3s
    timeout client 5m
    timeout server 5m
frontend b
    bind 127.0.0.1:$port
    default_backend p
backend p
    server s1 127.0.0.1:$ip
C
  haproxy -db -f haproxy.cfg >proxy.log 2>&1 & pids+=($!); ppid=$!; wl $port ;;
 nginx)
  port=$(fp)
  cat >nginx.conf <<C
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
worker_processes 1;
pid $out/nginx.pid;
error_log $out/error.log warn;
events { worker_connections 10000; }
stream { server { listen 127.0.0.1:$port; proxy_pass 127.0.0.1:$ip; proxy_timeout 5m; } }
C
  nginx -p "$out/" -e "$out/error.log" -c "$out/nginx.conf" >proxy.log 2>&1 & pids+=($!); ppid=$!; wl $port ;;
 direct) ppid= ;;
esac
"${client_pin[@]}" iperf3 -c 127.0.0.1 -p $port -t 2 -P $streams ${IPERF_EXTRA:-} >warm.log 2>&1
cpu() { [ -n "$ppid" ] && { t=0; for p in $ppid $(pgrep -P $ppid); do read -r -a f < /proc/$p/stat; t=$((t+f[13]+f[14])); done; echo $t; } || echo 0; }
c0=$(cpu); s0=$($here/sched.sh "$ppid"); cat /proc/net/softnet_stat >softnet-before.txt; nstat -asz >nstat-before.txt; head -1 /proc/stat >stat-before.txt
timeout 60 "${client_pin[@]}" iperf3 -c 127.0.0.1 -p $port -t $secs -P $streams ${IPERF_EXTRA:-} -J >iperf.json
nstat -asz >nstat-after.txt; cat /proc/net/softnet_stat >softnet-after.txt; head -1 /proc/stat >stat-after.txt; c1=$(cpu); s1=$($here/sched.sh "$ppid")
echo "proxy_ticks=$((c1-c0))" >meta; set -- $s0 $s1; echo "run_delay_ms=$((($4-$1)/1000000))" >>meta; echo "nonvol=$(($5-$2))" >>meta; echo "vol=$(($6-$3))" >>meta
/usr/bin/python3 $here/summ.py "$out"
