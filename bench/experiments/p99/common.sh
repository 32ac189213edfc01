# Sourced by run.sh and prof.sh: wait for listeners, render bench/*.in
# templates, and start the nginx HTTP backend the way scripts/bench does
# (sets bport; needs py, nofile, tmp and the pids array).
listening() { [ "$(ss -Hltn "sport = :$1" 2>/dev/null | wc -l)" -ge "${2:-1}" ]; }
wl() { for i in $(seq 100); do listening "$1" "${2:-1}" && return 0; sleep 0.1; done; echo "no listen $1" >&2; return 1; }
render() { local tpl=$1 o=$2 kv a=(); shift 2; for kv in "$@"; do a+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done; sed "${a[@]}" "$tpl" >"$o"; }
start_backend() {
    local x
    read -r bport x < <($py bench/proc.py freeports 2)
    mkdir -p "$tmp/be"
    render bench/backend-nginx.conf.in "$tmp/be/nginx.conf" PORT="$bport" TLS_PORT="$x" RUNDIR="$tmp/be" \
        NOFILE="$nofile" BODY="$(printf 'x%.0s' $(seq 64))"
    sed -i '/listen .*ssl/d;/ssl_/d' "$tmp/be/nginx.conf"
    nginx -p "$tmp/be/" -e "$tmp/be/error.log" -c "$tmp/be/nginx.conf" >"$tmp/be/out.log" 2>&1 &
    pids+=($!)
    wl "$bport"
}
