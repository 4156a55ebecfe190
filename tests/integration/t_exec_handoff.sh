#!/usr/bin/env bash
# A preloaded server reads part of a framed stream (so decoder state and
# held bytes exist), then hands the connection to another program, which
# reads the rest: byte exact, tokens resolved in the new image.
#  1. exec /bin/cat with the socket as stdin; split inside a 16 MiB token
#     (the rest of the resolved token is held in user space at exec).
#  2. exec python3 with the socket as fd 3, split among small DATA records;
#     the new image also writes a reply (framed, with a token) back.
#  3. subprocess.Popen(["cat"], stdin=socket) (_posixsubprocess: vfork +
#     dup2 + exec), split inside a token.
#  4. os.posix_spawn of /bin/cat with dup2 file actions onto 0 and 1.
#  5. an exec that fails: the server reads the rest itself.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

PROG=$HERE/proc_prog.py
payload small.bin 100
payload big.bin 16M
payload mid.bin 3M
payload recs.bin 200K
payload reply.bin 5M
cat small.bin big.bin mid.bin recs.bin small.bin >sent.bin

# handover NAME SPLIT RBUF HOW [REPLY]: one client/server run.
handover() {
    local name=$1 split=$2 rbuf=$3 how=$4 reply=${5:-} port spid cpid
    port=$(free_port)
    spawn "$name.srv.out" "$name.srv.err" preload env PSI_LOG=debug PSI_STATS="$TEST_TMP/$name.srv.stats" \
        "$PY" "$PROG" server "$port" "$split" "$rbuf" "$name.part1" "$how" "$name.part2" ${reply:+"$reply"}
    spid=$SPAWNED
    wait_listen "$port" "$spid"
    local csteps=(send:small.bin send:big.bin send:mid.bin send:recs.bin:1000 send:small.bin shut)
    [[ -n $reply ]] && csteps+=(recv:"$name.reply.got")
    spawn "$name.cli.out" "$name.cli.err" preload env PSI_STATS="$TEST_TMP/$name.cli.stats" \
        "$PY" "$NETIO" client --port "$port" "${csteps[@]}"
    cpid=$SPAWNED
    await_ok "$cpid" "$name: client"
    await_ok "$spid" "$name: server"
    cat "$name.part1" "$name.part2" >"$name.got"
    local restored
    restored=$(grep -c "exec handoff: 1 states, 1 fds restored" "$name.srv.err" || true)
    if [[ $how == exec-fail ]]; then
        ((restored == 0)) || fail "$name: a failed exec restored state somewhere"
    else
        ((restored == 1)) || fail "$name: the new image did not restore the connection's state"
    fi
    same_bytes sent.bin "$name.got" "$name: bytes read before + after the hand-over"
    expect_stat "$name.cli.stats" tokens_sent -ge 2 "$name: client"
    expect_stat "$name.srv.stats" errors -eq 0 "$name: server side"
    if [[ -n $reply ]]; then
        same_bytes "$reply" "$name.reply.got" "$name: reply written by the new image"
        expect_stat "$name.srv.stats" tokens_sent -ge 1 "$name: the new image's reply"
    fi
}

# 1. The 16 MiB token is resolved before exec; 1000 of its bytes were read.
handover cat 1100 550 exec-cat
# The exec'd cat resolved the 3 MiB token itself and read the held bytes.
expect_stat cat.srv.stats tokens_resolved -ge 1 "cat: tokens resolved in the new image"
grep -q '"exe":"cat"' cat.srv.stats || fail "cat wrote no stats line: $(cat cat.srv.stats)"
log "ok exec cat: split inside a held token"

# 2. Split inside the run of 1000-byte DATA records, odd read size.
handover py3 $((100 + 16 * MiB + 3 * MiB + 55555)) 4099 exec-py3 reply.bin
log "ok exec python3 on fd 3: split among DATA records, framed reply"

# 3. vfork child dup2s the socket onto 0 (the parent's table must not change).
handover popen 777 333 popen-cat
expect_stat popen.srv.stats tokens_resolved -ge 2 "popen: tokens resolved (parent + cat)"
log "ok subprocess.Popen(cat)"

# 4. posix_spawn with file actions.
handover spawn 5000 1000 spawn-cat
expect_stat spawn.srv.stats tokens_resolved -ge 2 "spawn: tokens resolved (parent + cat)"
log "ok os.posix_spawn(cat)"

# 5. A failed exec leaves the stream to the process that tried it.
handover fail 1100 550 exec-fail
expect_stat fail.srv.stats tokens_resolved -ge 2 "fail: the server resolved every token itself"
log "ok failed exec: the caller keeps reading"
