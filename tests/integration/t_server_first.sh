#!/usr/bin/env bash
# A server that speaks first (like SMTP or SSH): both preloaded. The server
# writes a banner line and a 3 MiB payload before it reads anything; the
# client reads exactly those bytes, then sends 5 MiB and half-closes; the
# server reads to EOF and answers "bye" plus 2 MiB, then closes.
#
# The server's first writes come before it has seen the client's HELLO, so
# they are plain; the client must pass them through while it looks for the
# ANSWER. Everything is compared byte for byte.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

printf '220 psi-test ready\r\n' >banner.txt
payload first.bin 3M
payload client.bin 5M
{ printf 'bye\r\n'; head -c $((2 * MiB)) /dev/urandom; } >bye.bin
cat banner.txt first.bin >expect-hello.bin
n_hello=$(stat -c %s expect-hello.bin)

run_case() {
    local name=$1 api=$2 port spid cpid
    port=$(free_port)
    spawn "$name.srv.out" "$name.srv.err" preload env PSI_STATS="$TEST_TMP/$name.srv.stats" \
        "$PY" "$NETIO" server --port "$port" --api "$api" \
        send:banner.txt send:first.bin recv:"$name.srv.got" send:bye.bin shut
    spid=$SPAWNED
    wait_listen "$port" "$spid"
    spawn "$name.cli.out" "$name.cli.err" preload env PSI_STATS="$TEST_TMP/$name.cli.stats" \
        "$PY" "$NETIO" client --port "$port" --api "$api" \
        recvn:"$n_hello":"$name.cli.hello" send:client.bin shut recv:"$name.cli.bye"
    cpid=$SPAWNED
    await_ok "$cpid" "$name: client"
    await_ok "$spid" "$name: server"
    same_bytes expect-hello.bin "$name.cli.hello" "$name: banner + payload (server -> client, before HELLO)"
    same_bytes client.bin "$name.srv.got" "$name: client -> server"
    same_bytes bye.bin "$name.cli.bye" "$name: server's answer after it read the client"
    # The client's direction is framed from the start (the server is in the
    # registry), so its 5 MiB write travels as a token.
    expect_stat "$name.cli.stats" tokens_sent -ge 1 "$name client"
    expect_stat "$name.srv.stats" tokens_resolved -eq "$(tokens_sent "$name.cli.stats")" "$name server"
    # By the time it sends "bye" the server has read the HELLO: from there
    # its direction is framed (ANSWER first), and the 2 MiB goes as a token.
    expect_stat "$name.srv.stats" tokens_sent -ge 1 "$name server (after reading the HELLO)"
    expect_stat "$name.cli.stats" tokens_resolved -eq "$(tokens_sent "$name.srv.stats")" "$name client"
    expect_stat "$name.srv.stats" errors -eq 0 "$name server"
    expect_stat "$name.cli.stats" errors -eq 0 "$name client"
    log "ok $name: server sent $(tokens_sent "$name.srv.stats") tokens, client $(tokens_sent "$name.cli.stats")"
}

run_case socket-api send
run_case read-write write
