#!/usr/bin/env bash
# psi policy check / explain on good and bad files, and psi run --policy:
# exit codes, FILE:LINE:COL diagnostics, explanations rule by rule.
source "$(dirname "$0")/lib.sh"

[[ -x $PSI_BIN ]] || fail "$PSI_BIN does not exist: run 'make all' first"
EXAMPLE=$ROOT/docs/example.policy

# has NAME FIXED-STRING WHAT: NAME.out or NAME.err contains the string.
has() { output_has "$1" -F "$2" "$3"; }

# hasnt NAME FIXED-STRING WHAT
hasnt() {
    if grep -qF -- "$2" "$1.out" "$1.err"; then
        sed 's/^/    | /' "$1.out" "$1.err"
        fail "$3: output contains '$2'"
    fi
}

# ---- check --------------------------------------------------------------

expect_exit 0 good "$PSI_BIN" policy check "$EXAMPLE"
has good "$EXAMPLE: ok: 7 rules, 0 errors, 0 warnings" "check of the example"
log "ok policy check example: $(cat good.out)"

cat >bad.policy <<'P'
# three errors and a line that is fine
defaults threshold=12Q
rule a: chanel=tcp => proxy
rule b: port=70000 => proxy connector=nowhere
rule c: channel=tcp => pass
P
expect_exit 2 bad "$PSI_BIN" policy check bad.policy
has bad "bad.policy:2:20: error: threshold '12Q': unknown suffix 'Q'" "bad threshold"
has bad "bad.policy:3:9: error: unknown condition 'chanel'; expected channel" "unknown key"
has bad "bad.policy:4:14: error: port '70000' is not valid; expected a number from 1 to 65535" \
    "port out of range"
has bad "bad.policy:4:39: error: connector 'nowhere' is not declared" "unknown connector"
has bad "bad.policy: invalid: 3 rules, 4 errors, 0 warnings" "summary line"
[[ $(grep -c ': error: ' bad.out) -eq 4 ]] || fail "expected exactly 4 errors: $(cat bad.out)"
log "ok policy check bad: exit 2, all 4 errors listed"

cat >warn.policy <<'P'
connector spare file:///tmp/psi-spare
rule tcp: channel=tcp => pass
rule big-tcp: channel=tcp size=4M.. => proxy
P
expect_exit 0 warn "$PSI_BIN" policy check warn.policy
has warn "warn.policy:1:11: warning: connector 'spare' is declared but no rule or default uses it" \
    "unused connector"
has warn "warn.policy:3:1: warning: rule 'big-tcp' can never match: the earlier rule 'tcp' (line 2)" \
    "shadowed rule"
has warn "warn.policy: ok: 2 rules, 0 errors, 2 warnings" "warning summary"
log "ok policy check warnings: exit 0"

# bad inputs: one clear error each, never a crash
: >empty.policy
printf 'rule: => pass\n\0\1\2' >binary.policy
head -c $((MiB + 1)) /dev/zero | tr '\0' '#' >huge.policy
mkdir -p adir
expect_exit 2 inputs "$PSI_BIN" policy check empty.policy binary.policy huge.policy adir missing.policy
has inputs "empty.policy: error: empty file: no statements" "empty file"
has inputs "binary.policy: error: not a text file: a NUL byte" "binary file"
has inputs "huge.policy: error: too large: 1048577 bytes" "huge file"
has inputs "adir: error: is a directory" "directory"
has inputs "missing.policy: error: cannot open the policy file: No such file or directory" "missing"
has inputs "total: 5 files, 5 errors, 0 warnings" "total line"
log "ok policy check bad inputs"

expect_exit 2 noargs "$PSI_BIN" policy check
expect_exit 2 nosub "$PSI_BIN" policy frob
expect_exit 0 phelp "$PSI_BIN" policy --help
has phelp "psi policy explain FILE" "policy --help"
expect_exit 0 help "$PSI_BIN" help
has help "policy" "psi help lists policy"
log "ok policy usage errors and help"

# ---- explain --------------------------------------------------------------

expect_exit 0 ex1 "$PSI_BIN" policy explain "$EXAMPLE" --channel tcp --peer 10.1.2.3:8786 \
    --size 4MiB --exe python3
has ex1 "rule 'postgres' ($EXAMPLE:24): no: port 8786 is not 5432" "first rule's reason"
has ex1 "rule 'dask' ($EXAMPLE:27): MATCH" "matching rule"
has ex1 "decision: proxy (rule 'dask'" "decision"
has ex1 "connector: scratch (file:///dev/shm/psi-example)" "connector name and URL"
has ex1 "lifetime:  evict-on-read" "lifetime"
has ex1 "threshold: 256KiB (the rule's)" "rule threshold"
hasnt ex1 "rule 'results'" "rules after the match are not listed"
log "ok policy explain (match):"
sed 's/^/    /' ex1.out

expect_exit 0 ex2 "$PSI_BIN" policy explain "$EXAMPLE" --channel zmq --size 512K
has ex2 "rule 'small-msgs' ($EXAMPLE:44): no: channel is zmq, rule wants udp,mpi" "last rule"
has ex2 "no rule matches: default decision: pass, because size 512KiB is below the default threshold 1MiB (the policy's defaults)" \
    "default decision"
log "ok policy explain (no match, below threshold)"

expect_exit 0 ex3 env PSI_THRESHOLD=256K "$PSI_BIN" policy explain "$EXAMPLE" --channel zmq --size 512K
has ex3 "default decision: proxy, because size 512KiB is at least the default threshold 256KiB (PSI_THRESHOLD)" \
    "PSI_THRESHOLD overrides defaults threshold"
has ex3 "connector: scratch" "defaults connector"
log "ok policy explain with PSI_THRESHOLD"

expect_exit 0 ex4 "$PSI_BIN" policy explain "$EXAMPLE" --channel tcp --peer '[fd00:10::5]:80' \
    --size 512K
has ex4 "rule 'dask' ($EXAMPLE:27): no: peer [fd00:10::5]:80 is not in 10.1.0.0/16" "v6 reason"
has ex4 "MATCH (matches, but size 512KiB is below the threshold 1MiB: the send passes)" \
    "proxy rule below threshold"
has ex4 "decision: pass (rule 'results'" "below-threshold decision"

expect_exit 0 ex5 "$PSI_BIN" policy explain "$EXAMPLE" --channel tcp --size 32M \
    --caller main --caller save_checkpoint_v2
has ex5 "rule 'checkpoints' ($EXAMPLE:38): MATCH" "caller rule"
has ex5 "ttl:       7200s" "ttl"
expect_exit 0 ex6 "$PSI_BIN" policy explain "$EXAMPLE" --channel unix --peer unix:/run/app/w.sock \
    --size 128K --direction send
has ex6 "rule 'workers' ($EXAMPLE:34): MATCH" "unix glob rule"
log "ok policy explain: v6, below threshold, caller, unix"

printf 'connector s file:///tmp/psi-s\nrule only-pipes: channel=pipe => proxy connector=s\n' >pipes.policy
expect_exit 0 ex7 env PSI_STORE=file:///tmp/psi-env "$PSI_BIN" policy explain pipes.policy \
    --channel tcp --size 2M
has ex7 "rule 'only-pipes' (pipes.policy:2): no: channel is tcp, rule wants pipe" "reason"
has ex7 "connector: the default: PSI_STORE=file:///tmp/psi-env" "PSI_STORE default connector"

expect_exit 2 exbad "$PSI_BIN" policy explain bad.policy --channel tcp --size 1M
has exbad "bad.policy:3:9: error: unknown condition 'chanel'" "explain lists errors"
expect_exit 2 exopt "$PSI_BIN" policy explain "$EXAMPLE" --channel tpc --size 1M
has exopt "--channel 'tpc'" "bad --channel"
expect_exit 2 expeer "$PSI_BIN" policy explain "$EXAMPLE" --channel tcp --size 1M --peer nohost
has expeer "--peer 'nohost'" "bad --peer"
expect_exit 2 exreq "$PSI_BIN" policy explain "$EXAMPLE" --channel tcp
has exreq "--channel and --size are required" "missing --size"
log "ok policy explain errors"

# ---- psi run --policy --------------------------------------------------------

expect_exit 2 runbad "$PSI_BIN" run --policy bad.policy -- true
has runbad "bad.policy:3:9: error: unknown condition 'chanel'" "psi run lists the errors"
has runbad "psi run: not starting: the policy $TEST_TMP/bad.policy has 4 errors" "psi run refuses"
log "ok psi run --policy BAD: exit 2"

expect_exit 2 runenvbad env PSI_POLICY=empty.policy "$PSI_BIN" run -- true
has runenvbad "empty.policy: error: empty file" "PSI_POLICY checked too"

expect_exit 0 rungood "$PSI_BIN" run --policy "$EXAMPLE" -- sh -c 'echo "policy=$PSI_POLICY"'
has rungood "policy=$EXAMPLE" "PSI_POLICY passed to the program"
log "ok psi run --policy GOOD runs: $(cat rungood.out)"

cp "$EXAMPLE" rel.policy
expect_exit 0 runrel "$PSI_BIN" run --policy rel.policy -- sh -c 'echo "policy=$PSI_POLICY"'
has runrel "policy=$TEST_TMP/rel.policy" "a relative --policy is made absolute"

expect_exit 0 runwarn "$PSI_BIN" run --policy warn.policy -- true
has runwarn "warning: connector 'spare'" "warnings are shown by psi run"
log "ok psi run --policy: relative path, warnings"
