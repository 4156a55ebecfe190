#!/usr/bin/env bash
# iperf3 server and client, both preloaded (found through the registry),
# run to completion with -n 256M:
#  1. default block size (128 KiB, below the default threshold): inline;
#  2. -l 1M (iperf3's maximum) with PSI_THRESHOLD=512K: every block is a token.
# Both sides exit 0, and the byte counts iperf3 reports (-J) agree: the
# client sent 256 MiB, and both ends report the same count received. That
# count may fall short of 256 MiB by what was in flight when the client said
# TEST_END: iperf3's server stops reading then, with or without the
# interposer (seen under the ASan build, whose server is slower); the test
# bounds the shortfall by socket-buffer sizes (32 MiB).
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
need iperf3

# json_get FILE EXPR: a value from iperf3's JSON report (EXPR in python).
json_get() {
    "$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" ||
        fail "cannot read $2 from $1: $(head -c 300 "$1")"
}

run() {
    local name=$1 th=$2
    shift 2
    local port spid sent srecv crecv
    port=$(free_port)
    spawn "$name.srv.json" "$name.srv.err" preload env PSI_THRESHOLD="$th" \
        PSI_STATS="$TEST_TMP/$name.srv.stats" iperf3 -s -1 -J -p "$port"
    spid=$SPAWNED
    wait_listen "$port" "$spid"
    spawn "$name.cli.json" "$name.cli.err" preload env PSI_THRESHOLD="$th" \
        PSI_STATS="$TEST_TMP/$name.cli.stats" iperf3 -c 127.0.0.1 -p "$port" -J -n 256M "$@"
    await_ok "$SPAWNED" "$name: iperf3 client" 90
    await_ok "$spid" "$name: iperf3 server" 30
    sent=$(json_get "$name.cli.json" 'j["end"]["sum_sent"]["bytes"]')
    crecv=$(json_get "$name.cli.json" 'j["end"]["sum_received"]["bytes"]')
    srecv=$(json_get "$name.srv.json" 'j["end"]["sum_received"]["bytes"]')
    ((sent == 256 * MiB)) || fail "$name: client reports $sent bytes sent, expected 256 MiB"
    ((srecv == crecv)) || fail "$name: server reports $srecv bytes received, client says $crecv"
    ((srecv <= sent && srecv >= sent - 32 * MiB)) ||
        fail "$name: client sent $sent bytes, server reports $srecv received"
    expect_stat "$name.cli.stats" errors -eq 0 "$name"
    expect_stat "$name.srv.stats" errors -eq 0 "$name"
    log "ok $name: $sent bytes sent, $srecv received; tokens $(tokens_sent "$name.cli.stats") sent, $(tokens_resolved "$name.srv.stats") resolved"
}

run default 1M
expect_stat default.cli.stats tokens_sent -eq 0 "default blocks are below the threshold"
run big-blocks 512K -l 1M
expect_stat big-blocks.cli.stats tokens_sent -ge 200 "1 MiB blocks above 512K"
expect_stat big-blocks.srv.stats tokens_resolved -ge 200 "1 MiB blocks above 512K"
