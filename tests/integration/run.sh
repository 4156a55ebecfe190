#!/usr/bin/env bash
# Runs the integration tests: every tests/integration/t_*.sh, each in its own
# temp dir with its own registry (PSI_RUNTIME_DIR) and store (PSI_STORE), under
# a per-test timeout.
#
#   tests/integration/run.sh [NAME-SUBSTRING]
#
# Prints "ok NAME (Ns)" or "FAIL NAME" plus the tail of the test's log, and
# ends with one line "integration: N passed, N failed" (exit 1 if any failed).
# The temp dir of a failed test is kept (its path is printed);
# PSI_TEST_KEEP=1 keeps every one. PSI_TEST_TIMEOUT overrides the 120 s.
# PSI_TEST_LIB / PSI_TEST_BIN test another build of the library / of psi.
# PSI_TEST_PRELOAD_EXTRA is put in LD_PRELOAD before the library (a
# sanitizer runtime); PSI_TEST_SKIP lists test names not to run (each is
# reported as "skip NAME"), for builds some programs cannot load.
# PSI_TEST_WAIT_REGISTRY=1 (diagnosis only) also waits for a preloaded
# listener's registry entry, not just for its port, before connecting.
set -euo pipefail

# The harness itself never runs interposed, and no PSI_* setting of the
# caller leaks into a test: each test sets what it needs.
unset LD_PRELOAD
while IFS= read -r v; do
    case $v in PSI_TEST_*) ;; *) unset "$v" ;; esac
done < <(compgen -e | grep '^PSI_' || true)

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export ROOT
filter=${1:-}
limit=${PSI_TEST_TIMEOUT:-120}

tests=()
for t in "$HERE"/t_*.sh; do
    name=$(basename "$t" .sh)
    [[ -z $filter || $name == *"$filter"* ]] || continue
    if [[ " ${PSI_TEST_SKIP:-} " == *" $name "* ]]; then
        echo "skip $name (PSI_TEST_SKIP)"
        continue
    fi
    tests+=("$t")
done
if ((${#tests[@]} == 0)); then
    echo "no test matches '$filter'"
    echo "integration: 0 passed, 0 failed"
    exit 1
fi

passed=0
failed=0
lib=${PSI_TEST_LIB:-$ROOT/build/libpsinterpose.so}
if [[ ! -f $lib ]]; then
    echo "$lib does not exist: run 'make all' first"
    for t in "${tests[@]}"; do
        echo "FAIL $(basename "$t" .sh)"
        failed=$((failed + 1))
    done
    echo "integration: $passed passed, $failed failed"
    exit 1
fi

base=$(mktemp -d "${TMPDIR:-/tmp}/psi-it.XXXXXX")
for t in "${tests[@]}"; do
    name=$(basename "$t" .sh)
    tmp=$base/$name
    mkdir -p "$tmp/run"
    start=$(date +%s)
    rc=0
    (
        cd "$tmp"
        export TEST_TMP=$tmp PSI_RUNTIME_DIR=$tmp/run PSI_STORE=file://$tmp/store
        exec timeout -k 5 "$limit" bash "$t"
    ) </dev/null >"$tmp/log" 2>&1 || rc=$?
    secs=$(($(date +%s) - start))
    if ((rc == 0)); then
        echo "ok $name (${secs}s)"
        passed=$((passed + 1))
        [[ -n ${PSI_TEST_KEEP:-} ]] || rm -rf "$tmp"
    else
        echo "FAIL $name"
        ((rc == 124 || rc == 137)) && echo "    (timed out after ${limit}s)"
        tail -n 40 "$tmp/log" | sed 's/^/    /'
        echo "    (log and files kept in $tmp)"
        failed=$((failed + 1))
    fi
done
[[ $failed -gt 0 || -n ${PSI_TEST_KEEP:-} ]] || rm -rf "$base"

echo "integration: $passed passed, $failed failed"
((failed == 0))
