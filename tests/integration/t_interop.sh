#!/usr/bin/env bash
# A preloaded program talking to a plain one must see exactly the bytes it
# would see without the interposer, and nothing may be proxied:
#  1. preloaded client -> plain server (bulk 64 MiB each way, then a mix of
#     small and large messages echoed back)
#  2. plain client -> preloaded server (the same)
#  3. plain client -> preloaded server with payloads that start like the
#     HELLO magic ("\xF5", "\xF5P", "\xF5PSX...") and then differ or end.
# Zero tokens in every stats file.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

payload a.bin 64M
payload b.bin 64M
sizes=1,3M,100,1048576,0,1048577,64M,7

# conn NAME CLIENT-PRELOAD(0/1) SERVER-PRELOAD(0/1) CLIENT-ARGS -- SERVER-ARGS
conn() {
    local name=$1 cpre=$2 spre=$3 port spid cpid
    shift 3
    local cargs=() sargs=() pre
    while [[ $1 != -- ]]; do cargs+=("$1"); shift; done
    shift
    sargs=("$@")
    port=$(free_port)
    pre=()
    ((spre)) && pre=(preload env PSI_STATS="$TEST_TMP/$name.srv.stats")
    spawn "$name.srv.out" "$name.srv.err" "${pre[@]}" "$PY" "$NETIO" server --port "$port" "${sargs[@]}"
    spid=$SPAWNED
    wait_listen "$port" "$spid"
    pre=()
    ((cpre)) && pre=(preload env PSI_STATS="$TEST_TMP/$name.cli.stats")
    spawn "$name.cli.out" "$name.cli.err" "${pre[@]}" "$PY" "$NETIO" client --port "$port" "${cargs[@]}"
    cpid=$SPAWNED
    await_ok "$cpid" "$name: client" 90
    await_ok "$spid" "$name: server" 30
}

no_tokens() {
    local f=$1 what=$2
    expect_stat "$f" tokens_sent -eq 0 "$what"
    expect_stat "$f" tokens_resolved -eq 0 "$what"
    expect_stat "$f" errors -eq 0 "$what"
}

# 1. preloaded client, plain server
conn pc-bulk 1 0 send:a.bin shut recv:pc-bulk.cli.got -- recv:pc-bulk.srv.got send:b.bin shut
same_bytes a.bin pc-bulk.srv.got "preloaded client -> plain server"
same_bytes b.bin pc-bulk.cli.got "plain server -> preloaded client"
no_tokens pc-bulk.cli.stats "preloaded client of a plain server"
conn pc-mixed 1 0 echo-client:$sizes:pc-mixed.cli.sent:pc-mixed.cli.got -- \
    echo-server:pc-mixed.srv.sent:pc-mixed.srv.got
same_bytes pc-mixed.cli.sent pc-mixed.srv.got "mixed: preloaded client -> plain server"
same_bytes pc-mixed.srv.sent pc-mixed.cli.got "mixed: plain server -> preloaded client"
no_tokens pc-mixed.cli.stats "preloaded client of a plain server (mixed)"
log "ok preloaded client -> plain server"

# 2. plain client, preloaded server
conn ps-bulk 0 1 send:a.bin shut recv:ps-bulk.cli.got -- recv:ps-bulk.srv.got send:b.bin shut
same_bytes a.bin ps-bulk.srv.got "plain client -> preloaded server"
same_bytes b.bin ps-bulk.cli.got "preloaded server -> plain client"
no_tokens ps-bulk.srv.stats "preloaded server of a plain client"
conn ps-mixed 0 1 echo-client:$sizes:ps-mixed.cli.sent:ps-mixed.cli.got -- \
    echo-server:ps-mixed.srv.sent:ps-mixed.srv.got
same_bytes ps-mixed.cli.sent ps-mixed.srv.got "mixed: plain client -> preloaded server"
same_bytes ps-mixed.srv.sent ps-mixed.cli.got "mixed: preloaded server -> plain client"
no_tokens ps-mixed.srv.stats "preloaded server of a plain client (mixed)"
log "ok plain client -> preloaded server"

# 3. plain bytes that begin like a HELLO
printf '\365' >edge1.bin
printf '\365P' >edge2.bin
printf '\365PSX plain bytes that only look like a HELLO for three bytes' >edge3.bin
printf '\365PS' >edge4.bin
{ printf '\365PS'; head -c $((2 * MiB)) /dev/urandom; } >edge5.bin
for i in 1 2 3 4 5; do
    conn edge$i 0 1 send:edge$i.bin shut -- recv:edge$i.got
    same_bytes edge$i.bin edge$i.got "plain client -> preloaded server, payload $(head -c 4 edge$i.bin | od -An -c | tr -s ' ')"
    no_tokens edge$i.srv.stats "edge$i"
done
log "ok HELLO-like plain prefixes pass unchanged"
