#!/usr/bin/env bash
# nginx (epoll, non-blocking sockets, `sendfile on`) serving files to curl,
# both preloaded, found through the registry:
#  1. a 64 MiB file: byte exact, and nginx's sendfile of it went as tokens
#     (nginx 1.22 sends at most sendfile_max_chunk = 2 MiB per call, each
#     call above the threshold is one token), resolved by curl;
#  2. a 10 KiB file: byte exact, no token;
#  3. both again on one keep-alive connection (curl with two URLs).
# nginx runs as one process (master_process off) so its PSI_STATS line is
# written when it exits on SIGTERM.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
need nginx curl

NG=$TEST_TMP/nginx
mkdir -p "$NG/www" "$NG/tmp" "$NG/logs"
payload "$NG/www/big.bin" 64M
payload "$NG/www/small.bin" 10K
port=$(free_port)

cat >"$NG/nginx.conf" <<EOF
master_process off;
worker_processes 1;
pid $NG/nginx.pid;
error_log $NG/logs/error.log info;
events { worker_connections 64; }
http {
    access_log $NG/logs/access.log;
    client_body_temp_path $NG/tmp/body;
    proxy_temp_path $NG/tmp/proxy;
    fastcgi_temp_path $NG/tmp/fastcgi;
    uwsgi_temp_path $NG/tmp/uwsgi;
    scgi_temp_path $NG/tmp/scgi;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 30;
    server {
        listen 127.0.0.1:$port;
        root $NG/www;
        location / { }
    }
}
EOF

spawn nginx.out nginx.err preload env PSI_STATS="$TEST_TMP/nginx.stats" \
    nginx -p "$NG" -c "$NG/nginx.conf" -e "$NG/logs/error.log" -g 'daemon off;'
npid=$SPAWNED
wait_listen "$port" "$npid"

# fetch NAME URL-PATH...: curl, preloaded, one connection; outputs NAME.N.got
fetch() {
    local name=$1 i=0 args=()
    shift
    for p in "$@"; do
        args+=(-o "$name.$i.got" "http://127.0.0.1:$port/$p")
        i=$((i + 1))
    done
    preload env PSI_STATS="$TEST_TMP/$name.curl.stats" curl -sS --fail --max-time 60 "${args[@]}" \
        2>"$name.curl.err" || fail "$name: curl failed: $(cat "$name.curl.err")"
}

fetch big big.bin
same_bytes "$NG/www/big.bin" big.0.got "nginx -> curl, 64 MiB"
expect_stat big.curl.stats tokens_resolved -ge 1 "curl fetching 64 MiB"
expect_stat big.curl.stats errors -eq 0 "curl fetching 64 MiB"
log "ok 64 MiB: curl resolved $(tokens_resolved big.curl.stats) tokens"

fetch small small.bin
same_bytes "$NG/www/small.bin" small.0.got "nginx -> curl, 10 KiB"
expect_stat small.curl.stats tokens_resolved -eq 0 "curl fetching 10 KiB"
log "ok 10 KiB: no token"

fetch both small.bin big.bin small.bin
same_bytes "$NG/www/small.bin" both.0.got "keep-alive, 10 KiB first"
same_bytes "$NG/www/big.bin" both.1.got "keep-alive, 64 MiB second"
same_bytes "$NG/www/small.bin" both.2.got "keep-alive, 10 KiB third"
expect_stat both.curl.stats tokens_resolved -ge 1 "curl, keep-alive"
log "ok keep-alive: small, big, small on one connection"

kill -TERM "$npid"
await "$npid" "nginx" 20 || true
want=$(($(tokens_resolved big.curl.stats) + $(tokens_resolved both.curl.stats)))
expect_stat nginx.stats tokens_sent -eq "$want" "nginx: every token sent was resolved by curl"
expect_stat nginx.stats errors -eq 0 "nginx"
log "ok nginx sent $(tokens_sent nginx.stats) tokens"
