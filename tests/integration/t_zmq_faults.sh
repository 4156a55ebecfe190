#!/usr/bin/env bash
# ZeroMQ hooks under a policy and under faults (docs/zmq.md §5): a
# channel=zmq rule decides per frame; a store that refuses the object makes
# the frame go inline (bytes exact, inline_fallbacks counted); a token the
# receiver cannot resolve fails that receive with EIO and one log line; a
# non-blocking send that libzmq refuses stores nothing; threads that open
# and close sockets concurrently keep their frames apart.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
source "$HERE/zmq/zmq_lib.sh"

export PSI_THRESHOLD=1M
M2=$((2 * MiB))
M3=$((3 * MiB))

# Policy: zmq frames up to 2.5 MB pass inline, larger ones are proxied;
# a tcp-only rule does not apply to zmq frames.
cat >zmq.policy <<'POL'
rule tcp-only: channel=tcp => pass
rule small-zmq: channel=zmq size=..2500000 => pass
rule big-zmq: channel=zmq => proxy lifetime=ttl ttl=60s
POL
SENV="PSI_POLICY=$TEST_TMP/zmq.policy" zcase policy tcp push pull 2 -- "$M2,$M3" "$((4 * MiB))" "m$M2"

# A store that cannot open: every frame inline, nothing lost.
SENV="PSI_STORE=file:///proc/psi-no-such-dir" zcase store_down tcp push pull 0 -- "$M2,10" "m$M3"
expect_stat store_down.s.stats inline_fallbacks -ge 1 "store down"

# The receiver looks in another store: the token cannot be resolved.
ep=tcp://127.0.0.1:$(free_port)
mkdir -p other
spawn lost.r.out lost.r.err preload env PSI_LOG=debug PSI_STORE="file://$TEST_TMP/other" \
    PSI_STORE_RETRIES=1 PSI_STATS="$TEST_TMP/lost.r.stats" "$ZP" recv pull "bind:$ep" msg lost.r.rec 1
rpid=$SPAWNED
wait_file lost.r.rec.ready
spawn lost.s.out lost.s.err preload "$ZP" send push "connect:$ep" send lost.s.rec "$M2"
spid=$SPAWNED
await_ok "$spid" "lost: sender"
rc=0
await "$rpid" "lost: receiver" || rc=$?
((rc == 2)) || fail "lost: receiver exited $rc, expected 2 (a failed receive)"
grep -q "zmq_msg_recv: Input/output error" lost.r.err || fail "lost: no EIO: $(tail -3 lost.r.err)"
[[ $(count_psi_lines lost.r.err "zmq: cannot resolve token") == 1 ]] || fail "lost: no log line"
expect_stat lost.r.stats errors -eq 1 "lost"
log "ok lost token: EIO"

# ZMQ_DONTWAIT until EAGAIN: the refused frame is refused before its payload
# is stored (as many frames stored as sent), and every frame sent arrives.
cc -O2 -Wall -o nowait "$HERE/zmq/zmq_nowait.c" -lzmq || fail "cannot build zmq_nowait"
preload env PSI_LOG=debug PSI_THRESHOLD=1K ./nowait "tcp://127.0.0.1:$(free_port)" 2048 \
    >nowait.out 2>nowait.err || fail "zmq_nowait failed: $(cat nowait.out)"
sent=$(sed -n 's/^sent //p' nowait.out)
[[ $(zmq_tokens nowait.err) == "$sent" ]] ||
    fail "nowait: $sent frames sent, $(zmq_tokens nowait.err) stored"
((sent > 1)) || fail "nowait: only $sent frames before EAGAIN"
log "ok nowait: $sent tokens, EAGAIN without a put"

# Threads opening, using and closing sockets at once (the socket table is
# read without a lock): every byte checked by the program, every large
# frame a token, resolved once.
cc -O2 -Wall -pthread -o zthreads "$HERE/zmq/zmq_threads.c" -lzmq || fail "cannot build zmq_threads"
preload env PSI_LOG=debug PSI_STATS="$TEST_TMP/threads.stats" ./zthreads \
    "tcp://127.0.0.1:$(free_port)" 4 25 $M2 >threads.out 2>threads.err ||
    fail "zmq_threads failed: $(cat threads.out) $(grep -v debug threads.err | tail -3)"
grep -qx "ok 100" threads.out || fail "zmq_threads: $(cat threads.out)"
[[ $(zmq_tokens threads.err) == 100 && $(zmq_resolved threads.err) == 100 ]] ||
    fail "threads: $(zmq_tokens threads.err) tokens sent, $(zmq_resolved threads.err) resolved"
expect_stat threads.stats errors -eq 0 "threads"
log "ok threads: 4 x 25 sockets, 100 tokens"

log "ok t_zmq_faults"
