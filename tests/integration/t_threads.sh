#!/usr/bin/env bash
# Threads sharing one framed TCP connection (threads_prog.c): 4 writer
# threads and a reader thread in one preloaded process, messages below and
# above PSI_THRESHOLD=64K, every byte and the per-writer order checked.
# Then the same program under valgrind's helgrind with the library
# preloaded: no data race reported in the interposer (--error-exitcode).
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
need cc valgrind

cc -O1 -g -pthread -Wall -Wextra -Werror -o threads_prog "$HERE/threads_prog.c" ||
    fail "cannot compile threads_prog.c"

port=$(free_port)
spawn thr.out thr.err preload env PSI_PEERS="127.0.0.1:$port" PSI_THRESHOLD=64K \
    PSI_STATS="$TEST_TMP/thr.stats" ./threads_prog "$port"
await_ok "$SPAWNED" threads_prog 60
cat thr.out
expect_stat thr.stats tokens_sent -ge 24 "threads: messages above the threshold"
expect_stat thr.stats tokens_resolved -ge 24 "threads: tokens resolved by the reader"
expect_stat thr.stats errors -eq 0 threads

# valgrind cannot run a program with a sanitizer runtime loaded
# (make integration-san): the plain run above is the check there.
if [[ -n ${PSI_TEST_PRELOAD_EXTRA:-} ]]; then
    log "note: helgrind skipped with PSI_TEST_PRELOAD_EXTRA (sanitizer runtime) set"
    exit 0
fi

# helgrind: the library's own locking and atomics must show no race. The
# program's stdio and glibc internals are covered by valgrind's default
# suppressions; any report left fails the test.
port=$(free_port)
spawn hg.out hg.err preload env PSI_PEERS="127.0.0.1:$port" PSI_THRESHOLD=64K \
    PSI_STATS="$TEST_TMP/hg.stats" valgrind --tool=helgrind --error-exitcode=9 \
    --log-file="$TEST_TMP/helgrind.log" ./threads_prog "$port"
rc=0
await "$SPAWNED" "threads_prog under helgrind" 100 || rc=$?
cat hg.out
grep -q "checked" hg.out || fail "threads_prog did not finish under helgrind (status $rc)"
races=$(grep -c "Possible data race\|lock order" helgrind.log || true)
if ((rc != 0)); then
    grep -A12 "Possible data race\|lock order\|^==.*Thread #" helgrind.log | head -60
    fail "helgrind reported $races races or lock-order problems (status $rc): see helgrind.log"
fi
log "ok helgrind: no race reported"
