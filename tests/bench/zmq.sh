#!/usr/bin/env bash
# ZeroMQ PUSH/PULL throughput (docs/zmq.md §6), printed as a markdown table:
# frames of 64 KiB to 64 MiB over TCP loopback, ~TOTAL bytes per run, the
# same program (zmq_tput.c) plain, preloaded on both ends (frames as
# tokens, PSI_THRESHOLD=64K so every size is proxied), and preloaded with
# PSI_ZMQ=off (message hooks off; libzmq's TCP connection still goes
# through the stream engine). Cases run interleaved, REPS times each; the
# table shows the median receiver-side time. A second table: SMALL frames
# of 64 bytes (the cost of the hooks on messages they never touch), plain,
# preloaded, and PSI_DISABLE=1.
#
#   tests/bench/zmq.sh        (PSI_BENCH_TOTAL bytes per run, PSI_BENCH_REPS,
#                              PSI_BENCH_SMALL frames of 64 bytes)
set -euo pipefail
unset LD_PRELOAD

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LIB=${PSI_TEST_LIB:-$ROOT/build/libpsinterpose.so}
TOTAL=${PSI_BENCH_TOTAL:-$((512 * 1024 * 1024))}
REPS=${PSI_BENCH_REPS:-3}
SMALL=${PSI_BENCH_SMALL:-1000000}
PY=$(python3 -c 'import sys; print(sys.executable)')

[[ -f $LIB ]] || { echo "bench: $LIB does not exist: run 'make all' first" >&2; exit 1; }
BIN=$ROOT/build/bench/zmq_tput
mkdir -p "$ROOT/build/bench"
cc -O2 -Wall -Wextra -Werror -o "$BIN" "$HERE/zmq_tput.c" -lzmq

tmp=$(mktemp -d "${TMPDIR:-/tmp}/psi-zbench.XXXXXX")
export PSI_RUNTIME_DIR=$tmp/run PSI_STORE=file://$tmp/store
trap 'rm -rf "$tmp"' EXIT

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# once CASE SIZE COUNT: prints the receiver's seconds.
once() {
    local case=$1 sz=$2 n=$3 ep pre=() rpid out i
    ep=tcp://127.0.0.1:$(free_port)
    case $case in
    plain) pre=() ;;
    preload) pre=(env LD_PRELOAD="$LIB" PSI_THRESHOLD=64K PSI_STATS="$tmp/stats") ;;
    zmqoff) pre=(env LD_PRELOAD="$LIB" PSI_THRESHOLD=64K PSI_ZMQ=off PSI_STATS="$tmp/stats.off") ;;
    small) pre=(env LD_PRELOAD="$LIB") ;;
    disabled) pre=(env LD_PRELOAD="$LIB" PSI_DISABLE=1) ;;
    esac
    rm -f "$tmp/ready"
    "${pre[@]}" "$BIN" pull "$ep" "$sz" "$n" "$tmp/ready" >"$tmp/out" 2>>"$tmp/pull.err" &
    rpid=$!
    for ((i = 0; i < 1000; i++)); do
        [[ -e $tmp/ready ]] && break
        kill -0 "$rpid" 2>/dev/null || { echo "bench: receiver exited early" >&2; exit 1; }
        sleep 0.01
    done
    "${pre[@]}" "$BIN" push "$ep" "$sz" "$n" 2>>"$tmp/push.err" ||
        { echo "bench: $case $sz sender failed" >&2; tail -n 5 "$tmp/push.err" >&2; exit 1; }
    wait "$rpid" || { echo "bench: $case $sz receiver failed" >&2; tail -n 5 "$tmp/pull.err" >&2; exit 1; }
    out=$(cat "$tmp/out")
    echo "$out"
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "ZeroMQ PUSH/PULL over TCP loopback, ~$((TOTAL >> 20)) MiB per run, median of $REPS"
echo "(preload: PSI_THRESHOLD=64K, every frame a token; zmq=off: PSI_ZMQ=off, stream engine only)"
echo
echo "| frame | frames | plain MB/s | preload MB/s | ratio | zmq=off MB/s | ratio |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
for sz in $((64 << 10)) $((1 << 20)) $((16 << 20)) $((64 << 20)); do
    n=$((TOTAL / sz))
    ((n >= 4)) || n=4
    declare -A t=()
    for c in plain preload zmqoff; do : >"$tmp/times.$c"; done
    for ((r = 0; r < REPS; r++)); do
        for c in plain preload zmqoff; do
            once "$c" "$sz" "$n" >>"$tmp/times.$c"
        done
    done
    for c in plain preload zmqoff; do t[$c]=$(median <"$tmp/times.$c"); done
    awk -v sz="$sz" -v n="$n" -v p="${t[plain]}" -v q="${t[preload]}" -v o="${t[zmqoff]}" 'BEGIN {
        mb = sz * n / 1e6
        lab = sz >= 1048576 ? sprintf("%d MiB", sz / 1048576) : sprintf("%d KiB", sz / 1024)
        printf "| %s | %d | %.0f | %.0f | %.2f | %.0f | %.2f |\n", lab, n, mb / p, mb / q, p / q, mb / o, p / o
    }'
    unset t
done
echo
echo "$SMALL frames of 64 bytes, median of $REPS"
echo
echo "| case | msgs/s | ratio |"
echo "|---|---:|---:|"
for c in plain small disabled; do
    : >"$tmp/times.$c"
    for ((r = 0; r < REPS; r++)); do once "$c" 64 "$SMALL" >>"$tmp/times.$c"; done
done
p=$(median <"$tmp/times.plain")
for c in plain small disabled; do
    q=$(median <"$tmp/times.$c")
    awk -v c="$c" -v n="$SMALL" -v p="$p" -v q="$q" 'BEGIN {
        lab = c == "small" ? "preloaded" : c == "disabled" ? "preloaded, PSI_DISABLE=1" : "plain"
        printf "| %s | %.0f | %.2f |\n", lab, n / q, p / q
    }'
done
echo
for f in "$tmp/stats" "$tmp/stats.off"; do
    if [[ -f $f ]]; then "$ROOT/build/psi" stats "$f" 2>/dev/null | tail -n 3 || true; fi
done
