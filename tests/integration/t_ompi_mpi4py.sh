#!/usr/bin/env bash
# A language binding: Debian's python3-mpi4py (built on Open MPI), an
# unmodified script (mpi/mpi4py_prog.py) under `mpirun -n 3`, the whole
# mpirun command preloaded. mpi4py's extension module brings libmpi in
# from inside Python, so the hooks find Open MPI's functions at run time.
# Sizes T-1, T and 16 MiB (T = 64 KiB); per size a fan-out of one buffer to
# 2 ranks received by probe + allocate + Recv, a pickled bytes object
# (mpi4py receives it with MPI_Mprobe + MPI_Mrecv), an Irecv posted before
# the Isend, and a Bcast.
#  1. without preload: the reference hashes.
#  2. preloaded: every received buffer hashes as sent and as in run 1;
#     tokens: 6 per size at or above T (fan-out 2, pickle 1, Isend 1,
#     Bcast 2), and 1 at T-1 (the pickle of T-1 bytes is larger than T);
#     every token resolved; the store is empty afterwards.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
PSI_TEST_MPI=openmpi mpi_setup
SYSPY=/usr/bin/python3
"$SYSPY" -c 'import mpi4py' 2>/dev/null ||
    fail "$SYSPY cannot import mpi4py (apt-get install python3-mpi4py)"

T=$((64 * KiB))
SIZES="$((T - 1)) $T $((16 * MiB))"

# run NAME [preload]: mpirun -n 3 in dir NAME; checks every rank finished,
# every received buffer hashes as sent; RECV lines, sorted, in NAME.recv.
run() {
    local name=$1 rc=0
    mkdir -p "$name"
    local cmd=(timeout 100 "${MPIEXEC[@]}" -n 3 "$SYSPY" "$HERE/mpi/mpi4py_prog.py")
    if [[ ${2:-} == preload ]]; then
        # shellcheck disable=SC2086
        (cd "$name" && preload env PSI_THRESHOLD=$T PSI_STATS="$TEST_TMP/$name.stats" \
            "${cmd[@]}" $SIZES) >"$name.out" 2>"$name.err" || rc=$?
    else
        # shellcheck disable=SC2086
        (cd "$name" && "${cmd[@]}" $SIZES) >"$name.out" 2>"$name.err" || rc=$?
    fi
    ((rc == 0)) || { cat "$name"/out.* >&2 || true; fail "$name: mpirun exited with status $rc"; }
    local r
    for r in 0 1 2; do
        grep -q "DONE rank=$r bad=0" "$name/out.$r" || fail "$name: rank $r: $(tail -3 "$name/out.$r")"
    done
    sent_is_received "$name" "$name" -u
    # 4 cases x 3 sizes, each received at least once
    [[ $(wc -l <"$name.recv") -eq 12 ]] || fail "$name: $(wc -l <"$name.recv") distinct buffers, expected 12"
}

run plain
log "ok plain mpirun + mpi4py: $(wc -l <plain.recv) buffers"

run pre preload
diff plain.recv pre.recv >/dev/null || fail "preloaded run received other bytes than the plain one"
expect_stat pre.stats tokens_sent -eq 13 "mpi4py"
expect_stat pre.stats tokens_resolved -eq 13 "mpi4py"
expect_stat pre.stats errors -eq 0 "mpi4py"
left=$(find "$TEST_TMP/store" -type f 2>/dev/null | wc -l)
((left == 0)) || fail "store holds $left files after every token was resolved"
log "ok mpi4py preloaded: 13 tokens, every buffer byte-exact, store empty"
