#!/usr/bin/env bash
# python3 asyncio streams, client and server both preloaded (asyncio's
# selector loop is epoll, level-triggered, and reads at most 256 KiB per
# readiness report). Three connections at once, each sending a mix of small
# messages and messages far above the threshold and reading the echo. A
# 16 MiB token resolves into bytes held in user space that the kernel never
# reports; only the epoll overlay tells the loop to keep reading them.
# Byte-exact (sha256 per connection and direction); tokens both ways.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

PROG=$HERE/asyncio_echo.py
CONNS=3
sizes=1,70000,4M,5,16M,1048576,300K,17,9M,0,2

port=$(free_port)
spawn srv.out srv.err preload env PSI_STATS="$TEST_TMP/srv.stats" \
    "$PY" "$PROG" server --port "$port" --conns $CONNS
spid=$SPAWNED
wait_listen "$port" "$spid"
spawn cli.out cli.err preload env PSI_STATS="$TEST_TMP/cli.stats" \
    "$PY" "$PROG" client --port "$port" --conns $CONNS --sizes $sizes --out "$TEST_TMP/c"
cpid=$SPAWNED
await_ok "$cpid" "asyncio client" 90
await_ok "$spid" "asyncio server" 30

for ((i = 0; i < CONNS; i++)); do
    same_bytes "c.$i.sent" "c.$i.got" "asyncio connection $i echo"
done
want=$(( (1 + 70000 + 4 * MiB + 5 + 16 * MiB + MiB + 300 * KiB + 17 + 9 * MiB + 0 + 2 + 11 * 8) * CONNS ))
got=$(cat c.*.got | wc -c)
((got == want)) || fail "asyncio: echoed $got bytes in all, expected $want"

cs=$(tokens_sent cli.stats)
sr=$(tokens_resolved srv.stats)
ss=$(tokens_sent srv.stats)
cr=$(tokens_resolved cli.stats)
((cs >= 3 * CONNS && cs == sr)) || fail "asyncio: client sent $cs tokens, server resolved $sr (expected >= $((3 * CONNS)), equal)"
((ss >= 3 * CONNS && ss == cr)) || fail "asyncio: server sent $ss tokens, client resolved $cr (expected >= $((3 * CONNS)), equal)"
expect_stat cli.stats errors -eq 0 "asyncio client"
expect_stat srv.stats errors -eq 0 "asyncio server"
log "ok asyncio: $CONNS connections, client sent $cs tokens, server sent $ss tokens"
