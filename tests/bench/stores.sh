#!/usr/bin/env bash
# Store throughput (put, resolve) of any store URLs, as markdown tables:
#
#   tests/bench/stores.sh [URL...]     (no URL: the embedded file store)
#
# PSI_BENCH_VOLUME=BYTES sets the bytes moved per size (default 1 GiB; at
# least 3 reps each). Builds tests/bench/storebench.c against the core
# library of `make all`.
set -euo pipefail
unset LD_PRELOAD

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CORE=$ROOT/build/libpsicore.a
BIN=$ROOT/build/bench/storebench

[[ -f $CORE ]] || { echo "stores.sh: $CORE does not exist: run 'make all' first" >&2; exit 1; }
mkdir -p "$ROOT/build/bench"
cc -O2 -D_GNU_SOURCE -Wall -Wextra -Werror -I"$ROOT/policy" -I"$ROOT/store" \
    -o "$BIN" "$HERE/storebench.c" "$CORE" -lxxhash -ldl -lpthread -lm
exec "$BIN" "$@"
