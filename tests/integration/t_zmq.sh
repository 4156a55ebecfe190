#!/usr/bin/env bash
# ZeroMQ message hooks (docs/zmq.md) with a plain libzmq program, zmq_peer
# (tests/integration/zmq/zmq_peer.c), run unmodified under the preload
# library on both ends: PUSH/PULL over tcp and ipc at sizes T-1, T, T+1,
# 16 MiB and 64 MiB; multipart messages mixing small and large frames;
# every send and receive call (zmq_send, zmq_send_const, zmq_sendiov,
# zmq_msg_send, zmq_sendmsg, zero-copy zmq_msg_init_data; zmq_recv,
# zmq_msg_recv, zmq_recvmsg, zmq_recviov); zmq_recv truncation; real frames
# that begin with the token or escape header. Every case compares what the
# receiver recorded with what the sender recorded (same_bytes), and counts
# tokens from the interposer's own log lines (message-level tokens only:
# libzmq's TCP connections between two interposed processes are also
# framed by the stream engine, whose tokens PSI_STATS counts too; where no
# large frame goes inline, PSI_STATS is checked to count exactly as many).
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
source "$HERE/zmq/zmq_lib.sh"

T=$MiB
export PSI_THRESHOLD=1M

# The sizes around the threshold, one message each.
zcase sizes tcp push pull 4 -- $((T - 1)) $T $((T + 1)) $((16 * MiB)) $((64 * MiB))
STATS_EXACT=1 zcase sizes_ipc ipc push pull 2 -- $((T + 1)) $((16 * MiB)) 10
zcase sizes_abstract abstract push pull 1 -- $((T - 1)) $((2 * MiB))

# Multipart: small and large frames in one message, empty frames, real
# frames that start with our headers (small: escaped; large: a token).
SAPI=send RAPI=msg zcase multipart tcp push pull 4 -- \
    "100,$((T + 1)),t:hello,$((2 * MiB)),0,$((T - 1))" "$((3 * MiB))" \
    "m100,e100,x100,m$((2 * MiB)),e4,m4,x3"

# Each call variant, both ways.
SAPI=const RAPI=recvmsg STATS_EXACT=1 zcase api_const tcp push pull 2 -- "$((2 * MiB))" "10,$((3 * MiB))"
SAPI=iov RAPI=iov zcase api_iov tcp push pull 2 -- "$((2 * MiB)),10,m50" 5 "e9,$((T + 5))"
SAPI=sendmsg RAPI=recv zcase api_sendmsg tcp push pull 1 -- "$((2 * MiB)),1"
# Zero-copy: zmq_peer checks that every free callback ran exactly once.
SAPI=msg RAPI=msg STATS_EXACT=1 zcase api_zc tcp push pull 3 -- "z$((2 * MiB)),z10" "z$((3 * MiB))" "z$((5 * MiB)),m9"
grep -q "zc_made 4 zc_freed 4" api_zc.s.out || fail "zero-copy: $(cat api_zc.s.out)"

# zmq_recv truncation: the frame's real size comes back, len bytes land.
ZT_TRUNC=1000 SAPI=send RAPI=recv zcase truncate tcp push pull 2 -- \
    "$((2 * MiB))" 500 "m100" "e2000" "$((T + 7)),3"

log "ok t_zmq"
