# shellcheck shell=bash
# Helpers for the t_zmq*.sh tests, sourced after lib.sh.

need cc
ZP=$TEST_TMP/zmq_peer
cc -O2 -Wall -o "$ZP" "$HERE/zmq/zmq_peer.c" -lzmq || fail "cannot build zmq_peer (libzmq3-dev)"

# zmq_tokens ERRFILE: frames the interposer sent as tokens (its debug log).
zmq_tokens() { count_psi_lines "$1" 'zmq: [0-9]+-byte frame sent as token'; }
zmq_resolved() { count_psi_lines "$1" 'zmq: resolved token'; }

# zcase NAME TRANSPORT SENDTYPE RECVTYPE TOKENS -- MSG...
# The receiving peer binds (tcp on a free port, ipc in the test dir, or
# an abstract-namespace ipc name),
# the sending peer connects and sends every MSG (zmq_peer's syntax). Both
# record what they saw; the records must match byte for byte, and exactly
# TOKENS frames must have travelled as tokens (sent and resolved).
# Settings from the environment: SAPI/RAPI (call variants), SPRE/RPRE
# (1: preloaded, the default; 0: plain), SENV/RENV (extra env words for
# each side), SROLE/RROLE (client/echo for request-reply: the replies
# must equal the requests, BACK of their frames as tokens), RESOLVED (the
# receiver resolves fewer than were sent: a PUB's filtered messages),
# STATS_EXACT=1 (no large frame inline: PSI_STATS must count exactly the
# tokens), ZT_* for both.
zcase() {
    local name=$1 tr=$2 stype=$3 rtype=$4 want=$5 ep n=0 m
    shift 6
    for m in "$@"; do
        [[ $m == t:skip* || $m == T:skip* ]] || n=$((n + 1))
    done
    case $tr in
    tcp) ep=tcp://127.0.0.1:$(free_port) ;;
    ipc) ep=ipc://$TEST_TMP/$name.ipc ;;
    abstract) ep=ipc://@psi-test-$$-$name ;;
    *) fail "zcase: unknown transport $tr" ;;
    esac
    local rp=() sp=()
    [[ ${RPRE:-1} == 1 ]] && rp=(preload)
    [[ ${SPRE:-1} == 1 ]] && sp=(preload)
    # shellcheck disable=SC2086
    spawn "$name.r.out" "$name.r.err" "${rp[@]}" env PSI_LOG=debug \
        PSI_STATS="$TEST_TMP/$name.r.stats" ${RENV:-} \
        "$ZP" "${RROLE:-recv}" "$rtype" "bind:$ep" "${RAPI:-msg}" "$name.r.rec" "$n"
    local rpid=$SPAWNED
    wait_file "$name.r.rec.ready"
    # shellcheck disable=SC2086
    spawn "$name.s.out" "$name.s.err" "${sp[@]}" env PSI_LOG=debug \
        PSI_STATS="$TEST_TMP/$name.s.stats" ${SENV:-} \
        "$ZP" "${SROLE:-send}" "$stype" "connect:$ep" "${SAPI:-send}" "$name.s.rec" "$@"
    local spid=$SPAWNED
    await_ok "$spid" "$name: sender"
    await_ok "$rpid" "$name: receiver"
    same_bytes "$name.s.rec" "$name.r.rec" "$name"
    local sent got
    sent=$(zmq_tokens "$name.s.err")
    got=$(zmq_resolved "$name.r.err")
    [[ $sent == "$want" ]] || fail "$name: sender sent $sent tokens, expected $want"
    [[ $got == "${RESOLVED:-$want}" ]] ||
        fail "$name: receiver resolved $got tokens, expected ${RESOLVED:-$want}"
    if [[ ${STATS_EXACT:-0} == 1 ]]; then
        # no large frame went inline, so the stream engine proxied nothing:
        # PSI_STATS counts exactly the message-level tokens
        expect_stat "$name.s.stats" tokens_sent -eq "$want" "$name sender"
        expect_stat "$name.r.stats" tokens_resolved -eq "${RESOLVED:-$want}" "$name receiver"
    fi
    if [[ ${SROLE:-send} == client ]]; then
        # request-reply: the echo sent every request back; BACK tokens
        same_bytes "$name.s.rec" "$name.s.rec.reply" "$name replies"
        sent=$(zmq_tokens "$name.r.err")
        got=$(zmq_resolved "$name.s.err")
        [[ $sent == "${BACK:-0}" ]] || fail "$name: echo sent $sent tokens, expected ${BACK:-0}"
        [[ $got == "${BACK:-0}" ]] || fail "$name: client resolved $got tokens, expected ${BACK:-0}"
    fi
    if [[ ${SPRE:-1} == 1 ]]; then expect_stat "$name.s.stats" errors -eq 0 "$name sender"; fi
    if [[ ${RPRE:-1} == 1 ]]; then expect_stat "$name.r.stats" errors -eq 0 "$name receiver"; fi
    log "ok $name: $n messages, $sent tokens"
}
