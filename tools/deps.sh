#!/usr/bin/env bash
# Installs what psinterpose's build and tests need (make deps; make test).
# Silent and fast when everything is there. As root it installs what is
# missing with apt-get; otherwise it says what to install and exits 1.
set -euo pipefail

# What we need, one per line: "kind  what-to-check  debian-package".
#   header: a file under /usr/include or its multiarch directory
#   (libunwind.h is in /usr/include/x86_64-linux-gnu);  program: a command on PATH;
#   nc-openbsd: the OpenBSD netcat (tests use its -U and -N flags);
#   syspy: a module Debian's /usr/bin/python3 imports (not a pyenv python).
# Add new dependencies here (e.g. "header hiredis/hiredis.h libhiredis-dev").
NEEDS="
header   xxhash.h      libxxhash-dev
header   cmocka.h      libcmocka-dev
header   libunwind.h   libunwind-dev
program  gcc           gcc
program  make          make
program  pkg-config    pkgconf
program  python3       python3
program  sha256sum     coreutils
program  socat         socat
program  nc            netcat-openbsd
nc-openbsd nc          netcat-openbsd
program  ss            iproute2
program  pkill         procps
program  chromium      chromium
program  curl          curl
program  iperf3        iperf3
program  valgrind      valgrind
program  rsync         rsync
program  nginx         nginx-light
header   hiredis/hiredis.h libhiredis-dev
program  redis-server  redis-server
program  redis-cli     redis-tools
header   zmq.h         libzmq3-dev
header   mpich/mpi.h   libmpich-dev
program  mpiexec.hydra mpich
header   openmpi/mpi.h libopenmpi-dev
program  mpirun.openmpi openmpi-bin
syspy    zmq           python3-zmq
syspy    mpi4py        python3-mpi4py
"

# Prints nothing and succeeds if the requirement is met.
have() {
    local kind=$1 what=$2
    case $kind in
    header)     [[ -f /usr/include/$what ]] || compgen -G "/usr/include/*-linux-gnu/$what" >/dev/null ;;
    program)    command -v "$what" >/dev/null 2>&1 ;;
    nc-openbsd) [[ $(readlink -f "$(command -v nc 2>/dev/null || echo /nonexistent)") == *openbsd* ]] ;;
    syspy)      /usr/bin/python3 -c "import $what" >/dev/null 2>&1 ;;
    *)          echo "deps.sh: unknown kind '$kind'" >&2; return 1 ;;
    esac
}

missing=()
while read -r kind what pkg; do
    [[ -z ${kind:-} ]] && continue
    if ! have "$kind" "$what"; then
        [[ " ${missing[*]} " == *" $pkg "* ]] || missing+=("$pkg")
    fi
done <<<"$NEEDS"

((${#missing[@]} == 0)) && exit 0

if [[ $(id -u) -ne 0 ]]; then
    echo "deps.sh: missing packages: ${missing[*]}" >&2
    echo "deps.sh: install them with:" >&2
    echo "    sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
fi

echo "deps.sh: installing ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
