#!/usr/bin/env bash
# MPI point-to-point through the interposer: the whole `mpiexec -n 2`
# command preloaded, every wrapped call (mpi/mpi_calls.c p2p: Send, Ssend,
# Bsend, Rsend, Isend, Issend, Recv, Irecv posted before the send with
# ANY_SOURCE/ANY_TAG, Sendrecv, Sendrecv_replace, Probe ANY_SOURCE + malloc,
# Iprobe, Mprobe/Mrecv, Improbe/Imrecv, Wait, Test, Waitall, Waitany,
# Waitsome, Testall, Testany, Testsome, Send_c/Recv_c, Isend_c/Irecv_c,
# a vector datatype, truncation, Bcast) at sizes around the threshold
# T = 64 KiB (256 = a token message's size, 300, T-1, T, T+1, 4 MiB).
#  1. without preload: the program's own checks pass (reference hashes).
#  2. preloaded: every received buffer hashes as sent (and as in run 1),
#     truncation is MPI_ERR_TRUNCATE, tokens sent = tokens resolved = the
#     count of sends at or above T, and the store is empty afterwards.
#  3. preloaded with PSI_DISABLE=1: no token, same bytes.
# Under MPICH by default; t_ompi_p2p runs it under Open MPI 4.1
# (PSI_TEST_MPI=openmpi: MPI-3.1, so without the _c and Isendrecv cases).
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
mpi_setup

T=$((64 * KiB))
SIZES="256 300 $((T - 1)) $T $((T + 1)) $((4 * MiB))"
$MPICC -O1 -Wall -Wextra -Werror -o mpi_calls "$HERE/mpi/mpi_calls.c" -lxxhash ||
    fail "$MPICC could not build mpi/mpi_calls.c"

# run NAME [ENV...]: mpiexec -n 2 in dir NAME, the whole command preloaded
# unless NAME is plain; the RECV lines, sorted, go to NAME.recv.
run() {
    local name=$1
    shift
    mkdir -p "$name"
    local rc=0
    if [[ $name == plain ]]; then
        # shellcheck disable=SC2086
        (cd "$name" && timeout 100 "${MPIEXEC[@]}" -n 2 ../mpi_calls p2p $SIZES) >"$name.out" 2>"$name.err" || rc=$?
    else
        # shellcheck disable=SC2086
        (cd "$name" && preload env PSI_THRESHOLD=$T PSI_STATS="$TEST_TMP/$name.stats" "$@" \
            timeout 100 "${MPIEXEC[@]}" -n 2 ../mpi_calls p2p $SIZES) >"$name.out" 2>"$name.err" || rc=$?
    fi
    ((rc == 0)) || { cat "$name"/out.* >&2 || true; fail "$name: mpiexec exited with status $rc"; }
    grep -q 'DONE rank=1 failures=0' "$name/out.1" || fail "$name: rank 1 did not finish cleanly"
    # Every receive matches a send (name, size, xxh3); Bcast is received
    # by rank 0 only, sent by rank 1, so both sets are the same.
    sent_is_received "$name" "$name"
    # EVEN buffers received per size, ODD at odd sizes (no MPI_INT cases)
    local want=$((4 * EVEN + 2 * ODD)) got
    got=$(wc -l <"$name.recv")
    ((got == want)) || fail "$name: $got buffers received, expected $want"
    [[ $(grep -h "^TRUNC" "$name"/out.* | grep -c " 1$") -eq 6 ]] ||
        fail "$name: truncation did not give MPI_ERR_TRUNCATE: $(grep -h TRUNC "$name"/out.*)"
}

# Buffers per size (even sizes, odd sizes): the MPI-4 cases are 11 of
# them (2 large-count, Isendrecv and Isendrecv_replace 2 each, 1
# probe-then-Isendrecv, Ssend_c 1, Sendrecv_c 2, Bcast_c 1).
EVEN=54 ODD=52
((MPI4)) || { EVEN=$((EVEN - 11)) ODD=$((ODD - 11)); }

# 1.
run plain
log "ok plain mpiexec: $(wc -l <plain.recv) buffers checked"

# 2. Sends at or above T: 54 per size (Send..Issend 6, Sendrecv and
# Sendrecv_replace 2 each, 4 probe forms, 18 in the multi-completion cases,
# 2 large-count, truncation 1, Bcast 1, Ibsend/Irsend 2, Isendrecv and
# Isendrecv_replace 2 each, persistent 2, probe-then-receive 4, Ssend_c 1,
# Sendrecv_c 2, Bcast_c 1, as MPI_INT 1, contiguous type 1), 52 at T+1 (no
# MPI_INT cases at odd sizes), plus the vector type at 4 MiB (its packed
# 2 MiB; at T and T+1 the packed half is below T).
run pre
diff plain.recv pre.recv >/dev/null || fail "preloaded run received other bytes than the plain one"
expect_stat pre.stats tokens_sent -eq $((EVEN + ODD + EVEN + 1)) "preloaded mpi_calls"
expect_stat pre.stats tokens_resolved -eq "$(tokens_sent pre.stats)" "preloaded mpi_calls"
expect_stat pre.stats errors -eq 0 "preloaded mpi_calls"
expect_stat pre.stats inline_fallbacks -eq 0 "preloaded mpi_calls"
left=$(find "$TEST_TMP/store" -type f 2>/dev/null | wc -l)
((left == 0)) || fail "store holds $left files after every token was resolved: $(find "$TEST_TMP/store" -type f | head -3)"
log "ok preloaded: $(tokens_sent pre.stats) tokens, every buffer byte-exact, store empty"

# 3.
run off PSI_DISABLE=1
diff plain.recv off.recv >/dev/null || fail "PSI_DISABLE=1 run received other bytes"
expect_stat off.stats tokens_sent -eq 0 "PSI_DISABLE=1"
log "ok PSI_DISABLE=1: no token"
