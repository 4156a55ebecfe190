#!/usr/bin/env bash
# Runs cmocka unit test binaries and prints one summary line:
#   unit: N passed, N failed
# counting cmocka tests (from "[  PASSED  ] N test(s)." and "[  FAILED  ]
# N test(s)"). A binary that is missing, crashes or exits non-zero without
# reporting a failed test counts as one failure, so nothing fails silently.
set -uo pipefail

passed=0
failed=0

# Sums the N of every "[  TAG  ] N test(s)" match of the regex on stdin.
count() {
    grep -oE "$1" | grep -oE '[0-9]+ test' | awk '{s += $1} END {print s + 0}'
}

for bin in "$@"; do
    echo "== $bin"
    if [[ ! -x $bin ]]; then
        echo "run-unit: $bin: not found or not executable"
        failed=$((failed + 1))
        continue
    fi
    out=$("$bin" 2>&1)
    rc=$?
    printf '%s\n' "$out"
    # cmocka writes these to stderr and the rest to (buffered) stdout, so
    # they can land mid-line: match them anywhere.
    p=$(count '\[  PASSED  \] [0-9]+ test\(s\)\.' <<<"$out")
    f=$(count '\[  FAILED  \] [0-9]+ test\(s\)' <<<"$out")
    if ((rc != 0 && f == 0)); then
        echo "run-unit: $bin exited with status $rc without a cmocka failure report"
        f=1
    fi
    passed=$((passed + p))
    failed=$((failed + f))
done

echo "unit: $passed passed, $failed failed"
((failed == 0))
