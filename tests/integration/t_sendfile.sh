#!/usr/bin/env bash
# Paths that move bytes past write(2), into framed streams (sendfile_prog.c,
# both ends preloaded; receivers are netio.py):
#  1. sendfile of a 64 MiB file (offset pointer) and of small files (offset
#     NULL and pointer) to a TCP server: byte exact, the large region is one
#     token, small ones are DATA; sendfile's offset semantics are checked by
#     the program itself.
#  2. splice from a pipe into the socket, sendmmsg, and fdopen+fwrite on the
#     socket (a FILE on a framed fd goes through the engine).
#  3. stdio on a framed stdout pipe (PSI_PIPES=1): printf of a large text,
#     fwrite, write(2) and vmsplice mixed, into a preloaded reader.
#  4. the same program without PSI_PIPES: a plain pipe, no tokens.
#  4b. stdin: a C reader using getc/fread on a framed stdin pipe (a
#     preloaded python3 producer with PSI_PIPES=1).
#  5. the receiving side in C: FIONREAD after poll never promises more than
#     a non-blocking read returns (tokens, DATA, headers split anywhere), and
#     recvmmsg on a framed stream.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
need gcc

gcc -O2 -Wall -Wextra -Werror -o sendfile_prog "$HERE/sendfile_prog.c" ||
    fail "cannot compile sendfile_prog.c"

payload big.bin 64M
payload mid.bin 3M
payload small.bin 10K
payload tiny.bin 100
# A text payload for printf("%s") (no NUL bytes), above the threshold.
head -c $((3 * MiB)) /dev/urandom | base64 -w 0 >text.txt # 4 MiB

# tcp NAME STEP...: sendfile_prog tcp -> preloaded netio server; NAME.got.
tcp() {
    local name=$1 port spid cpid
    shift
    port=$(free_port)
    spawn "$name.srv.out" "$name.srv.err" preload env PSI_STATS="$TEST_TMP/$name.srv.stats" \
        "$PY" "$NETIO" server --port "$port" --result "$name.srv.json" recv:"$name.got"
    spid=$SPAWNED
    wait_listen "$port" "$spid"
    spawn "$name.cli.out" "$name.cli.err" preload env PSI_STATS="$TEST_TMP/$name.cli.stats" \
        ./sendfile_prog tcp "$port" "$@"
    cpid=$SPAWNED
    await_ok "$cpid" "$name: sendfile_prog" 90
    await_ok "$spid" "$name: server" 30
}

# 1. sendfile
tcp sf off:big.bin pos:small.bin off:tiny.bin pos:mid.bin off:small.bin
cat big.bin small.bin tiny.bin mid.bin small.bin >sf.expect
same_bytes sf.expect sf.got "sendfile"
expect_stat sf.cli.stats tokens_sent -eq 2 "sendfile: the 64 MiB and the 3 MiB regions, one token each"
expect_stat sf.cli.stats bytes_proxied -eq $((67 * MiB)) "sendfile"
expect_stat sf.srv.stats tokens_resolved -eq 2 "sendfile receiver"
expect_stat sf.srv.stats errors -eq 0 "sendfile receiver"
log "ok sendfile: 64 MiB + 3 MiB as 2 tokens, small files as DATA"

# 2. splice, sendmmsg, fdopen
tcp sp splice:big.bin splice:small.bin mmsg:mid.bin mmsg:tiny.bin fdopen:big.bin fdopen:small.bin
cat big.bin small.bin mid.bin tiny.bin big.bin small.bin >sp.expect
same_bytes sp.expect sp.got "splice/sendmmsg/fdopen"
expect_stat sp.cli.stats tokens_sent -ge 1 "fdopen+fwrite of 64 MiB"
expect_stat sp.srv.stats tokens_resolved -eq "$(tokens_sent sp.cli.stats)" "splice receiver"
expect_stat sp.srv.stats errors -eq 0 "splice receiver"
log "ok splice, sendmmsg, fdopen: $(tokens_sent sp.cli.stats) tokens"

# 3. stdio on a framed stdout pipe
stdio_run() {
    local name=$1 penv=$2 st
    shift 2
    set +e
    # shellcheck disable=SC2086
    preload env $penv PSI_STATS="$TEST_TMP/$name.prod.stats" ./sendfile_prog stdout "$@" \
        2>"$name.prod.err" |
        preload env PSI_STATS="$TEST_TMP/$name.cons.stats" "$PY" "$NETIO" pipe recv:"$name.got" \
            2>"$name.cons.err"
    st=("${PIPESTATUS[@]}")
    set -e
    ((st[0] == 0)) || fail "$name: producer exited with status ${st[0]}"
    ((st[1] == 0)) || fail "$name: consumer exited with status ${st[1]}"
}
steps=(printf:text.txt fwrite:tiny.bin write:small.bin fwrite:big.bin vmsplice:mid.bin
    printf:text.txt write:big.bin fwrite:tiny.bin)
cat text.txt tiny.bin small.bin big.bin mid.bin text.txt big.bin tiny.bin >stdio.expect
stdio_run stdio PSI_PIPES=1 "${steps[@]}"
same_bytes stdio.expect stdio.got "stdio on a framed stdout pipe"
expect_stat stdio.prod.stats tokens_sent -ge 4 "printf/fwrite/write/vmsplice to a framed stdout"
expect_stat stdio.cons.stats tokens_resolved -eq "$(tokens_sent stdio.prod.stats)" "stdio reader"
expect_stat stdio.cons.stats errors -eq 0 "stdio reader"
log "ok stdio on a framed stdout: $(tokens_sent stdio.prod.stats) tokens"

# 4. without PSI_PIPES the pipe is plain
stdio_run plain "" "${steps[@]}"
same_bytes stdio.expect plain.got "stdio on a plain stdout pipe"
expect_stat plain.prod.stats tokens_sent -eq 0 "no PSI_PIPES"
log "ok stdio on a plain stdout"

# 4b. stdio on a framed stdin pipe
cat big.bin tiny.bin big.bin >stdin.expect
set +e
preload env PSI_PIPES=1 PSI_STATS="$TEST_TMP/stdin.prod.stats" "$PY" "$NETIO" pipe --chunk 16M \
    send:big.bin send:tiny.bin send:big.bin 2>stdin.prod.err |
    preload env PSI_PIPES=1 PSI_STATS="$TEST_TMP/stdin.cons.stats" ./sendfile_prog stdin stdin.got 2>stdin.cons.err
st=("${PIPESTATUS[@]}")
set -e
((st[0] == 0 && st[1] == 0)) || fail "stdin: producer/consumer exited with ${st[*]}"
same_bytes stdin.expect stdin.got "stdio on a framed stdin pipe"
expect_stat stdin.prod.stats tokens_sent -ge 8 "python producer, PSI_PIPES=1"
expect_stat stdin.cons.stats tokens_resolved -eq "$(tokens_sent stdin.prod.stats)" "getc/fread reader"
log "ok stdio on a framed stdin: $(tokens_resolved stdin.cons.stats) tokens"

# 5. FIONREAD and recvmmsg on the receiving side
for mode in inq mmsg; do
    port=$(free_port)
    spawn "rx$mode.srv.out" "rx$mode.srv.err" preload env PSI_STATS="$TEST_TMP/rx$mode.srv.stats" \
        ./sendfile_prog serve "$port" "rx$mode.got" "$mode"
    spid=$SPAWNED
    wait_listen "$port" "$spid"
    preload env PSI_STATS="$TEST_TMP/rx$mode.cli.stats" ./sendfile_prog tcp "$port" \
        off:big.bin pos:small.bin splice:mid.bin off:tiny.bin off:mid.bin 2>"rx$mode.cli.err" ||
        fail "rx$mode: sendfile_prog client failed"
    await_ok "$spid" "rx$mode: C receiver" 60
    cat big.bin small.bin mid.bin tiny.bin mid.bin >rx.expect
    same_bytes rx.expect "rx$mode.got" "C receiver ($mode)"
    expect_stat "rx$mode.cli.stats" tokens_sent -eq 2 "rx$mode sender"
    expect_stat "rx$mode.srv.stats" tokens_resolved -eq 2 "rx$mode receiver"
    log "ok receiver $mode: $(grep -h FIONREAD "rx$mode.srv.err" || echo "recvmmsg")"
done
