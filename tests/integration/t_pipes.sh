#!/usr/bin/env bash
# `producer | consumer`, both preloaded (netio.py pipe: os.write to stdout,
# os.readv from stdin):
#  1. PSI_PIPES=1 on the producer: 64 MiB in 16 MiB writes travel as tokens.
#  2. the same, with 3 MiB writes and 64 KiB reads (resolved bytes held
#     across many reads), plus a small payload.
#  3. without PSI_PIPES: plain pipe, no tokens.
#  4. a plain producer (cat) whose bytes begin like a HELLO, into a preloaded
#     consumer (a pipe reader always detects): bytes unchanged.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

payload big.bin 64M
payload small.bin 100

# pipeline NAME PRODUCER-ENV CONSUMER-ARGS PRODUCER-ARGS...: runs one pipeline.
pipeline() {
    local name=$1 penv=$2 cargs=$3
    shift 3
    local st=()
    set +e
    # shellcheck disable=SC2086
    preload env $penv PSI_STATS="$TEST_TMP/$name.prod.stats" "$PY" "$NETIO" pipe "$@" \
        2>"$name.prod.err" |
        preload env PSI_STATS="$TEST_TMP/$name.cons.stats" "$PY" "$NETIO" pipe $cargs recv:"$name.got" \
            2>"$name.cons.err"
    st=("${PIPESTATUS[@]}")
    set -e
    ((st[0] == 0)) || fail "$name: producer exited with status ${st[0]}"
    ((st[1] == 0)) || fail "$name: consumer exited with status ${st[1]}"
}

# 1.
pipeline pipes16 PSI_PIPES=1 "" --chunk 16M send:big.bin
same_bytes big.bin pipes16.got "pipe, PSI_PIPES=1, 16 MiB writes"
expect_stat pipes16.prod.stats tokens_sent -ge 4 "producer with PSI_PIPES=1"
expect_stat pipes16.cons.stats tokens_resolved -eq "$(tokens_sent pipes16.prod.stats)" "consumer"
expect_stat pipes16.cons.stats bytes_resolved -eq $((64 * MiB)) "consumer"
expect_stat pipes16.cons.stats errors -eq 0 "consumer"
log "ok PSI_PIPES=1: $(tokens_sent pipes16.prod.stats) tokens"

# 2.
pipeline pipes3 PSI_PIPES=1 "--rbuf 64K" --chunk 3M send:big.bin send:small.bin send:big.bin
cat big.bin small.bin big.bin >pipes3.expect
same_bytes pipes3.expect pipes3.got "pipe, PSI_PIPES=1, 3 MiB writes, 64 KiB reads"
expect_stat pipes3.prod.stats tokens_sent -ge 42 "producer with PSI_PIPES=1 (3 MiB writes)"
expect_stat pipes3.cons.stats tokens_resolved -eq "$(tokens_sent pipes3.prod.stats)" "consumer"
expect_stat pipes3.cons.stats errors -eq 0 "consumer"
log "ok PSI_PIPES=1 with small reads: $(tokens_sent pipes3.prod.stats) tokens"

# 3.
pipeline plain "" "" --chunk 16M send:big.bin
same_bytes big.bin plain.got "pipe without PSI_PIPES"
expect_stat plain.prod.stats tokens_sent -eq 0 "producer without PSI_PIPES"
expect_stat plain.cons.stats tokens_resolved -eq 0 "consumer without PSI_PIPES"
log "ok no PSI_PIPES, no tokens"

# 4.
{ printf '\365PSX'; cat small.bin; } >edge.bin
rc=0
# shellcheck disable=SC2002 # the consumer must read a pipe, not a file
cat edge.bin | preload env PSI_STATS="$TEST_TMP/edge.cons.stats" "$PY" "$NETIO" pipe recv:edge.got \
    2>edge.cons.err || rc=$?
((rc == 0)) || fail "consumer of a plain producer exited with status $rc"
same_bytes edge.bin edge.got "plain producer -> preloaded consumer, HELLO-like prefix"
printf '\365P' | preload "$PY" "$NETIO" pipe recv:edge2.got 2>edge2.cons.err ||
    fail "consumer of a 2-byte HELLO-like plain stream failed"
printf '\365P' >edge2.bin
same_bytes edge2.bin edge2.got "plain producer -> preloaded consumer, 2 bytes of magic then EOF"
log "ok plain producers into a preloaded consumer"

# 5. A shell pipeline with the shell preloaded too: bash makes the pipe
#    (tracked in bash), forks, and each side reaches its program through
#    dup2 + exec, so the state comes across in the exec handoff. The
#    producer writes 16 MiB blocks, the consumer is sha256sum.
want=$(sha big.bin)
preload env PSI_PIPES=1 PSI_LOG=debug PSI_STATS="$TEST_TMP/shell.stats" bash -c \
    "'$PY' '$NETIO' pipe --chunk 16M send:big.bin | sha256sum >shell.sum" 2>shell.err ||
    fail "preloaded bash -c 'producer | sha256sum' failed"
[[ $(cut -c1-64 shell.sum) == "$want" ]] || fail "shell pipeline: sha256 $(cat shell.sum), want $want"
grep -q '"exe":"sha256sum"' shell.stats || fail "sha256sum wrote no stats line: $(cat shell.stats)"
expect_stat shell.stats tokens_sent -ge 4 "shell pipeline producer"
expect_stat shell.stats tokens_resolved -eq "$(tokens_sent shell.stats)" "shell pipeline consumer"
expect_stat shell.stats errors -eq 0 "shell pipeline"
[[ $(grep -c "exec handoff: 1 states, 1 fds restored" shell.err) -ge 2 ]] ||
    fail "shell pipeline: both sides should take their pipe end from bash's handoff"
log "ok preloaded bash -c 'producer | sha256sum': $(tokens_sent shell.stats) tokens"

# 6. The same with plain coreutils on both sides (128 KiB writes: DATA
#    records, below the threshold), and a lower threshold so cat's writes
#    become tokens.
for thr in 1M 64K; do
    preload env PSI_PIPES=1 PSI_THRESHOLD=$thr PSI_STATS="$TEST_TMP/cat$thr.stats" bash -c \
        "cat big.bin small.bin | sha256sum >cat$thr.sum" 2>"cat$thr.err" ||
        fail "preloaded bash -c 'cat | sha256sum' failed (threshold $thr)"
    [[ $(cut -c1-64 "cat$thr.sum") == "$(cat big.bin small.bin | sha256sum | cut -c1-64)" ]] ||
        fail "cat | sha256sum (threshold $thr): wrong digest"
    expect_stat "cat$thr.stats" errors -eq 0 "cat | sha256sum (threshold $thr)"
done
expect_stat cat64K.stats tokens_resolved -ge 1 "cat | sha256sum with PSI_THRESHOLD=64K"
log "ok preloaded bash -c 'cat | sha256sum': $(tokens_sent cat64K.stats) tokens at 64K"
