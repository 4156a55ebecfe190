#!/usr/bin/env bash
# psi store ls / du and psi gc against real transfers (docs/store-cli.md).
#
# A preloaded socat sends a payload to a preloaded python3 that accepted
# the connection but does not read yet: the sender is done, the token sits
# in the socket, and the object is in the store with one reference. ls and
# du (table and --json) must show exactly those objects, each object file
# holding the payload's bytes; once the readers have read, nothing.
# Then a policy with ttl=1s on its own connector: gc removes the expired
# reference, and the object itself once it is past the grace period (aged
# with touch). Bad options exit 2 with a message; a broken store exits 1.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
need socat

B=16777216
STORE_DIR=${PSI_STORE#file://}


# has NAME REGEX WHAT: NAME.out or NAME.err matches REGEX (extended).
has() { output_has "$1" -E "$2" "$3"; }

# jcheck FILE PYTHON-EXPR WHAT: the JSON in FILE (as `j`) satisfies EXPR.
# `st(url)` is the store entry with that url.
jcheck() {
    "$PY" - "$1" "$2" <<'EOF' || { sed 's/^/    | /' "$1"; fail "$3"; }
import json, sys
j = json.load(open(sys.argv[1]))
def st(url):
    m = [s for s in j["stores"] if s["url"] == url]
    assert len(m) == 1, "store %s listed %d times" % (url, len(m))
    return m[0]
assert eval(sys.argv[2]), sys.argv[2]
EOF
}

# hold NAME PAYLOAD [ENV...]: a reader that accepts and waits for go.NAME
# before reading, and a sender that sends PAYLOAD and exits. Sets HOLD_PID.
hold() {
    local name=$1 in=$2 port spid
    shift 2
    port=$(free_port)
    spawn "$name.rd.out" "$name.rd.err" preload "$PY" "$NETIO" server --port "$port" \
        "wait:$TEST_TMP/go.$name" "recv:$TEST_TMP/$name.got"
    HOLD_PID=$SPAWNED
    wait_listen "$port" "$HOLD_PID"
    spawn "$name.tx.out" "$name.tx.err" preload env PSI_THRESHOLD=64K \
        PSI_STATS="$TEST_TMP/$name.tx.stats" "$@" socat -u -b "$B" "OPEN:$in" \
        "TCP:127.0.0.1:$port"
    await_ok "$SPAWNED" "$name: sending socat"
    expect_stat "$name.tx.stats" tokens_sent -eq 1 "$name: sender"
}

# ---- objects held by readers that have not read -----------------------------

payload a.bin 3M
payload b.bin 5M
hold a a.bin
pid_a=$HOLD_PID
hold b b.bin
pid_b=$HOLD_PID

expect_exit 0 ls_held "$PSI_BIN" store ls --store "$PSI_STORE" --json
jcheck ls_held.out "len(j['stores']) == 1 and j['stores'][0]['status'] == 'ok'" \
    "ls --store lists one store"
jcheck ls_held.out "sorted(o['size'] for o in st('$PSI_STORE')['objects']) == [3<<20, 5<<20]" \
    "ls shows the two held objects"
jcheck ls_held.out "all(o['refs'] == 1 and 0 < o['expires'] <= 3600 and 0 <= o['age'] < 60
    and o['where'].startswith('$STORE_DIR/') and o['where'].endswith(o['key'])
    for o in st('$PSI_STORE')['objects'])" "each object has one ref, an expiry, its path"
# Every object file holds exactly one payload's bytes.
mapfile -t wheres < <("$PY" -c 'import json,sys
for o in sorted(json.load(open(sys.argv[1]))["stores"][0]["objects"], key=lambda o: o["size"]):
    print(o["where"])' ls_held.out)
same_bytes a.bin "${wheres[0]}" "object of a.bin"
same_bytes b.bin "${wheres[1]}" "object of b.bin"
log "ok ls --json: 2 held objects, bytes match the payloads"

# Without --store: PSI_STORE plus the default stores; ours listed once.
expect_exit 0 ls_all "$PSI_BIN" store ls --json
jcheck ls_all.out "len(st('$PSI_STORE')['objects']) == 2" "ls (all stores) shows PSI_STORE's objects"
jcheck ls_all.out "any(s['default'] and s['connector'] == 'file' for s in j['stores'])" \
    "ls (all stores) includes the default file store"

# The table: both keys, largest first with --sort size, a summary line.
expect_exit 0 ls_table "$PSI_BIN" store ls --store "$PSI_STORE" --sort size
key_a=$(basename "${wheres[0]}")
key_b=$(basename "${wheres[1]}")
has ls_table "^CONNECTOR +KEY +SIZE +AGE +REFS +EXPIRES +WHERE" "ls header"
[[ $(sed -n 2p ls_table.out) == *"$key_b"*"5.0 MiB"* ]] || fail "ls --sort size: 5 MiB first: $(cat ls_table.out)"
[[ $(sed -n 3p ls_table.out) == *"$key_a"*"3.0 MiB"* ]] || fail "ls --sort size: 3 MiB second: $(cat ls_table.out)"
has ls_table "^2 objects, 8.0 MiB$" "ls summary"
log "ok ls table: sorted by size"

expect_exit 0 du_held "$PSI_BIN" store du --store "$PSI_STORE" --json
jcheck du_held.out "j['total'] == {'objects': 2, 'bytes': 8<<20, 'referenced': 2,
    'oldest_age': j['total']['oldest_age']} and j['total']['oldest_age'] < 60" "du --json totals"
expect_exit 0 du_table "$PSI_BIN" store du --store "$PSI_STORE"
has du_table "^file +file://$STORE_DIR +2 +8.0 MiB +2 " "du row"
has du_table "^TOTAL +2 +8.0 MiB +2 " "du total"
log "ok du: 2 objects, 8 MiB, 2 referenced"

# ---- the readers read: nothing left -------------------------------------------

touch go.a go.b
await_ok "$pid_a" "reader a"
await_ok "$pid_b" "reader b"
same_bytes a.bin a.got "a"
same_bytes b.bin b.got "b"
expect_exit 0 ls_after "$PSI_BIN" store ls --store "$PSI_STORE" --json
jcheck ls_after.out "st('$PSI_STORE')['objects'] == []" "ls after the reads"
expect_exit 0 du_after "$PSI_BIN" store du --store "$PSI_STORE" --json
jcheck du_after.out "j['total']['objects'] == 0 and j['total']['bytes'] == 0" "du after the reads"
log "ok after the reads: store empty"

# ---- gc: an expired reference, then an aged unreferenced object ----------------

GC_URL=file://$TEST_TMP/gcstore
cat >short.policy <<EOF
connector short $GC_URL
rule short: channel=tcp => proxy connector=short ttl=1s threshold=64K
EOF
hold c a.bin PSI_POLICY="$TEST_TMP/short.policy"
pid_c=$HOLD_PID
expect_exit 0 ls_pol "$PSI_BIN" store ls --policy short.policy --json
jcheck ls_pol.out "len(st('$GC_URL')['objects']) == 1 and st('$GC_URL')['objects'][0]['refs'] == 1" \
    "ls --policy lists the policy's connector"
expect_exit 0 ls_env "env" PSI_POLICY="$TEST_TMP/short.policy" "$PSI_BIN" store ls --json
jcheck ls_env.out "len(st('$GC_URL')['objects']) == 1" "ls with PSI_POLICY lists the policy's connector"

# Poll (bounded) until gc has dropped the expired reference.
for ((i = 0; ; i++)); do
    expect_exit 0 gc_ref "$PSI_BIN" gc --store "$GC_URL" --store "$PSI_STORE"
    grep -q "^store $GC_URL: 1 refs expired" gc_ref.out && break
    ((i < 100)) || fail "gc removed no expired reference in 5 s: $(cat gc_ref.out)"
    sleep 0.05
done
has gc_ref "^store $PSI_STORE: 0 refs expired" "gc reports every --store"
has gc_ref "^registry .*dead entries removed" "gc still cleans the registry"
expect_exit 0 ls_grace "$PSI_BIN" store ls --store "$GC_URL" --json
jcheck ls_grace.out "[(o['refs'], o['size']) for o in j['stores'][0]['objects']] == [(0, 3<<20)]" \
    "the unreferenced object waits out the grace period"
where_c=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["stores"][0]["objects"][0]["where"])' ls_grace.out)
touch -d '-2 minutes' "$where_c"
expect_exit 0 gc_obj "$PSI_BIN" gc --store "$GC_URL"
has gc_obj "^store $GC_URL: 0 refs expired, 1 objects removed, 0 temp files removed, 3.0 MiB freed" \
    "gc removes the aged object"
expect_exit 0 ls_gone "$PSI_BIN" store ls --store "$GC_URL" --json
jcheck ls_gone.out "j['stores'][0]['objects'] == []" "ls after gc"
kill "$pid_c" 2>/dev/null || true # its token names nothing now
log "ok gc: expired reference, then the aged object"

# ---- usage errors and failures ---------------------------------------------------

expect_exit 2 u1 "$PSI_BIN" store
has u1 "psi store: no store command given" "psi store alone"
expect_exit 2 u2 "$PSI_BIN" store frob
has u2 "unknown store command 'frob'" "unknown store command"
expect_exit 2 u3 "$PSI_BIN" store ls --bogus
has u3 "psi store: unknown option '--bogus'" "unknown ls option"
expect_exit 2 u4 "$PSI_BIN" store ls --sort color
has u4 "--sort: 'color' is not size or age" "bad --sort"
expect_exit 2 u5 "$PSI_BIN" store du --store
has u5 "option '--store' needs a value" "--store without a value"
expect_exit 2 u6 "$PSI_BIN" store du --sort size
has u6 "--sort is an ls option" "du --sort"
expect_exit 2 u7 "$PSI_BIN" gc --nope
has u7 "psi gc: unknown option '--nope'" "unknown gc option"
expect_exit 2 u8 "$PSI_BIN" store ls --store nope://x
has u8 "not a store URL|unknown connector" "unknown scheme"
expect_exit 2 u9 "$PSI_BIN" store ls extra
has u9 "unexpected argument 'extra'" "extra argument"
printf 'rule: channel=bogus => proxy\n' >bad.policy
expect_exit 2 u10 "$PSI_BIN" store du --policy bad.policy
has u10 "bad.policy:1:.*error" "a policy with errors"
expect_exit 0 h1 "$PSI_BIN" store --help
has h1 "^usage: psi store ls" "psi store --help"
expect_exit 0 h2 "$PSI_BIN" help store
has h2 "^usage: psi store ls" "psi help store"
log "ok usage errors exit 2 with a message"

# A store that cannot be listed (its directory is a file) fails with 1,
# and the others are still listed.
: >notadir
expect_exit 1 f1 "$PSI_BIN" store ls --store "file://$TEST_TMP/notadir" --store "$PSI_STORE"
has f1 "psi store ls: file://$TEST_TMP/notadir: .*[Nn]ot a directory" "failed store named"
has f1 "^0 objects" "the other store still listed"
expect_exit 1 f2 "$PSI_BIN" store du --json --store "file://$TEST_TMP/notadir"
jcheck f2.out "j['stores'][0]['status'] == 'failed' and 'message' in j['stores'][0]" "du --json failure"
expect_exit 1 f3 "$PSI_BIN" gc --store "file://$TEST_TMP/notadir"
has f3 "psi gc: store file://$TEST_TMP/notadir" "gc failure named"
log "ok a broken store exits 1 and is named"
