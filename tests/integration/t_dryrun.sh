#!/usr/bin/env bash
# `psi dry-run` over a real multi-process tree (sh forks and execs three
# Python programs) whose sends are known exactly (dryrun_prog.py):
#  1. counts: pipe 3 x 2 MiB + 5 x 1 KiB, TCP 2 x 3 MiB + 4 x 100 B and a
#     1500-byte reply from the accepting side; with a 1 MiB threshold, 5
#     sends (12 MiB) would be proxied. Totals, per-channel rows, peers and
#     call sites are checked in the --json output.
#  2. nothing changed on the wire: every receiver got the exact bytes, no
#     process sent a token (PSI_STATS), the store stayed empty.
#  3. a write the kernel takes in part, that the program then completes,
#     counts once: a non-blocking writer into a slow reader (continued by
#     pointer, and by copies of the rest).
#  4. exit status passed on; a broken policy refused with 2 before running.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

[[ -x $PSI_BIN ]] || fail "$PSI_BIN does not exist: run 'make all' first"
PROG=$HERE/dryrun_prog.py
"$PY" "$PROG" expect "$TEST_TMP"

# json_get FILE EXPR: evaluates a Python expression over the report `r`.
json_get() {
    "$PY" - "$1" "$2" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
def rows(ch=None, **kw):
    return [x for x in r["rows"] if (ch is None or x["channel"] == ch)
            and all(x[k] == v for k, v in kw.items())]
def tot(ch, key):
    return sum(x[key] for x in rows(ch))
print(eval(sys.argv[2]))
EOF
}

# expect_json FILE EXPR WANT LABEL
expect_json() {
    local got
    got=$(json_get "$1" "$2") || fail "$4: cannot evaluate $2 over $1"
    [[ $got == "$3" ]] || {
        head -c 3000 "$1"
        fail "$4: $2 is $got, expected $3"
    }
}

# ---- 1 and 2: the pipeline ----------------------------------------------
port=$(free_port)
rc=0
# shellcheck disable=SC2016 # $1.. expand in the inner shell
PSI_STATS=$TEST_TMP/dry.stats "$PSI_BIN" dry-run --threshold 1MiB --json tree.json -- \
    sh -c '"$1" "$2" receiver "$3" tcp.got 2>recv.err &
           "$1" "$2" writer "$3" 2>writer.err | "$1" "$2" reader pipe.got 2>reader.err
           wait' sh "$PY" "$PROG" "$port" >tree.out 2>tree.err || rc=$?
((rc == 0)) || { cat tree.err; fail "dry run of the pipeline exited with $rc"; }
[[ -s tree.json ]] || fail "--json tree.json was not written"

same_bytes pipe.expect pipe.got "pipe reader under dry run"
same_bytes tcp.expect tcp.got "TCP receiver under dry run"
expect_stat dry.stats tokens_sent -eq 0 "dry run"
expect_stat dry.stats bytes_sent -eq 0 "dry run (nothing framed)"
store=${PSI_STORE#file://}
[[ ! -d $store ]] || [[ -z $(ls -A "$store") ]] || fail "dry run put something in the store: $(ls "$store")"
log "ok nothing changed on the wire (bytes identical, no tokens, store empty)"

expect_json tree.json 'r["exit_status"]' 0 "exit status"
expect_json tree.json 'r["processes"] >= 3' True "processes observed (sh, writer, reader, receiver)"
# exact totals: pipe 8 sends, TCP 6 from the writer and 1 reply
expect_json tree.json 'tot("pipe","sends"), tot("pipe","bytes")' "(8, $((6 * MiB + 5 * KiB)))" "pipe"
expect_json tree.json 'tot("pipe","proxied_sends"), tot("pipe","proxied_bytes")' "(3, $((6 * MiB)))" "pipe proxied"
expect_json tree.json 'tot("tcp","sends"), tot("tcp","bytes")' "(7, $((6 * MiB + 400 + 1500)))" "tcp"
expect_json tree.json 'tot("tcp","proxied_sends"), tot("tcp","proxied_bytes")' "(2, $((6 * MiB)))" "tcp proxied"
expect_json tree.json 'r["totals"]["sends"], r["totals"]["bytes"]' \
    "(15, $((12 * MiB + 5 * KiB + 400 + 1500)))" "totals"
expect_json tree.json 'r["totals"]["proxied_sends"], r["totals"]["proxied_bytes"]' \
    "(5, $((12 * MiB)))" "totals proxied"
# wire after: 5 tokens of 106 bytes, and every inline byte
expect_json tree.json 'r["totals"]["wire_after"]' $((5 * 106 + 5 * KiB + 400 + 1500)) "wire after"
# peers and call sites
expect_json tree.json 'sorted({x["peer"] for x in rows("pipe")})' "['pipe']" "pipe peer"
expect_json tree.json 'len(rows("tcp", peer="127.0.0.1:'"$port"'"))  >= 1' True "tcp peer 127.0.0.1:$port"
expect_json tree.json 'all((x["site"] == "(small sends)") == (x["bytes"] < 4096 * x["sends"]) for x in r["rows"])' \
    True "sends below 4 KiB pooled as (small sends), the others by call site"
expect_json tree.json 'all(__import__("re").fullmatch(r".+\+0x[0-9a-f]+ \(.+\)", x["site"]) for x in r["rows"] if x["proxied_sends"])' \
    True "call sites as func+0xOFF (module)"
# the sweep: at 4 KiB every send of at least 4 KiB; at 4 MiB none
expect_json tree.json '[(s["threshold"], s["sends"], s["bytes"]) for s in r["sweep"] if s["threshold"] in (4096, 2097152, 4194304)]' \
    "[(4096, 5, $((12 * MiB))), (2097152, 5, $((12 * MiB))), (4194304, 0, 0)]" "sweep"
grep -q "TOTAL" tree.err || fail "no table on stderr: $(head -5 tree.err)"
grep -q "<- threshold" tree.err || fail "no threshold sweep on stderr"
log "ok exact counts over sh + 3 exec'd programs: $(json_get tree.json 'r["totals"]')"

# ---- 3: partial writes count once ----------------------------------------
rc=0
# shellcheck disable=SC2016
"$PSI_BIN" dry-run --threshold 1MiB --json nb.json -- \
    sh -c '"$1" "$2" nbwriter 2>nb.err | "$1" "$2" slowreader nb.got' sh "$PY" "$PROG" \
    >nb.out 2>nb.report || rc=$?
((rc == 0)) || { cat nb.report nb.err; fail "dry run of the non-blocking writer exited with $rc"; }
same_bytes nb.expect nb.got "non-blocking writer under dry run"
calls=$(sed -n 's/^write calls //p' nb.err)
((calls > 4)) || fail "the kernel took every write whole ($calls calls): no partial write was tested"
expect_json nb.json 'tot("pipe","sends"), tot("pipe","bytes")' "(2, $((7 * MiB)))" \
    "$calls partial writes of 2 sends"
expect_json nb.json 'tot("pipe","proxied_sends"), tot("pipe","proxied_bytes")' "(2, $((7 * MiB)))" \
    "partial writes, proxied"
expect_json nb.json '[(h["log2"], h["count"]) for h in r["histogram"]]' "[(21, 1), (22, 1)]" \
    "histogram of the partial writes"
log "ok $calls short writes counted as the 2 sends they complete"

# ---- 4: status and refusal -------------------------------------------------
rc=0
"$PSI_BIN" dry-run -- sh -c 'exit 7' >st.out 2>st.err || rc=$?
((rc == 7)) || fail "psi dry-run returned $rc for a command that exited 7"
grep -q "exit status 7" st.err || fail "exit status not reported: $(cat st.err)"
printf 'this is not a policy\n' >bad.policy
rc=0
"$PSI_BIN" dry-run --policy bad.policy -- touch ran.marker >bad.out 2>bad.err || rc=$?
((rc == 2)) || fail "a broken policy: exit $rc, expected 2 ($(cat bad.err))"
[[ ! -e ran.marker ]] || fail "the command ran despite a broken policy"
log "ok exit status passed on; broken policy refused with 2"

# sendfile: counted as the engine would send it. A program sendfile()s a
# 12 MiB file into a pipe in 4 MiB requests; the kernel moves a pipe's
# capacity per call and the program calls again, but the engine would take
# each 4 MiB region whole (one token each): 3 sends, all proxied.
cat >sf.c <<'CEOF'
#include <fcntl.h>
#include <sys/sendfile.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    int fd = open(argv[1], O_RDONLY);
    off_t off = 0;
    while (argc > 1 && sendfile(1, fd, &off, 4 << 20) > 0)
        ;
    return 0;
}
CEOF
cc -O2 -Wall -Wextra -Werror -o sf sf.c
payload sf.in 12M
"$PSI_BIN" dry-run --threshold 1MiB --json sf.json -- sh -c "./sf sf.in | sha256sum > sf.sum" 2>sf.err ||
    fail "sendfile dry run failed: $(tail -3 sf.err)"
[[ $(cut -c1-64 sf.sum) == "$(sha sf.in)" ]] || fail "sendfile dry run: the bytes changed"
read -r sends proxied < <("$PY" -c 'import json,sys; t=json.load(open(sys.argv[1]))["totals"]; print(t["sends"], t["proxied_sends"])' sf.json)
((sends == 3 && proxied == 3)) || fail "sendfile dry run: $sends sends, $proxied proxied (expected 3 and 3)"
log "ok sendfile in a dry run: 3 regions of 4 MiB, counted once each"
