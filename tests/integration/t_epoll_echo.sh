#!/usr/bin/env bash
# A multi-threaded C epoll echo server written for the suite (epoll_echo.c,
# compiled here): edge-triggered, non-blocking sockets, four workers each
# with its own epoll set (two of them EPOLLONESHOT; epoll_wait, epoll_pwait
# and epoll_pwait2), a read budget per event re-armed with EPOLL_CTL_MOD.
# Six preloaded python3 clients (netio.py echo-client) at once send a mix of
# sizes, 4 MiB and 16 MiB among them, above the 1 MiB threshold; the server
# reads 1 MiB at a time, so a resolved token leaves bytes held in user space
# that only the epoll overlay reports. Byte-exact per client; tokens both
# ways, every one resolved.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
need cc

cc -O2 -Wall -Wextra -Werror -pthread -o epoll_echo "$HERE/epoll_echo.c" ||
    fail "cannot compile epoll_echo.c"

WORKERS=4
CONNS=6
sizes=1,100,4M,17,16M,0,1048575,1048576,5,3M,300K,16M,8

port=$(free_port)
spawn srv.out srv.err preload env PSI_STATS="$TEST_TMP/srv.stats" \
    ./epoll_echo "$port" $WORKERS $CONNS
spid=$SPAWNED
wait_listen "$port" "$spid"
cpids=()
for ((i = 0; i < CONNS; i++)); do
    spawn "c$i.out" "c$i.err" preload env PSI_STATS="$TEST_TMP/cli.stats" \
        "$PY" "$NETIO" client --port "$port" --result "c$i.json" \
        "echo-client:$sizes:c$i.sent:c$i.got"
    cpids+=("$SPAWNED")
done
for ((i = 0; i < CONNS; i++)); do
    await_ok "${cpids[$i]}" "client $i" 90
done
await_ok "$spid" "epoll_echo" 30

total=0
for ((i = 0; i < CONNS; i++)); do
    same_bytes "c$i.sent" "c$i.got" "epoll_echo client $i"
    total=$((total + $(stat -c %s "c$i.got")))
done
[[ $(cat srv.out) == "echoed $total" ]] || fail "server says '$(cat srv.out)', clients got $total bytes"

cs=$(tokens_sent cli.stats)
sr=$(tokens_resolved srv.stats)
ss=$(tokens_sent srv.stats)
cr=$(tokens_resolved cli.stats)
((cs >= 4 * CONNS && cs == sr)) || fail "client sent $cs tokens, server resolved $sr (expected >= $((4 * CONNS)), equal)"
((ss >= 4 * CONNS && ss == cr)) || fail "server sent $ss tokens, clients resolved $cr (expected >= $((4 * CONNS)), equal)"
expect_stat cli.stats errors -eq 0 "clients"
expect_stat srv.stats errors -eq 0 "epoll_echo"
log "ok epoll_echo: $CONNS clients, $total bytes echoed; clients sent $cs tokens, server sent $ss"
