# shellcheck shell=bash disable=SC2034
# Helpers for the integration tests. Sourced by every t_*.sh.
#
# The rule this file keeps: nothing in the harness runs under LD_PRELOAD.
# LD_PRELOAD is set per command, on the program under test only, through
# `preload CMD...` (foreground) or `spawn OUT ERR preload CMD...` (background).
#
# run.sh gives each test its own directory (TEST_TMP, also the cwd), its own
# registry (PSI_RUNTIME_DIR) and its own store (PSI_STORE). A test started by
# hand (bash tests/integration/t_x.sh) gets the same set up here.

set -euo pipefail
unset LD_PRELOAD

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=${ROOT:-$(cd "$HERE/../.." && pwd)}
PSI_LIB=${PSI_TEST_LIB:-$ROOT/build/libpsinterpose.so}
PSI_BIN=${PSI_TEST_BIN:-$ROOT/build/psi}
# What LD_PRELOAD holds for a program under test. PSI_TEST_PRELOAD_EXTRA goes
# first: a sanitizer build of the library needs its runtime (libasan) loaded
# before anything else in an unsanitized program (make integration-san).
PSI_PRELOAD="${PSI_TEST_PRELOAD_EXTRA:+$PSI_TEST_PRELOAD_EXTRA }$PSI_LIB"

if [[ -z ${TEST_TMP:-} ]]; then
    TEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/psi-it.XXXXXX")
    export PSI_RUNTIME_DIR=$TEST_TMP/run
    export PSI_STORE=file://$TEST_TMP/store
    echo "# standalone run in $TEST_TMP (kept)"
fi
mkdir -p "$TEST_TMP" "$PSI_RUNTIME_DIR"
cd "$TEST_TMP"

# The real interpreter, not a version-manager shim: a shim is a shell script,
# and preloading it would interpose bash as well as python.
PY=$(python3 -c 'import sys; print(sys.executable)')
NETIO=$HERE/netio.py
RELAY=$HERE/relay.py

KiB=1024
MiB=$((1024 * 1024))

log() { printf '%s\n' "$*"; }

# Prints the last lines of every program log of this test, then the message,
# and exits 1. run.sh shows the tail of this output.
fail() {
    local f
    for f in "$TEST_TMP"/*.err; do
        [[ -s $f ]] || continue
        echo "--- tail of $(basename "$f")"
        tail -n 6 "$f"
    done >&2
    echo "FAIL: $*" >&2
    exit 1
}

need() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || fail "required program '$c' is not installed (make deps)"
    done
}

[[ -f $PSI_LIB ]] || fail "$PSI_LIB does not exist: run 'make all' first"

# mpi_setup: the MPI a test runs under: PSI_TEST_MPI=mpich (the default) or
# openmpi. Sets MPICC, MPIEXEC (an array: the launcher and its flags) and
# MPI4 (1 when that mpi.h is MPI-4: the _c and MPI_Isendrecv cases of
# mpi/mpi_calls.c are built). Each program is named by its full Debian
# name: with both installed, plain `mpicc`/`mpiexec` are whichever one
# update-alternatives prefers.
mpi_setup() {
    case ${PSI_TEST_MPI:-mpich} in
    mpich) MPICC=mpicc.mpich MPIEXEC=(mpiexec.mpich) MPI4=1 ;;
    # As root (CI) Open MPI's mpirun refuses to start without
    # --allow-run-as-root; 4 ranks on 2 cores need --oversubscribe.
    openmpi) MPICC=mpicc.openmpi MPIEXEC=(mpirun.openmpi --allow-run-as-root --oversubscribe) MPI4=0 ;;
    *) fail "PSI_TEST_MPI=$PSI_TEST_MPI: expected mpich or openmpi" ;;
    esac
    need "$MPICC" "${MPIEXEC[0]}"
}

# sent_is_received DIR NAME [-u]: the SEND and RECV lines (case, size,
# hash) the ranks of an MPI test wrote to DIR/out.* must be the same;
# NAME.send and NAME.recv keep them, sorted (-u: distinct lines, where
# several ranks receive one buffer).
sent_is_received() {
    local dir=$1 name=$2 uniq=${3:-}
    # shellcheck disable=SC2086
    grep -h '^RECV' "$dir"/out.* | sort $uniq >"$name.recv"
    # shellcheck disable=SC2086
    grep -h '^SEND' "$dir"/out.* | sed 's/^SEND/RECV/' | sort $uniq >"$name.send"
    diff "$name.send" "$name.recv" >"$name.diff" ||
        fail "$name: received buffers differ from sent ones: $(head -5 "$name.diff")"
}

# ---- processes ---------------------------------------------------------

PIDS=()
_cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
trap _cleanup EXIT

# preload CMD...: runs CMD with the interposer. Extra PSI_* settings go in
# front with env: preload env PSI_THRESHOLD=64K socat ...
# (A leading `env` is folded into the one that sets LD_PRELOAD, so no
# helper process ever runs interposed.)
preload() {
    [[ $1 == env ]] && shift
    env LD_PRELOAD="$PSI_PRELOAD" "$@"
}

# spawn OUT ERR [preload] CMD...: starts CMD in the background with stdout
# to OUT and stderr to ERR, remembers its pid (killed on exit) in SPAWNED.
# With `preload` first, only CMD gets LD_PRELOAD; the pid is CMD's own.
SPAWNED=
spawn() {
    local out=$1 err=$2
    shift 2
    if [[ $1 == preload ]]; then
        shift
        [[ $1 == env ]] && shift
        set -- env LD_PRELOAD="$PSI_PRELOAD" "$@"
    fi
    "$@" <"${SPAWN_STDIN:-/dev/null}" >"$out" 2>"$err" &
    SPAWNED=$!
    PIDS+=("$SPAWNED")
}

# await PID WHAT [SECS]: waits (bounded) for PID to exit; returns its status.
# A process still running after SECS is a failure of the test.
await() {
    local pid=$1 what=$2 secs=${3:-60} i rc=0
    for ((i = 0; i < secs * 20; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -9 "$pid" 2>/dev/null || true
        fail "$what (pid $pid) still running after ${secs}s (killed)"
    fi
    wait "$pid" || rc=$?
    return "$rc"
}

# await_ok PID WHAT [SECS]: like await, but a non-zero exit fails the test.
await_ok() {
    local rc=0
    await "$@" || rc=$?
    ((rc == 0)) || fail "$2 exited with status $rc"
}

# netio_pair NAME SENDER-ENV RECEIVER-ENV SERVER-STEPS... -- CLIENT-STEPS...:
# a preloaded netio.py server (the receiver, RECEIVER-ENV: words such as
# PSI_STORE=...) and client (the sender); leaves NAME.srv.* and NAME.cli.*,
# their pids in SPID and CPID.
netio_pair() {
    local name=$1 senv=$2 renv=$3 port spid
    shift 3
    local sargs=() cargs=()
    while [[ $1 != -- ]]; do sargs+=("$1"); shift; done
    shift
    cargs=("$@")
    port=$(free_port)
    # shellcheck disable=SC2086
    spawn "$name.srv.out" "$name.srv.err" preload env $renv PSI_STATS="$TEST_TMP/$name.srv.stats" \
        "$PY" "$NETIO" server --port "$port" --result "$name.srv.json" "${sargs[@]}"
    spid=$SPAWNED
    wait_listen "$port" "$spid"
    # shellcheck disable=SC2086
    spawn "$name.cli.out" "$name.cli.err" preload env $senv PSI_STATS="$TEST_TMP/$name.cli.stats" \
        "$PY" "$NETIO" client --port "$port" --result "$name.cli.json" "${cargs[@]}"
    CPID=$SPAWNED
    SPID=$spid
}

# ---- ports and readiness -----------------------------------------------

# A TCP port that was free a moment ago (bind to port 0, read it back).
free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_listen PORT [PID] [SECS]: polls `ss` until something listens on the
# TCP port; fails early if PID dies first. Never connects (a one-shot server
# would take the probe for its client).
wait_listen() {
    local port=$1 pid=${2:-} secs=${3:-20} i
    for ((i = 0; i < secs * 50; i++)); do
        if [[ -n $(ss -Hltn "sport = :$port" 2>/dev/null) ]]; then
            [[ -n ${PSI_TEST_WAIT_REGISTRY:-} ]] || return 0
            # Diagnostic mode only: also wait for the interposer's registry
            # entry, to tell a late registration apart from other faults.
            # shellcheck disable=SC2010
            ls "$PSI_RUNTIME_DIR/registry" 2>/dev/null | grep -q -- "-$port-" && return 0
            [[ -z $pid ]] || grep -q "LD_PRELOAD" "/proc/$pid/environ" 2>/dev/null || return 0
        fi
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            fail "process $pid exited before listening on port $port"
        fi
        sleep 0.02
    done
    fail "nothing listens on port $port after ${secs}s"
}

# wait_listen_unix PATH [PID] [SECS]: the same for a Unix stream socket.
wait_listen_unix() {
    local path=$1 pid=${2:-} secs=${3:-20} i
    for ((i = 0; i < secs * 50; i++)); do
        if [[ -S $path ]] && ss -Hlxn 2>/dev/null | grep -qF -- "$path"; then
            [[ -n ${PSI_TEST_WAIT_REGISTRY:-} ]] || return 0
            # diagnostic mode only, as in wait_listen
            grep -qsF -- "unix $path " "$PSI_RUNTIME_DIR"/registry/* && return 0
            [[ -z $pid ]] || grep -q "LD_PRELOAD" "/proc/$pid/environ" 2>/dev/null || return 0
        fi
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            fail "process $pid exited before listening on $path"
        fi
        sleep 0.02
    done
    fail "nothing listens on $path after ${secs}s"
}

# wait_file PATH [SECS]: polls until PATH exists.
wait_file() {
    local path=$1 secs=${2:-20} i
    for ((i = 0; i < secs * 50; i++)); do
        [[ -e $path ]] && return 0
        sleep 0.02
    done
    fail "$path did not appear within ${secs}s"
}

# ---- payloads and comparisons -------------------------------------------

# size N: accepts 123, 64K, 1M, 64M (binary units) and prints bytes.
size() {
    local s=$1
    case $s in
    *K) echo $((${s%K} * KiB)) ;;
    *M) echo $((${s%M} * MiB)) ;;
    *) echo $((s)) ;;
    esac
}

# payload FILE N: N random bytes (N as for `size`).
payload() {
    local n
    n=$(size "$2")
    head -c "$n" /dev/urandom >"$1"
    [[ $(stat -c %s "$1") -eq $n ]] || fail "could not make a $n-byte payload in $1"
}

sha() { sha256sum "$1" | cut -c1-64; }

# same_bytes EXPECTED GOT LABEL: fails with sizes, hashes and the first
# differing byte when GOT is not byte-for-byte EXPECTED.
same_bytes() {
    local want=$1 got=$2 label=$3 ws gs wh gh
    [[ -f $got ]] || fail "$label: nothing received ($got does not exist)"
    ws=$(stat -c %s "$want")
    gs=$(stat -c %s "$got")
    wh=$(sha "$want")
    gh=$(sha "$got")
    if [[ $wh != "$gh" ]]; then
        echo "$label: sent $ws bytes sha256 $wh"
        echo "$label: got  $gs bytes sha256 $gh"
        echo "$label: $(cmp "$want" "$got" 2>&1 | head -1)"
        if ((gs > 0)); then
            echo "$label: first 32 bytes received: $(head -c 32 "$got" | od -An -tx1 | tr -s ' \n' ' ')"
        fi
        fail "$label: bytes differ"
    fi
}

# ---- commands and their output ----------------------------------------------

# expect_exit WANT NAME CMD...: runs CMD, output to NAME.out / NAME.err.
expect_exit() {
    local want=$1 name=$2 rc=0
    shift 2
    "$@" >"$name.out" 2>"$name.err" </dev/null || rc=$?
    if ((rc != want)); then
        sed 's/^/    out| /' "$name.out"
        sed 's/^/    err| /' "$name.err"
        fail "'${*#"$ROOT"/}' exited with $rc, expected $want"
    fi
}

# output_has NAME GREP-FLAGS PATTERN WHAT: NAME.out or NAME.err matches
# PATTERN for `grep GREP-FLAGS` (-F, -E, -iE...). grep reads the files itself:
# `cat | grep -q` fails under pipefail when grep stops reading early.
output_has() {
    grep -q "$2" -- "$3" "$1.out" "$1.err" || {
        sed 's/^/    | /' "$1.out" "$1.err"
        fail "$4: output does not match '$3'"
    }
}

# ---- stats (PSI_STATS files) ---------------------------------------------

STATS_KEYS="pid exe bytes_sent bytes_proxied tokens_sent tokens_resolved bytes_resolved inline_fallbacks errors put_seconds get_seconds"

# stat_sum FILE KEY: the sum of KEY over every line of a PSI_STATS file.
# A missing file is a failure: every preloaded process writes one at exit.
stat_sum() {
    local file=$1 key=$2
    [[ -f $file ]] || fail "stats file $file was not written (PSI_STATS)"
    "$PY" - "$file" "$key" <<'EOF' || fail "cannot read $key from stats file $file"
import json, sys
total = 0
for n, line in enumerate(open(sys.argv[1]), 1):
    if line.strip():
        total += json.loads(line)[sys.argv[2]]
print(total)
EOF
}

# stats_check FILE: every line is one JSON object with every documented key.
stats_check() {
    local file=$1
    [[ -f $file ]] || fail "stats file $file was not written (PSI_STATS)"
    "$PY" - "$file" "$STATS_KEYS" <<'EOF' || fail "stats file $file is malformed: $(head -c 300 "$file")"
import json, sys
keys = sys.argv[2].split()
lines = [l for l in open(sys.argv[1]).read().split("\n") if l.strip()]
assert lines, "empty"
for l in lines:
    o = json.loads(l)
    missing = [k for k in keys if k not in o]
    assert not missing, "missing keys %s in %s" % (missing, l)
EOF
}

tokens_sent() { stat_sum "$1" tokens_sent; }
tokens_resolved() { stat_sum "$1" tokens_resolved; }

# expect_stat FILE KEY OP VALUE LABEL: e.g. expect_stat s.json tokens_sent -ge 1 "x"
expect_stat() {
    local file=$1 key=$2 op=$3 want=$4 label=$5 got
    got=$(stat_sum "$file" "$key")
    if ! test "$got" "$op" "$want"; then
        echo "stats $(basename "$file"): $(cat "$file")"
        fail "$label: $key is $got, expected $op $want"
    fi
}

# proxied_size N THRESHOLD: true when a single write of N bytes must travel
# as a token (the interposer proxies writes of THRESHOLD bytes or more).
proxied_size() { (($1 >= $2)); }

# socat_xfer NAME IN OUT [VAR=VALUE...]: IN from a connecting socat to a
# listening one that writes OUT (socat -u -b $B, 16 MiB unless B is set),
# both preloaded with the settings given and PSI_STATS=NAME.cli.stats /
# NAME.srv.stats; waits for both and checks OUT is IN byte for byte.
socat_xfer() {
    local name=$1 in=$2 out=$3 port spid cpid
    shift 3
    port=$(free_port)
    spawn "$name.srv.out" "$name.srv.err" preload env "$@" PSI_STATS="$TEST_TMP/$name.srv.stats" \
        socat -u -b "${B:-16777216}" "TCP-LISTEN:$port,reuseaddr,bind=127.0.0.1" "OPEN:$out,creat,trunc"
    spid=$SPAWNED
    wait_listen "$port" "$spid"
    spawn "$name.cli.out" "$name.cli.err" preload env "$@" PSI_STATS="$TEST_TMP/$name.cli.stats" \
        socat -u -b "${B:-16777216}" "OPEN:$in" "TCP:127.0.0.1:$port"
    cpid=$SPAWNED
    await_ok "$cpid" "$name: sending socat"
    await_ok "$spid" "$name: receiving socat"
    same_bytes "$in" "$out" "$name"
}

# xfer_tokens NAME N THRESHOLD: after socat_xfer NAME: no errors and no
# inline fallback on either end, the receiver resolved every token the
# sender sent, at least one if a write of N bytes is proxied at THRESHOLD
# and none if not. Sets TS to the tokens sent.
TS=0
xfer_tokens() {
    local name=$1 n=$2 thr=$3 f tr
    for f in "$name.srv.stats" "$name.cli.stats"; do
        expect_stat "$f" errors -eq 0 "$name"
        expect_stat "$f" inline_fallbacks -eq 0 "$name"
    done
    TS=$(tokens_sent "$name.cli.stats")
    tr=$(tokens_resolved "$name.srv.stats")
    ((TS == tr)) || fail "$name: sender sent $TS tokens, receiver resolved $tr"
    if proxied_size "$n" "$thr"; then
        ((TS >= 1)) || fail "$name: a $n-byte write with threshold $thr sent no token"
    else
        ((TS == 0)) || fail "$name: a $n-byte write with threshold $thr sent $TS tokens"
    fi
}

# count_psi_lines FILE [PATTERN]: interposer log lines ("psi[PID]: ...") in
# FILE, optionally only those matching an extended regex (case-insensitive).
count_psi_lines() {
    local file=$1 pat=${2:-.}
    grep -E '^psi\[[0-9]+\]' "$file" 2>/dev/null | grep -ciE -- "$pat" || true
}
