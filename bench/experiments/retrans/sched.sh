#!/bin/bash
# sched.sh PPID: sum over the proxy's threads: run_delay_ns nonvoluntary voluntary
[ -z "$1" ] && { echo "0 0 0"; exit; }
rd=0 nv=0 v=0
for p in $1 $(pgrep -P $1); do for t in /proc/$p/task/*; do
  read -r a b c < $t/schedstat; rd=$((rd+b))
  nv=$((nv+$(awk '/^nonvoluntary_ctxt/{print $2}' $t/status))); v=$((v+$(awk '/^voluntary_ctxt/{print $2}' $t/status)))
done; done
echo "$rd $nv $v"
