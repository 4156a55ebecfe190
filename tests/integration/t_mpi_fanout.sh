#!/usr/bin/env bash
# MPI with 4 ranks, the whole mpiexec command preloaded:
#  1. probe-then-receive: ranks 1..3 each send 4 MiB + rank*4 KiB; rank 0
#     loops MPI_Probe(ANY_SOURCE, ANY_TAG), MPI_Get_count, malloc, MPI_Recv.
#     The probed count is the real size, every buffer byte-exact.
#  2. fan-out: rank 0 sends one 64 MiB buffer to ranks 1..3, then lists the
#     store before anyone receives: one object, three references. Then a
#     64 MiB MPI_Bcast. Every buffer byte-exact; the store is empty at the
#     end (each receiver released its own reference).
#  3. policy rules with channel=mpi: `pass` sends nothing as a token; a
#     rule threshold between the ranks' sizes proxies only the larger ones.
#  4. the object behind a token is gone before the receive: MPI_ERR_OTHER.
#  5. MPI_THREAD_MULTIPLE: 4 threads per rank exchanging tokens at once.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
mpi_setup

$MPICC -O1 -Wall -Wextra -Werror -o mpi_calls "$HERE/mpi/mpi_calls.c" -lxxhash ||
    fail "$MPICC could not build mpi/mpi_calls.c"
STORE_DIR=$TEST_TMP/fanstore
mkdir -p "$STORE_DIR"

# run NAME ARGS...: preloaded mpiexec -n 4 in dir NAME; checks that every
# rank finished and every received buffer hashes as sent.
run() {
    local name=$1 rc=0
    shift
    mkdir -p "$name"
    # shellcheck disable=SC2086
    (cd "$name" && preload env ${EXTRA:-} PSI_STATS="$TEST_TMP/$name.stats" PSI_STORE="file://$STORE_DIR" \
        timeout 100 "${MPIEXEC[@]}" -n 4 ../mpi_calls "$@") >"$name.out" 2>"$name.err" || rc=$?
    ((rc == 0)) || { cat "$name"/out.* >&2 || true; fail "$name: mpiexec exited with status $rc"; }
    for r in 0 1 2 3; do
        grep -q "DONE rank=$r failures=0" "$name/out.$r" || fail "$name: rank $r: $(tail -3 "$name/out.$r")"
    done
    # A buffer sent to k ranks is received k times: compare distinct lines.
    sent_is_received "$name" "$name" -u
    left=$(find "$STORE_DIR" -type f | wc -l)
    ((left == 0)) || fail "$name: store holds $left files after the run"
}

# 1.
run probe probe $((4 * MiB))
[[ $(grep -ch '^RECV any' probe/out.0) -eq 3 ]] || fail "probe: rank 0 did not receive 3 buffers"
expect_stat probe.stats tokens_sent -eq 3 "probe: ranks 1..3"
expect_stat probe.stats tokens_resolved -eq 3 "probe: rank 0"
log "ok probe ANY_SOURCE + Get_count + malloc + Recv: real sizes, 3 tokens"

# 2.
run fanout fanout $((64 * MiB)) "$STORE_DIR"
grep -q '^STORE objects=1 refs=3$' fanout/out.0 ||
    fail "fan-out: expected one object and three references, got: $(grep STORE fanout/out.0)"
[[ $(cat fanout/out.* | grep -c '^RECV fanout') -eq 3 ]] || fail "fan-out: not 3 receives"
[[ $(cat fanout/out.* | grep -c '^RECV bcast') -eq 3 ]] || fail "bcast: not 3 receives"
# 3 sends and one Bcast to 3 ranks from rank 0; 6 tokens resolved.
expect_stat fanout.stats tokens_sent -eq 6 "fan-out and Bcast"
expect_stat fanout.stats tokens_resolved -eq 6 "fan-out and Bcast"
expect_stat fanout.stats bytes_resolved -eq $((6 * 64 * MiB)) "fan-out and Bcast"
expect_stat fanout.stats errors -eq 0 "fan-out and Bcast"
log "ok fan-out of 64 MiB to 3 ranks stored once (1 object, 3 references); Bcast 64 MiB"

# 3.
printf 'rule nompi: channel=mpi => pass\n' >pass.policy
EXTRA="PSI_POLICY=$TEST_TMP/pass.policy" run pol_pass probe $((4 * MiB))
expect_stat pol_pass.stats tokens_sent -eq 0 "policy channel=mpi => pass"
# Ranks send 4 MiB + rank * 4 KiB: 4100, 4104, 4108 KiB.
printf 'rule mpi_big: channel=mpi => proxy threshold=4104KiB\n' >big.policy
EXTRA="PSI_POLICY=$TEST_TMP/big.policy" run pol_big probe $((4 * MiB))
expect_stat pol_big.stats tokens_sent -eq 2 "policy channel=mpi threshold=4104KiB"
expect_stat pol_big.stats tokens_resolved -eq 2 "policy channel=mpi threshold=4104KiB"
log "ok policy: channel=mpi pass, and a rule threshold"

# 4. The object behind a token vanishes before the receive (store emptied
# between send and receive): MPI_ERR_OTHER through the error handler,
# a log line naming the object, errors counted; no hang, no garbage.
mkdir -p lost
(cd lost && preload env PSI_STATS="$TEST_TMP/lost.stats" PSI_STORE="file://$STORE_DIR" \
    PSI_STORE_RETRIES=0 timeout 60 "${MPIEXEC[@]}" -n 2 ../mpi_calls lost $((2 * MiB)) "$STORE_DIR") \
    >lost.out 2>lost.err || fail "lost: mpiexec failed: $(tail -3 lost.err)"
grep -q '^LOST class=.* other=1$' lost/out.1 || fail "lost object: $(cat lost/out.1)"
grep -q "not resolved" lost.err || fail "lost object: no log line: $(tail -3 lost.err)"
expect_stat lost.stats errors -eq 1 "lost object"
log "ok a token whose object is gone: MPI_ERR_OTHER, logged"

# 5. MPI_THREAD_MULTIPLE: 4 threads per rank exchanging 2 MiB messages on
# their own tags with Isend/Irecv/Waitall at once (the request table is
# shared): every buffer byte-exact; 2 ranks x 4 threads x 8 = 64 tokens.
mkdir -p thr
(cd thr && preload env PSI_STATS="$TEST_TMP/thr.stats" PSI_STORE="file://$STORE_DIR" \
    timeout 100 "${MPIEXEC[@]}" -n 2 ../mpi_calls threads $((2 * MiB))) >thr.out 2>thr.err ||
    fail "threads: mpiexec failed: $(tail -3 thr.err)"
for r in 0 1; do
    grep -q "DONE rank=$r failures=0" "thr/out.$r" || fail "threads: rank $r: $(tail -3 "thr/out.$r")"
done
sent_is_received thr thr
[[ $(wc -l <thr.recv) -eq 64 ]] || fail "threads: $(wc -l <thr.recv) buffers, expected 64"
expect_stat thr.stats tokens_sent -eq 64 "threads"
expect_stat thr.stats tokens_resolved -eq 64 "threads"
log "ok MPI_THREAD_MULTIPLE: 4 threads per rank, 64 tokens, byte-exact"
