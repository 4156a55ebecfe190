#!/usr/bin/env bash
# The policy file drives what the preload library proxies (PSI_POLICY):
#  1. a `pass` rule for the program: nothing proxied, bytes exact;
#  2. rules on size: with `defaults threshold=64K` and a proxy rule for
#     200K.., a 100 KiB write goes inline and 1 MiB writes go as tokens;
#  3. PSI_THRESHOLD overrides `defaults threshold` for one run;
#  4. a broken policy: one stderr line, everything passes through exactly,
#     no tokens.
# Every transfer is a python3 client sending to a python3 server (netio.py),
# both preloaded with the same policy, compared by sha256.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

payload big.bin 4M
payload mid.bin 100K

# xfer NAME POLICY FILE [ENV...]: client sends FILE in one write per 1 MiB
xfer() {
    local name=$1 pol=$2 file=$3 port spid cpid
    shift 3
    port=$(free_port)
    spawn "$name.srv.out" "$name.srv.err" preload env PSI_POLICY="$pol" "$@" \
        PSI_STATS="$TEST_TMP/$name.srv.stats" "$PY" "$NETIO" server --port "$port" \
        "recv:$name.got"
    spid=$SPAWNED
    wait_listen "$port" "$spid"
    spawn "$name.cli.out" "$name.cli.err" preload env PSI_POLICY="$pol" "$@" \
        PSI_STATS="$TEST_TMP/$name.cli.stats" "$PY" "$NETIO" client --port "$port" \
        --chunk 1M "send:$file" shut
    cpid=$SPAWNED
    await_ok "$cpid" "$name: client" 60
    await_ok "$spid" "$name: server" 30
    same_bytes "$file" "$name.got" "$name"
}

cat >pass.policy <<'P'
# python3 never proxies
rule no-python: exe=python3* => pass
P
xfer pass "$TEST_TMP/pass.policy" big.bin
(($(tokens_sent pass.cli.stats) == 0)) || fail "pass: a pass rule still sent tokens"
log "ok pass rule: 4 MiB inline, no tokens"

cat >size.policy <<'P'
defaults threshold=64K
rule big: channel=tcp size=200K.. => proxy lifetime=refcount ttl=10m
rule rest: channel=tcp => pass
P
xfer size-mid "$TEST_TMP/size.policy" mid.bin
(($(tokens_sent size-mid.cli.stats) == 0)) || fail "size: a 100 KiB write was proxied"
xfer size-big "$TEST_TMP/size.policy" big.bin
(($(tokens_sent size-big.cli.stats) == 4)) ||
    fail "size: expected 4 tokens for 4 x 1 MiB, got $(tokens_sent size-big.cli.stats)"
log "ok size rules: 100 KiB inline, 4 x 1 MiB as 4 tokens"

cat >thr.policy <<'P'
defaults threshold=8M
rule:  channel=tcp => proxy
P
xfer thr-file "$TEST_TMP/thr.policy" big.bin
(($(tokens_sent thr-file.cli.stats) == 0)) || fail "threshold: defaults threshold=8M ignored"
xfer thr-env "$TEST_TMP/thr.policy" big.bin PSI_THRESHOLD=512K
(($(tokens_sent thr-env.cli.stats) == 4)) || fail "threshold: PSI_THRESHOLD did not override the file"
log "ok threshold: the file's 8M keeps 1 MiB writes inline; PSI_THRESHOLD=512K proxies them"

cat >bad.policy <<'P'
rule oops: channel=tcpp => proxy
P
xfer bad "$TEST_TMP/bad.policy" big.bin
(($(tokens_sent bad.cli.stats) == 0)) || fail "broken policy: tokens were sent"
grep -q 'bad.policy:1:.*tcpp' bad.cli.err || fail "broken policy: no file:line diagnostic on stderr"
grep -q 'passing everything through' bad.cli.err || fail "broken policy: no pass-through notice"
log "ok broken policy: diagnostic with file:line, everything passed through"
