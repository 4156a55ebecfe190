#!/usr/bin/env bash
# MPI benchmark (docs/mpi.md), printed as markdown tables, plain MPI and
# preloaded in the same run (the whole mpiexec command preloaded):
#  1. ping-pong bandwidth between 2 ranks, 64 KiB .. 256 MiB (MB/s, the
#     better of PSI_BENCH_REPS runs).
#  2. fan-out: rank 0 sends one 64 MiB buffer to each of 3 other ranks
#     (seconds per fan-out), REPS rounds.
#  3. 64-byte ping-pong latency (what the wrappers cost a small message).
# Preloaded twice: through the file store in /dev/shm and through the shm
# pool (PSI_STORE=shm://, warm after the first run); default threshold
# 1 MiB unless PSI_THRESHOLD is set.
#
#   tests/bench/mpi.sh            (PSI_BENCH_REPS: runs per case, default 3)
#   PSI_BENCH_MPI=openmpi tests/bench/mpi.sh     (Open MPI; default mpich)
set -euo pipefail
unset LD_PRELOAD

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LIB=${PSI_TEST_LIB:-$ROOT/build/libpsinterpose.so}
REPS=${PSI_BENCH_REPS:-3}
SIZES="65536 262144 1048576 4194304 16777216 67108864 268435456"
FAN=$((64 * 1024 * 1024))

[[ -f $LIB ]] || { echo "bench: $LIB does not exist: run 'make all' first" >&2; exit 1; }
# Full Debian names: with both MPIs installed, plain mpicc/mpiexec are
# whichever update-alternatives prefers.
case ${PSI_BENCH_MPI:-mpich} in
mpich) NAME=MPICH MPICC=mpicc.mpich MPIEXEC=(mpiexec.mpich) PKG="mpich libmpich-dev" ;;
openmpi)
    NAME="Open MPI" MPICC=mpicc.openmpi PKG="openmpi-bin libopenmpi-dev"
    MPIEXEC=(mpirun.openmpi --allow-run-as-root --oversubscribe) ;;
*) echo "bench: PSI_BENCH_MPI=$PSI_BENCH_MPI: expected mpich or openmpi" >&2; exit 1 ;;
esac
if ! command -v "$MPICC" >/dev/null || ! command -v "${MPIEXEC[0]}" >/dev/null; then
    echo "bench: $MPICC/${MPIEXEC[0]} not found (Debian: $PKG)" >&2
    exit 1
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/psi-mpibench.XXXXXX")
store=$(mktemp -d /dev/shm/psi-mpibench.XXXXXX)
pool=/dev/shm/psi-mpibench-pool-$$
trap 'rm -rf "$tmp" "$store" "$pool"' EXIT
export PSI_RUNTIME_DIR=$tmp/run
BIN=$tmp/mpi_bench
$MPICC -O2 -Wall -Wextra -Werror -o "$BIN" "$HERE/mpi_bench.c"

# run CASE ARGS...: one mpiexec; CASE plain | preload.
run() {
    local case=$1 np=$2
    shift 2
    if [[ $case == plain ]]; then
        "${MPIEXEC[@]}" -n "$np" "$BIN" "$@"
    elif [[ $case == shm ]]; then
        env LD_PRELOAD="$LIB" PSI_STORE="shm://$pool" PSI_STATS="$tmp/$case.stats" \
            "${MPIEXEC[@]}" -n "$np" "$BIN" "$@"
    else
        env LD_PRELOAD="$LIB" PSI_STORE="file://$store" PSI_STATS="$tmp/$case.stats" \
            "${MPIEXEC[@]}" -n "$np" "$BIN" "$@"
    fi
}

# best FILE SIZE COL max|min: the best value for SIZE over the runs in FILE.
best() {
    awk -v s="$2" -v how="$3" '$2 == s { if (b == "" || (how == "max" ? $3 > b : $3 < b)) b = $3 }
        END { print b }' "$1"
}

for ((r = 0; r < REPS; r++)); do
    for c in plain preload shm; do
        # shellcheck disable=SC2086
        run "$c" 2 pingpong $SIZES >>"$tmp/pp.$c"
        run "$c" 4 fanout "$FAN" 5 >>"$tmp/fan.$c"
        run "$c" 2 latency 64 100000 >>"$tmp/lat.$c"
    done
done

human() {
    local b=$1
    if ((b >= 1048576)); then echo "$((b / 1048576)) MiB"; else echo "$((b / 1024)) KiB"; fi
}

echo "### $NAME ping-pong bandwidth (MB/s, best of $REPS; threshold ${PSI_THRESHOLD:-1 MiB})"
echo
echo "| size | plain $NAME | preloaded, file store | / plain | preloaded, shm pool | / plain |"
echo "|---:|---:|---:|---:|---:|---:|"
for s in $SIZES; do
    p=$(best "$tmp/pp.plain" "$s" max)
    q=$(best "$tmp/pp.preload" "$s" max)
    m=$(best "$tmp/pp.shm" "$s" max)
    printf '| %s | %s | %s | %s | %s | %s |\n' "$(human "$s")" "$p" "$q" \
        "$(awk -v a="$q" -v b="$p" 'BEGIN { printf "%.2f", a / b }')" "$m" \
        "$(awk -v a="$m" -v b="$p" 'BEGIN { printf "%.2f", a / b }')"
done
echo
echo "### $NAME fan-out: one 64 MiB buffer from rank 0 to 3 ranks (s per fan-out, best of $REPS)"
echo
echo "| plain $NAME | file store | speed-up | shm pool | speed-up |"
echo "|---:|---:|---:|---:|---:|"
p=$(best "$tmp/fan.plain" "$FAN" min)
q=$(best "$tmp/fan.preload" "$FAN" min)
m=$(best "$tmp/fan.shm" "$FAN" min)
printf '| %s | %s | %s | %s | %s |\n' "$p" "$q" "$(awk -v a="$p" -v b="$q" 'BEGIN { printf "%.2f", a / b }')" \
    "$m" "$(awk -v a="$p" -v b="$m" 'BEGIN { printf "%.2f", a / b }')"
echo
echo "### $NAME 64-byte ping-pong latency (µs per round trip, best of $REPS)"
echo
echo "| plain $NAME | preloaded | preloaded / plain |"
echo "|---:|---:|---:|"
p=$(best "$tmp/lat.plain" 64 min)
q=$(best "$tmp/lat.preload" 64 min)
printf '| %s | %s | %s |\n' "$p" "$q" "$(awk -v a="$q" -v b="$p" 'BEGIN { printf "%.3f", a / b }')"
echo
left=$(find "$store" -type f | wc -l)
echo "store files left after the runs: $left; tokens sent (preloaded, all runs): $(
    awk -F'"tokens_sent":' 'NF > 1 { split($2, a, ","); t += a[1] } END { print t + 0 }' "$tmp/preload.stats")"
