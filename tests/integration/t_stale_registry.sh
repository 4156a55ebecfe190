#!/usr/bin/env bash
# A registry entry must never outlive the listener it describes in the eyes
# of a connecting process: start a preloaded listener (it registers), kill -9
# it (its entry stays behind), start a PLAIN listener on the same port, and
# connect with a preloaded client. The plain server must receive exactly the
# client's bytes: no HELLO, no frames, no tokens.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

REG=$PSI_RUNTIME_DIR/registry
payload small.bin 100
payload big.bin 3M
cat small.bin big.bin small.bin >expect.bin
port=$(free_port)

# 1. a preloaded listener registers
spawn old.out old.err preload "$PY" "$NETIO" server --port "$port" recv:old.got
old=$SPAWNED
wait_listen "$port" "$old"
for ((i = 0; i < 250; i++)); do
    [[ -n $(ls -A "$REG" 2>/dev/null) ]] && break
    sleep 0.02
done
entries=$(ls -A "$REG" 2>/dev/null || true)
[[ -n $entries ]] || fail "a preloaded listener on port $port left no entry in $REG"
log "registry while the preloaded listener runs: $(echo "$entries" | tr '\n' ' ')"

# 2. it dies without cleaning up
kill -9 "$old"
wait "$old" 2>/dev/null || true
for ((i = 0; i < 250; i++)); do
    [[ -z $(ss -Hltn "sport = :$port") ]] && break
    sleep 0.02
done
after=$(ls -A "$REG" 2>/dev/null || true)
[[ -n $after ]] || fail "the registry entry vanished with kill -9: this test needs a stale entry"
log "registry after kill -9: $(echo "$after" | tr '\n' ' ')"

# 3. a plain listener takes the port, 4. a preloaded client connects
spawn plain.out plain.err "$PY" "$NETIO" server --port "$port" recv:plain.got
plain=$SPAWNED
wait_listen "$port" "$plain"
spawn cli.out cli.err preload env PSI_STATS="$TEST_TMP/cli.stats" \
    "$PY" "$NETIO" client --port "$port" send:small.bin send:big.bin send:small.bin shut
cli=$SPAWNED
await_ok "$cli" "preloaded client"
await_ok "$plain" "plain server"
same_bytes expect.bin plain.got "preloaded client -> plain server behind a stale registry entry"
expect_stat cli.stats tokens_sent -eq 0 "client behind a stale entry"
expect_stat cli.stats errors -eq 0 "client behind a stale entry"
if [[ -n $(ls -A "$REG" 2>/dev/null || true) ]]; then
    log "the stale entry is still there and was not trusted"
else
    log "the stale entry was removed by the client (not trusted)"
fi
log "ok stale registry entry ignored"

# 5. a preloaded listener registers, then execs an image without the
#    interposer that keeps the listening socket: the inode still listens, but
#    the registry must not trust it (the new image cannot decode HELLO).
port=$(free_port)
cat >exec_plain.py <<'PYEOF'
import os, socket, sys
port, py, netio, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port))
ls.listen(4)
ls.set_inheritable(True)
env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
code = ("import socket,sys\n"
        "ls = socket.socket(fileno=%d)\n"
        "open(sys.argv[1] + '.ready', 'w').close()\n"
        "c, _ = ls.accept()\n"
        "with open(sys.argv[1], 'wb') as f:\n"
        "    while True:\n"
        "        b = c.recv(1 << 20)\n"
        "        if not b: break\n"
        "        f.write(b)\n") % ls.fileno()
os.execve(py, [py, "-c", code, out], env)
PYEOF
spawn exec.out exec.err preload "$PY" exec_plain.py "$port" "$PY" "$NETIO" exec.got
ex=$SPAWNED
wait_listen "$port" "$ex"
wait_file exec.got.ready 30 # the exec happened: the plain image holds the socket
spawn cli2.out cli2.err preload env PSI_STATS="$TEST_TMP/cli2.stats" \
    "$PY" "$NETIO" client --port "$port" send:small.bin send:big.bin send:small.bin shut
await_ok "$SPAWNED" "preloaded client"
await_ok "$ex" "exec'd plain server"
same_bytes expect.bin exec.got "preloaded client -> listener inherited by a plain exec'd image"
expect_stat cli2.stats tokens_sent -eq 0 "client of an exec'd plain listener"
log "ok a registered listener that exec'd a plain image is not trusted"
