#!/usr/bin/env bash
# The psinterpose demo (make demo).
#
# An unmodified producer sends 256 MiB in 16 MiB writes through a plain relay
# to a consumer. The demo runs it without the interposer and then with it,
# and for each prints the wall time, the bytes through the relay, and
# whether the checksums match.
#
# The relay (tests/integration/relay.py) never runs interposed: it stands for
# any proxy in the path. With the interposer the producer lists the relay as
# a peer (PSI_PEERS) and the payload goes through the default store.
set -euo pipefail
unset LD_PRELOAD

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LIB=${PSI_TEST_LIB:-$ROOT/build/libpsinterpose.so}
RELAY=$ROOT/tests/integration/relay.py
PY=$(python3 -c 'import sys; print(sys.executable)')
TOTAL=${PSI_DEMO_TOTAL:-256M}
WRITE=${PSI_DEMO_WRITE:-16M}

[[ -f $LIB ]] || { echo "demo: $LIB does not exist: run 'make all' first" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/psi-demo.XXXXXX")
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

die() {
    echo "demo: $*" >&2
    for f in "$tmp"/*.err; do
        [[ -s $f ]] && { echo "--- $(basename "$f"):" >&2; tail -n 5 "$f" >&2; }
    done
    exit 1
}

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_listen() { # PORT PID: bounded poll of ss, no blind sleep
    local i
    for ((i = 0; i < 1000; i++)); do
        [[ -n $(ss -Hltn "sport = :$1") ]] && return 0
        kill -0 "$2" 2>/dev/null || die "a process exited before listening on port $1"
        sleep 0.01
    done
    die "nothing listens on port $1"
}

json() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

human() { # BYTES -> "256.0 MiB"
    "$PY" -c '
import sys
n = float(sys.argv[1])
for u in ("B", "KiB", "MiB", "GiB"):
    if n < 1024 or u == "GiB":
        print(("%d %s" % (n, u)) if u == "B" else ("%.1f %s" % (n, u)))
        break
    n /= 1024' "$1"
}

# one NAME PRELOAD(0/1): one run; sets SECS, RELAYED, MATCH.
one() {
    local name=$1 pre=$2 cport rport cpid rpid ppid env_c=() env_p=()
    cport=$(free_port)
    rport=$(free_port)
    if ((pre)); then
        env_c=(env LD_PRELOAD="$LIB")
        env_p=(env LD_PRELOAD="$LIB" PSI_PEERS="127.0.0.1:$rport")
    fi
    "${env_c[@]}" "$PY" "$HERE/consumer.py" --port "$cport" --expect "$TOTAL" \
        --out "$tmp/$name.consumer.json" 2>"$tmp/$name.consumer.err" &
    cpid=$!
    pids+=("$cpid")
    wait_listen "$cport" "$cpid"
    "$PY" "$RELAY" --listen "$rport" --target "127.0.0.1:$cport" \
        --counts "$tmp/$name.relay.json" 2>"$tmp/$name.relay.err" &
    rpid=$!
    pids+=("$rpid")
    wait_listen "$rport" "$rpid"
    "${env_p[@]}" "$PY" "$HERE/producer.py" --port "$rport" --total "$TOTAL" --write "$WRITE" \
        --out "$tmp/$name.producer.json" 2>"$tmp/$name.producer.err" &
    ppid=$!
    pids+=("$ppid")
    wait "$ppid" || die "$name: the producer failed"
    wait "$cpid" || die "$name: the consumer failed"
    wait "$rpid" || die "$name: the relay failed"

    SECS=$("$PY" -c 'import sys; print("%.2f" % (float(sys.argv[2]) - float(sys.argv[1])))' \
        "$(json "$tmp/$name.producer.json" t0)" "$(json "$tmp/$name.consumer.json" t1)")
    RELAYED=$(json "$tmp/$name.relay.json" c2s)
    if [[ $(json "$tmp/$name.producer.json" sha256) == "$(json "$tmp/$name.consumer.json" sha256)" &&
        $(json "$tmp/$name.producer.json" bytes) == "$(json "$tmp/$name.consumer.json" bytes)" ]]; then
        MATCH=match
    else
        MATCH=MISMATCH
    fi
}

echo "psinterpose demo"
unit() { sed 's/K$/ KiB/; s/M$/ MiB/; s/G$/ GiB/' <<<"$1"; }
echo "  An unmodified producer sends $(unit "$TOTAL") in $(unit "$WRITE") writes through a plain relay"
echo "  to a consumer, first as it is, then with the interposer on both ends."
echo
printf '  %-12s %10s %20s %11s\n' run "wall time" "through the relay" checksums
one plain 0
plain_secs=$SECS plain_relayed=$RELAYED plain_match=$MATCH
printf '  %-12s %8s s %20s %11s\n' "without psi" "$SECS" "$(human "$RELAYED")" "$MATCH"
one psi 1
printf '  %-12s %8s s %20s %11s\n' "with psi" "$SECS" "$(human "$RELAYED")" "$MATCH"
echo

if [[ $plain_match != match || $MATCH != match ]]; then
    echo "The consumer did not get the producer's bytes: the demo FAILED."
    exit 1
fi
speed=$("$PY" -c 'import sys; a, b = map(float, sys.argv[1:]); print("%.1fx" % (a / b) if b > 0 else "-")' \
    "$plain_secs" "$SECS")
if ((RELAYED * 100 < plain_relayed)); then
    echo "With psinterpose the payload bypassed the relay ($(human "$RELAYED") instead of $(human "$plain_relayed")), arrived intact, and the transfer took $SECS s instead of $plain_secs s ($speed as fast)."
else
    echo "The payload still went through the relay ($(human "$RELAYED")): the interposer did not take it off the wire. The bytes arrived intact."
    exit 1
fi
