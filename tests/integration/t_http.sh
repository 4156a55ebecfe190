#!/usr/bin/env bash
# curl and python3's http.server, both preloaded (the client finds the server
# through the registry), PSI_THRESHOLD=32K so 64 KiB writes become tokens:
#  1. downloads of 10 KiB and 64 MiB from `python3 -m http.server`
#     (shutil.copyfileobj writes 64 KiB blocks: the large file travels as
#     tokens, the small one inline);
#  2. an upload (curl -T, PUT) of 64 MiB to a python3 server that stores
#     the body (http_put_server.py): curl's 64 KiB upload writes are tokens;
#  3. the 64 MiB download through a plain counting relay (curl lists the
#     relay in PSI_PEERS): under 1% of the body crosses the relay.
# Every file is compared byte for byte.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
need curl

mkdir -p www
payload www/small.bin 10K
payload www/large.bin 64M
TH=32K

# 1. downloads
port=$(free_port)
spawn srv.out srv.err preload env PSI_THRESHOLD=$TH PSI_STATS="$TEST_TMP/srv.stats" \
    "$PY" -m http.server --bind 127.0.0.1 --directory www "$port"
spid=$SPAWNED
wait_listen "$port" "$spid"
for f in small large; do
    spawn "get-$f.out" "get-$f.err" preload env PSI_THRESHOLD=$TH \
        PSI_STATS="$TEST_TMP/get-$f.stats" curl -sS -f -o "got-$f.bin" "http://127.0.0.1:$port/$f.bin"
    await_ok "$SPAWNED" "curl download of $f.bin" 90
    same_bytes "www/$f.bin" "got-$f.bin" "download $f.bin"
    expect_stat "get-$f.stats" errors -eq 0 "download $f"
done
expect_stat get-small.stats tokens_resolved -eq 0 "download small (below the threshold)"
expect_stat get-large.stats tokens_resolved -ge 512 "download large (64 KiB blocks above 32K)"
expect_stat get-large.stats bytes_resolved -ge $((32 * MiB)) "download large"
log "ok download: 10 KiB inline, 64 MiB with $(tokens_resolved get-large.stats) tokens"
kill "$spid" 2>/dev/null || true
await "$spid" "http.server" 10 || true

# 2. upload
payload up.bin 64M
port=$(free_port)
mkdir -p inbox
spawn put.out put.err preload env PSI_THRESHOLD=$TH PSI_STATS="$TEST_TMP/put.stats" \
    "$PY" "$HERE/http_put_server.py" "$port" inbox
spid=$SPAWNED
wait_listen "$port" "$spid"
spawn up.out up.err preload env PSI_THRESHOLD=$TH PSI_STATS="$TEST_TMP/up.stats" \
    curl -sS -f -T up.bin "http://127.0.0.1:$port/up.bin"
await_ok "$SPAWNED" "curl upload" 90
grep -q "stored $((64 * MiB)) bytes" up.out || fail "upload: server answered '$(cat up.out)'"
same_bytes up.bin inbox/up.bin "upload up.bin"
await_ok "$spid" "put server" 30
expect_stat up.stats errors -eq 0 upload
expect_stat put.stats errors -eq 0 upload
expect_stat up.stats tokens_sent -ge 256 "upload (curl's 64 KiB writes above 32K)"
expect_stat put.stats tokens_resolved -ge 256 "upload"
log "ok upload: 64 MiB, curl sent $(tokens_sent up.stats) tokens"

# 3. a download through a plain counting relay (not preloaded): curl lists
#    the relay as a peer; the server frames its reply after the HELLO that
#    came through the relay, so the 64 MiB body crosses it as tokens.
port=$(free_port)
spawn srv3.out srv3.err preload env PSI_THRESHOLD=$TH PSI_STATS="$TEST_TMP/srv3.stats" \
    "$PY" -m http.server --bind 127.0.0.1 --directory www "$port"
spid=$SPAWNED
wait_listen "$port" "$spid"
rport=$(free_port)
spawn relay.out relay.err "$PY" "$RELAY" --listen "$rport" --target "127.0.0.1:$port" \
    --counts relay.json
rpid=$SPAWNED
wait_listen "$rport" "$rpid"
spawn get-relay.out get-relay.err preload env PSI_THRESHOLD=$TH PSI_PEERS="127.0.0.1:$rport" \
    PSI_STATS="$TEST_TMP/get-relay.stats" curl -sS -f -o got-relay.bin \
    "http://127.0.0.1:$rport/large.bin"
await_ok "$SPAWNED" "curl download through the relay" 90
same_bytes www/large.bin got-relay.bin "download through the relay"
await_ok "$rpid" "relay" 30
s2c=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["s2c"])' relay.json)
((s2c * 100 < 64 * MiB)) || fail "relay carried $s2c bytes of a 64 MiB download (>= 1%)"
expect_stat get-relay.stats tokens_resolved -ge 512 "download through the relay"
log "ok relay: 64 MiB download, the relay carried $s2c bytes server->client"
kill "$spid" 2>/dev/null || true
await "$spid" "http.server" 10 || true
