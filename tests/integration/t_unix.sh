#!/usr/bin/env bash
# socat over a Unix stream socket (UNIX-LISTEN / UNIX-CONNECT), preloaded on
# both ends; the listener registers its path, the connector finds it in the
# registry (checked against /proc/net/unix). 64 MiB and a small payload in
# each direction, byte-exact; the large client writes travel as tokens.
# socat -b 16777216: see t_sizes_socat.sh (the default 8 KiB blocks would
# never reach the threshold).
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
need socat

B=16777216
payload big.bin 64M
payload small.bin 1000

xfer() {
    local dir=$1 in=$2 case sock spid cpid
    case=$dir-$in
    sock=$TEST_TMP/$case.sock
    local sst=$TEST_TMP/$case.srv.stats cst=$TEST_TMP/$case.cli.stats
    if [[ $dir == c2s ]]; then
        spawn "$case.srv.out" "$case.srv.err" preload env PSI_STATS="$sst" \
            socat -u -b $B "UNIX-LISTEN:$sock" "OPEN:$case.got,creat,trunc"
        spid=$SPAWNED
        wait_listen_unix "$sock" "$spid"
        spawn "$case.cli.out" "$case.cli.err" preload env PSI_STATS="$cst" \
            socat -u -b $B "OPEN:$in" "UNIX-CONNECT:$sock"
    else
        spawn "$case.srv.out" "$case.srv.err" preload env PSI_STATS="$sst" \
            socat -u -b $B "OPEN:$in" "UNIX-LISTEN:$sock"
        spid=$SPAWNED
        wait_listen_unix "$sock" "$spid"
        spawn "$case.cli.out" "$case.cli.err" preload env PSI_STATS="$cst" \
            socat -u -b $B "UNIX-CONNECT:$sock" "OPEN:$case.got,creat,trunc"
    fi
    cpid=$SPAWNED
    await_ok "$cpid" "$case: client socat"
    await_ok "$spid" "$case: server socat"
    same_bytes "$in" "$case.got" "unix $case"
    expect_stat "$sst" errors -eq 0 "$case server"
    expect_stat "$cst" errors -eq 0 "$case client"
    if [[ $dir == c2s ]]; then
        if [[ $in == big.bin ]]; then
            expect_stat "$cst" tokens_sent -ge 4 "$case client"
        else
            expect_stat "$cst" tokens_sent -eq 0 "$case client"
        fi
        expect_stat "$sst" tokens_resolved -eq "$(tokens_sent "$cst")" "$case server"
    else
        expect_stat "$cst" tokens_resolved -eq "$(tokens_sent "$sst")" "$case client"
    fi
    log "ok unix $case: client sent $(tokens_sent "$cst") tokens, server $(tokens_sent "$sst")"
}

for in in big.bin small.bin; do
    xfer c2s "$in"
    xfer s2c "$in"
done
