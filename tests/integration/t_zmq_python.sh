#!/usr/bin/env bash
# pyzmq (the system python3-zmq, libzmq 4.3) on both ends, preloaded:
# PUSH/PULL over tcp with small, look-alike and large frames, through
# pyzmq's copying and zero-copy paths. pyzmq loads libzmq as an extension
# module's dependency (RTLD_LOCAL), out of RTLD_NEXT's reach: the hooks
# must find it anyway. Frame sizes and sha256 must match; 3 frames travel
# as tokens (2 MiB; 16 MiB inside a multipart message; 3 MiB zero-copy).
# A plain pyzmq sender's look-alike frames reach the preloaded receiver
# unchanged.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

SYSPY=/usr/bin/python3
"$SYSPY" -c 'import zmq' 2>/dev/null || fail "$SYSPY cannot import zmq (apt-get install python3-zmq)"
export PSI_THRESHOLD=1M

run_py() { # NAME SENDER_PRELOAD(0/1) TOKENS
    local name=$1 spre=$2 want=$3 ep sp=()
    ep=tcp://127.0.0.1:$(free_port)
    ((spre)) && sp=(preload)
    spawn "$name.r.out" "$name.r.err" preload env PSI_LOG=debug PSI_STATS="$TEST_TMP/$name.r.stats" \
        "$SYSPY" "$HERE/zmq/zpy.py" recv "$ep" "$name.r.rec" 5
    local rpid=$SPAWNED
    wait_file "$name.r.rec.ready"
    spawn "$name.s.out" "$name.s.err" "${sp[@]}" env PSI_LOG=debug \
        "$SYSPY" "$HERE/zmq/zpy.py" send "$ep" "$name.s.rec"
    local spid=$SPAWNED
    await_ok "$spid" "$name: python sender"
    await_ok "$rpid" "$name: python receiver"
    same_bytes "$name.s.rec" "$name.r.rec" "$name"
    [[ $(count_psi_lines "$name.s.err" 'zmq: [0-9]+-byte frame sent as token') == "$want" ]] ||
        fail "$name: expected $want tokens sent"
    [[ $(count_psi_lines "$name.r.err" 'zmq: resolved token') == "$want" ]] ||
        fail "$name: expected $want tokens resolved"
    expect_stat "$name.r.stats" errors -eq 0 "$name receiver"
    log "ok $name: $want tokens"
}

run_py both 1 3
run_py plain_sender 0 0
log "ok t_zmq_python"
