#!/usr/bin/env bash
# The Redis connector (docs/store-redis.md) under unmodified programs:
#  1. socat, PSI_STORE=redis://...: sizes T-1, T, T+1 (T = 64K) and 64 MiB
#     (T = 1M), byte-exact, tokens sent = resolved, no psi keys left after
#     (refcount);
#  2. AUTH (requirepass) and /db: objects sit in db 2 while unread, none
#     after;
#  3. two servers: both hold objects; none left after;
#  4. lifetimes from a policy: ttl (left, with its TTL), evict-on-read;
#  5. the store down at put: inline, one warning, inline_fallbacks;
#  6. the store down at get: EIO after retries, a clear log line;
#  7. a restart without persistence: EIO, nothing silently wrong; with
#     appendonly yes: the reader gets the exact bytes.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
source "$HERE/redis_lib.sh"
need socat

show() { sed 's/^/    | /' "$1"; }

# expect_eio NAME: the receiver failed with EIO and said why on stderr.
expect_eio() {
    local name=$1 rc=0 errno
    await "$SPID" "$name: server" || rc=$?
    errno=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["errno"])' "$name.srv.json")
    if [[ $rc -ne 3 || $errno != 5 ]]; then
        show "$name.srv.err"
        fail "$name: the receiver should fail with EIO (errno 5); exit $rc: $(cat "$name.srv.json")"
    fi
    grep -qE '^psi\[[0-9]+\].*redis 127\.0\.0\.1:[0-9]+' "$name.srv.err" || {
        show "$name.srv.err"
        fail "$name: EIO without a log line naming the redis server"
    }
    expect_stat "$name.srv.stats" errors -ge 1 "$name: receiver"
}

P=$(free_port)
start_redis main "$P"
MAIN=$REDIS_PID
export PSI_STORE=redis://127.0.0.1:$P

# ---- 1. sizes, socat ---------------------------------------------------------
B=16777216
xfer() {
    local t=$1 n=$2 thr case in
    thr=$(size "$t")
    case=T$t-$n
    in=payload.$n
    [[ -f $in ]] || payload "$in" "$n"
    socat_xfer "$case" "$in" "$case.out" PSI_THRESHOLD="$t"
    xfer_tokens "$case" "$n" "$thr"
    local left
    left=$(psi_keys "$P")
    ((left == 0)) || fail "$case: $left psi keys left in redis after every token was resolved"
    log "ok $case: $n bytes, $TS tokens through redis, no keys left"
}
thr=$(size 64K)
for n in $((thr - 1)) "$thr" $((thr + 1)); do
    xfer 64K "$n"
done
xfer 1M $((64 * MiB))

# ---- 2. AUTH and /db ---------------------------------------------------------
PA=$(free_port)
REDIS_PASS=s3cr3t-pw start_redis auth "$PA" --requirepass s3cr3t-pw
payload four.bin 4M
transfer auth "PSI_STORE=redis://:s3cr3t-pw@127.0.0.1:$PA/2" wait:gate.auth recv:auth.got -- \
    send:four.bin shut
await_ok "$CPID" "auth: client"
n2=$(REDIS_PASS=s3cr3t-pw psi_keys "$PA" 2)
n0=$(REDIS_PASS=s3cr3t-pw psi_keys "$PA" 0)
((n2 >= 1 && n0 == 0)) || fail "auth: expected the unread object in db 2 only; db2 has $n2 psi keys, db0 $n0"
touch gate.auth
await_ok "$SPID" "auth: server"
same_bytes four.bin auth.got "auth+db"
expect_stat auth.cli.stats tokens_sent -ge 1 "auth: sender"
n2=$(REDIS_PASS=s3cr3t-pw psi_keys "$PA" 2)
((n2 == 0)) || fail "auth: $n2 psi keys left in db 2"
grep -q s3cr3t-pw auth.*.err && fail "auth: the password appears in a log"
log "ok AUTH + /2: $n2 keys left, object was in db 2 while unread"

# wrong password: the sender goes inline and says AUTH failed
transfer badauth "PSI_STORE=redis://:wrong-pw@127.0.0.1:$PA" recv:badauth.got -- send:four.bin shut
await_ok "$CPID" "badauth: client"
await_ok "$SPID" "badauth: server"
same_bytes four.bin badauth.got "wrong password: inline"
grep -q 'AUTH failed' badauth.cli.err || { show badauth.cli.err; fail "badauth: no 'AUTH failed' warning"; }
grep -q wrong-pw badauth.*.err && fail "badauth: the password appears in a log"
log "ok wrong password: inline, $(grep -o 'AUTH failed.*' badauth.cli.err | head -1)"

# ---- 3. two servers -----------------------------------------------------------
P2=$(free_port)
start_redis second "$P2"
steps=()
cat /dev/null >many.expect
for i in $(seq 1 16); do
    payload "m$i.bin" 300K
    cat "m$i.bin" >>many.expect
    steps+=("send:m$i.bin")
done
transfer two "PSI_STORE=redis://127.0.0.1:$P,127.0.0.1:$P2 PSI_THRESHOLD=256K" \
    wait:gate.two recv:two.got -- "${steps[@]}" shut
await_ok "$CPID" "two: client"
a=$(psi_keys "$P")
b=$(psi_keys "$P2")
((a >= 2 && b >= 2)) || fail "two: objects should land on both servers; first has $a psi keys, second $b"
touch gate.two
await_ok "$SPID" "two: server"
same_bytes many.expect two.got "two servers"
expect_stat two.cli.stats tokens_sent -eq 16 "two: sender"
a2=$(psi_keys "$P")
b2=$(psi_keys "$P2")
((a2 == 0 && b2 == 0)) || fail "two: keys left: $a2 and $b2"
log "ok two servers: $a and $b keys while unread, none after"

# ---- 4. lifetimes from a policy --------------------------------------------------
cat >life.policy <<POL
connector r redis://127.0.0.1:$P?prefix=psi:
rule keep: size=3M.. => proxy connector=r lifetime=ttl ttl=2m
rule once: size=1M.. => proxy connector=r lifetime=evict-on-read
POL
payload three.bin 3M
payload one.bin 1M
transfer life "PSI_POLICY=$TEST_TMP/life.policy" recv:life.got -- send:three.bin send:one.bin shut
await_ok "$CPID" "life: client"
await_ok "$SPID" "life: server"
cat three.bin one.bin >life.expect
same_bytes life.expect life.got "lifetimes"
expect_stat life.cli.stats tokens_sent -eq 2 "life: sender"
ttlkeys=$(rcli "$P" --scan --pattern 'psi:{*-t}' | wc -l)
evkeys=$(rcli "$P" --scan --pattern 'psi:{*-e*' | wc -l)
((ttlkeys == 1 && evkeys == 0)) || fail "life: expected one ttl object left and no evict-on-read keys; got $ttlkeys and $evkeys"
k=$(rcli "$P" --scan --pattern 'psi:{*-t}')
t=$(rcli "$P" TTL "$k")
((t > 100 && t <= 120)) || fail "life: the ttl object's TTL is $t, expected <= 120 (ttl=2m)"
log "ok lifetimes: ttl object kept (TTL $t s), evict-on-read gone after its read"

# psi gc: what an object leaves behind when its first key is lost (here
# deleted by hand, as maxmemory eviction would) goes; the rest stays
orphan="psi:{0123456789abcdef0123456789abcdef}"
rcli "$P" HSET "$orphan.m" n 3 refs 1 >/dev/null
rcli "$P" SET "$orphan#2" junk >/dev/null
rcli "$P" SET unrelated keep >/dev/null
"$PSI_BIN" gc --store "redis://127.0.0.1:$P" >gc.out 2>&1 || { show gc.out; fail "psi gc failed"; }
grep -q "1 objects removed" gc.out || { show gc.out; fail "psi gc: expected one orphaned object removed"; }
[[ $(rcli "$P" EXISTS "$orphan.m" "$orphan#2" "$k" unrelated) == 2 ]] ||
    fail "psi gc: the orphan's keys should be gone and the ttl object and unrelated key kept"
log "ok psi gc: $(head -1 gc.out)"
rcli "$P" FLUSHALL >/dev/null

# ---- 5. store down at put --------------------------------------------------------
dead=$(free_port)
payload six.bin 6M
transfer down "PSI_STORE=redis://127.0.0.1:$dead" recv:down.got -- --chunk 2M send:six.bin shut
await_ok "$CPID" "down: client"
await_ok "$SPID" "down: server"
same_bytes six.bin down.got "store down at put: inline"
expect_stat down.cli.stats inline_fallbacks -ge 1 "down: sender"
expect_stat down.cli.stats tokens_sent -eq 0 "down: sender"
warn=$(count_psi_lines down.cli.err warn)
all=$(wc -l <down.cli.err)
((warn == 1 && all == 1)) || { show down.cli.err; fail "down: expected exactly one warning, got $all lines"; }
grep -q "127.0.0.1:$dead" down.cli.err || fail "down: the warning does not name the server"
log "ok store down at put: inline, one warning: $(cat down.cli.err)"

# ---- 6. store down at get --------------------------------------------------------
P3=$(free_port)
start_redis gone "$P3"
transfer gone "PSI_STORE=redis://127.0.0.1:$P3 PSI_STORE_RETRIES=2" wait:gate.gone recv:gone.got -- \
    send:four.bin shut
await_ok "$CPID" "gone: client"
stop_redis "$REDIS_PID"
touch gate.gone
expect_eio gone
grep -q 'after 2 retries' gone.srv.err || { show gone.srv.err; fail "gone: the message does not say it retried"; }
log "ok store down at get: EIO: $(grep -E '^psi\[' gone.srv.err | head -1)"

# ---- 7. restarts -------------------------------------------------------------------
P4=$(free_port)
start_redis volatile "$P4"
transfer lost "PSI_STORE=redis://127.0.0.1:$P4" wait:gate.lost recv:lost.got -- send:four.bin shut
await_ok "$CPID" "lost: client"
stop_redis "$REDIS_PID"
start_redis volatile "$P4"
touch gate.lost
expect_eio lost
grep -q 'no such object' lost.srv.err || { show lost.srv.err; fail "lost: the message does not say the object is gone"; }
log "ok restart without persistence: EIO: $(grep -E '^psi\[' lost.srv.err | head -1)"

P5=$(free_port)
start_redis durable "$P5" --appendonly yes --appendfsync always
transfer kept "PSI_STORE=redis://127.0.0.1:$P5" wait:gate.kept recv:kept.got -- send:four.bin shut
await_ok "$CPID" "kept: client"
stop_redis "$REDIS_PID"
start_redis durable "$P5" --appendonly yes --appendfsync always
touch gate.kept
await_ok "$SPID" "kept: server"
same_bytes four.bin kept.got "restart with appendonly yes"
left=$(psi_keys "$P5")
((left == 0)) || fail "kept: $left psi keys left after the read"
log "ok restart with appendonly yes: exact bytes after the restart"
