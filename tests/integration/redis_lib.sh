# shellcheck shell=bash
# Redis helpers for t_redis*.sh and tests/bench/redis.sh, sourced after
# lib.sh. Servers run in $TEST_TMP/<name>, on loopback, without LD_PRELOAD,
# and are killed by lib.sh's exit trap (PIDS).

# Every peer in these tests is on this host: without PSI_ROUTE=fixed,
# same-host payloads would take the shm pool (t_shm.sh tests that routing).
export PSI_ROUTE=fixed

need redis-server redis-cli

# start_redis NAME PORT [ARGS...]: a redis-server with persistence off
# (later ARGS override, e.g. --appendonly yes). Sets REDIS_PID.
start_redis() {
    local name=$1 port=$2
    shift 2
    mkdir -p "$TEST_TMP/$name"
    spawn "$TEST_TMP/$name/out" "$TEST_TMP/$name/err" redis-server --port "$port" \
        --bind 127.0.0.1 --save '' --appendonly no --dir "$TEST_TMP/$name" \
        --logfile "$TEST_TMP/$name/log" "$@"
    REDIS_PID=$SPAWNED
    wait_listen "$port" "$REDIS_PID"
    # listening is not loaded: poll until it answers (an AOF load takes time)
    local i
    for ((i = 0; i < 500; i++)); do
        [[ $(redis-cli --no-auth-warning -p "$port" ${REDIS_PASS:+-a "$REDIS_PASS"} PING 2>/dev/null) == PONG ]] && return 0
        sleep 0.02
    done
    fail "redis-server $name on port $port does not answer PING"
}

# cluster_port: a free port P whose cluster bus port P+10000 is free too.
cluster_port() {
    "$PY" - <<'PY'
import socket
for _ in range(200):
    a = socket.socket()
    a.bind(("127.0.0.1", 0))
    p = a.getsockname()[1]
    if p + 10000 > 65535:
        a.close()
        continue
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", p + 10000))
    except OSError:
        a.close()
        continue
    b.close()
    a.close()
    print(p)
    break
PY
}

# stop_redis PID: kills it (no SHUTDOWN: no save) and waits.
stop_redis() {
    kill -9 "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# rcli PORT ARGS...: redis-cli on the port (REDIS_PASS: -a).
rcli() {
    local port=$1
    shift
    redis-cli --no-auth-warning -p "$port" ${REDIS_PASS:+-a "$REDIS_PASS"} "$@"
}

# psi_keys PORT [DB]: how many keys of ours (psi:*) the server holds.
psi_keys() {
    rcli "$1" -n "${2:-0}" --scan --pattern 'psi:*' | wc -l
}

# transfer NAME ENV SERVER-STEPS... -- CLIENT-STEPS...: netio_pair with the
# same ENV (words) on both ends.
transfer() {
    local name=$1 env=$2
    shift 2
    netio_pair "$name" "$env" "$env" "$@"
}
