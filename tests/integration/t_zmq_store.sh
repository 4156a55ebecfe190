#!/usr/bin/env bash
# The ZeroMQ store (docs/store-zmq.md) under unmodified socat and python:
#  1. PSI_STORE=zmq:// with no server running: the first put starts the
#     node-local one (ipc in the runtime dir); sizes T-1, T, T+1, 64 MiB.
#  2. a hand-started server on tcp:// and one on ipc://, same sizes.
#  Each: every byte checked (sha256), tokens sent == tokens resolved, and
#  afterwards the server holds no objects (every reference released).
#  3. an object outlives its sender: the sender writes everything and exits
#     before the receiver reads a byte.
#  4. the server is killed before the put: the payload goes inline, one
#     warning naming the endpoint, inline_fallbacks counted.
#  5. the server dies between put and get: the read fails with EIO after
#     the retries, and the receiver's log line names the endpoint.
# Every server started here is killed at the end (lib.sh's trap; the
# auto-started one by its pid from its log).
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
need socat

B=16777216
T=1M
thr=$(size $T)
export PSI_STORE_SERVER_BIN=$PSI_BIN
# Every peer here is on this host: without PSI_ROUTE=fixed, same-host
# payloads would take the shm pool (t_shm.sh tests that routing).
export PSI_ROUTE=fixed

# server_objects URL: the number of objects the server at URL holds.
server_objects() {
    local out
    out=$("$PSI_BIN" store-server --status="$1") || fail "psi store-server --status=$1 failed"
    awk '/^objects /{print $2; exit}' <<<"$out"
}

# expect_empty URL LABEL: the server holds nothing (polled briefly: the
# receiver's release is sent after its read returns).
expect_empty() {
    local url=$1 label=$2 n i
    for ((i = 0; i < 100; i++)); do
        n=$(server_objects "$url")
        ((n == 0)) && return 0
        sleep 0.05
    done
    "$PSI_BIN" store-server --status="$url" >&2 || true
    fail "$label: the server at $url still holds $n objects"
}

# xfer STORE NAME N: an N-byte payload from a connecting socat to a
# listening one, both preloaded with PSI_STORE=STORE.
xfer() {
    local store=$1 name=$2 n=$3
    local in=payload.$n
    [[ -f $in ]] || payload "$in" "$n"
    socat_xfer "$name" "$in" "$name.out" "${XENV[@]}" PSI_STORE="$store" PSI_THRESHOLD="$T"
    xfer_tokens "$name" "$n" "$thr"
    if proxied_size "$n" "$thr"; then
        expect_stat "$name.srv.stats" bytes_resolved -eq "$n" "$name"
    fi
    log "ok $name: $n bytes, $TS tokens"
}

XENV=(PSI_LOG=warn) # extra settings for both socats
sizes() { echo $((thr - 1)) "$thr" $((thr + 1)) $((64 * MiB)); }

# 1. auto-start of the node-local server
sock=$PSI_RUNTIME_DIR/store.sock
[[ ! -e $sock ]] || fail "a store socket exists before the test: $sock"
for n in $(sizes); do
    xfer zmq:// "auto-$n" "$n"
done
[[ -S $sock ]] || fail "auto-start: no server socket at $sock"
autopid=$(grep -oE 'psi store-server\[[0-9]+\]' "$PSI_RUNTIME_DIR/store.log" | head -1 | grep -oE '[0-9]+')
[[ -n $autopid ]] || fail "auto-start: no pid in $PSI_RUNTIME_DIR/store.log"
PIDS+=("$autopid")
starts=$(grep -c 'listening on' "$PSI_RUNTIME_DIR/store.log")
((starts == 1)) || fail "auto-start: $starts servers were started, expected 1"
grep -q LD_PRELOAD "/proc/$autopid/environ" && fail "auto-started server runs with LD_PRELOAD"
grep -qz '^PSI_DISABLE=1$' "/proc/$autopid/environ" || fail "auto-started server lacks PSI_DISABLE=1"
expect_empty "zmq://?autostart=0" "auto-start"
log "ok auto-start: one server (pid $autopid), empty after the run"

# 2. hand-started servers on tcp and ipc
zport=$(free_port)
spawn zsrv.tcp.out zsrv.tcp.err "$PSI_BIN" store-server --foreground --bind "tcp://127.0.0.1:$zport"
tcppid=$SPAWNED
wait_listen "$zport" "$tcppid"
zsock=$TEST_TMP/z.sock
spawn zsrv.ipc.out zsrv.ipc.err "$PSI_BIN" store-server --foreground --bind "ipc://$zsock"
ipcpid=$SPAWNED
wait_listen_unix "$zsock" "$ipcpid"
for n in $(sizes); do
    xfer "zmq://127.0.0.1:$zport" "tcp-$n" "$n"
    xfer "zmq://$zsock" "ipc-$n" "$n"
done
expect_empty "zmq://127.0.0.1:$zport" "tcp server"
expect_empty "zmq://$zsock" "ipc server"
log "ok hand-started tcp and ipc servers: empty after the runs"

# 2b. PSI_PEERS covers the store server's address: the connections libzmq's
# I/O thread makes to it must still never be framed.
XENV=(PSI_PEERS="127.0.0.1:*")
xfer "zmq://127.0.0.1:$zport" "peers-$thr" "$thr"
XENV=(PSI_LOG=warn)
expect_empty "zmq://127.0.0.1:$zport" "peers"
log "ok PSI_PEERS=127.0.0.1:* does not frame the store's own connection"

# 2c. a full server refuses the put: inline, one warning saying so
fport=$(free_port)
spawn zsrv.full.out zsrv.full.err preload "$PSI_BIN" store-server --foreground \
    --bind "tcp://127.0.0.1:$fport" --max-bytes 1M
fullpid=$SPAWNED
wait_listen "$fport" "$fullpid"
grep -q LD_PRELOAD "/proc/$fullpid/environ" && fail "store-server kept LD_PRELOAD"
payload two.bin 2M
port=$(free_port)
spawn full.srv.out full.srv.err preload env PSI_STATS="$TEST_TMP/full.srv.stats" \
    socat -u -b $B "TCP-LISTEN:$port,reuseaddr,bind=127.0.0.1" "OPEN:full.got,creat,trunc"
spid=$SPAWNED
wait_listen "$port" "$spid"
spawn full.cli.out full.cli.err preload env PSI_STORE="zmq://127.0.0.1:$fport" \
    PSI_STATS="$TEST_TMP/full.cli.stats" socat -u -b $B OPEN:two.bin "TCP:127.0.0.1:$port"
await_ok "$SPAWNED" "full: sender"
await_ok "$spid" "full: receiver"
same_bytes two.bin full.got "full store: inline"
expect_stat full.cli.stats inline_fallbacks -ge 1 "full store"
expect_stat full.cli.stats tokens_sent -eq 0 "full store"
grep -q "store full" full.cli.err || fail "full store: no 'store full' warning: $(cat full.cli.err)"
log "ok full store: inline: $(cat full.cli.err)"

# transfer NAME STORE SERVER-STEPS... -- CLIENT-STEPS...: netio_pair with
# PSI_STORE=STORE on both ends.
transfer() {
    local name=$1 env="PSI_STORE=$2"
    shift 2
    netio_pair "$name" "$env" "$env" "$@"
}

# 3. the object outlives its sender
payload eight.bin 8M
transfer survive "zmq://127.0.0.1:$zport" wait:gate1 recv:survive.got -- send:eight.bin shut
await_ok "$CPID" "survive: sender"
n=$(server_objects "zmq://127.0.0.1:$zport")
((n >= 1)) || fail "survive: the sender exited and the server holds $n objects"
touch gate1
await_ok "$SPID" "survive: receiver"
same_bytes eight.bin survive.got "survive"
expect_stat survive.cli.stats tokens_sent -ge 1 "survive"
expect_empty "zmq://127.0.0.1:$zport" "survive"
log "ok an object outlives its sender ($n held while the sender was gone)"

# 4. the server is killed before the put: inline, one warning
dead=$(free_port)
spawn zsrv.dead.out zsrv.dead.err "$PSI_BIN" store-server --foreground --bind "tcp://127.0.0.1:$dead"
deadpid=$SPAWNED
wait_listen "$dead" "$deadpid"
kill "$deadpid"
await "$deadpid" "store server killed before the put" || true
transfer noserver "zmq://127.0.0.1:$dead" recv:noserver.got -- send:eight.bin send:eight.bin shut
await_ok "$CPID" "noserver: sender"
await_ok "$SPID" "noserver: receiver"
cat eight.bin eight.bin >twice.bin
same_bytes twice.bin noserver.got "no server: inline"
expect_stat noserver.cli.stats inline_fallbacks -ge 1 "no server"
expect_stat noserver.cli.stats tokens_sent -eq 0 "no server"
warn=$(count_psi_lines noserver.cli.err warn)
all=$(wc -l <noserver.cli.err)
((warn == 1 && all == 1)) || fail "no server: expected exactly one warning line, got $all lines ($warn warnings): $(cat noserver.cli.err)"
grep -q "tcp://127.0.0.1:$dead" noserver.cli.err || fail "no server: the warning does not name the endpoint: $(cat noserver.cli.err)"
log "ok no server: inline, one warning: $(cat noserver.cli.err)"

# 5. the server dies between put and get
transfer killed "zmq://127.0.0.1:$zport" wait:gate2 recv:killed.got -- send:eight.bin shut
await_ok "$CPID" "killed: sender"
kill "$tcppid"
await "$tcppid" "killed: store server" || true
touch gate2
rc=0
await "$SPID" "killed: receiver" || rc=$?
errno=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["errno"])' killed.srv.json)
[[ $rc -eq 3 && $errno == 5 ]] || fail "killed: expected EIO (errno 5) for the reader; exit $rc, $(cat killed.srv.json)"
grep -E '^psi\[' killed.srv.err | grep -q "tcp://127.0.0.1:$zport" ||
    fail "killed: no log line naming tcp://127.0.0.1:$zport: $(cat killed.srv.err)"
grep -q "retries" killed.srv.err || fail "killed: the log line does not say it retried: $(cat killed.srv.err)"
expect_stat killed.srv.stats errors -ge 1 "killed"
log "ok server killed before the get: EIO: $(grep -E '^psi\[' killed.srv.err | head -1)"

# 6. without --foreground the server detaches once it answers; a second
# one on the same endpoint is refused.
dsock=$TEST_TMP/d.sock
"$PSI_BIN" store-server --bind "ipc://$dsock" --log-file "$TEST_TMP/dsrv.log" ||
    fail "detached store-server exited with status $?"
dpid=$(grep -oE 'psi store-server\[[0-9]+\]' "$TEST_TMP/dsrv.log" | head -1 | grep -oE '[0-9]+')
[[ -n $dpid ]] && PIDS+=("$dpid")
"$PSI_BIN" store-server --status="zmq://$dsock" >dsrv.status || fail "detached server does not answer"
rc=0
"$PSI_BIN" store-server --foreground --bind "ipc://$dsock" 2>dsrv2.err || rc=$?
((rc == 1)) && grep -q "already answers" dsrv2.err || fail "a second server on $dsock: exit $rc, $(cat dsrv2.err)"
kill "$dpid"
log "ok detached server (pid $dpid) answers; a second one is refused"

# The servers exit cleanly on SIGTERM.
kill "$ipcpid" "$autopid"
await "$ipcpid" "ipc store server" || fail "ipc store server: exit status $? on SIGTERM"
grep -q "exiting on signal 15" zsrv.ipc.err || fail "ipc server: no clean-exit line: $(tail -2 zsrv.ipc.err)"
[[ ! -e $zsock ]] || fail "ipc server left its socket $zsock"
log "ok servers exit on SIGTERM"
