#!/usr/bin/env bash
# The `psi` command: --version, help, run (with --threshold, bad values,
# a broken PSI_POLICY refused, exit status passed on), stats, gc.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

[[ -x $PSI_BIN ]] || fail "$PSI_BIN does not exist: run 'make all' first"
version=$(sed -n 's/^VERSION *:= *//p' "$ROOT/Makefile")

# has NAME REGEX WHAT: NAME.out or NAME.err matches REGEX (extended, any case).
has() { output_has "$1" -iE "$2" "$3"; }

expect_exit 0 version "$PSI_BIN" --version
has version "$version" "psi --version names version $version"
log "ok psi --version: $(head -1 version.out)"

expect_exit 0 help "$PSI_BIN" help
for w in run stats gc; do has help "$w" "psi help lists '$w'"; done
log "ok psi help"

expect_exit 0 runhelp "$PSI_BIN" run --help
has runhelp '--threshold' "psi run --help documents --threshold"
log "ok psi run --help"

expect_exit 2 badthr "$PSI_BIN" run --threshold bogus -- true
has badthr 'threshold' "psi run --threshold bogus says what is wrong"
log "ok psi run --threshold bogus: exit 2: $(head -1 badthr.err)"

: >p.policy
expect_exit 2 policy env PSI_POLICY="$TEST_TMP/p.policy" "$PSI_BIN" run -- true
has policy 'no statements' "psi run with an empty PSI_POLICY"
log "ok empty PSI_POLICY refused: $(head -1 policy.err)"

expect_exit 7 status "$PSI_BIN" run -- sh -c 'exit 7'
log "ok psi run passes the exit status on"

# psi run --threshold 64K: 256 KiB writes between two python3 programs are
# proxied only if the 64K threshold reached them (the default is 1 MiB).
payload p.bin 4M
port=$(free_port)
spawn srv.out srv.err env PSI_STATS="$TEST_TMP/run.stats" \
    "$PSI_BIN" run --threshold 64K -- "$PY" "$NETIO" server --port "$port" recv:run.got
spid=$SPAWNED
wait_listen "$port" "$spid"
spawn cli.out cli.err env PSI_STATS="$TEST_TMP/run.stats" \
    "$PSI_BIN" run --threshold 64K -- "$PY" "$NETIO" client --port "$port" --chunk 256K send:p.bin shut
await_ok "$SPAWNED" "client under psi run"
await_ok "$spid" "server under psi run"
same_bytes p.bin run.got "psi run --threshold 64K"
stats_check run.stats
sent=$(tokens_sent run.stats)
resolved=$(tokens_resolved run.stats)
((sent >= 16)) || fail "psi run --threshold 64K: 16 writes of 256 KiB sent $sent tokens (threshold not applied?)"
((sent == resolved)) || fail "psi run: $sent tokens sent, $resolved resolved"
log "ok psi run --threshold 64K: $sent tokens"

expect_exit 0 stats "$PSI_BIN" stats run.stats
has stats 'TOTAL' "psi stats prints a TOTAL row"
log "ok psi stats:"
sed 's/^/    /' stats.out

expect_exit 0 gc "$PSI_BIN" gc
log "ok psi gc: $(head -1 gc.out)"
