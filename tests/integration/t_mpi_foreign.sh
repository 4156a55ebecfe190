#!/usr/bin/env bash
# A program whose MPI library the interposer cannot use runs preloaded: a
# stand-in with Open MPI's pointer handles and its ompi_mpi_comm_world
# (mpi/fake_ompi.c), but without the PMPI_ helpers the logic binds, so
# binding fails and every call passes through, as it does for an ABI the
# library was built without. Every hooked call reaches the program's own
# library with every argument bit intact (MPI_Send, PMPI_Send, a
# 12-argument MPI_Sendrecv with stack arguments, MPI_Waitall, MPI_Bcast_c),
# nothing is proxied, and the log says why.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

cc -O1 -Wall -Wextra -Werror -Wno-unused-parameter -shared -fPIC -o libfakempi.so "$HERE/mpi/fake_ompi.c" ||
    fail "cannot build the fake MPI library"
cc -O1 -Wall -Wextra -Werror -o foreign_prog "$HERE/mpi/foreign_prog.c" -L. -lfakempi \
    -Wl,-rpath,"$TEST_TMP" || fail "cannot build foreign_prog"

want="101 102 103 104 105"
got=$(./foreign_prog)
[[ $got == "$want" ]] || fail "without preload: '$got', expected '$want'"
got=$(preload env PSI_THRESHOLD=1 PSI_STATS="$TEST_TMP/foreign.stats" ./foreign_prog 2>foreign.err)
[[ $got == "$want" ]] || fail "preloaded: '$got', expected '$want' ($(cat foreign.err))"
expect_stat foreign.stats tokens_sent -eq 0 "foreign ABI"
grep -q 'not found in this Open MPI library; MPI calls pass through untouched' foreign.err ||
    fail "no log line saying the MPI calls pass through: $(cat foreign.err)"
log "ok another MPI ABI passes through bit for bit"
