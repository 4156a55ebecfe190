#!/usr/bin/env bash
# Faults lose nothing and are never silent:
#  1. the store cannot be written (PSI_STORE under /proc, or under a regular
#     file): every byte still arrives, inline; inline_fallbacks > 0; exactly
#     one warning on the sender's stderr for three failed puts.
#  2. a token whose object was deleted before the receiver reads it: the
#     receiver's read fails with EIO (python: OSError errno 5), with a log
#     line on its stderr and errors > 0 in its stats.
#  3. PSI_THRESHOLD=bogus: one stderr line naming PSI_THRESHOLD per process,
#     and the default (1 MiB) is used: a 2 MiB write is proxied, 512 KiB not.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

# show FILE: the file's lines, indented, for the log.
show() { sed 's/^/    | /' "$1"; }

# 1. an unwritable store
payload six.bin 6M
: >regular-file
k=0
for store in file:///proc/nonexistent/psi-store "file://$TEST_TMP/regular-file/store"; do
    name=nostore$((++k))
    netio_pair "$name" "PSI_STORE=$store" "PSI_STORE=$store" recv:"$name.got" -- \
        --chunk 2M send:six.bin shut
    await_ok "$CPID" "$name: client (store $store)"
    await_ok "$SPID" "$name: server"
    same_bytes six.bin "$name.got" "store $store unwritable: payload sent inline"
    expect_stat "$name.cli.stats" inline_fallbacks -ge 1 "$name: sender with an unwritable store"
    expect_stat "$name.cli.stats" tokens_sent -eq 0 "$name: sender with an unwritable store"
    warn=$(count_psi_lines "$name.cli.err" warn)
    all=$(wc -l <"$name.cli.err")
    if ((warn != 1 || all != 1)); then
        show "$name.cli.err"
        fail "$name: store $store: expected exactly one warning line on stderr for three failed puts, got $all lines ($warn psi warnings)"
    fi
    log "ok unwritable store $store: inline, one warning: $(cat "$name.cli.err")"
done

# 2. the object behind a token disappears before the receiver reads it
store_dir=${PSI_STORE#file://}
payload four.bin 4M
netio_pair gone "" "" wait:gate recv:gone.got -- send:four.bin shut
await_ok "$CPID" "gone: client"
nfiles=$(find "$store_dir" -type f 2>/dev/null | wc -l)
((nfiles > 0)) || fail "gone: the 4 MiB write left no file in the store $store_dir (was it proxied?)"
find "$store_dir" -type f -delete
log "deleted $nfiles store files before the receiver read"
touch gate
rc=0
await "$SPID" "gone: server" || rc=$?
errno=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["errno"])' gone.srv.json)
if [[ $rc -ne 3 || $errno != 5 ]]; then
    show gone.srv.err
    [[ -f gone.got ]] && log "receiver got $(stat -c %s gone.got) bytes"
    fail "gone: the receiver's read of a token with no object should fail with EIO (errno 5); exit $rc, errno $errno: $(cat gone.srv.json)"
fi
lines=$(count_psi_lines gone.srv.err)
((lines >= 1)) || {
    show gone.srv.err
    fail "gone: EIO without a log line on the receiver's stderr"
}
expect_stat gone.srv.stats errors -ge 1 "gone: receiver"
log "ok deleted object: EIO, and: $(grep -E '^psi\[' gone.srv.err | head -1)"

# 3. a bad PSI_THRESHOLD
payload two.bin 2M
payload half.bin 512K
netio_pair thr PSI_THRESHOLD=bogus PSI_THRESHOLD=bogus recv:thr.got -- send:two.bin send:half.bin shut
await_ok "$CPID" "thr: client"
await_ok "$SPID" "thr: server"
cat two.bin half.bin >thr.expect
same_bytes thr.expect thr.got "PSI_THRESHOLD=bogus"
for side in cli srv; do
    named=$(grep -c PSI_THRESHOLD "thr.$side.err" || true)
    all=$(wc -l <"thr.$side.err")
    if ((named != 1 || all != 1)); then
        show "thr.$side.err"
        fail "PSI_THRESHOLD=bogus: the $side's stderr should have exactly one line naming PSI_THRESHOLD; it has $all lines, $named naming it"
    fi
done
expect_stat thr.cli.stats tokens_sent -eq 1 "PSI_THRESHOLD=bogus: the default 1 MiB applies (2 MiB proxied, 512 KiB not)"
log "ok bad PSI_THRESHOLD: $(cat thr.cli.err)"
