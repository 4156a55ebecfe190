#!/usr/bin/env bash
# preloaded sender -> plain counting relay (not preloaded) -> preloaded
# receiver. The sender lists the relay as a peer (PSI_PEERS); the relay
# forwards the frames untouched, so the 64 MiB payload (16 MiB writes) must
# bypass it: the relay may carry less than 1% of the payload bytes, and the
# receiver must get every byte.
# Run twice: python3 (netio.py) on both ends, then socat on both ends.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
need socat

N=$((64 * MiB))
payload payload.bin $N

# relayed NAME: runs one transfer with the sender/receiver commands chosen by NAME.
relayed() {
    local name=$1 sport rport rpid spid cpid c2s s2c
    sport=$(free_port)
    rport=$(free_port)
    local rstats=$TEST_TMP/$name.recv.stats sstats=$TEST_TMP/$name.send.stats
    if [[ $name == python ]]; then
        spawn "$name.recv.out" "$name.recv.err" preload env PSI_STATS="$rstats" \
            "$PY" "$NETIO" server --port "$sport" recv:"$name.got"
    else
        spawn "$name.recv.out" "$name.recv.err" preload env PSI_STATS="$rstats" \
            socat -u -b 16777216 "TCP-LISTEN:$sport,reuseaddr,bind=127.0.0.1" \
            "OPEN:$name.got,creat,trunc"
    fi
    spid=$SPAWNED
    wait_listen "$sport" "$spid"
    # the relay runs plain: no LD_PRELOAD
    spawn "$name.relay.out" "$name.relay.err" "$PY" "$RELAY" --listen "$rport" \
        --target "127.0.0.1:$sport" --counts "$name.relay.json"
    rpid=$SPAWNED
    wait_listen "$rport" "$rpid"
    if [[ $name == python ]]; then
        spawn "$name.send.out" "$name.send.err" preload env PSI_STATS="$sstats" \
            PSI_PEERS="127.0.0.1:$rport" \
            "$PY" "$NETIO" client --port "$rport" --chunk 16M send:payload.bin shut
    else
        spawn "$name.send.out" "$name.send.err" preload env PSI_STATS="$sstats" \
            PSI_PEERS="127.0.0.1:$rport" \
            socat -u -b 16777216 OPEN:payload.bin "TCP:127.0.0.1:$rport"
    fi
    cpid=$SPAWNED
    await_ok "$cpid" "$name: sender"
    await_ok "$spid" "$name: receiver"
    await_ok "$rpid" "$name: relay"
    same_bytes payload.bin "$name.got" "$name via relay"

    c2s=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["c2s"])' "$name.relay.json")
    s2c=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["s2c"])' "$name.relay.json")
    log "$name: relay carried $c2s bytes sender->receiver, $s2c back, for a $N-byte payload"
    ((c2s * 100 < N)) || fail "$name: the relay carried $c2s bytes of a $N-byte payload (>= 1%): the payload did not bypass it"
    expect_stat "$sstats" tokens_sent -ge 4 "$name sender"
    expect_stat "$sstats" bytes_proxied -eq "$N" "$name sender"
    expect_stat "$rstats" tokens_resolved -eq "$(tokens_sent "$sstats")" "$name receiver"
    expect_stat "$rstats" bytes_resolved -eq "$N" "$name receiver"
    expect_stat "$rstats" errors -eq 0 "$name receiver"
    log "ok $name: $(tokens_sent "$sstats") tokens, relay carried $c2s bytes"
}

relayed python
relayed socat
