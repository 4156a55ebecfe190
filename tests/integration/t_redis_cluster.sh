#!/usr/bin/env bash
# The Redis connector against a 3-node Redis Cluster (no replicas), the URL
# naming one node only (docs/store-redis.md, "Cluster"):
#  1. 24 payloads through preloaded netio land on several nodes (slots by
#     CRC16 of the {hashtag}); byte-exact; no psi keys left after;
#  2. 64 MiB and a chunked 8 MiB (?chunk=1M) object, byte-exact;
#  3. ASK: the object's slot is put in MIGRATING/IMPORTING state by hand and
#     its keys MIGRATEd, so the reader's GET is answered -ASK; it follows
#     with ASKING to the importing node and gets the exact bytes;
#  4. MOVED: a reader that already holds a slot map reads an object whose
#     slot was then moved to another node; it follows -MOVED.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
source "$HERE/redis_lib.sh"

show() { sed 's/^/    | /' "$1"; }

PORTS=()
for i in 1 2 3; do
    p=$(cluster_port)
    [[ -n $p ]] || fail "no free port pair for a cluster node"
    PORTS+=("$p")
    start_redis "node$i" "$p" --cluster-enabled yes --cluster-config-file nodes.conf \
        --cluster-node-timeout 5000
done
redis-cli --cluster create "127.0.0.1:${PORTS[0]}" "127.0.0.1:${PORTS[1]}" \
    "127.0.0.1:${PORTS[2]}" --cluster-replicas 0 --cluster-yes >create.log 2>&1 ||
    { show create.log; fail "redis-cli --cluster create failed"; }
for p in "${PORTS[@]}"; do
    for ((i = 0; i < 500; i++)); do
        rcli "$p" CLUSTER INFO | grep -q '^cluster_state:ok' && break
        sleep 0.02
    done
    rcli "$p" CLUSTER INFO | grep -q '^cluster_state:ok' || fail "node $p: cluster state not ok"
done
log "cluster up on ports ${PORTS[*]}"
export PSI_STORE=redis://127.0.0.1:${PORTS[0]}


# node_keys: psi keys per node, as "a b c".
node_keys() {
    local p out=()
    for p in "${PORTS[@]}"; do out+=("$(psi_keys "$p")"); done
    echo "${out[*]}"
}

# ---- 1. many payloads over the slots -----------------------------------------------
steps=()
: >many.expect
for i in $(seq 1 24); do
    payload "m$i.bin" 300K
    cat "m$i.bin" >>many.expect
    steps+=("send:m$i.bin")
done
transfer many PSI_THRESHOLD=256K wait:gate.many recv:many.got -- "${steps[@]}" shut
await_ok "$CPID" "many: client"
read -r a b c <<<"$(node_keys)"
used=$(( (a > 0) + (b > 0) + (c > 0) ))
((a + b + c == 48)) || fail "many: expected 48 psi keys (24 objects + meta), nodes hold $a $b $c"
((used >= 2)) || fail "many: objects should spread over the nodes; they hold $a $b $c keys"
touch gate.many
await_ok "$SPID" "many: server"
same_bytes many.expect many.got "cluster: 24 payloads"
expect_stat many.cli.stats tokens_sent -eq 24 "many: sender"
expect_stat many.srv.stats tokens_resolved -eq 24 "many: receiver"
left=$(node_keys)
[[ $left == "0 0 0" ]] || fail "many: psi keys left: $left"
log "ok 24 objects over the cluster (keys per node: $a $b $c), none left"

# ---- 2. large and chunked -----------------------------------------------------------
payload big.bin 64M
transfer big "" recv:big.got -- send:big.bin shut
await_ok "$CPID" "big: client"
await_ok "$SPID" "big: server"
same_bytes big.bin big.got "cluster: 64 MiB"
expect_stat big.cli.stats tokens_sent -ge 1 "big: sender"
payload eight.bin 8M
transfer chunked "PSI_STORE=redis://127.0.0.1:${PORTS[1]}?chunk=1M" recv:chunked.got -- \
    --chunk 8M send:eight.bin shut
await_ok "$CPID" "chunked: client"
await_ok "$SPID" "chunked: server"
same_bytes eight.bin chunked.got "cluster: 8 MiB in 1 MiB chunks"
expect_stat chunked.cli.stats tokens_sent -eq 1 "chunked: sender"
left=$(node_keys)
[[ $left == "0 0 0" ]] || fail "big/chunked: psi keys left: $left"
log "ok 64 MiB and a chunked 8 MiB object, none left"

# the node holding psi keys now (one object), its port index, and the slot
holder() {
    local i
    for i in 0 1 2; do
        if (($(psi_keys "${PORTS[$i]}") > 0)); then
            echo "$i"
            return
        fi
    done
    echo -1
}

# migrate_keys SRC DST SLOT: IMPORTING/MIGRATING, then MIGRATE every key of the slot.
migrate_keys() {
    local src=$1 dst=$2 slot=$3 sid did keys
    sid=$(rcli "${PORTS[$src]}" CLUSTER MYID)
    did=$(rcli "${PORTS[$dst]}" CLUSTER MYID)
    rcli "${PORTS[$dst]}" CLUSTER SETSLOT "$slot" IMPORTING "$sid" >/dev/null
    rcli "${PORTS[$src]}" CLUSTER SETSLOT "$slot" MIGRATING "$did" >/dev/null
    mapfile -t keys < <(rcli "${PORTS[$src]}" CLUSTER GETKEYSINSLOT "$slot" 100)
    out=$(rcli "${PORTS[$src]}" MIGRATE 127.0.0.1 "${PORTS[$dst]}" "" 0 5000 KEYS "${keys[@]}")
    [[ $out == OK ]] || fail "MIGRATE of slot $slot: $out"
    MIGRATED=${#keys[@]}
}

# ---- 3. ASK --------------------------------------------------------------------------
payload ask.bin 2M
transfer ask "" wait:gate.ask recv:ask.got -- send:ask.bin shut
await_ok "$CPID" "ask: client"
src=$(holder)
((src >= 0)) || fail "ask: no node holds the object"
key=$(rcli "${PORTS[$src]}" --scan --pattern 'psi:*' | head -1)
slot=$(rcli "${PORTS[$src]}" CLUSTER KEYSLOT "$key")
dst=$(( (src + 1) % 3 ))
migrate_keys "$src" "$dst" "$slot"
touch gate.ask
await_ok "$SPID" "ask: server"
same_bytes ask.bin ask.got "cluster: read through -ASK"
expect_stat ask.srv.stats tokens_resolved -eq 1 "ask: receiver"
n=$(psi_keys "${PORTS[$dst]}")
((n == 0)) || fail "ask: $n psi keys left on the importing node (release through ASK?)"
asks=$(rcli "${PORTS[$dst]}" INFO commandstats | grep -o 'cmdstat_asking:calls=[0-9]*' | cut -d= -f2)
((${asks:-0} >= 2)) || fail "ask: the importing node saw ${asks:-0} ASKING commands (expected GET and release)"
# finish the migration so the cluster is whole again
for p in "${PORTS[@]}"; do
    rcli "$p" CLUSTER SETSLOT "$slot" NODE "$(rcli "${PORTS[$dst]}" CLUSTER MYID)" >/dev/null
done
log "ok ASK: slot $slot MIGRATING ${PORTS[$src]} -> ${PORTS[$dst]} ($MIGRATED keys moved), exact bytes, none left"

# ---- 4. MOVED ------------------------------------------------------------------------
payload first.bin 2M
payload second.bin 2M
transfer moved "" recvn:2097152:moved1.got wait:gate.moved recv:moved2.got -- \
    send:first.bin wait:gate.sent send:second.bin shut
# the reader resolves the first object (and so loads its slot map) ...
wait_file moved1.got 60
for ((i = 0; i < 500; i++)); do
    [[ $(stat -c %s moved1.got 2>/dev/null || echo 0) -eq 2097152 ]] && break
    sleep 0.02
done
same_bytes first.bin moved1.got "cluster: first object"
touch gate.sent
await_ok "$CPID" "moved: client"
# ... then the second object's slot moves for good
src=$(holder)
((src >= 0)) || fail "moved: no node holds the second object"
key=$(rcli "${PORTS[$src]}" --scan --pattern 'psi:*' | head -1)
slot=$(rcli "${PORTS[$src]}" CLUSTER KEYSLOT "$key")
dst=$(( (src + 2) % 3 ))
migrate_keys "$src" "$dst" "$slot"
did=$(rcli "${PORTS[$dst]}" CLUSTER MYID)
for p in "${PORTS[@]}"; do
    rcli "$p" CLUSTER SETSLOT "$slot" NODE "$did" >/dev/null
done
touch gate.moved
await_ok "$SPID" "moved: server"
same_bytes second.bin moved2.got "cluster: read through -MOVED"
left=$(node_keys)
[[ $left == "0 0 0" ]] || fail "moved: psi keys left: $left"
log "ok MOVED: slot $slot moved ${PORTS[$src]} -> ${PORTS[$dst]} under a reader with a slot map, exact bytes"
