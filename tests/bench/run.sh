#!/usr/bin/env bash
# psinterpose benchmarks (make bench), printed as markdown tables:
#  1. 64-byte ping-pong over TCP loopback (ROUNDS round trips): no preload,
#     preload on both ends (framed: small DATA records), preload with
#     PSI_DISABLE=1 (pass-through), and a dry run (PSI_DRYRUN=1 on both ends:
#     every send recorded, nothing framed). DESIGN §8 budget: within 3% of no
#     preload.
#  2. throughput: COUNT writes of 64 MiB, plain TCP vs preloaded (tokens)
#     through the embedded file store and through the shm pool (shm://).
#     The shm pool is warm after the first run (segments kept for the next
#     process, PSI_STORE=shm://?keep=...); the first, cold run is shown too.
# Each case runs REPS times, interleaved; the table shows the median.
#
#   tests/bench/run.sh            (PSI_BENCH_ROUNDS, PSI_BENCH_COUNT,
#                                  PSI_BENCH_REPS override the sizes)
set -euo pipefail
unset LD_PRELOAD

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LIB=${PSI_TEST_LIB:-$ROOT/build/libpsinterpose.so}
ROUNDS=${PSI_BENCH_ROUNDS:-20000}
COUNT=${PSI_BENCH_COUNT:-8}
REPS=${PSI_BENCH_REPS:-5}
MSG=64
BIG=$((64 * 1024 * 1024))
PY=$(python3 -c 'import sys; print(sys.executable)')

[[ -f $LIB ]] || { echo "bench: $LIB does not exist: run 'make all' first" >&2; exit 1; }
BIN=$ROOT/build/bench/pingpong
mkdir -p "$ROOT/build/bench"
cc -O2 -Wall -Wextra -Werror -o "$BIN" "$HERE/pingpong.c"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/psi-bench.XXXXXX")
export PSI_RUNTIME_DIR=$tmp/run
pool=/dev/shm/psi-bench-$$
# As root, a pool on a tmpfs of our own mounted with huge=always (2 MiB
# pages: a process maps a 64 MiB segment with 32 page-table entries instead
# of 16384); skipped when the mount is not possible.
hpool=
hmnt=$tmp/hugetmpfs
mkdir -p "$hmnt"
if [[ $(id -u) == 0 ]] && mount -t tmpfs -o huge=always,size=8G,mode=0700 tmpfs "$hmnt" 2>/dev/null; then
    hpool=$hmnt/pool
fi
trap '[[ -n $hpool ]] && umount "$hmnt"; rm -rf "$tmp" "$pool"' EXIT

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_listen() { # PORT PID
    local i
    for ((i = 0; i < 1000; i++)); do
        [[ -n $(ss -Hltn "sport = :$1") ]] && return 0
        kill -0 "$2" 2>/dev/null || { echo "bench: server exited early" >&2; exit 1; }
        sleep 0.01
    done
    echo "bench: server not listening on $1" >&2
    exit 1
}

# once CASE MODE COUNT SIZE: one run; prints the client's seconds.
# CASE: plain | preload | disabled | dryrun
once() {
    local case=$1 mode=$2 count=$3 sz=$4 port spid pre=() cpre=() out
    port=$(free_port)
    # The preloaded client lists the server as a peer, so the framed path is
    # measured whether or not it would have found the server's registry
    # entry in time; its PSI_STATS line shows what was framed and proxied.
    case $case in
    plain) pre=() cpre=() ;;
    preload)
        pre=(env LD_PRELOAD="$LIB")
        cpre=(env LD_PRELOAD="$LIB" PSI_PEERS="127.0.0.1:$port" PSI_STATS="$tmp/$mode.stats")
        ;;
    shm)
        pre=(env LD_PRELOAD="$LIB" PSI_STORE="shm://$pool")
        cpre=(env LD_PRELOAD="$LIB" PSI_STORE="shm://$pool" PSI_PEERS="127.0.0.1:$port"
            PSI_STATS="$tmp/$mode.shm.stats")
        ;;
    shm_huge)
        pre=(env LD_PRELOAD="$LIB" PSI_STORE="shm://$hpool")
        cpre=(env LD_PRELOAD="$LIB" PSI_STORE="shm://$hpool" PSI_PEERS="127.0.0.1:$port"
            PSI_STATS="$tmp/$mode.shmh.stats")
        ;;
    disabled) pre=(env LD_PRELOAD="$LIB" PSI_DISABLE=1) cpre=("${pre[@]}") ;;
    dryrun)
        mkdir -p "$tmp/dry"
        pre=(env LD_PRELOAD="$LIB" PSI_DRYRUN=1 PSI_DRYRUN_OUT="$tmp/dry")
        cpre=("${pre[@]}")
        ;;
    esac
    "${pre[@]}" "$BIN" server "$port" 2>>"$tmp/server.err" &
    spid=$!
    wait_listen "$port" "$spid"
    out=$("${cpre[@]}" "$BIN" client "$port" "$mode" "$count" "$sz" 2>>"$tmp/client.err") || {
        echo "bench: $case $mode client failed:" >&2
        tail -n 5 "$tmp/client.err" >&2
        exit 1
    }
    wait "$spid" || { echo "bench: $case $mode server failed" >&2; tail -n 5 "$tmp/server.err" >&2; exit 1; }
    out=${out#seconds=}
    echo "${out%% *}"
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A T
cases_pp=(plain preload disabled dryrun)
for ((r = 0; r < REPS; r++)); do
    for c in "${cases_pp[@]}"; do
        T[pp_$c]+=" $(once "$c" ping "$ROUNDS" "$MSG")"
    done
    st_cases=(plain preload shm)
    [[ -n $hpool ]] && st_cases+=(shm_huge)
    for c in "${st_cases[@]}"; do
        t=$(once "$c" stream "$COUNT" "$BIG")
        [[ $c == shm && -z ${T[st_shm_cold]:-} ]] && T[st_shm_cold]=$t && t=$(once "$c" stream "$COUNT" "$BIG")
        [[ $c == shm_huge && -z ${T[st_shm_huge_cold]:-} ]] && T[st_shm_huge_cold]=$t &&
            t=$(once "$c" stream "$COUNT" "$BIG")
        T[st_$c]+=" $t"
    done
done

echo "## Ping-pong: $ROUNDS round trips of $MSG bytes over TCP loopback (median of $REPS)"
echo
echo "| case | time (s) | us per round trip | vs no preload |"
echo "|---|---:|---:|---:|"
# shellcheck disable=SC2086
base=$(median ${T[pp_plain]})
for c in "${cases_pp[@]}"; do
    # shellcheck disable=SC2086
    m=$(median ${T[pp_$c]})
    label=$c
    [[ $c == plain ]] && label="no preload"
    [[ $c == preload ]] && label="preload, both ends"
    [[ $c == disabled ]] && label="preload, PSI_DISABLE=1"
    [[ $c == dryrun ]] && label="dry run, both ends (PSI_DRYRUN=1)"
    printf '| %s | %s | %s | %s |\n' "$label" "$(printf %.3f "$m")" \
        "$(awk -v t="$m" -v n="$ROUNDS" 'BEGIN { printf("%.2f", t / n * 1e6) }')" \
        "$(awk -v t="$m" -v b="$base" 'BEGIN { printf("%.3f", t / b) }')"
done
echo
echo "## Throughput: $COUNT writes of 64 MiB over TCP loopback (median of $REPS)"
echo
echo "| case | time (s) | GB/s | speed vs plain TCP |"
echo "|---|---:|---:|---:|"
# shellcheck disable=SC2086
base=$(median ${T[st_plain]})
rows=(plain preload shm shm_cold)
[[ -n $hpool ]] && rows+=(shm_huge shm_huge_cold)
for c in "${rows[@]}"; do
    # shellcheck disable=SC2086
    m=$(median ${T[st_$c]})
    case $c in
    plain) label="plain TCP" ;;
    preload) label="preload, both ends, file store (tokens)" ;;
    shm) label="preload, both ends, shm pool, warm (tokens)" ;;
    shm_cold) label="preload, both ends, shm pool, first run (cold)" ;;
    shm_huge) label="preload, both ends, shm pool on a huge=always tmpfs, warm" ;;
    shm_huge_cold) label="preload, both ends, shm pool on a huge=always tmpfs, first run" ;;
    esac
    printf '| %s | %s | %s | %s |\n' "$label" "$(printf %.3f "$m")" \
        "$(awk -v t="$m" -v n=$((COUNT * BIG)) 'BEGIN { printf("%.2f", n / t / 1e9) }')" \
        "$(awk -v t="$m" -v b="$base" 'BEGIN { printf("%.2fx", b / t) }')"
done

# What the preloaded runs really did, from the clients' PSI_STATS lines.
sum() { "$PY" -c 'import json,sys; print(sum(json.loads(l)[sys.argv[2]] for l in open(sys.argv[1]) if l.strip()))' "$@"; }
echo
echo "Preloaded clients, over all runs: ping-pong framed $(sum "$tmp/ping.stats" bytes_sent) bytes" \
    "and sent $(sum "$tmp/ping.stats" tokens_sent) tokens; the throughput runs sent" \
    "$(sum "$tmp/stream.stats" tokens_sent) tokens for $((REPS * COUNT)) writes of 64 MiB" \
    "through the file store and $(sum "$tmp/stream.shm.stats" tokens_sent) through the shm pool" \
    "($(sum "$tmp/stream.shm.stats" inline_fallbacks) sent inline)."
# The dry-run case must have observed every message, or it measured nothing.
echo "Dry-run processes, over all runs, recorded" \
    "$("$PY" -c 'import glob,json,sys; print(sum(r["sends"] for f in glob.glob(sys.argv[1] + "/dry.*.json") for r in json.load(open(f))["rows"]))' "$tmp/dry")" \
    "sends ($((REPS * 2)) processes x $ROUNDS round trips, plus a preamble each)."
