#!/usr/bin/env bash
# netcat-openbsd, preloaded on both ends, both directions, byte-exact.
# nc copies in small blocks (16 KiB), so nothing reaches the threshold: this
# checks that the interposer is transparent (HELLO, framing of small writes,
# half-close), not that it proxies.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
need nc

# xfer DIR N: c2s = `nc -l > out` receives from `nc -N < in`;
#             s2c = `nc -N -l < in` sends to `nc -d > out`.
xfer() {
    local dir=$1 n=$2 case port in spid cpid
    case=$dir-$n
    in=payload.$n
    [[ -f $in ]] || payload "$in" "$n"
    port=$(free_port)
    if [[ $dir == c2s ]]; then
        spawn "$case.out" "$case.srv.err" preload env PSI_STATS="$TEST_TMP/$case.srv.stats" \
            nc -l 127.0.0.1 "$port"
        spid=$SPAWNED
        wait_listen "$port" "$spid"
        SPAWN_STDIN=$in spawn "$case.cli.out" "$case.cli.err" \
            preload env PSI_STATS="$TEST_TMP/$case.cli.stats" nc -N 127.0.0.1 "$port"
    else
        SPAWN_STDIN=$in spawn "$case.srv.out" "$case.srv.err" \
            preload env PSI_STATS="$TEST_TMP/$case.srv.stats" nc -N -l 127.0.0.1 "$port"
        spid=$SPAWNED
        wait_listen "$port" "$spid"
        spawn "$case.out" "$case.cli.err" preload env PSI_STATS="$TEST_TMP/$case.cli.stats" \
            nc -d 127.0.0.1 "$port"
    fi
    cpid=$SPAWNED
    await_ok "$cpid" "$case: client nc"
    await_ok "$spid" "$case: server nc"
    same_bytes "$in" "$case.out" "nc $case"
    expect_stat "$case.srv.stats" errors -eq 0 "$case"
    expect_stat "$case.cli.stats" errors -eq 0 "$case"
    log "ok nc $case: $n bytes"
}

for n in 0 1 1000 $((MiB + 1)) $((20 * MiB)); do
    xfer c2s "$n"
    xfer s2c "$n"
done
