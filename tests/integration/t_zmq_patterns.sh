#!/usr/bin/env bash
# ZeroMQ socket patterns and the detection rule (docs/zmq.md §2, §3), with
# the plain libzmq program zmq_peer run unmodified: REQ/REP and
# DEALER/ROUTER round trips (auto: the bound side answers inline; on: both
# directions as tokens), PUB/SUB with a subscription prefix (the first
# frame, matched against subscriptions, is never replaced; filtered
# messages never arrive), and interop with a plain peer on either side
# (no tokens, exact bytes, real frames that start with our headers
# untouched), PSI_ZMQ=off. Byte-exact on every message (same_bytes).
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
source "$HERE/zmq/zmq_lib.sh"

T=$MiB
export PSI_THRESHOLD=1M
M2=$((2 * MiB))
M3=$((3 * MiB))

# REQ/REP. auto: REQ connected to an interposed REP sends tokens; the REP
# is bound, so it cannot vouch for its peers and replies inline.
SROLE=client RROLE=echo BACK=0 zcase reqrep tcp req rep 2 -- "$M2,10" "m100" "$M3"
SROLE=client RROLE=echo BACK=2 SENV=PSI_ZMQ=on RENV=PSI_ZMQ=on \
    zcase reqrep_on tcp req rep 2 -- "$M2,10" "m100" "$M3"
SROLE=client RROLE=echo BACK=0 SAPI=msg RAPI=recv ZT_RAPI=iov \
    zcase reqrep_ipc ipc req rep 1 -- "e10,$M2"

# DEALER/ROUTER: the ROUTER's routing-id frame is libzmq's, never ours.
SROLE=client RROLE=echo BACK=3 SENV=PSI_ZMQ=on RENV=PSI_ZMQ=on \
    zcase dealer_router tcp dealer router 3 -- "$M2,m10" "t:hi,$M3" "x20,$((T + 1))"

# PUB/SUB (an XPUB publisher, so it can wait for the subscription): the
# subscriber binds, the publisher connects to it and so may send tokens in
# auto mode. A message's first frame is matched against subscriptions and
# stays as it is, however large; later frames are proxied. Messages
# starting "skip" are filtered out and never recorded (the publisher does
# not know its subscriptions: a filtered large frame was still stored,
# with a TTL lifetime, and is left to the TTL).
RESOLVED=2 RENV=ZT_SUB=topicA zcase pubsub tcp xpub sub 3 -- \
    "t:topicA,$M2" "T:topicA:$M3" "t:skipB,$M2" "t:topicA-x,m10,$M3,e5" "T:skipC:$M2"
# The same with a plain PUB, which cannot see its subscribers: it sends a
# handshake message until the subscriber has heard one (ZT_SYNC, never
# recorded), then its messages. A message's first frame stays as it is; the
# filtered "skipB" frame was stored (TTL) but never resolved.
RESOLVED=1 SENV="ZT_SYNC=$TEST_TMP/pubp.sync" RENV="ZT_SUB=topicA ZT_SYNC=$TEST_TMP/pubp.sync" \
    zcase pubsub_plain tcp pub sub 2 -- "t:topicA,$M2" "T:topicA:$M3" "t:skipB,$M2"
# A bound publisher in auto mode cannot vouch for its subscribers: inline.
ep=tcp://127.0.0.1:$(free_port)
spawn pubb.s.out pubb.s.err preload env PSI_LOG=debug "$ZP" send xpub "bind:$ep" send pubb.s.rec \
    "t:topicA,$M2" "t:topicB,m40,e40"
spid=$SPAWNED
wait_file pubb.s.rec.ready
spawn pubb.r.out pubb.r.err preload env PSI_LOG=debug ZT_SUB=topic "$ZP" recv sub "connect:$ep" msg \
    pubb.r.rec 2
rpid=$SPAWNED
await_ok "$spid" "bound publisher"
await_ok "$rpid" "subscriber"
same_bytes pubb.s.rec pubb.r.rec "bound publisher"
[[ $(zmq_tokens pubb.s.err) == 0 ]] || fail "a bound publisher in auto mode sent tokens"
log "ok bound publisher, auto: inline"

# Interop: a plain sender's frames reach a preloaded receiver exactly as
# sent, even those that look like tokens.
SPRE=0 zcase plain_sender tcp push pull 0 -- "m100,e100,x100,$M2" "m$M2" "m$((2 * T + 40))"
SPRE=0 RAPI=recv zcase plain_sender_recv tcp push pull 0 -- "m100,e9" "m$M3"
# A preloaded sender connected to a plain receiver never sends tokens and
# never escapes (the listener is not in the registry).
RPRE=0 zcase plain_receiver tcp push pull 0 -- "m100,e100,$M2" "$M3"
RPRE=0 SROLE=client RROLE=echo zcase plain_rep tcp req rep 0 -- "m100,$M2"
# PSI_ZMQ=off: message hooks never proxy (inline, exact).
SENV=PSI_ZMQ=off zcase zmq_off tcp push pull 0 -- "m100,$M2" "$M3"

log "ok t_zmq_patterns"
