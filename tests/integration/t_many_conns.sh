#!/usr/bin/env bash
# 1000 concurrent connections in one process: a poll-based python3 echo
# server (selectors.PollSelector, non-blocking) and a client opening 1000
# connections at once (manyconns.py), both preloaded (registry). Each
# connection sends its own payload, every 10th above PSI_THRESHOLD=64K (a
# token), half-closes and checks the echo byte for byte.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

N=1000
ulimit -n 8192 || fail "cannot raise the fd limit to 8192"
port=$(free_port)
spawn srv.out srv.err preload env PSI_THRESHOLD=64K PSI_STATS="$TEST_TMP/srv.stats" \
    "$PY" "$HERE/manyconns.py" server "$port" "$N"
spid=$SPAWNED
wait_listen "$port" "$spid"
spawn cli.out cli.err preload env PSI_THRESHOLD=64K PSI_STATS="$TEST_TMP/cli.stats" \
    "$PY" "$HERE/manyconns.py" client "$port" "$N"
await_ok "$SPAWNED" "client ($N connections)" 90
await_ok "$spid" "server" 30
cat cli.out srv.out
grep -q "^client: $N connections, .* 0 bad" cli.out || fail "client did not check $N echoes"
expect_stat cli.stats errors -eq 0 "client"
expect_stat srv.stats errors -eq 0 "server"
# 100 payloads above the threshold: each is at least one token each way.
expect_stat cli.stats tokens_sent -ge 100 "client payloads above 64K"
expect_stat srv.stats tokens_resolved -ge 100 "server resolves the client's tokens"
log "ok $N connections: client sent $(tokens_sent cli.stats) tokens, server $(tokens_sent srv.stats)"
