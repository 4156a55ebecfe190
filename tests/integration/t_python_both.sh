#!/usr/bin/env bash
# A python3 client and server (netio.py: sendall of big buffers, recv loops),
# both preloaded, on one host (found through the registry, no PSI_PEERS):
#  1. client sends 64 MiB then half-closes; server reads to EOF, then sends
#     64 MiB back; client reads to EOF. Socket API (send/recv).
#  2. the same with write(2)/read(2) (os.write/os.readv) and 3 MiB writes.
#  3. both directions at once (a sender thread per side), 64 MiB each way.
#  4. a mix of small and large length-prefixed messages on one connection,
#     each echoed back by the server.
# Every byte is compared by sha256; large writes must travel as tokens.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

payload a.bin 64M
payload b.bin 64M

# pair NAME CLIENT-ARGS -- SERVER-ARGS: runs one connection, both preloaded.
pair() {
    local name=$1 port spid cpid
    shift
    local cargs=() sargs=()
    while [[ $1 != -- ]]; do cargs+=("$1"); shift; done
    shift
    sargs=("$@")
    port=$(free_port)
    spawn "$name.srv.out" "$name.srv.err" preload env PSI_STATS="$TEST_TMP/$name.srv.stats" \
        "$PY" "$NETIO" server --port "$port" --result "$name.srv.json" "${sargs[@]}"
    spid=$SPAWNED
    wait_listen "$port" "$spid"
    spawn "$name.cli.out" "$name.cli.err" preload env PSI_STATS="$TEST_TMP/$name.cli.stats" \
        "$PY" "$NETIO" client --port "$port" --result "$name.cli.json" "${cargs[@]}"
    cpid=$SPAWNED
    await_ok "$cpid" "$name: client" 90
    await_ok "$spid" "$name: server" 30
}

# tokens_both NAME MIN: each side sent at least MIN tokens, and every token
# sent by one side was resolved by the other.
tokens_both() {
    local name=$1 min=$2 cs cr ss sr
    cs=$(tokens_sent "$name.cli.stats")
    cr=$(tokens_resolved "$name.cli.stats")
    ss=$(tokens_sent "$name.srv.stats")
    sr=$(tokens_resolved "$name.srv.stats")
    ((cs == sr)) || fail "$name: client sent $cs tokens, server resolved $sr"
    ((ss == cr)) || fail "$name: server sent $ss tokens, client resolved $cr"
    ((cs >= min)) || fail "$name: client sent $cs tokens, expected at least $min"
    ((ss >= min)) || fail "$name: server sent $ss tokens, expected at least $min"
    for f in "$name.cli.stats" "$name.srv.stats"; do
        expect_stat "$f" errors -eq 0 "$name"
    done
    log "ok $name: client sent $cs tokens, server sent $ss tokens"
}

# 1. request then response, socket API, 16 MiB writes
pair seq send:a.bin shut recv:seq.cli.got -- recv:seq.srv.got send:b.bin shut
same_bytes a.bin seq.srv.got "seq client->server"
same_bytes b.bin seq.cli.got "seq server->client"
tokens_both seq 4
expect_stat seq.srv.stats bytes_resolved -eq $((64 * MiB)) seq
expect_stat seq.cli.stats bytes_resolved -eq $((64 * MiB)) seq

# 2. the same through write(2)/read(2), 3 MiB writes, 1 MiB reads
pair rw --api write --chunk 3M --rbuf 1M send:a.bin shut recv:rw.cli.got -- \
    --api write --chunk 3M --rbuf 1M recv:rw.srv.got send:b.bin shut
same_bytes a.bin rw.srv.got "write/read client->server"
same_bytes b.bin rw.cli.got "write/read server->client"
tokens_both rw 21

# 3. full duplex: each side sends 64 MiB from a thread while reading
pair duplex duplex:a.bin:duplex.cli.got -- duplex:b.bin:duplex.srv.got
same_bytes a.bin duplex.srv.got "duplex client->server"
same_bytes b.bin duplex.cli.got "duplex server->client"
cs=$(tokens_sent duplex.cli.stats)
sr=$(tokens_resolved duplex.srv.stats)
((cs >= 4 && cs == sr)) || fail "duplex: client sent $cs tokens, server resolved $sr (expected >= 4, equal)"
log "ok duplex: client sent $cs tokens (the server's direction is framed only once it read the HELLO)"

# 4. small and large messages mixed on one connection, echoed
sizes=1,100,2M,17,0,1048575,1048576,1048577,5,64M,3,300K,9M,8
pair mixed echo-client:$sizes:mixed.cli.sent:mixed.cli.got -- \
    echo-server:mixed.srv.sent:mixed.srv.got
same_bytes mixed.cli.sent mixed.srv.got "mixed client->server"
same_bytes mixed.srv.sent mixed.cli.got "mixed server->client"
tokens_both mixed 3
