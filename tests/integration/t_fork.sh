#!/usr/bin/env bash
# fork: the parent writes on a framed socket, forks; the child writes on the
# inherited socket and exits; then the parent writes again (the parent waits
# for the child: no sleeps). The receiver gets the three parts in order,
# byte exact, tokens in each part.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

PROG=$HERE/proc_prog.py
payload a.bin 3M
payload b.bin 5M
payload c.bin 2M
payload s.bin 777
cat a.bin s.bin b.bin s.bin c.bin s.bin >want.bin

port=$(free_port)
spawn srv.out srv.err preload env PSI_STATS="$TEST_TMP/srv.stats" \
    "$PY" "$NETIO" server --port "$port" recv:got.bin
spid=$SPAWNED
wait_listen "$port" "$spid"
spawn cli.out cli.err preload env PSI_STATS="$TEST_TMP/cli.stats" \
    "$PY" "$PROG" forkwriter "$port" a.bin,s.bin b.bin,s.bin c.bin,s.bin
cpid=$SPAWNED
await_ok "$cpid" "forking writer"
await_ok "$spid" "receiver"
same_bytes want.bin got.bin "parent, child, parent on one socket"
# Two stats lines: the child's and the parent's.
[[ $(grep -c . cli.stats) -eq 2 ]] || fail "expected 2 stats lines: $(cat cli.stats)"
expect_stat cli.stats tokens_sent -eq 3 "parent + child"
expect_stat srv.stats tokens_resolved -eq 3 "receiver"
expect_stat srv.stats errors -eq 0 "receiver"
log "ok fork: both processes write framed records on the inherited socket"
