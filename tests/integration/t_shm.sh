#!/usr/bin/env bash
# The shm pool connector under real programs (PSI_STORE=shm://DIR):
#  1. socat to socat, sizes T-1, T, T+1 and 64 MiB: exact, tokens for the
#     large ones, and no object left afterwards (refcount);
#  2. the object outlives its sender: the sender exits (even killed with
#     SIGKILL) before the reader reads; psi gc leaves the unresolved object
#     alone; the reader gets exact bytes; the segment goes with the last read;
#  3. a payload larger than the pool (?max=) goes inline: one warning, counted
#     in inline_fallbacks, exact bytes;
#  4. bad tokens: the segment removed, or replaced by a file that is not a
#     segment, before the reader resolves: the read fails with EIO and one
#     log line naming the object; nothing wrong is delivered. One byte of
#     the payload changed in the segment: the reader gets the bytes before
#     the damaged 256 KiB piece, exact, then EIO;
#  5. routing: with a remote default store (redis:// on a port where nothing
#     listens), a same-host peer is served by the shm pool; PSI_ROUTE=fixed
#     sends to the default store, which is down, so the payload goes inline.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
need socat

POOL=/dev/shm/psi-t-shm-$$
POOL2=/dev/shm/psi-t-shm2-$$
trap '_cleanup; rm -rf "$POOL" "$POOL2"' EXIT
export PSI_STORE=shm://$POOL
B=16777216

segments() { find "$1" -maxdepth 1 -name 's*' 2>/dev/null | wc -l; }

# 1. sizes -----------------------------------------------------------------
T=1M
thr=$(size $T)
for n in $((thr - 1)) $thr $((thr + 1)) $((64 * MiB)); do
    case=sizes-$n
    payload "$case.in" "$n"
    socat_xfer "$case" "$case.in" "$case.out" PSI_THRESHOLD="$T"
    xfer_tokens "$case" "$n" "$thr"
done
objs=$("$PSI_BIN" store ls --store "$PSI_STORE" --json | "$PY" -c 'import json,sys; d=json.load(sys.stdin); print(sum(len(s.get("objects", [])) for s in d["stores"]))')
((objs == 0)) || fail "sizes: $objs objects left in the pool after every token was resolved"
log "sizes: exact at T-1, T, T+1 and 64 MiB; pool empty afterwards"

# A reader that accepts, writes its port to a file, waits for the file GO,
# then reads everything into OUT (EIO is reported as "EIO: <message>").
cat >slow_reader.py <<'EOF'
import os, socket, sys, time
port_file, go, out = sys.argv[1:4]
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(1)
with open(port_file + ".tmp", "w") as f:
    f.write(str(ls.getsockname()[1]))
os.rename(port_file + ".tmp", port_file)
c, _ = ls.accept()
for _ in range(6000):
    if os.path.exists(go):
        break
    time.sleep(0.01)
got = 0
with open(out, "wb") as f:
    try:
        while True:
            b = c.recv(1 << 20)
            if not b:
                break
            f.write(b)
            got += len(b)
    except OSError as e:
        print("EIO: %s after %d bytes" % (e, got) if e.errno == 5 else "error %s" % e)
        sys.exit(3)
EOF

# A sender that writes FILE to PORT and then either exits or waits to be
# killed (its object must outlive it either way).
cat >sender.py <<'EOF'
import os, socket, sys, time
port, path, mode, done = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
s = socket.create_connection(("127.0.0.1", port))
s.sendall(open(path, "rb").read())
open(done, "w").close()
if mode == "hang":
    time.sleep(600)
s.close()
EOF

# slow_transfer CASE N MODE: sender done (exited or killed) before the read.
slow_transfer() {
    local case=$1 n=$2 mode=$3 rpid spid port
    payload "$case.in" "$n"
    spawn "$case.r.out" "$case.r.err" preload env PSI_STATS="$TEST_TMP/$case.r.stats" \
        "$PY" slow_reader.py "$case.port" "$case.go" "$case.out"
    rpid=$SPAWNED
    wait_file "$case.port" "$rpid"
    port=$(cat "$case.port")
    spawn "$case.s.out" "$case.s.err" preload env PSI_PEERS="127.0.0.1:$port" \
        PSI_STATS="$TEST_TMP/$case.s.stats" "$PY" sender.py "$port" "$case.in" "$mode" "$case.sent"
    spid=$SPAWNED
    wait_file "$case.sent" "$spid"
    if [[ $mode == hang ]]; then
        kill -9 "$spid"
        await "$spid" "$case: sender" || true
    else
        await_ok "$spid" "$case: sender"
        expect_stat "$case.s.stats" tokens_sent -eq 1 "$case"
    fi
    RPID=$rpid
}

# 2. outliving the sender ---------------------------------------------------
slow_transfer exit $((8 * MiB)) exit
(($(segments "$POOL") >= 1)) || fail "exit: no segment holds the unresolved object"
touch exit.go
await_ok "$RPID" "exit: reader"
same_bytes exit.in exit.out "exit: sender gone before the read"

slow_transfer killed $((16 * MiB)) hang
"$PSI_BIN" gc --store "$PSI_STORE" >gc.out 2>&1 || fail "psi gc failed: $(cat gc.out)"
grep -q "0 objects removed" gc.out || fail "psi gc removed an object a reader still needs: $(cat gc.out)"
touch killed.go
await_ok "$RPID" "killed: reader"
same_bytes killed.in killed.out "killed: sender SIGKILLed before the read"
# The killed sender's segment went with its last read; the exited one's free
# segments were kept warm or unlinked at exit; psi gc gives the rest back.
"$PSI_BIN" gc --store "$PSI_STORE" >gc2.out 2>&1 || fail "psi gc failed: $(cat gc2.out)"
(($(segments "$POOL") == 0)) || fail "segments left after psi gc: $(ls "$POOL")"
log "outliving the sender: exact after exit and after SIGKILL; gc kept the live object, then freed everything"

# 3. pool too small: inline --------------------------------------------------
case=full
payload "$case.in" $((8 * MiB))
port=$(free_port)
spawn "$case.srv.out" "$case.srv.err" preload env PSI_STORE="shm://$POOL2?max=4M" \
    PSI_STATS="$TEST_TMP/$case.srv.stats" socat -u -b $B \
    "TCP-LISTEN:$port,reuseaddr,bind=127.0.0.1" "OPEN:$case.out,creat,trunc"
spid=$SPAWNED
wait_listen "$port" "$spid"
preload env PSI_STORE="shm://$POOL2?max=4M" PSI_STATS="$TEST_TMP/$case.cli.stats" \
    socat -u -b $B "OPEN:$case.in" "TCP:127.0.0.1:$port" 2>"$case.cli.err" ||
    fail "$case: client socat failed: $(cat "$case.cli.err")"
await_ok "$spid" "$case: server socat"
same_bytes "$case.in" "$case.out" "$case"
expect_stat "$case.cli.stats" inline_fallbacks -ge 1 "$case"
expect_stat "$case.cli.stats" tokens_sent -eq 0 "$case"
(($(count_psi_lines "$case.cli.err" "pool full") == 1)) ||
    fail "$case: expected one warning naming the full pool, got: $(cat "$case.cli.err")"
log "pool full: inline, one warning, exact"

# 4. bad tokens ---------------------------------------------------------------
for how in removed foreign; do
    slow_transfer "$how" $((4 * MiB)) exit
    for f in "$POOL"/s*; do
        if [[ $how == removed ]]; then
            rm -f "$f"
        else
            rm -f "$f" && head -c $((8 * MiB)) /dev/zero >"$f"
        fi
    done
    touch "$how.go"
    rc=0
    await "$RPID" "$how: reader" || rc=$?
    ((rc == 3)) || fail "$how: reader exited $rc, expected an EIO failure: $(cat "$how.r.out" "$how.r.err")"
    grep -q "^EIO" "$how.r.out" || fail "$how: no EIO: $(cat "$how.r.out")"
    want="No such file"
    [[ $how == foreign ]] && want="not a psinterpose segment"
    (($(count_psi_lines "$how.r.err" "$want") == 1)) ||
        fail "$how: expected one log line with '$want': $(cat "$how.r.err")"
    [[ ! -s $how.out ]] || fail "$how: bytes were delivered from a bad object"
    rm -f "$POOL"/s*
done
log "bad tokens: EIO and one log line for a removed segment and a foreign file"

slow_transfer corrupt $((4 * MiB)) exit
seg=$(find "$POOL" -maxdepth 1 -name 's*' | head -1)
# Byte 3 MiB + 5 of the payload (the 4 KiB header comes first).
printf '\x5a' | dd of="$seg" bs=1 seek=$((4096 + 3 * MiB + 5)) conv=notrunc status=none
touch corrupt.go
rc=0
await "$RPID" "corrupt: reader" || rc=$?
((rc == 3)) || fail "corrupt: reader exited $rc, expected EIO: $(cat corrupt.r.out corrupt.r.err)"
(($(count_psi_lines corrupt.r.err "do not match their checksum") == 1)) ||
    fail "corrupt: expected one log line naming the damaged bytes: $(cat corrupt.r.err)"
got=$(stat -c %s corrupt.out)
((got <= 3 * MiB)) || fail "corrupt: $got bytes delivered, the damaged piece starts at 3 MiB"
cmp -n "$got" corrupt.in corrupt.out || fail "corrupt: the bytes delivered before the damage differ"
rm -f "$POOL"/s*
log "corrupt payload: $got exact bytes, then EIO at the damaged piece"

# 5. routing ------------------------------------------------------------------
dead=$(free_port)
for route in auto fixed; do
    case=route-$route
    payload "$case.in" $((4 * MiB))
    port=$(free_port)
    spawn "$case.srv.out" "$case.srv.err" preload env PSI_STORE="redis://127.0.0.1:$dead" \
        PSI_ROUTE=$route PSI_STATS="$TEST_TMP/$case.srv.stats" socat -u -b $B \
        "TCP-LISTEN:$port,reuseaddr,bind=127.0.0.1" "OPEN:$case.out,creat,trunc"
    spid=$SPAWNED
    wait_listen "$port" "$spid"
    preload env PSI_STORE="redis://127.0.0.1:$dead" PSI_ROUTE=$route PSI_STORE_RETRIES=0 \
        PSI_STATS="$TEST_TMP/$case.cli.stats" socat -u -b $B "OPEN:$case.in" \
        "TCP:127.0.0.1:$port" 2>"$case.cli.err" || fail "$case: client failed: $(cat "$case.cli.err")"
    await_ok "$spid" "$case: server socat"
    same_bytes "$case.in" "$case.out" "$case"
    if [[ $route == auto ]]; then
        expect_stat "$case.cli.stats" tokens_sent -eq 1 "$case"
        expect_stat "$case.cli.stats" inline_fallbacks -eq 0 "$case"
    else
        expect_stat "$case.cli.stats" tokens_sent -eq 0 "$case"
        expect_stat "$case.cli.stats" inline_fallbacks -eq 1 "$case"
    fi
done
log "routing: same-host peer on shm with a remote default; PSI_ROUTE=fixed uses the default"
