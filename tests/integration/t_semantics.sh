#!/usr/bin/env bash
# recv/send semantics on a framed TCP stream, both ends preloaded (the
# client lists the server in PSI_PEERS; 200 KiB+ writes become tokens with
# PSI_THRESHOLD=64K): MSG_PEEK across record and token boundaries,
# MSG_WAITALL across tokens, MSG_DONTWAIT / O_NONBLOCK on an empty socket,
# MSG_NOSIGNAL to a closed peer, MSG_TRUNC (discards application bytes),
# EINTR with and without SA_RESTART, shutdown(SHUT_WR) and half-close, close
# right after a token (with and without SO_LINGER), and ioctl FIONREAD when
# the library hooks ioctl. semantics_prog.c checks every byte.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
need cc

cc -O1 -g -Wall -Wextra -Werror -o semantics_prog "$HERE/semantics_prog.c" ||
    fail "cannot compile semantics_prog.c"

fion=
if nm -D --defined-only "$PSI_LIB" 2>/dev/null | grep -qw ioctl; then
    fion=fionread
else
    log "note: $(basename "$PSI_LIB") does not hook ioctl yet: FIONREAD not checked"
fi

port=$(free_port)
spawn sem.out sem.err preload env PSI_PEERS="127.0.0.1:$port" PSI_THRESHOLD=64K \
    PSI_STATS="$TEST_TMP/sem.stats" ./semantics_prog "$port" $fion
await_ok "$SPAWNED" semantics_prog 60
cat sem.out
grep -q "^all .* cases passed" sem.out || fail "semantics_prog did not finish its cases"
# Tokens really went through the store, and every one was resolved.
sent=$(tokens_sent sem.stats)
got=$(tokens_resolved sem.stats)
((sent >= 10)) || fail "only $sent tokens sent (the cases send at least 10)"
log "ok semantics: $sent tokens sent, $got resolved"
