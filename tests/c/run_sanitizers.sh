#!/bin/sh
# Builds csrc/fp_server.c with its driver (tests/c/fp_server_asan.c) twice and runs it:
#   1. AddressSanitizer + LeakSanitizer + UBSan: any memory error, leak or UB fails the run;
#   2. ThreadSanitizer: the loop thread and the caller share only the counters (atomics) and
#      the start/stop handshake (pthread_create/eventfd/pthread_join); a race fails the run.
# Usage: sh tests/c/run_sanitizers.sh      (needs gcc and libssl-dev)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$(dirname "$here")")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
build() {
    ${CC:-gcc} -std=c11 -D_GNU_SOURCE -O1 -g -fno-omit-frame-pointer -Wall -Wextra -Werror \
        "$@" -I"$root/csrc" -o "$out/driver" \
        "$here/fp_server_asan.c" "$root/csrc/fp_server.c" -lssl -lcrypto -lpthread
}
echo "== ASan + LSan + UBSan"
build -fsanitize=address,undefined -fno-sanitize-recover=undefined
ASAN_OPTIONS=detect_leaks=1 "$out/driver"
echo "== TSan"
build -fsanitize=thread
TSAN_OPTIONS=halt_on_error=1 "$out/driver"
