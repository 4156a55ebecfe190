#!/usr/bin/env bash
# Redis connector throughput (docs/store-redis.md), as a markdown table:
# our put and resolve (tests/bench/redisbench.c: psi_store_put, then
# psi_store_resolve = GET + xxh3 check + release) against redis-benchmark's
# SET and GET (-c 1 -P 1: one connection, no pipelining, as we run) at the
# same value sizes, on one redis-server started here (persistence off).
# ratio = redis-benchmark ops/s / ours (1.0 = as fast; target <= 1.2).
# redis-benchmark without -r SETs one key over and over, so the server
# reuses the value's memory; every put of ours is a new key (content
# addressed), so the "-r" columns (random keys: new memory per SET, as for
# us) are the like-for-like comparison.
#
#   tests/bench/redis.sh      (PSI_BENCH_REDIS_SIZES="65536:2000 ..." to
#                              choose SIZE:COUNT pairs, PSI_BENCH_REPS
#                              repetitions, default 3, medians shown;
#                              needs make all)
set -euo pipefail
unset LD_PRELOAD

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SIZES=${PSI_BENCH_REDIS_SIZES:-"65536:2000 1048576:300 16777216:30 67108864:8"}
REPS=${PSI_BENCH_REPS:-3}
PY=$(python3 -c 'import sys; print(sys.executable)')

for c in redis-server redis-benchmark redis-cli; do
    command -v "$c" >/dev/null || { echo "bench: $c is not installed (make deps)" >&2; exit 1; }
done
[[ -f $ROOT/build/libpsicore.a ]] || { echo "bench: run 'make all' first" >&2; exit 1; }
BIN=$ROOT/build/bench/redisbench
mkdir -p "$ROOT/build/bench"
cc -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -I"$ROOT/store" -I"$ROOT/policy" -o "$BIN" \
    "$HERE/redisbench.c" "$ROOT/build/libpsicore.a" -lxxhash -ldl -lpthread -lm

tmp=$(mktemp -d "${TMPDIR:-/tmp}/psi-bench-redis.XXXXXX")
port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" \
    --logfile "$tmp/log" >/dev/null 2>&1 &
rpid=$!
trap 'kill "$rpid" 2>/dev/null; wait "$rpid" 2>/dev/null; rm -rf "$tmp"' EXIT
for ((i = 0; i < 500; i++)); do
    [[ $(redis-cli -p "$port" PING 2>/dev/null) == PONG ]] && break
    sleep 0.01
done

# rb TEST SIZE COUNT [-r N]: redis-benchmark's requests per second.
rb() {
    redis-benchmark -p "$port" -t "$1" -d "$2" -n "$3" -c 1 -P 1 "${@:4}" --csv 2>/dev/null |
        awk -F, -v t="\"${1^^}\"" '$1 == t { gsub(/"/, "", $2); print $2 }'
}

human() {
    local n=$1
    if ((n >= 1048576)); then echo "$((n / 1048576)) MiB"; else echo "$((n / 1024)) KiB"; fi
}

# median of the numbers given as arguments
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

echo "| value size | op | redis-benchmark ops/s | redis-benchmark -r ops/s | psi connector ops/s | MiB/s (psi) | ratio | ratio -r |"
echo "|---|---|---|---|---|---|---|---|"
for pair in $SIZES; do
    sz=${pair%%:*}
    n=${pair##*:}
    S=() G=() RS=() P=() R=()
    # interleaved repetitions, medians: the machine's load varies
    for ((rep = 0; rep < REPS; rep++)); do
        S+=("$(rb set "$sz" "$n")")
        G+=("$(rb get "$sz" "$n")")
        redis-cli -p "$port" FLUSHALL >/dev/null
        RS+=("$(rb set "$sz" "$n" -r 1000000000)")
        redis-cli -p "$port" FLUSHALL >/dev/null
        read -r put_rps res_rps < <("$BIN" "redis://127.0.0.1:$port" "$sz" "$n")
        P+=("$put_rps")
        R+=("$res_rps")
        left=$(redis-cli -p "$port" DBSIZE)
        ((left == 0)) || echo "bench: $left keys left after resolving every token" >&2
    done
    set_rps=$(median "${S[@]}") get_rps=$(median "${G[@]}") rset_rps=$(median "${RS[@]}")
    put_rps=$(median "${P[@]}") res_rps=$(median "${R[@]}")
    for op in set get; do
        if [[ $op == set ]]; then
            r=$set_rps rr=$rset_rps o=$put_rps name="SET / put"
        else
            r=$get_rps rr=0 o=$res_rps name="GET / resolve"
        fi
        "$PY" - "$(human "$sz")" "$name" "$r" "$rr" "$o" "$sz" <<'PY'
import sys
size, name, r, rr, o, sz = sys.argv[1:]
r, rr, o = float(r or 0), float(rr or 0), float(o)
mib = o * int(sz) / 1048576
# GET with -r reads keys that mostly do not exist: no comparison there
rrs, rrr = (f"{rr:.1f}", f"{rr / o:.2f}") if rr else ("-", "-")
print(f"| {size} | {name} | {r:.1f} | {rrs} | {o:.1f} | {mib:.0f} | {r / o:.2f} | {rrr} |")
PY
    done
done
