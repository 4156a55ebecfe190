#!/usr/bin/env bash
# An rsync daemon (preloaded; it forks a child per connection, whose
# receiver forks a generator that shares the socket) receives a pushed tree
# of mixed file sizes from a preloaded rsync client. Every file must arrive
# byte for byte. rsync writes its multiplexed stream in buffers of a few
# tens of KiB, so PSI_THRESHOLD=32K makes some of those writes tokens.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
need rsync

mkdir -p src/a/b/c src/empty-dir dst
payload src/zero.bin 0
payload src/one.bin 1
payload src/a/k100.bin 100K
payload src/a/b/m2.bin 2M
payload src/a/b/c/m20.bin 20M
payload src/m64.bin 64M
printf 'hello\n' >src/a/b/c/hello.txt

port=$(free_port)
cat >rsyncd.conf <<CONF
pid file = $TEST_TMP/rsyncd.pid
use chroot = no
[mod]
    path = $TEST_TMP/dst
    read only = false
    uid = root
    gid = root
CONF

# The daemon's receiver process ends with _exit(2), so it writes no
# PSI_STATS line: its resolved tokens are counted from its debug log.
spawn daemon.out daemon.err preload env PSI_THRESHOLD=32K PSI_STATS="$TEST_TMP/daemon.stats" \
    PSI_LOG=debug PSI_LOG_FILE="$TEST_TMP/daemon.psilog" \
    rsync --daemon --no-detach --config="$TEST_TMP/rsyncd.conf" --address=127.0.0.1 --port="$port" \
    --log-file="$TEST_TMP/rsyncd.log"
dpid=$SPAWNED
wait_listen "$port" "$dpid"

preload env PSI_THRESHOLD=32K PSI_STATS="$TEST_TMP/client.stats" \
    rsync -a src/ "rsync://127.0.0.1:$port/mod/" >client.out 2>client.err ||
    fail "rsync push failed: $(tail -3 client.err)"

# The daemon's per-connection child has exited once the client returns;
# stop the listener so every stats line is written.
kill "$dpid"
await "$dpid" "rsync daemon" || true

(cd src && find . -type f -exec sha256sum {} + | sort -k2) >src.sums
(cd dst && find . -type f -exec sha256sum {} + | sort -k2) >dst.sums
diff src.sums dst.sums >sums.diff || fail "trees differ: $(head -5 sums.diff)"
[[ $(wc -l <src.sums) -eq 7 ]] || fail "expected 7 files in src.sums"
[[ -d dst/empty-dir && -d dst/a/b/c ]] || fail "directories missing in the copy"
[[ $(stat -c %s dst/zero.bin) -eq 0 ]] || fail "zero.bin is not empty"

sent=$(tokens_sent client.stats)
resolved=$(grep -c "resolved token" daemon.psilog || true)
expect_stat client.stats errors -eq 0 "rsync client"
expect_stat daemon.stats errors -eq 0 "rsync daemon"
((sent > 0)) || fail "no rsync write reached PSI_THRESHOLD=32K: no tokens"
((resolved == sent)) || fail "the daemon resolved $resolved tokens, the client sent $sent"
! grep -qiE "error|malformed|EPROTO" daemon.psilog || fail "daemon log: $(grep -iE "error|malformed" daemon.psilog | head -3)"
expect_stat client.stats bytes_sent -ge $((80 * MiB)) "rsync client (framed bytes)"
log "ok rsync push of 7 files ($(du -sb src | cut -f1) bytes): client sent $sent tokens, daemon resolved $resolved"
